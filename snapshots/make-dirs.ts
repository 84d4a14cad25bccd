/**
 * `mkdir -p` for the store and the CLI, without Node 20's endless loop: its recursive mkdir
 * (fs.mkdirSync / fs.promises.mkdir with `recursive: true`, libuv's MKDirp) goes back to the
 * parent whenever mkdir(2) answers ENOENT, and forth again when the parent exists, forever, if
 * mkdir(2) answers ENOENT under a parent that exists — procfs does (`/proc/nonexistent/store`):
 * `checkpoint --store /proc/nonexistent/store` spun the sandbox's thread at 100% with the guest
 * paused. Here each directory is tried at most twice: once, and once after its parents are made.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * Create directory `dir` (a host path) and its missing ancestors, each with `mode` (less the
 * umask), as `mkdir -p`. Nothing if it is a directory already.
 * @throws the first mkdir(2) error as Node gives it (`code`, `syscall`, `path`): ENOENT (a parent
 *   exists and still refuses: procfs), EACCES, EROFS, ENOTDIR, EEXIST (a non-directory is there)…
 */
export function makeDirs(dir: string, mode?: number): void {
  const made = tryMkdir(dir, mode);
  if (made !== 'ENOENT') return;
  const parent = path.dirname(dir);
  if (parent === dir) fs.mkdirSync(dir, { mode }); // the root: throws its error
  makeDirs(parent, mode);
  if (tryMkdir(dir, mode) === 'ENOENT') fs.mkdirSync(dir, { mode }); // throws ENOENT again
}

/** makeDirs on the thread pool (fs.promises), for callers that must not block the event loop. */
export async function makeDirsAsync(dir: string, mode?: number): Promise<void> {
  if (await tryMkdirAsync(dir, mode) !== 'ENOENT') return;
  const parent = path.dirname(dir);
  if (parent === dir) await fsp.mkdir(dir, { mode });
  await makeDirsAsync(parent, mode);
  if (await tryMkdirAsync(dir, mode) === 'ENOENT') await fsp.mkdir(dir, { mode });
}

/** mkdir(2) of `dir`: 'done' if it is a directory now, 'ENOENT' if a parent is missing; any other error thrown. */
function tryMkdir(dir: string, mode?: number): 'done' | 'ENOENT' {
  try {
    fs.mkdirSync(dir, { mode });
    return 'done';
  } catch (e) {
    return mkdirFailed(e, dir);
  }
}

async function tryMkdirAsync(dir: string, mode?: number): Promise<'done' | 'ENOENT'> {
  try {
    await fsp.mkdir(dir, { mode });
    return 'done';
  } catch (e) {
    return mkdirFailed(e, dir);
  }
}

/** What a failed mkdir(2) of `dir` means: EEXIST on a directory is done, ENOENT a missing parent; any other error is thrown. */
function mkdirFailed(e: unknown, dir: string): 'done' | 'ENOENT' {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'ENOENT';
  if (code === 'EEXIST' && isDirectory(dir)) return 'done';
  throw e;
}

function isDirectory(p: string): boolean {
  try { return fs.statSync(p).isDirectory(); } catch { return false; }
}
