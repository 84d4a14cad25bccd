/**
 * OCI containers on disk: `<root>/<id>/state.json` (this runtime's record, from which `state`
 * prints the OCI state), next to the control socket `<root>/<id>.sock` of the process that
 * hosts the sandbox (`cli/oci/init.ts`). `<root>` is the global `--root`, shared with
 * `run --name` sandboxes, so `checkpoint`, `ps` and `list` work on both.
 */
import fs from 'node:fs';
import path from 'node:path';
import { stateDir } from '../control.js';
import type { BundleSpec } from './bundle.js';

export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** What the runtime keeps about a container. */
export interface ContainerRecord {
  id: string;
  /** Host pid of the process hosting the sandbox (the pid in --pid-file), 0 before it exists. */
  pid: number;
  /** That process's start time (/proc/PID/stat field 22, clock ticks), to tell it from a reused pid. */
  pidStart?: string;
  status: ContainerStatus;
  bundle: string;
  rootfs: string;
  /** RFC 3339 creation time. */
  created: string;
  annotations: Record<string, string>;
  spec: BundleSpec;
  /** Exit status of the container's init once stopped (shell convention: 128+N for signal N). */
  exitStatus?: number;
  /** linux.resources as last set by create or update. */
  resources?: unknown;
}

export class ContainerError extends Error {}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Check a container id (letters, digits, _ . -; at most 64, as run --name). Throws ContainerError. */
export function checkId(id: string): void {
  if (!id) throw new ContainerError('container id cannot be empty');
  if (!ID_RE.test(id)) throw new ContainerError(`invalid container id format: ${id}`);
}

export function containerDir(root: string | undefined, id: string): string {
  return path.join(stateDir(root), id);
}

/** The record of container `id`, or ContainerError "container ID does not exist" (the words engines look for). */
export function loadContainer(root: string | undefined, id: string): ContainerRecord {
  checkId(id);
  const file = path.join(containerDir(root, id), 'state.json');
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { throw new ContainerError(`container ${id} does not exist`); }
  try { return JSON.parse(text, (_k, v) => (v && typeof v === 'object' && typeof v.$bigint === 'string' ? BigInt(v.$bigint) : v)); } catch { throw new ContainerError(`state of container ${id} is damaged (${file})`); }
}

/** Write the record atomically (a reader never sees half of it). */
export function saveContainer(root: string | undefined, rec: ContainerRecord): void {
  const dir = containerDir(root, rec.id);
  const tmp = path.join(dir, `.state.${process.pid}.tmp`);
  // rlimits are bigints (RLIM_INFINITY is 2^64-1).
  fs.writeFileSync(tmp, JSON.stringify(rec, (_k, v) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v)) + '\n');
  fs.renameSync(tmp, path.join(dir, 'state.json'));
}

/** Ids of every container under the root (directories holding a state.json). */
export function listContainers(root: string | undefined): string[] {
  const dir = stateDir(root);
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  return names.filter((n) => ID_RE.test(n) && fs.existsSync(path.join(dir, n, 'state.json'))).sort();
}

/** Start time of host process `pid` (field 22 of /proc/PID/stat), or undefined if it is gone or a zombie. */
export function processStart(pid: number): string | undefined {
  if (!pid) return undefined;
  let stat: string;
  try { stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return undefined; }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

/** The status as it is now: a record saying created/running/paused whose host process is gone is stopped. */
export function liveStatus(rec: ContainerRecord): ContainerStatus {
  if (rec.status === 'stopped') return 'stopped';
  if (rec.status === 'creating') return rec.pid && processStart(rec.pid) === rec.pidStart ? 'creating' : 'stopped';
  return processStart(rec.pid) === rec.pidStart ? rec.status : 'stopped';
}

/** The OCI state (runtime-spec runtime.md "State"), as `state` prints it. */
export function ociState(rec: ContainerRecord): Record<string, unknown> {
  const status = liveStatus(rec);
  return {
    ociVersion: '1.0.2',
    id: rec.id,
    pid: status === 'stopped' ? 0 : rec.pid,
    status: status === 'creating' ? 'creating' : status,
    bundle: rec.bundle,
    rootfs: rec.rootfs,
    created: rec.created,
    owner: '',
    ...(Object.keys(rec.annotations).length ? { annotations: rec.annotations } : {}),
  };
}

/** Remove a container's directory and control socket (the caller made sure nothing runs). */
export function removeContainer(root: string | undefined, id: string): void {
  fs.rmSync(containerDir(root, id), { recursive: true, force: true });
  fs.rmSync(path.join(stateDir(root), `${id}.sock`), { force: true });
  fs.rmSync(path.join(stateDir(root), `${id}.json`), { force: true });
}

/** Write `text` to `file` atomically (runc writes pid files through a temporary file and rename). */
export function writeAtomic(file: string, text: string): void {
  const abs = path.resolve(file);
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, abs);
}
