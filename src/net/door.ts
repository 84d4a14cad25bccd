/**
 * The sockets' way through the kernel's door (src/kernel/events.ts): every change to a socket's
 * record, the bound-name table or a stream's in-flight credentials is an event whose ops are the
 * change. Queues change by the entries added or taken (`splice`), never by a copy of the queue.
 */
import type { Kernel } from '../kernel/kernel.js';
import type { GraphOp } from '../kernel/events.js';
import type { NetState, SocketState } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';

/** Set (undefined: delete) fields of socket `f`'s record: event socket.update (`what` says why). */
export function setSocket(k: Kernel, f: SocketFile, what: string, fields: Partial<SocketState>): void {
  k.emit({ type: 'socket.update', fileId: f.id, what }, Object.entries(fields).map(([key, v]): GraphOp => (v === undefined ? ['del', ['openFiles', f.id, 'socket', key]] : ['set', ['openFiles', f.id, 'socket', key], v])));
}

/** The path of a field of socket `f`'s record (for ops). */
export const socketPath = (f: SocketFile, field: keyof SocketState): Array<string | number> => ['openFiles', f.id, 'socket', field];

/** The sandbox's network table, made (event net.init) on first use. */
export function netState(k: Kernel): NetState {
  if (!k.state.net) k.emit({ type: 'net.init' }, [['set', ['net'], { bound: {}, nextPort: 32768 }]]);
  return k.state.net!;
}

/** Give a name (NetState.bound key) to socket `f`, with the fields of its record that change with it: event socket.bind. */
export function bindName(k: Kernel, f: SocketFile, key: string, fields: Partial<SocketState>): void {
  netState(k);
  k.emit({ type: 'socket.bind', fileId: f.id, addr: key }, [
    ['set', ['net', 'bound', key], f.id],
    ...Object.entries(fields).map(([name, v]): GraphOp => ['set', ['openFiles', f.id, 'socket', name], v]),
  ]);
}

/** Drop a reference the caller took by hand on open file `id` (a file that was never installed): its release is an event. */
export function releaseUninstalled(k: Kernel, id: number): void {
  k.stage([['set', ['openFiles', id, 'refs'], 1]]);
  k.unrefFile(id);
}

/** Ops that add one reference to each open file of `ids` (files passed with SCM_RIGHTS, in flight). */
export function refOps(k: Kernel, ids: readonly number[]): GraphOp[] {
  const refs = new Map<number, number>();
  for (const id of ids) refs.set(id, (refs.get(id) ?? k.state.openFiles[id].refs) + 1);
  return [...refs].map(([id, n]): GraphOp => ['set', ['openFiles', id, 'refs'], n]);
}
