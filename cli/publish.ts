/**
 * The runtime side of `run --publish HOSTPORT:GUESTPORT[/tcp|/udp]`: a host TCP listener on
 * 127.0.0.1:HOSTPORT per published port; each connection it accepts becomes a loopback
 * connection to the guest's listener on GUESTPORT (src/net/publish.ts), and bytes are moved
 * both ways with back-pressure (a full guest pipe pauses the host socket; a host socket that
 * needs draining stops the reads from the guest). No guest listener: the host connection is
 * reset, as a closed port would. Host sockets and listeners are runtime only: a restore opens
 * the listeners again from the graph's `config.publish`.
 *
 * UDP: a host datagram socket on 127.0.0.1:HOSTPORT; each host peer is a flow (src/net/publish.ts
 * udpFlowFromHost), whose datagrams reach the guest's UDP socket on GUESTPORT from the flow's own
 * sandbox address, and whose replies go back to the peer from HOSTPORT. A flow idle for
 * UDP_FLOW_IDLE_MS is dropped (as a NAT forgets a UDP mapping), and at most UDP_MAX_FLOWS are kept
 * (the least recently used goes first).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { filter } from 'rxjs';
import type { Kernel } from '../src/kernel/kernel.js';
import { connectFromHost, publishedClose, publishedDatagramIn, publishedDatagramsOut, publishedPipes, publishedRead, publishedShutdown, publishedWrite, udpFlowFromHost } from '../src/net/publish.js';

export { parsePublish, type PublishSpec } from './publish-spec.js';
import type { PublishSpec } from './publish-spec.js';

/** A UDP flow idle this long (ms, no datagram either way) is dropped. */
const UDP_FLOW_IDLE_MS = 60_000;
/** Most UDP flows one published port keeps. */
const UDP_MAX_FLOWS = 256;


/** "8080:80" or "5353:53/udp", as the option was given. */
const specText = (spec: PublishSpec): string => `${spec.hostPort}:${spec.guestPort}${spec.protocol === 'udp' ? '/udp' : ''}`;

/** The listeners of a sandbox's published ports; `close` stops them and drops their connections. */
export interface Publishing { close(): void }

/**
 * Listen on every published port and forward its connections into `kernel`'s sandbox. Rejects
 * with an Error of one line (a port already taken, naming it) after closing what it opened.
 */
export async function startPublishing(kernel: Kernel, specs: readonly PublishSpec[]): Promise<Publishing> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const udp: Array<() => void> = [];
  const close = (): void => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    for (const c of udp) c();
  };
  try {
    for (const spec of specs) {
      if (spec.protocol === 'udp') { udp.push(await forwardUdp(kernel, spec)); continue; }
      const server = net.createServer((sock) => forward(kernel, spec, sock, sockets));
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) => reject(portError(spec, e)));
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

/** The one line for a published port that cannot be opened (taken, or another reason). */
function portError(spec: PublishSpec, e: NodeJS.ErrnoException): Error {
  const proto = spec.protocol === 'udp' ? 'UDP port' : 'port';
  return new Error(e.code === 'EADDRINUSE'
    ? `--publish ${specText(spec)}: ${proto} ${spec.hostPort} of ${spec.hostIp} is already taken`
    : `--publish ${specText(spec)}: cannot ${spec.protocol === 'udp' ? 'bind' : 'listen on'} ${spec.hostIp}:${spec.hostPort} (${e.code ?? e.message})`);
}

/**
 * A published UDP port: bind the host's HOSTPORT and forward datagrams per flow (see the top of
 * this file). Resolves with the function that closes it; rejects with portError.
 */
async function forwardUdp(kernel: Kernel, spec: PublishSpec): Promise<() => void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', (e: NodeJS.ErrnoException) => reject(portError(spec, e)));
    sock.bind(spec.hostPort, spec.hostIp, () => resolve());
  });
  sock.on('error', () => undefined);
  sock.unref();
  const label = `${spec.hostIp}:${spec.hostPort}`;
  interface Flow { id: number; address: string; port: number; last: number; sub: { unsubscribe(): void }; scheduled: boolean }
  const flows = new Map<string, Flow>();
  const drop = (key: string): void => {
    const f = flows.get(key);
    if (!f) return;
    flows.delete(key);
    f.sub.unsubscribe();
    if (!kernel.exitInfo) publishedClose(kernel, f.id);
  };
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [key, f] of flows) if (now - f.last > UDP_FLOW_IDLE_MS) drop(key);
  }, UDP_FLOW_IDLE_MS / 4);
  sweep.unref();
  sock.on('message', (data, rinfo) => {
    if (kernel.exitInfo) return;
    const key = `${rinfo.address}:${rinfo.port}`;
    let f = flows.get(key);
    if (!f) {
      if (flows.size >= UDP_MAX_FLOWS) drop([...flows.entries()].sort((a, b) => a[1].last - b[1].last)[0][0]);
      const id = udpFlowFromHost(kernel, { ip: rinfo.address, port: rinfo.port }, label);
      if (id < 0) return;
      const flow: Flow = f = { id, address: rinfo.address, port: rinfo.port, last: Date.now(), scheduled: false, sub: { unsubscribe: () => undefined } };
      // The guest's replies are announced from inside kernel code: sent a turn later, never re-entrantly.
      flow.sub = kernel.pipes.changed$.pipe(filter((x) => x === id)).subscribe(() => {
        if (flow.scheduled) return;
        flow.scheduled = true;
        setImmediate(() => {
          flow.scheduled = false;
          if (kernel.exitInfo || flows.get(key) !== flow) return;
          for (const d of publishedDatagramsOut(kernel, id)) { flow.last = Date.now(); sock.send(d, flow.port, flow.address); }
        });
      });
      flows.set(key, flow);
    }
    f.last = Date.now();
    publishedDatagramIn(kernel, f.id, spec.guestPort, new Uint8Array(data));
  });
  return () => {
    clearInterval(sweep);
    for (const f of flows.values()) f.sub.unsubscribe();
    flows.clear();
    try { sock.close(); } catch { /* closed already */ }
  };
}
