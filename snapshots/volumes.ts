/**
 * Volumes in checkpoints (docs/snapshot-format.md, "Mounts"): a volume's files are the host's,
 * not the checkpoint's, so a checkpoint records the volume's identity and a restore refuses a
 * volume whose identity changed since (unless told to accept it: restore --accept-changed-volumes).
 *
 * The identity is a SHA-256 over a listing of what the sandbox can see of the volume: for each
 * mount root of the volume's superblock, every entry beneath it (never following a symlink),
 * sorted by path, as `path, type and mode, size, mtime (ns), symlink target`. It is cheap (one
 * lstat per entry, no file read) and catches any write the host or a guest makes through the
 * file system (each changes size or mtime of the file or of its directory), but not a change
 * that restores a file's size and mtime (touch -d), which it does not claim to.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { KernelState, SuperblockState } from '../src/kernel/state.js';

/** Identity of the host tree beneath `dir` at the mount roots `roots` ('/' or '/NAME'), as `sha256:HEX N` (N entries). */
export function volumeIdentity(dir: string, roots: readonly string[]): string {
  const h = crypto.createHash('sha256');
  let n = 0;
  const visit = (rel: string) => {
    const p = path.join(dir, rel);
    let st: fs.BigIntStats;
    try { st = fs.lstatSync(p, { bigint: true }); } catch { h.update(`${rel}\0missing\n`); n++; return; }
    const target = st.isSymbolicLink() ? fs.readlinkSync(p) : '';
    h.update(`${rel}\0${st.mode.toString(8)}\0${st.size}\0${st.mtimeNs}\0${target}\n`);
    n++;
    if (!st.isDirectory()) return;
    let names: string[];
    try { names = fs.readdirSync(p).sort(); } catch { return; }
    for (const name of names) visit(rel === '/' ? '/' + name : rel + '/' + name);
  };
  for (const r of [...roots].sort()) visit(Buffer.from(r, 'latin1').toString());
  return `sha256:${h.digest('hex')} ${n}`;
}

/** The mount roots of each volume superblock of `graph`. */
function volumeRoots(graph: Pick<KernelState, 'fs'>): Map<SuperblockState & { type: 'volume' }, string[]> {
  const out = new Map<SuperblockState & { type: 'volume' }, string[]>();
  for (const sb of Object.values(graph.fs.superblocks ?? {})) {
    if (sb.type !== 'volume') continue;
    const roots = [...new Set(Object.values(graph.fs.mounts ?? {}).filter((m) => m.sb === sb.id).map((m) => m.root))];
    out.set(sb, roots.length ? roots : ['/']);
  }
  return out;
}

/** The identity of every volume of `graph` now, by superblock id. */
export function volumeIdentities(graph: Pick<KernelState, 'fs'>): Map<number, string> {
  const out = new Map<number, string>();
  for (const [sb, roots] of volumeRoots(graph)) out.set(sb.id, volumeIdentity(sb.hostPath, roots));
  return out;
}

/**
 * The volumes of a checkpoint's graph whose host tree changed since it was taken (their host
 * paths); a volume without a recorded identity (an older checkpoint) counts as unchanged.
 */
export function changedVolumes(graph: Pick<KernelState, 'fs'>): string[] {
  const out: string[] = [];
  for (const [sb, roots] of volumeRoots(graph)) {
    if (sb.identity && volumeIdentity(sb.hostPath, roots) !== sb.identity) out.push(sb.hostPath);
  }
  return out;
}
