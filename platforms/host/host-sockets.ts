/**
 * HostSockets for a Linux host (run --network=host): the host's socket syscalls through libc,
 * every fd non-blocking, and one readiness poller for all of them. The poller keeps at most one
 * poll(2) in flight on a worker thread (koffi's async call), over every fd someone waits for plus
 * an eventfd that wakes it when the set changes; it never blocks the event loop, and an abandoned
 * wait consumes nothing (nothing is read until the waiter tries again).
 *
 * Host runtime only: nothing here is saved; the kernel keeps its sockets' plain data in the graph.
 */
import fs from 'node:fs';
import * as libc from './libc.js';
import type { HostSockets } from '../host-services.js';

const POLLERR = 8, POLLHUP = 0x10, POLLNVAL = 0x20;
const MSG_PEEK = 2, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
/** Longest one poll(2) stays on its worker thread (ms) before it is re-armed (bounds a lost wake-up). */
const POLL_SLICE_MS = 1000;
/** After a wake-up whose waiter is still there (it could not use the readiness yet, e.g. a frozen kernel): look again this much later (ms). */
const REARM_MS = 2;

interface Watch { fd: number; events: number; ready: () => void; fired: boolean }

const SIOCGIFCONF = 0x8912;
const AF_NETLINK = 16, SOCK_RAW = 3, NETLINK_ROUTE = 0, EAGAIN = 11;
const NLMSG_ERROR = 2, NLMSG_DONE = 3, NLM_F_MULTI = 2;
/** Most bytes of replies one routeQuery returns. */
const ROUTE_REPLY_MAX = 4 << 20;

/** Whether a chunk of netlink replies ends the reply: NLMSG_DONE, NLMSG_ERROR, or a message that is not part of a dump. */
function lastOfReply(b: Uint8Array): boolean {
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  for (let o = 0; o + 16 <= b.length;) {
    const len = v.getUint32(o, true), type = v.getUint16(o + 4, true), flags = v.getUint16(o + 6, true);
    if (type === NLMSG_DONE || type === NLMSG_ERROR || !(flags & NLM_F_MULTI)) return true;
    if (len < 16) return true;
    o += (len + 3) & ~3;
  }
  return false;
}

/** -errno of the last failed libc call. */
const fail = (): number => -libc.errno();

export class LinuxHostSockets implements HostSockets {
  private readonly watches = new Set<Watch>();
  private wakeFd = -1;
  private inFlight = false;
  private rearm: NodeJS.Timeout | undefined;

  open(domain: number, type: number, protocol: number): number {
    const fd = libc.socket(domain, type | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, protocol);
    return fd < 0 ? fail() : fd;
  }

  bind(fd: number, addr: Uint8Array): number { return libc.bind(fd, addr, addr.length) < 0 ? fail() : 0; }
  listen(fd: number, backlog: number): number { return libc.listen(fd, backlog) < 0 ? fail() : 0; }
  connect(fd: number, addr: Uint8Array): number { return libc.connect(fd, addr, addr.length) < 0 ? fail() : 0; }

  accept(fd: number): { fd: number; peer: Uint8Array } | number {
    const addr = new Uint8Array(128), len = new Uint32Array([128]);
    const c = libc.accept4(fd, addr, len, libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC);
    return c < 0 ? fail() : { fd: c, peer: addr.slice(0, Math.min(len[0], 128)) };
  }

  send(fd: number, data: Uint8Array, flags: number, to?: Uint8Array): number {
    const n = libc.sendto(fd, data, data.length, flags | MSG_DONTWAIT | MSG_NOSIGNAL, to ?? null, to?.length ?? 0);
    return n < 0 ? fail() : n;
  }

  recv(fd: number, into: Uint8Array, flags: number, withFrom: boolean): { n: number; from?: Uint8Array } | number {
    const addr = withFrom ? new Uint8Array(128) : null, len = withFrom ? new Uint32Array([128]) : null;
    const n = libc.recvfrom(fd, into, into.length, flags | MSG_DONTWAIT, addr, len);
    if (n < 0) return fail();
    return { n, from: addr && len ? addr.slice(0, Math.min(len[0], 128)) : undefined };
  }

  shutdown(fd: number, how: number): number { return libc.shutdown(fd, how) < 0 ? fail() : 0; }
  setOption(fd: number, level: number, name: number, value: Uint8Array): number { return libc.setsockoptBuf(fd, level, name, value, value.length) < 0 ? fail() : 0; }

  getOption(fd: number, level: number, name: number, room: number): Uint8Array | number {
    const val = new Uint8Array(Math.max(room, 0)), len = new Uint32Array([Math.max(room, 0)]);
    return libc.getsockoptBuf(fd, level, name, val, len) < 0 ? fail() : val.slice(0, Math.min(len[0], val.length));
  }

  address(fd: number, peer: boolean): Uint8Array | number {
    const addr = new Uint8Array(128), len = new Uint32Array([128]);
    const r = peer ? libc.getpeername(fd, addr, len) : libc.getsockname(fd, addr, len);
    return r < 0 ? fail() : addr.slice(0, Math.min(len[0], 128));
  }

  ioctlInt(fd: number, request: number): number {
    const v = new Uint8Array(4);
    if (libc.ioctlBuf(fd, request, v) < 0) return fail();
    return new DataView(v.buffer).getInt32(0, true);
  }

  ioctlIfreq(fd: number, request: number, ifreq: Uint8Array): number {
    return libc.ioctlBuf(fd, request, ifreq) < 0 ? fail() : 0;
  }

  interfaceConf(fd: number, room: number): Uint8Array | number {
    const n = Math.max(0, Math.min(room, 65536));
    return libc.withNativeBuffer(n, (address, bytes) => {
      // struct ifconf: int ifc_len, 4 bytes of padding, char *ifc_buf.
      const conf = new Uint8Array(16);
      const v = new DataView(conf.buffer);
      v.setInt32(0, n, true);
      v.setBigUint64(8, address, true);
      const r = libc.ioctlBuf(fd, SIOCGIFCONF, conf);
      if (r < 0) return fail();
      return bytes.slice(0, Math.min(v.getInt32(0, true), n));
    });
  }

  poll(fd: number, events: number): number {
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, events, true);
    if (libc.poll(pfd, 1, 0) < 0) return fail();
    return v.getUint16(6, true);
  }

  routeQuery(request: Uint8Array): Uint8Array[] | number {
    const fd = libc.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return fail();
    try {
      if (libc.sendto(fd, request, request.length, 0, null, 0) < 0) return fail();
      const parts: Uint8Array[] = [];
      const probe = new Uint8Array(1);
      let total = 0;
      for (;;) {
        // Each datagram at its own size (MSG_PEEK | MSG_TRUNC first), so the host keeps building
        // the dump in datagrams of its default size, as a reader with a page-sized buffer gets them.
        const size = libc.recvfrom(fd, probe, 0, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC, null, null);
        if (size < 0) { const e = libc.errno(); if (e === EAGAIN) break; return -e; }
        const chunk = new Uint8Array(size);
        const n = libc.recvfrom(fd, chunk, size, MSG_DONTWAIT, null, null);
        if (n <= 0) break;
        parts.push(chunk.subarray(0, n));
        total += n;
        if (total > ROUTE_REPLY_MAX || lastOfReply(chunk.subarray(0, n))) break;
      }
      return parts;
    } finally {
      libc.close(fd);
    }
  }

  whenReady(fd: number, events: number, ready: () => void): () => void {
    const w: Watch = { fd, events, ready, fired: false };
    this.watches.add(w);
    this.arm();
    return () => { this.watches.delete(w); };
  }

  close(fd: number): void {
    for (const w of this.watches) if (w.fd === fd) this.watches.delete(w);
    libc.close(fd);
    this.kick(); // the poll in flight must not wait on a closed (possibly reused) fd number
  }

  /** Start a poll(2) over the waited-for fds, or wake the one in flight so it picks up a change. */
  private arm(): void {
    if (this.inFlight) { this.kick(); return; }
    const list = [...this.watches].filter((w) => !w.fired);
    if (!list.length) return;
    if (this.wakeFd < 0) {
      this.wakeFd = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
      if (this.wakeFd < 0) throw new Error(`eventfd failed: errno ${libc.errno()}`);
    }
    const byFd = new Map<number, number>();
    for (const w of list) byFd.set(w.fd, (byFd.get(w.fd) ?? 0) | w.events);
    const fds = [this.wakeFd, ...byFd.keys()];
    const pfds = new Uint8Array(fds.length * 8);
    const v = new DataView(pfds.buffer);
    fds.forEach((fd, i) => { v.setInt32(i * 8, fd, true); v.setInt16(i * 8 + 4, i === 0 ? 1 : byFd.get(fd)!, true); });
    this.inFlight = true;
    libc.poll.async(pfds, fds.length, POLL_SLICE_MS, (err: unknown, n: number) => {
      this.inFlight = false;
      if (v.getUint16(6, true)) { try { fs.readSync(this.wakeFd, Buffer.alloc(8)); } catch { /* drained already */ } }
      if (!err && n > 0) {
        const revents = new Map<number, number>();
        for (let i = 1; i < fds.length; i++) revents.set(fds[i], v.getUint16(i * 8 + 6, true));
        for (const w of [...this.watches]) {
          const r = revents.get(w.fd);
          // Called outside koffi's completion callback (a Node-API callback: the kernel's code
          // does not run inside it). The abort once blamed on it (FATAL ERROR: napi_throw) was the
          // restore's page verifier being terminated while it loaded koffi (snapshots/verify-worker.ts).
          if (r && !w.fired && (r & (w.events | POLLERR | POLLHUP | POLLNVAL))) { w.fired = true; queueMicrotask(() => w.ready()); }
        }
      }
      // The woken waiters try again in microtasks: the others are polled again at once; a woken one
      // still waiting afterwards (it could not use the readiness yet) is looked at a little later.
      setImmediate(() => {
        this.arm();
        if (!this.rearm && [...this.watches].some((w) => w.fired)) {
          this.rearm = setTimeout(() => { this.rearm = undefined; for (const w of this.watches) w.fired = false; this.arm(); }, REARM_MS);
        }
      });
    });
  }

  /** Wake the poll in flight (the set of fds changed). */
  private kick(): void {
    if (!this.inFlight || this.wakeFd < 0) return;
    try { fs.writeSync(this.wakeFd, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])); } catch { /* the counter is saturated: it is awake anyway */ }
  }
}
