/**
 * The runtime side of `run --publish HOSTPORT:GUESTPORT[/tcp]`: a host TCP listener on
 * 127.0.0.1:HOSTPORT per published port; each connection it accepts becomes a loopback
 * connection to the guest's listener on GUESTPORT (src/net/publish.ts), and bytes are moved
 * both ways with back-pressure (a full guest pipe pauses the host socket; a host socket that
 * needs draining stops the reads from the guest). No guest listener: the host connection is
 * reset, as a closed port would. Host sockets and listeners are runtime only: a restore opens
 * the listeners again from the graph's `config.publish`.
 */
import net from 'node:net';
import { filter } from 'rxjs';
import type { Kernel } from '../src/kernel/kernel.js';
import { connectFromHost, publishedClose, publishedPipes, publishedRead, publishedShutdown, publishedWrite } from '../src/net/publish.js';

/** One published port. */
export interface PublishSpec { hostIp: string; hostPort: number; guestPort: number }

/** Parse `HOSTPORT:GUESTPORT[/tcp]` (ports 1–65535). Throws Error with a one-line reason. */
export function parsePublish(v: string): PublishSpec {
  const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(v);
  if (!m) throw new Error(`--publish ${v}: expected HOSTPORT:GUESTPORT or HOSTPORT:GUESTPORT/tcp`);
  if (m[3] === 'udp') throw new Error(`--publish ${v}: only TCP ports can be published`);
  const hostPort = Number(m[1]), guestPort = Number(m[2]);
  if (!(hostPort >= 1 && hostPort <= 65535 && guestPort >= 1 && guestPort <= 65535)) throw new Error(`--publish ${v}: ports are 1 to 65535`);
  return { hostIp: '127.0.0.1', hostPort, guestPort };
}

/** The listeners of a sandbox's published ports; `close` stops them and drops their connections. */
export interface Publishing { close(): void }

/**
 * Listen on every published port and forward its connections into `kernel`'s sandbox. Rejects
 * with an Error of one line (a port already taken, naming it) after closing what it opened.
 */
export async function startPublishing(kernel: Kernel, specs: readonly PublishSpec[]): Promise<Publishing> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const close = (): void => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
  };
  try {
    for (const spec of specs) {
      const server = net.createServer((sock) => forward(kernel, spec, sock, sockets));
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'EADDRINUSE'
          ? `--publish ${spec.hostPort}:${spec.guestPort}: port ${spec.hostPort} of ${spec.hostIp} is already taken`
          : `--publish ${spec.hostPort}:${spec.guestPort}: cannot listen on ${spec.hostIp}:${spec.hostPort} (${e.code ?? e.message})`)));
        server.listen(spec.hostPort, spec.hostIp, () => resolve());
      });
      server.unref();
    }
  } catch (e) {
    close();
    throw e;
  }
  void kernel.exited.then(close);
  return { close };
}

/** Move bytes between one accepted host connection and its connection into the sandbox. */
function forward(kernel: Kernel, spec: PublishSpec, sock: net.Socket, sockets: Set<net.Socket>): void {
  sock.on('error', () => undefined);
  const from = { ip: (sock.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, ''), port: sock.remotePort ?? 0 };
  const id = kernel.exitInfo ? -1 : connectFromHost(kernel, spec.guestPort, from, `${spec.hostIp}:${spec.hostPort}`);
  if (id < 0) { sock.resetAndDestroy(); return; }
  sockets.add(sock);
  const pipes = publishedPipes(kernel, id)!;
  const pending: Buffer[] = [];
  let hostEnded = false, shut = false, guestEnded = false, scheduled = false;
  const toGuest = (): void => {
    while (pending.length) {
      const n = publishedWrite(kernel, id, pending[0]);
      if (n < 0) { sock.destroy(); return; }
      if (n < pending[0].length) { pending[0] = pending[0].subarray(n); sock.pause(); return; }
      pending.shift();
    }
    if (sock.isPaused() && !hostEnded) sock.resume();
    if (hostEnded && !shut) { shut = true; publishedShutdown(kernel, id); }
  };
  const toHost = (): void => {
    while (!guestEnded && !sock.writableNeedDrain) {
      const b = publishedRead(kernel, id, 65536);
      if (b === null) { guestEnded = true; sock.end(); return; }
      if (b.length === 0) return;
      sock.write(b);
    }
  };
  // Pipe changes are announced from inside kernel code: act on them a turn later, never re-entrantly.
  const kick = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => { scheduled = false; if (!sock.destroyed) { toGuest(); toHost(); } });
  };
  const sub = kernel.pipes.changed$.pipe(filter((p) => p === pipes.rx || p === pipes.tx)).subscribe(kick);
  sock.on('data', (b: Buffer) => { pending.push(b); toGuest(); });
  sock.on('drain', toHost);
  sock.on('end', () => { hostEnded = true; toGuest(); });
  sock.on('close', () => { sockets.delete(sock); sub.unsubscribe(); publishedClose(kernel, id); });
  kick();
}
