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
 */
import type { Kernel } from '../kernel/kernel.js';
import type { SocketState } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';
import { socketPath } from './door.js';
import { AF_INET, AF_INET6, SOCK_STREAM } from '../abi/linux.js';
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

/** Open-file ids of the published ends still open, with the port each came through. */
export function publishedConnections(k: Kernel): Array<{ id: number; label: string }> {
  const out: Array<{ id: number; label: string }> = [];
  for (const f of Object.values(k.state.openFiles)) {
    if (f.kind === 'socket' && f.socket.published !== undefined) out.push({ id: f.id, label: f.socket.published });
  }
  return out;
}

/** After a restore: close every published end (its host connection did not survive); the guest sees its peer close. */
export function closePublished(k: Kernel): number {
  const open = publishedConnections(k);
  for (const { id } of open) k.unrefFile(id);
  return open.length;
}
