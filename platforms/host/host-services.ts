/**
 * HostServices for a Linux host, through libc (koffi) and node:fs. The kernel receives an
 * instance from the composition root; nothing else in the kernel touches the host.
 */
import fs from 'node:fs';
import * as libc from './libc.js';
import type { HostServices, HostSockets, HostStat, HostTree, MemoryBacking, ReadOnlyFileMapping } from '../host-services.js';
import { LinuxHostTree } from './host-tree.js';
import { HostStreams } from './host-streams.js';
import { LinuxHostSockets } from './host-sockets.js';

/** A memfd (memfd_create(2), MFD_CLOEXEC) of `size` bytes, sparse, mapped into this process in views. */
export class HostMemfd implements MemoryBacking {
  readonly fd: number;
  private readonly mappings: Array<[unknown, number]> = [];

  constructor(name: string, size: number) {
    this.fd = libc.memfdCreate(name, libc.MFD_CLOEXEC);
    if (this.fd < 0) throw new Error(`memfd_create failed: errno ${libc.errno()}`);
    if (libc.ftruncate(this.fd, size) < 0) {
      const err = libc.errno();
      libc.close(this.fd);
      throw new Error(`ftruncate of the memory file failed: errno ${err}`);
    }
  }

  mapView(off: number, len: number): Uint8Array {
    const ptr = libc.mmap(null, len, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, this.fd, off);
    if (libc.pointerIsFailed(ptr)) throw new Error(`mmap of a memory-file window failed: errno ${libc.errno()}`);
    this.mappings.push([ptr, len]);
    return new Uint8Array(libc.view(ptr, len));
  }

  read(off: number, buf: Uint8Array): void {
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.fd, buf, done, buf.length - done, off + done);
      if (n <= 0) { buf.fill(0, done); return; }
      done += n;
    }
  }

  write(off: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, off + done);
  }

  punchHole(off: number, len: number): void {
    if (len > 0) libc.fallocate(this.fd, libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, off, len);
  }

  seekData(pos: number): number { return libc.lseek(this.fd, pos, libc.SEEK_DATA); }
  seekHole(pos: number): number { return libc.lseek(this.fd, pos, libc.SEEK_HOLE); }
  allocatedBytes(): number { return fs.fstatSync(this.fd).blocks * 512; }

  destroy(): void {
    for (const [p, len] of this.mappings) libc.munmap(p, len);
    this.mappings.length = 0;
    libc.close(this.fd);
  }
}

/** A read-only file (a checkpoint's page file) mapped into the kernel with PROT_READ. */
export class HostReadOnlyFile implements ReadOnlyFileMapping {
  private readonly mappings: Array<[unknown, number]> = [];
  constructor(readonly fd: number) {}

  mapView(off: number, len: number): Uint8Array {
    const ptr = libc.mmap(null, len, libc.PROT_READ, libc.MAP_SHARED, this.fd, off);
    if (libc.pointerIsFailed(ptr)) throw new Error(`mmap of a page-file window failed: errno ${libc.errno()}`);
    this.mappings.push([ptr, len]);
    return new Uint8Array(libc.view(ptr, len));
  }

  read(off: number, buf: Uint8Array): void {
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(this.fd, buf, got, buf.length - got, off + got);
      if (n === 0) break;
      got += n;
    }
    if (got < buf.length) buf.fill(0, got);
  }

  seekData(pos: number): number { return libc.lseek(this.fd, pos, libc.SEEK_DATA); }
  seekHole(pos: number): number { return libc.lseek(this.fd, pos, libc.SEEK_HOLE); }

  destroy(): void {
    for (const [p, len] of this.mappings) libc.munmap(p, len);
    this.mappings.length = 0;
    libc.close(this.fd);
  }
}

const TCGETS = 0x5401;

/**
 * The Linux host: the caller's fds, host poll and rlimits, memfd-backed memory files.
 *
 * The caller's stdio (the fds 0, 1, 2 that 'hostfd' files name) is this process's own fds 0–2,
 * unless `attachStdio` points them elsewhere: a process hosting several sandboxes (a warm pool's
 * clones, cli/pool.ts) gives each kernel an instance of its own with that clone's caller's fds.
 * Every fd argument below goes through that mapping; other fds pass unchanged.
 */
export class LinuxHostServices implements HostServices {
  private readonly streams = new Map<number, boolean>();
  private readonly hostStreams = new HostStreams();
  readonly sockets: HostSockets = new LinuxHostSockets();
  private stdio?: readonly [number, number, number];

  /**
   * Make the caller's stdio fds 0, 1, 2 host fds `fds` (which the caller keeps open while the
   * kernel runs, and closes after `close`). Meant for a kernel whose guest has not run yet.
   */
  attachStdio(fds: readonly [number, number, number]): void { this.stdio = [...fds] as [number, number, number]; }

  /** Give up this instance's own host resources (non-blocking descriptions of the stdio streams); the kernel using it is gone. */
  close(): void { this.hostStreams.destroy(); }

  /** The host fd behind the caller's fd `fd`. */
  private fd(fd: number): number { return this.stdio && fd >= 0 && fd <= 2 ? this.stdio[fd] : fd; }

  openTree(rootPath: string): HostTree { return new LinuxHostTree(rootPath); }

  createMemoryBacking(name: string, size: number): MemoryBacking { return new HostMemfd(name, size); }

  mapReadOnlyFile(fd: number): ReadOnlyFileMapping { return new HostReadOnlyFile(fd); }

  fstat(callerFd: number): HostStat {
    const s = fs.fstatSync(this.fd(callerFd), { bigint: true });
    return {
      dev: Number(s.dev), ino: Number(s.ino), nlink: Number(s.nlink), mode: Number(s.mode), uid: Number(s.uid), gid: Number(s.gid),
      rdev: Number(s.rdev), size: Number(s.size), blksize: Number(s.blksize), blocks: Number(s.blocks),
      atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs,
    };
  }

  isStream(callerFd: number): boolean {
    const fd = this.fd(callerFd);
    let v = this.streams.get(fd);
    if (v === undefined) {
      try { const s = fs.fstatSync(fd); v = s.isFIFO() || s.isSocket() || s.isCharacterDevice(); } catch { v = false; }
      this.streams.set(fd, v);
    }
    return v;
  }

  isTerminal(fd: number): boolean { return libc.ioctlBuf(this.fd(fd), TCGETS, new Uint8Array(60)) === 0; }

  accessMode(fd: number): number | undefined {
    const fl = libc.getfl(this.fd(fd));
    return fl < 0 ? undefined : fl & 3;
  }

  ioctl(fd: number, request: number, arg: Uint8Array): number {
    const r = libc.ioctlBuf(this.fd(fd), request, arg);
    return r < 0 ? -libc.errno() : r;
  }

  pollOnce(fd: number, events: number): number {
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    v.setInt32(0, this.fd(fd), true);
    v.setInt16(4, events, true);
    if (libc.poll(pfd, 1, 0) < 0) return -libc.errno();
    return v.getInt16(6, true) & 0xffff;
  }

  readSync(fd: number, into: Uint8Array, position: number | null): number { return fs.readSync(this.fd(fd), into, 0, into.length, position); }

  readNow(fd: number, into: Uint8Array): number | undefined { return this.hostStreams.readNow(this.fd(fd), into); }

  onReadable(fd: number, ready: () => void): () => void { return this.hostStreams.onReadable(this.fd(fd), ready); }

  writeSync(fd: number, from: Uint8Array, offset: number, length: number): number { return fs.writeSync(this.fd(fd), from, offset, length); }

  fdPath(fd: number): string | undefined {
    try { return fs.readlinkSync(`/proc/self/fd/${this.fd(fd)}`); } catch { return undefined; }
  }

  getrlimit(resource: number): [bigint, bigint] | undefined {
    const lim = new BigUint64Array(2);
    return libc.getrlimit(resource, lim) === 0 ? [lim[0], lim[1]] : undefined;
  }

  socketAddress(callerFd: number, peer: boolean): Uint8Array | number {
    const addr = new Uint8Array(128), len = new Uint32Array([128]), fd = this.fd(callerFd);
    const r = peer ? libc.getpeername(fd, addr, len) : libc.getsockname(fd, addr, len);
    return r < 0 ? -libc.errno() : addr.slice(0, Math.min(len[0], 128));
  }

  socketIntOption(fd: number, level: number, name: number): number | { errno: number } {
    const val = new Int32Array(1), len = new Uint32Array([4]);
    return libc.getsockopt(this.fd(fd), level, name, val, len) < 0 ? { errno: libc.errno() } : val[0];
  }
}
