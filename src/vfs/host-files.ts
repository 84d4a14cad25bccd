/**
 * Host file handles behind 'host' open files (runtime only, keyed by open-file id).
 * They are opened lazily by guest path, so a restored sandbox re-opens them on first
 * use; a host file that changed since it was first opened is refused with EIO rather
 * than read as silently different data.
 */
import fs from 'node:fs';
import { E, SyscallError } from '../errno.js';
import type { OpenFileState } from '../kernel/state.js';
import type { Kernel } from '../kernel/kernel.js';

export class HostFiles {
  private readonly fds = new Map<number, number>();
  constructor(private readonly kernel: Kernel) {}

  /** Host fd for an open file of kind 'host' (opened read-only on first use). */
  fd(f: OpenFileState): number {
    let fd = this.fds.get(f.id);
    if (fd !== undefined) return fd;
    const hostPath = this.kernel.vfs.hostPath(f.path);
    try {
      fd = fs.openSync(hostPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch {
      throw new SyscallError(E.EIO);
    }
    const st = fs.fstatSync(fd);
    if (f.hostIdentity && (f.hostIdentity.size !== st.size || f.hostIdentity.mtimeMs !== st.mtimeMs)) {
      fs.closeSync(fd);
      this.kernel.log(`snapvisor: host file ${f.path} changed since the checkpoint; reads return EIO`);
      throw new SyscallError(E.EIO);
    }
    f.hostIdentity = { size: st.size, mtimeMs: st.mtimeMs };
    this.fds.set(f.id, fd);
    return fd;
  }

  close(id: number): void {
    const fd = this.fds.get(id);
    if (fd !== undefined) { fs.closeSync(fd); this.fds.delete(id); }
  }

  closeAll(): void {
    for (const id of [...this.fds.keys()]) this.close(id);
  }
}
