/**
 * Connections from outside the sandbox into it (run --publish HOSTPORT:GUESTPORT): the kernel
 * side of a published port. The runtime (cli/publish.ts) accepts a TCP connection on the host
 * and asks `connectFromHost` for a connection to the guest listener on GUESTPORT; the guest
 * accepts it like any loopback connection. The kernel holds the other end, a socket no process
 * has (`SocketState.published`, one reference held for the runtime), and the runtime moves
 * bytes between it and the host connection with `publishedWrite` / `publishedRead`.
 *
 * Graph and runtime: the published socket and its pipes are ordinary graph objects; the host
 * connection is not. A checkpoint of a sandbox with published connections open is refused
 * (snapshots/checkpoint.ts, naming them) unless the sandbox runs with --tcp-close-on-checkpoint;
 * then a restore closes them (`closePublished`): the guest reads end of file, as if the client
 * had closed, like gVisor's hostinet sockets after a save.
 *
 * UDP (`--publish HOSTPORT:GUESTPORT/udp`): each host peer (address and port) that sends to the
 * published port is a *flow*: a UDP socket of the kernel's (`SocketState.published`, no process
 * holds it) bound to an ephemeral loopback port of the sandbox. The peer's datagrams reach the
 * guest's UDP socket on GUESTPORT from that address (`publishedDatagramIn`), so the guest's
 * replies, sent back to it, queue on the flow socket, and the runtime sends them to the peer from
 * the published port (`publishedDatagramsOut`). Flows hold no connection: a checkpoint goes ahead
 * with them, and a restore drops them (new datagrams make new flows).
 */
import type { Kernel } from '../kernel/kernel.js';
import type { SocketMessage, SocketState } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';
import { bindName, netState, socketPath } from './door.js';
import { MESSAGE_OVERHEAD, UNIX_QUEUE_BYTES, queuedBytes } from './unix.js';
import { AF_INET, AF_INET6, SOCK_DGRAM, SOCK_STREAM } from '../abi/linux.js';
import { E } from '../errno.js';

/** The listener a connection to 127.0.0.1:`port` reaches: an AF_INET one, else a dual-stack AF_INET6 one. */
function listenerOn(k: Kernel, port: number): SocketFile | undefined {
  const bound = k.state.net?.bound ?? {};
  for (const family of [AF_INET, AF_INET6]) {
    const id = bound[`${family === AF_INET6 ? 'in6' : 'in'}:${SOCK_STREAM}:${port}`];
    const f = id === undefined ? undefined : k.state.openFiles[id] as SocketFile | undefined;
    if (!f || f.kind !== 'socket' || f.socket.state !== 'listening') continue;
    const s = f.socket;
    if (family === AF_INET6 && (s.opts?.['41:26'] || !(s.local?.ip === '::' || s.local?.ip?.startsWith('::ffff:')))) continue; // IPV6_V6ONLY or not dual-stack
    return f;
  }
  return undefined;
}

/**
 * A connection from host address `from` (e.g. 127.0.0.1:51234) to the guest's TCP listener on
 * port `port`, queued for its accept(2). Returns the open-file id of the kernel's end (held
 * once, for the caller), or a negative errno: ECONNREFUSED (no listener), EAGAIN (its backlog
 * is full). `label` names the published port in error messages ("127.0.0.1:8080").
 */
export function connectFromHost(k: Kernel, port: number, from: { ip: string; port: number }, label: string): number {
  const listener = listenerOn(k, port);
  if (!listener) return -E.ECONNREFUSED;
  const ls = listener.socket;
  if (ls.backlog!.length > ls.backlogMax!) return -E.EAGAIN;
  const up = k.pipes.newPipe(1, 1), down = k.pipes.newPipe(1, 1);
  const family = ls.domain!;
  const v4 = family === AF_INET;
  const guestAddr = { family, ip: v4 ? '127.0.0.1' : '::ffff:127.0.0.1', port };
  const hostAddr = { family, ip: v4 ? from.ip : `::ffff:${from.ip}`, port: from.port };
  const socketFile = (socket: SocketState): SocketFile => k.newOpenFile({ kind: 'socket', path: `socket:[${k.state.nextId}]`, flags: 2, socket }) as SocketFile;
  const server = socketFile({ rx: up.id, tx: down.id, shutRd: false, shutWr: false, state: 'connected', opts: {}, domain: family, type: SOCK_STREAM, local: guestAddr, peer: hostAddr });
  const hostEnd = socketFile({ rx: down.id, tx: up.id, shutRd: false, shutWr: false, state: 'connected', opts: {}, domain: family, type: SOCK_STREAM, local: hostAddr, peer: guestAddr, published: label });
  // The kernel's end is held once, for the caller; the guest's waits for accept(2).
  k.emit({ type: 'socket.connect', fileId: hostEnd.id, listener: listener.id, server: server.id }, [
    ['set', ['openFiles', hostEnd.id, 'refs'], 1],
    ['splice', socketPath(listener, 'backlog'), ls.backlog!.length, 0, server.id],
  ]);
  k.pipes.changed$.next(listener.id);
  return hostEnd.id;
}

function published(k: Kernel, id: number): SocketState | undefined {
  const f = k.state.openFiles[id] as SocketFile | undefined;
  return f && f.kind === 'socket' && f.socket.published !== undefined ? f.socket : undefined;
}

/** Pipe ids a published end reads from and writes to (for waiting on `k.pipes.changed$`). */
export function publishedPipes(k: Kernel, id: number): { rx: number; tx: number } | undefined {
  const s = published(k, id);
  return s && { rx: s.rx, tx: s.tx };
}

/**
 * Bytes from the host toward the guest: as many of `data` as its receive pipe has room for
 * (0 when full: wait for a change of the tx pipe). -EPIPE once the guest closed its end.
 */
export function publishedWrite(k: Kernel, id: number, data: Uint8Array): number {
  const s = published(k, id);
  const p = s && !s.shutWr ? k.state.pipes[s.tx] : undefined;
  if (!p || p.readers === 0) return -E.EPIPE;
  const n = Math.min(data.length, p.buf.length - p.len);
  if (n > 0) {
    k.emit({ type: 'pipe.write', pipe: p.id, len: n }, [['bytes', ['pipes', p.id], 0, 0, data.slice(0, n)], ['set', ['pipes', p.id, 'written'], (p.written ?? 0) + n]], true);
    k.pipes.changed$.next(p.id);
  }
  return n;
}

/**
 * Bytes from the guest toward the host: up to `max` queued ones (a copy), an empty array when
 * none are queued yet, or null at end of file (the guest shut down writing or closed).
 */
export function publishedRead(k: Kernel, id: number, max: number): Uint8Array | null {
  const s = published(k, id);
  const p = s ? k.state.pipes[s.rx] : undefined;
  if (!p) return null;
  if (p.len === 0) return p.writers === 0 ? null : new Uint8Array(0);
  const n = Math.min(max, p.len);
  const out = p.buf.slice(0, n);
  k.emit({ type: 'pipe.read', pipe: p.id, len: n }, [['bytes', ['pipes', p.id], n, 0, new Uint8Array(0)], ['set', ['pipes', p.id, 'readTotal'], (p.readTotal ?? 0) + n]], true);
  k.pipes.changed$.next(p.id);
  return out;
}

/** The host closed its sending side: the guest reads end of file once the queued bytes are read. */
export function publishedShutdown(k: Kernel, id: number): void {
  const s = published(k, id);
  if (!s || s.shutWr) return;
  k.emit({ type: 'socket.update', fileId: id, what: 'shutdown' }, [['set', ['openFiles', id, 'socket', 'shutWr'], true]]);
  k.pipes.closeEnd(s.tx, 'write');
}

/** The host connection is gone: drop the kernel's end (the guest sees the peer close). */
export function publishedClose(k: Kernel, id: number): void {
  if (published(k, id)) k.unrefFile(id);
}

/** Open-file ids of the published TCP ends still open, with the port each came through (UDP flows are no connections). */
export function publishedConnections(k: Kernel): Array<{ id: number; label: string }> {
  const out: Array<{ id: number; label: string }> = [];
  for (const f of Object.values(k.state.openFiles)) {
    if (f.kind === 'socket' && f.socket.published !== undefined && f.socket.type === SOCK_STREAM) out.push({ id: f.id, label: f.socket.published });
  }
  return out;
}

/** Ephemeral ports of the sandbox's loopback (as src/net/socket.ts picks them). */
const EPHEMERAL_FIRST = 32768, EPHEMERAL_LAST = 60999;

/** The guest's UDP socket a datagram to 127.0.0.1:`port` reaches: an AF_INET one, else a dual-stack AF_INET6 one. */
function udpReceiverOn(k: Kernel, port: number): SocketFile | undefined {
  const bound = k.state.net?.bound ?? {};
  for (const family of [AF_INET, AF_INET6]) {
    const id = bound[`${family === AF_INET6 ? 'in6' : 'in'}:${SOCK_DGRAM}:${port}`];
    const f = id === undefined ? undefined : k.state.openFiles[id] as SocketFile | undefined;
    if (!f || f.kind !== 'socket' || f.socket.published !== undefined) continue;
    const s = f.socket;
    if (family === AF_INET6 && (s.opts?.['41:26'] || !(s.local?.ip === '::' || s.local?.ip?.startsWith('::ffff:')))) continue; // IPV6_V6ONLY or not dual-stack
    return f;
  }
  return undefined;
}

/**
 * A new UDP flow for host peer `from` through the port published as `label` ("127.0.0.1:5353"):
 * a kernel-held UDP socket on an ephemeral loopback port of the sandbox. Returns its open-file id
 * (held once, for the caller: `publishedClose` drops it), or -EADDRINUSE when no port is free.
 */
export function udpFlowFromHost(k: Kernel, from: { ip: string; port: number }, label: string): number {
  const n = netState(k);
  let port = -1;
  for (let i = 0, p = n.nextPort; i <= EPHEMERAL_LAST - EPHEMERAL_FIRST; i++, p = p >= EPHEMERAL_LAST ? EPHEMERAL_FIRST : p + 1) {
    if (n.bound[`in:${SOCK_DGRAM}:${p}`] === undefined && n.bound[`in6:${SOCK_DGRAM}:${p}`] === undefined) { port = p; break; }
  }
  if (port < 0) return -E.EADDRINUSE;
  k.stage([['set', ['net', 'nextPort'], port >= EPHEMERAL_LAST ? EPHEMERAL_FIRST : port + 1]]);
  const local = { family: AF_INET, ip: '127.0.0.1', port };
  const f = k.newOpenFile({ kind: 'socket', path: `socket:[${k.state.nextId}]`, flags: 2, socket: { rx: 0, tx: 0, shutRd: false, shutWr: false, state: 'bound', opts: {}, domain: AF_INET, type: SOCK_DGRAM, dgrams: [], peer: { family: AF_INET, ip: from.ip, port: from.port }, published: `${label}/udp` } }) as SocketFile;
  const key = `in:${SOCK_DGRAM}:${port}`;
  bindName(k, f, key, { boundKey: key, local });
  k.emit({ type: 'file.update', fileId: f.id, what: 'published' }, [['set', ['openFiles', f.id, 'refs'], 1]]);
  return f.id;
}

/**
 * A datagram from a flow's host peer to the guest's UDP socket on `guestPort`, coming from the
 * flow's address. False if it is lost as on a network: nobody is bound there, or its queue is full.
 */
export function publishedDatagramIn(k: Kernel, flowId: number, guestPort: number, data: Uint8Array): boolean {
  const flow = published(k, flowId);
  const target = udpReceiverOn(k, guestPort);
  if (!flow?.local || !target) return false;
  const ts = target.socket;
  if (queuedBytes(ts.dgrams ?? []) + data.length + MESSAGE_OVERHEAD > UNIX_QUEUE_BYTES) return false;
  const m: SocketMessage = { from: flow.local, data };
  k.emit({ type: 'socket.queue', fileId: target.id, len: data.length }, [['splice', socketPath(target, 'dgrams'), ts.dgrams!.length, 0, m]]);
  k.pipes.changed$.next(target.id);
  return true;
}

/** The guest's replies queued on a flow's socket, taken off its queue (to be sent to the flow's host peer). */
export function publishedDatagramsOut(k: Kernel, flowId: number): Uint8Array[] {
  const flow = published(k, flowId);
  const q = flow?.dgrams ?? [];
  if (!q.length) return [];
  const out = q.map((m) => m.data);
  k.emit({ type: 'socket.dequeue', fileId: flowId, len: out.reduce((n, d) => n + d.length, 0) }, [['splice', ['openFiles', flowId, 'socket', 'dgrams'], 0, q.length]]);
  return out;
}

/** After a restore: close every published end (its host connection did not survive); the guest sees its peer close. */
export function closePublished(k: Kernel): number {
  const open = publishedConnections(k);
  for (const { id } of open) k.unrefFile(id);
  return open.length;
}
