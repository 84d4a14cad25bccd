/**
 * 'host' files: regular files of the read-only lower layer (the host rootfs), opened once
 * beneath the rootfs handle and held by fd (src/vfs/host-files.ts). Writes never reach
 * them: opening for writing copies the file up into the upper layer (src/files/upper.ts).
 */
import fs from 'node:fs';
import { E, SyscallError } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { FIONREAD, MAP_SHARED, O_ACCMODE, O_APPEND, O_RDONLY, PROT_READ, PROT_WRITE } from '../abi/linux.js';
import { fileWriteLimit } from '../kernel/rlimits.js';
import { hostIdentity } from '../vfs/host-files.js';
import type { Kernel } from '../kernel/kernel.js';
import { pageRoundUp } from '../mm/memory-file.js';
import { fillFromHostFile, pageCacheBlock } from '../mm/page-cache.js';
import { ALWAYS_READY, FileOps, reopenFlags, seekBySize, statByPath } from './file-ops.js';

/** Graph record: the path (re-opened beneath the rootfs on restore) and the identity it had (checked then). */
export interface HostFile extends OpenFileBase {
  readonly kind: 'host';
  /** Identity of the host file when opened (bytes; ms since the epoch), checked on restore. */
  readonly hostIdentity?: { readonly size: number; readonly mtimeMs: number };
}

export const hostFileOps: FileOps<HostFile> = {
  read(t, f, buf, count, pos) {
    if (count === 0) return 0;
    const usePos = pos ?? f.offset;
    const hfd = t.kernel.hostFiles.fd(f);
    let total = 0;
    let short = false;
    try {
      t.mm.chunks(buf, count, PROT_WRITE, (view) => {
        if (short) return;
        const n = fs.readSync(hfd, view, 0, view.length, usePos + total);
        total += n;
        if (n < view.length) short = true;
      });
    } catch (e) {
      if (!(e instanceof SyscallError && e.errno === E.EFAULT && total > 0)) throw e; // a short read up to the bad page
    }
    if (pos === null && total > 0) t.kernel.seek(f, f.offset + total);
    return total;
  },
  write(t, f, buf, count, pos) {
    // Only a read-write volume's file is ever open for writing (src/syscalls/file.ts openNode).
    if ((f.flags & O_ACCMODE) === O_RDONLY) return -E.EBADF;
    const k = t.kernel;
    const hfd = k.hostFiles.fd(f);
    const at = pos ?? ((f.flags & O_APPEND) ? k.hostFiles.size(hfd) : f.offset);
    count = fileWriteLimit(t, at, count); // RLIMIT_FSIZE: short write, or EFBIG + SIGXFSZ
    t.mm.chunks(buf, count, PROT_READ, () => undefined); // EFAULT before the file changes
    let total = 0;
    let short = false;
    t.mm.chunks(buf, count, PROT_READ, (view) => {
      if (short) return;
      const n = k.hostFiles.write(hfd, view, at + total);
      total += n;
      if (n < view.length) short = true;
    });
    if (pos === null) k.seek(f, at + total);
    return total;
  },
  readiness: () => ALWAYS_READY,
  stat: (t, f) => statByPath(t, f),
  seek: (t, f, off, whence) => seekBySize(t, f, off, whence, () => statByPath(t, f).size),
  ioctl(t, f, req, arg) {
    if (req !== FIONREAD) return -E.ENOTTY;
    t.mm.writeU32(arg, Math.max(0, statByPath(t, f).size - f.offset));
    return 0;
  },
  reopen: (t, f, flags) => t.kernel.newOpenFile({ kind: 'host', path: f.path, flags: reopenFlags(flags), hostIdentity: f.hostIdentity }),
  release: (k, f) => k.hostFiles.close(f.id),
  mmap(t, f, addr, len, prot, flags, off) {
    // Host files: pages come from the page cache, shared copy-on-write by every mapping of them.
    const k = t.kernel;
    // A writable shared mapping of a read-write volume's file would not reach the host: not offered.
    if ((f.flags & O_ACCMODE) !== O_RDONLY && (flags & 3) === MAP_SHARED && (prot & PROT_WRITE)) return -E.ENODEV;
    const hfd = k.hostFiles.fd(f);
    // A file open for writing may have changed since it was opened: its page-cache identity is what it is now.
    const id = (f.flags & O_ACCMODE) !== O_RDONLY ? hostIdentity(hostFstatOf(k, hfd)) : f.hostIdentity!;
    const mapLen = pageRoundUp(len);
    // Only the file's data ranges are read and charged: the holes of a sparse file stay
    // uncharged zeros (a 4 GiB sparse file maps at once, as natively).
    const lower = k.vfs.lower;
    const block = pageCacheBlock(k, f.path, id.size, id.mtimeMs, off, mapLen,
      (b) => fillFromHostFile(k, b, off, mapLen, lower.dataRanges(hfd, id.size), (buf, at) => lower.pread(hfd, buf, at)));
    return t.mm.mapBlock(addr, len, prot, flags, f.path, off, block, 0, true);
  },
  pollable: false,
  restore: (k, f) => k.hostFiles.reopenAtRestore(f),
};

/** fstat(2) of a held host fd. */
const hostFstatOf = (k: Kernel, fd: number) => k.vfs.lower.fstat!(fd);
