/**
 * The one-line mount specs of the command line: run --volume HOST:GUEST[:ro] and
 * run --tmpfs GUEST[:OPTIONS] (src/sandbox/mounts.ts mounts them).
 */
import os from 'node:os';
import type { MountSpec } from '../src/sandbox/mounts.js';
import { parseTmpfsOptions } from '../src/vfs/mount-options.js';

/** Parse `HOST:GUEST[:ro|:rw]` (run --volume). Throws Error with one line. */
export function parseVolumeSpec(v: string): MountSpec {
  const parts = v.split(':');
  let ro = false;
  if (parts.length === 3 && (parts[2] === 'ro' || parts[2] === 'rw')) { ro = parts[2] === 'ro'; parts.pop(); }
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`expected HOST:GUEST or HOST:GUEST:ro, got '${v}'`);
  if (!parts[1].startsWith('/')) throw new Error(`the guest path of '${v}' must be absolute`);
  return { type: 'volume', host: parts[0], guest: parts[1], readonly: ro };
}

/** Parse `GUEST[:OPTIONS]` (run --tmpfs; OPTIONS as mount -t tmpfs -o: size=64m,mode=1777,…). Throws Error with one line. */
export function parseTmpfsSpec(v: string): MountSpec {
  const i = v.indexOf(':');
  const guest = i < 0 ? v : v.slice(0, i), options = i < 0 ? '' : v.slice(i + 1);
  if (!guest.startsWith('/')) throw new Error(`the guest path of tmpfs '${v}' must be absolute`);
  const o = parseTmpfsOptions(options, os.totalmem());
  if (typeof o === 'string') throw new Error(o);
  return { type: 'tmpfs', guest, options };
}

