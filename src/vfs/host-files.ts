/**
 * Host file handles behind 'host' open files (runtime only, keyed by open-file id). A
 * host file is opened once, beneath the rootfs handle, when the guest opens it, and is
 * held by that fd: host-side renames or swaps of its path cannot redirect it. The graph
 * keeps what is needed to open it again on restore: the guest path and the file's
 * identity (size, mtime). At restore, each one is re-opened (`reopenAtRestore`, called by the
 * 'host' kind's FileOps.restore) and a file that vanished or changed is refused with one line
 * naming it.
 */
import type { HostFile } from '../files/host.js';
import { E, SyscallError } from '../errno.js';
import { HostError, type HostStat } from '../../platforms/host-services.js';
import type { Kernel } from '../kernel/kernel.js';

/** Identity of a host file as the graph records it (bytes; ms since the epoch). */
export const hostIdentity = (st: HostStat) => ({ size: st.size, mtimeMs: Number(st.mtimeNs / 1000n) / 1000 });

export class HostFiles {
  private readonly fds = new Map<number, number>();
  constructor(private readonly kernel: Kernel) {}

  /**
   * Open the host file behind a new 'host' open file now (ENOENT/ELOOP/EACCES as the host says),
   * and record its identity. A file opened for writing (a read-write volume's: EROFS otherwise)
   * is opened so, truncated first when `trunc`.
   */
  open(f: HostFile, trunc = false): number {
    let o;
    try { o = this.openFor(f, trunc); } catch (e) { throw e instanceof SyscallError ? e : new SyscallError(e instanceof HostError ? e.errno : E.EIO); }
    this.kernel.emit({ type: 'file.update', fileId: f.id, what: 'hostIdentity' }, [['set', ['openFiles', f.id, 'hostIdentity'], hostIdentity(o.st)]]);
    this.fds.set(f.id, o.fd);
    return o.fd;
  }

  /** Host fd of a 'host' open file (re-opened after a restore: EIO if it vanished or changed). */
  fd(f: HostFile): number {
    const fd = this.fds.get(f.id);
    if (fd !== undefined) return fd;
    const why = this.reopen(f);
    if (why) {
      this.kernel.log(`snapvisor: ${why}; reads return EIO`);
      throw new SyscallError(E.EIO);
    }
    return this.fds.get(f.id)!;
  }

  /** Whether `f` was opened for writing (a read-write volume's file). */
  private writable(f: HostFile): boolean {
    return (f.flags & 3) !== 0;
  }

  /** Open the host file of `f` as its flags ask (read-only, or for writing beneath its volume's handle). */
  private openFor(f: HostFile, trunc: boolean): { fd: number; st: HostStat } {
    if (!this.writable(f)) return this.kernel.vfs.openHostFile(f.path);
    const vfs = this.kernel.vfs;
    const loc = vfs.locate(f.path);
    const tree = vfs.volumeTree(loc);
    if (!tree?.openWrite) throw new SyscallError(E.EROFS);
    return tree.openWrite(loc.key, (f.flags & 3) === 2, trunc);
  }

  /** Size (bytes) of the host file behind fd `fd` now. */
  size(fd: number): number {
    return this.kernel.vfs.lower.fstat!(fd).size;
  }

  /** ftruncate(2) of a writable host file's fd (the host's errno as a SyscallError). */
  truncate(fd: number, size: number): void {
    try { this.kernel.vfs.lower.ftruncate!(fd, size); } catch (e) { throw new SyscallError(e instanceof HostError ? e.errno : E.EIO); }
  }

  /** pwrite(2) of all of `buf` at `off` to a writable host file's fd: bytes written (short only at an error after some). */
  write(fd: number, buf: Uint8Array, off: number): number {
    let done = 0;
    try {
      while (done < buf.length) {
        const n = this.kernel.vfs.lower.pwrite!(fd, buf.subarray(done), off + done);
        if (n <= 0) break;
        done += n;
      }
    } catch (e) {
      if (done > 0) return done;
      throw new SyscallError(e instanceof HostError ? e.errno : E.EIO);
    }
    return done;
  }

  /** Re-open a restored file; returns why it cannot be (one line) or undefined. */
  private reopen(f: HostFile): string | undefined {
    let o;
    try { o = this.openFor(f, false); } catch { return `host file ${f.path} ${this.writable(f) ? 'of a volume' : 'of the rootfs'} is gone`; }
    const id = hostIdentity(o.st);
    // A volume's file written by the guest moved on since it was opened: the volume's identity (checked before) covers it.
    if (!this.writable(f) && f.hostIdentity && (f.hostIdentity.size !== id.size || f.hostIdentity.mtimeMs !== id.mtimeMs)) {
      this.kernel.vfs.lower.closeFile(o.fd);
      return `host file ${f.path} of the rootfs changed since the checkpoint`;
    }
    this.kernel.emit({ type: 'file.update', fileId: f.id, what: 'hostIdentity' }, [['set', ['openFiles', f.id, 'hostIdentity'], id]]);
    this.fds.set(f.id, o.fd);
    return undefined;
  }

  /** At restore: open the host file behind `f` again; returns why it cannot be (it vanished or changed), in one line, or undefined. */
  reopenAtRestore(f: HostFile): string | undefined {
    return this.fds.has(f.id) ? undefined : this.reopen(f);
  }

  close(id: number): void {
    const fd = this.fds.get(id);
    if (fd !== undefined) { this.kernel.vfs.lower.closeFile(fd); this.fds.delete(id); }
  }

  closeAll(): void {
    for (const id of [...this.fds.keys()]) this.close(id);
  }
}
