/**
 * The caller's stdio streams (pipes, terminals, sockets handed to `snapvisor run`) as guests read
 * them: readiness is awaited with poll(2) on a worker thread — which consumes nothing — and the
 * bytes are then read without blocking. So a guest read that a signal interrupts leaves no host
 * read in flight, and the bytes that arrive later go to the guest's next read (Linux's behaviour).
 *
 * Host runtime (nothing here is saved): keyed by host fd, rebuilt on first use after a restore.
 */
import fs from 'node:fs';
import os from 'node:os';
import * as libc from './libc.js';
import { HostError } from '../host-services.js';

const POLLIN = 1;
/** Longest a readiness poll stays on its worker thread (ms): bounds how long an unobserved poll lingers. */
const POLL_SLICE_MS = 100;

export class HostStreams {
  /** Host fd -> our own O_NONBLOCK open file description of the same stream (-1: it cannot be reopened). */
  private readonly nonblocking = new Map<number, number>();
  private readonly ready = new Map<number, Set<() => void>>();
  private readonly polling = new Set<number>();
  private destroyed = false;

  /**
   * Read up to `buf.length` bytes from host fd `fd` without blocking: the byte count (0 at end of
   * file), or undefined when nothing is there yet. Errors are SyscallError with the host's errno.
   */
  readNow(fd: number, buf: Uint8Array): number | undefined {
    let nb = this.nonblocking.get(fd);
    if (nb === undefined) {
      // Not open for reading (EBADF, as read(2)): reopening it would give a new read end of the
      // caller's pipe, whose reads wait for, or steal, the bytes meant for its real reader.
      const fl = libc.getfl(fd);
      if (fl < 0 || (fl & 3) === 1 /* O_WRONLY */) throw new HostError(9 /* EBADF */, `read of host fd ${fd}`);
      // A description of our own (through /proc) may be non-blocking without touching the
      // caller's, which other processes share. Sockets cannot be reopened this way.
      try { nb = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY | 0o2000000 /* O_CLOEXEC */); } catch { nb = -1; }
      this.nonblocking.set(fd, nb);
    }
    if (nb < 0 && !this.pollNow(fd)) return undefined;
    try {
      return fs.readSync(nb >= 0 ? nb : fd, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') return undefined;
      const errno = code ? (os.constants.errno as Record<string, number>)[code] : undefined;
      throw new HostError(errno ?? 5 /* EIO */, `read of host fd ${fd}`);
    }
  }

  /** Whether `fd` is readable (or hung up) right now. */
  private pollNow(fd: number): boolean {
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, POLLIN, true);
    return libc.poll(pfd, 1, 0) > 0;
  }

  /**
   * Call `ready` whenever host fd `fd` may have become readable (or hung up), until the returned
   * function is called. One poll(2) per fd is in flight at a time, on a worker thread, for at most
   * POLL_SLICE_MS before it is re-armed.
   */
  onReadable(fd: number, ready: () => void): () => void {
    let s = this.ready.get(fd);
    if (!s) this.ready.set(fd, s = new Set());
    const cb = () => ready();
    s.add(cb);
    this.arm(fd);
    return () => { s!.delete(cb); };
  }

  private arm(fd: number): void {
    if (this.polling.has(fd) || this.destroyed) return;
    this.polling.add(fd);
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, POLLIN, true);
    libc.poll.async(pfd, 1, POLL_SLICE_MS, (err: unknown, n: number) => {
      // Read through v, which keeps pfd alive until the call has returned: koffi's asynchronous
      // call holds no reference to its arguments, and poll(2) writes revents into pfd as it
      // returns. Collected meanwhile (nothing referred to it), its freed memory took that write:
      // the hosting process of pool-host's three clones aborted ("malloc(): smallbin double
      // linked list corrupted") right after its takes' stdin became readable.
      const revents = err ? 0 : v.getInt16(6, true);
      this.polling.delete(fd);
      const s = this.ready.get(fd);
      if (!s?.size || this.destroyed) return;
      if (n > 0 && revents !== 0) {
        // The waiters run in a microtask, not inside koffi's completion callback: JavaScript
        // there is a Node-API callback, whose exceptions would escape through koffi.
        queueMicrotask(() => {
          for (const cb of [...s]) cb();
          // Still waited for after the wake-up (the reader could not take the bytes yet, e.g. during
          // a checkpoint): look again shortly rather than spin on a stream that stays readable.
          if (s.size) setTimeout(() => { if (s.size) this.arm(fd); }, 2);
        });
      } else this.arm(fd);
    });
  }

  /** Close our own descriptions (the sandbox is gone). */
  destroy(): void {
    this.destroyed = true;
    for (const nb of this.nonblocking.values()) if (nb >= 0) try { fs.closeSync(nb); } catch { /* already closed */ }
    this.nonblocking.clear();
  }
}
