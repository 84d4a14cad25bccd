/**
 * Host errors as the one line a user reads (docs/cli.md: every bad input is one clear line).
 * Node's own messages (`ENOENT: no such file or directory, open '/x'`, `connect ECONNREFUSED
 * /run/x.sock`) name an errno and a syscall, not what the command was doing; these helpers put
 * them in words, as a shell says them (`No such file or directory`), beside what was being done.
 */
import fs from 'node:fs';
import path from 'node:path';
import { getSystemErrorMap } from 'node:util';

/** A bad argument that an action finds (commander finds the others): one line, status 2, as commander's usage errors. */
export class UsageError extends Error {}

/** Where libuv's text is not strerror(3)'s (`illegal operation on a directory`), strerror's. */
const STRERROR: Record<string, string> = { EISDIR: 'Is a directory', EEXIST: 'File exists', EACCES: 'Permission denied', ENOTSOCK: 'Not a socket' };

/**
 * Why `id` cannot be a checkpoint id argument: not 4 to 16 hex characters (snapshots/format.ts
 * isCheckpointIdPrefix), found before any store is opened; a usage error (status 2). Undefined for
 * a well-formed id (one the store does not hold is the store's error: status 1, restore 125).
 */
export function checkpointIdProblem(id: string): string | undefined {
  return /^[0-9a-fA-F]{4,16}$/.test(id) ? undefined : `invalid checkpoint id '${id}': expected 4 to 16 hex characters`;
}

/**
 * A host call's error in words, capitalized as strerror(3) gives them (`No such file or
 * directory`, `Connection refused`), from libuv's table of the errno; an error that is not a
 * host call's gives its message.
 */
export function hostErrorWords(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code !== undefined && err.code in STRERROR) return STRERROR[err.code];
  const words = typeof err?.errno === 'number' ? getSystemErrorMap().get(err.errno)?.[1] : undefined;
  if (words) return words.charAt(0).toUpperCase() + words.slice(1);
  return err?.code ?? (err instanceof Error ? err.message : String(e));
}

const VERBS: Record<string, string> = {
  open: 'open', mkdir: 'create the directory', connect: 'connect to', read: 'read', write: 'write', unlink: 'remove',
  rmdir: 'remove', rename: 'rename', stat: 'look at', lstat: 'look at', scandir: 'list', bind: 'bind', access: 'reach',
};

/**
 * The one line for an error that reached the command unexplained: a Node system error
 * (`ENOENT: no such file or directory, open '/x'`) becomes `cannot open /x: No such file or
 * directory`; any other error gives its message's first line.
 */
export function errorLine(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string' && err.message?.startsWith(`${err.code}: `)) {
    const verb = VERBS[err.syscall] ?? err.syscall;
    return `cannot ${verb}${err.path ? ' ' + err.path : ''}: ${hostErrorWords(err)}`;
  }
  const msg = err instanceof Error ? err.message : String(e);
  return msg.split('\n')[0];
}

/**
 * Why `dir` cannot be a checkpoint store that a command reads, before the store is opened (the
 * store says only `no checkpoint store at DIR` for these): a path through a file (ENOTDIR), a
 * file where the directory should be, a directory this user may not read (EACCES). Undefined
 * when it is a readable directory, or absent (callers decide: `checkpoints` lists an absent store
 * as empty, `import` and `checkpoint` create it, the others say the store's own `no checkpoint
 * store at DIR`). `cwd`: the directory a relative `dir` is taken from (default: this process's),
 * for a sandbox answering another process's `checkpoint` (cli/control.ts); the line names `dir`
 * as given.
 */
export function storeDirProblem(dir: string, cwd?: string): string | undefined {
  return dirProblem('checkpoint store', dir, cwd);
}

/**
 * Why the directory `dir` (`what`: "checkpoint store", "state directory"…, named in the line)
 * cannot be used, as storeDirProblem; undefined when it is a directory this user may read and
 * search, or does not exist (it may be made). `cwd` as storeDirProblem's.
 */
export function dirProblem(what: string, dir: string, cwd?: string): string | undefined {
  const at = (p: string): string => (cwd === undefined ? p : path.resolve(cwd, p));
  let st: fs.Stats;
  try {
    st = fs.statSync(at(dir));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') return `${what} ${dir}: ${fileOnPath(dir, at) ?? 'a component of the path'} is not a directory`;
    return `cannot reach ${what} ${dir}: ${hostErrorWords(e)}`;
  }
  if (!st.isDirectory()) return `${what} ${dir} is not a directory`;
  try {
    fs.accessSync(at(dir), fs.constants.R_OK | fs.constants.X_OK);
  } catch (e) {
    return `cannot read ${what} ${dir}: ${hostErrorWords(e)}`;
  }
  return undefined;
}

/** The nearest ancestor of `p` that exists and is not a directory (why a path through it gives ENOTDIR); `at` resolves a relative one. */
function fileOnPath(p: string, at: (p: string) => string = (x) => x): string | undefined {
  for (let a = path.dirname(p); a !== path.dirname(a); a = path.dirname(a)) {
    const st = fs.statSync(at(a), { throwIfNoEntry: false });
    if (st && !st.isDirectory()) return a;
  }
  return undefined;
}

/** Longest path a unix socket address holds (sun_path's 108 bytes less the NUL): a longer one is cut short by bind(2) in libuv, silently. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Why `sock` cannot be bound as a unix socket: a path longer than MAX_SOCKET_PATH_BYTES; else undefined. */
export function socketPathProblem(sock: string): string | undefined {
  const n = Buffer.byteLength(sock);
  return n > MAX_SOCKET_PATH_BYTES ? `the socket path ${sock} is ${n} bytes, more than a unix socket address holds (${MAX_SOCKET_PATH_BYTES})` : undefined;
}
