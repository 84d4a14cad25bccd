/**
 * Warm pools registered in their checkpoint store (docs/pools.md, "Restore through a pool"): a
 * `pool serve` writes `pools/<id>.<pid>.json` under its store while it serves (JSON
 * `{"v":1,"checkpoint":ID,"socket":PATH,"pid":PID}`, written as `….tmp` and renamed into place,
 * removed when it stops), and points the symlink `pools/<id>.sock` at its socket (the bin's
 * native front connects there, cli/front/front.c), so that `snapvisor restore ID` can hand its caller a clone of that
 * pool instead of restoring in its own process. The bin's launcher (cli/launcher.ts) reads them
 * before loading the CLI's bundle: this module uses node:fs and node:path only. A registration
 * whose pool is dead (its pid gone, or its socket refusing connections: cli/pool-client.ts
 * restoreFromPool) is stale and removed by whoever finds it.
 *
 * The store's other code never looks into `pools/`: gc, `store check` and delete read `pages/`,
 * `meta/`, `cache/` and LevelDB's own files, and export reads checkpoints by id.
 */
import fs from 'node:fs';
import path from 'node:path';
import { makeDirs } from '../snapshots/make-dirs.js';
import { defaultStore } from './store-dir.js';

/** The registrations' directory under a store. */
export const POOLS_DIR = 'pools';

/**
 * A pool serving checkpoint `checkpoint` (full id) on unix socket `socket`, in process `pid`;
 * `file` is its registration. `any`: the store's any-pool (anyPoolLink), whose restorers restore
 * `checkpoint` for the take; it has no registration file (`file` and `pid` are '' and 0).
 */
export interface PoolRegistration { checkpoint: string; socket: string; pid: number; file: string; any?: boolean }

/**
 * Register the pool of this process serving checkpoint `id` (full id) of store `store` on
 * `socket` (absolute path). Returns the function that removes the registration (idempotent;
 * also run at the process's exit), or the error's one-line text when it cannot be written
 * (a read-only store: the pool serves anyway, restores just do not find it).
 */
export function registerPool(store: string, id: string, socket: string): (() => void) | string {
  const dir = path.join(store, POOLS_DIR);
  const file = path.join(dir, `${id}.${process.pid}.json`);
  const tmp = `${file}.tmp`;
  try {
    makeDirs(dir);
    fs.writeFileSync(tmp, JSON.stringify({ v: 1, checkpoint: id, socket, pid: process.pid }) + '\n');
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    return (e as Error).message;
  }
  publishLink(store, id, socket);
  let done = false;
  const remove = () => {
    if (done) return;
    done = true;
    fs.rmSync(file, { force: true });
    unpublishLink(store, id, socket);
    process.off('exit', remove);
  };
  process.on('exit', remove);
  return remove;
}

/** The well-known name of a pool of checkpoint `id` in `store`: `pools/<id>.sock`, a symlink to its socket. */
export function poolLink(store: string, id: string): string {
  return path.join(store, POOLS_DIR, `${id}.sock`);
}

/**
 * Point `pools/<id>.sock` of `store` at `socket` (made as `….<pid>.tmp` and renamed over any
 * older link: the newest pool wins), so that the bin's native front (cli/front/front.c) connects
 * to a pool of a full id without listing the directory. Best effort: a store where it cannot be
 * made only leaves restores to the registrations.
 */
export function publishLink(store: string, id: string, socket: string): void {
  const link = poolLink(store, id);
  const tmp = `${link}.${process.pid}.tmp`;
  try {
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(socket, tmp);
    fs.renameSync(tmp, link);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

/** Remove `pools/<id>.sock` of `store` if it points at `socket` (another pool's stays). */
export function unpublishLink(store: string, id: string, socket: string): void {
  const link = poolLink(store, id);
  try { if (fs.readlinkSync(link) === socket) fs.rmSync(link, { force: true }); } catch { /* none, or not a link */ }
}

/**
 * The well-known name of the any-pool of `store` (`snapvisor pool serve --any`, cli/restorer.ts):
 * `pools/any.sock`, its socket itself (no --listen) or a symlink to its --listen socket. One per
 * store: a second any-pool is refused while this one answers; a stale one (its pool killed) is
 * replaced by the next. A restore of any checkpoint of the store with no pool of its own takes a
 * restorer there (poolsForRestore; the native front, cli/front/front.c, does the same).
 */
export function anyPoolLink(store: string): string {
  return path.join(store, POOLS_DIR, 'any.sock');
}

/** Whether process `pid` exists (kill(pid, 0); EPERM: it exists, as another user's). */
export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * The pools registered in `store` for checkpoint `id` (full id) whose process lives, newest
 * registration first. Registrations of dead processes (a pool killed with SIGKILL), and their
 * unfinished `.tmp` files, are removed; unreadable or malformed ones are ignored.
 */
export function poolsServing(store: string, id: string): PoolRegistration[] {
  const dir = path.join(store, POOLS_DIR);
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  const found: Array<PoolRegistration & { mtime: number }> = [];
  for (const n of names) {
    const m = /^([0-9a-f]{16})\.(\d+)\.json(\.tmp)?$/.exec(n);
    if (!m || m[1] !== id) continue;
    const file = path.join(dir, n);
    if (!alive(Number(m[2]))) {
      // The link too, if it names the dead pool's socket.
      try { const r = JSON.parse(fs.readFileSync(file, 'utf8')) as { socket?: unknown }; if (typeof r.socket === 'string') unpublishLink(store, id, r.socket); } catch { /* a .tmp, or unreadable */ }
      fs.rmSync(file, { force: true });
      continue;
    }
    if (m[3]) continue;
    try {
      const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      if (r.checkpoint !== id || typeof r.socket !== 'string' || !path.isAbsolute(r.socket) || r.pid !== Number(m[2])) continue;
      found.push({ checkpoint: id, socket: r.socket, pid: r.pid, file, mtime: fs.statSync(file).mtimeMs });
    } catch { /* raced away, or not JSON: ignored */ }
  }
  return found.sort((a, b) => b.mtime - a.mtime).map(({ mtime: _, ...r }) => r);
}

/** Remove registration `r` (its pool did not answer), and the well-known link if it names that pool. */
export function dropRegistration(r: PoolRegistration): void {
  fs.rmSync(r.file, { force: true });
  unpublishLink(path.dirname(path.dirname(r.file)), r.checkpoint, r.socket);
}

/** After pool `r` served a restore the front did not send there: make the well-known link name it. */
export function relinkServing(r: PoolRegistration): void {
  const store = path.dirname(path.dirname(r.file));
  try { if (fs.readlinkSync(poolLink(store, r.checkpoint)) === r.socket) return; } catch { /* none yet */ }
  publishLink(store, r.checkpoint, r.socket);
}

/**
 * The full id `restore` would restore for `given` in `store`, found as openCheckpoint
 * (snapshots/store.ts) finds it: a store (its `CURRENT`), 4–16 hex characters, exactly one
 * restore record `meta/<id>` starting with them. Undefined otherwise: the in-process restore then
 * gives its own one-line error.
 */
export function restoreId(store: string, given: string): string | undefined {
  if (!/^[0-9a-fA-F]{4,16}$/.test(given) || !fs.existsSync(path.join(store, 'CURRENT'))) return undefined;
  const prefix = given.toLowerCase();
  let names: string[];
  try { names = fs.readdirSync(path.join(store, 'meta')); } catch { return undefined; }
  const matches = names.filter((n) => /^[0-9a-f]{16}$/.test(n) && n.startsWith(prefix));
  return matches.length === 1 ? matches[0] : undefined;
}

/**
 * The checkpoint and store of `args` (process.argv after the script) if they are `[--root DIR]
 * restore ID [--store DIR]` (the store before or after ID; `--root=DIR`, `--store=DIR` too):
 * the shapes a pool's clone restores exactly as this process would. With `noPool`, `--no-pool`
 * is taken too (once, anywhere after `restore`) and reported: the shapes the launcher restores
 * with the restore bundle (cli/restore-entry.ts). Undefined for any other (`--name`, `--strace`,
 * `--platform`, guest checkpoints, changed volumes, OCI, `--log`, `--help`…; `--no-pool` without
 * `noPool`), which the CLI's bundle restores.
 */
export function parseLightRestore(args: readonly string[], noPool = false): { id: string; store?: string; root?: string; noPool?: boolean } | undefined {
  let i = 0;
  let root: string | undefined;
  if (args[i] === '--root' && i + 1 < args.length) { root = args[i + 1]; i += 2; }
  else if (args[i]?.startsWith('--root=')) root = args[i++].slice('--root='.length);
  if (args[i++] !== 'restore') return undefined;
  let id: string | undefined, store: string | undefined, skipPool = false;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === '--store' && store === undefined && i + 1 < args.length) store = args[++i];
    else if (a.startsWith('--store=') && store === undefined) store = a.slice('--store='.length);
    else if (a === '--no-pool' && noPool && !skipPool) skipPool = true;
    else if (!a.startsWith('-') && id === undefined) id = a;
    else return undefined;
  }
  if (id === undefined || store === '') return undefined;
  return noPool ? { id, store, root, noPool: skipPool } : { id, store };
}

/**
 * For `args` in a shape parseLightRestore takes: the pools serving the checkpoint they name
 * (poolsServing), then the store's any-pool if its name is there (anyPoolLink), if any;
 * undefined otherwise (restore in this process).
 */
export function poolsForRestore(args: readonly string[]): PoolRegistration[] | undefined {
  const r = parseLightRestore(args);
  if (!r) return undefined;
  const store = r.store !== undefined ? path.resolve(r.store) : defaultStore();
  const id = restoreId(store, r.id);
  if (id === undefined) return undefined;
  const pools = poolsServing(store, id);
  // Second choice, the store's any-pool: a restorer restores the checkpoint for the take. Its
  // name is tried as it is (a stale one refuses the connection: the restore goes on in-process).
  const any = anyPoolLink(store);
  if (fs.lstatSync(any, { throwIfNoEntry: false })) pools.push({ checkpoint: id, socket: any, pid: 0, file: '', any: true });
  return pools.length ? pools : undefined;
}
