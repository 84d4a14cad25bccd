/**
 * 'upper' files: regular files (and memfds) of the writable upper layer, whose contents
 * live in the graph (src/vfs/inode-data.ts: sparse 64 KiB chunks, or a memory-file block
 * once mapped MAP_SHARED).
 */
import { E } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { InodeState, OpenFileBase } from '../kernel/state.js';
import { inodeRead, inodeShare, inodeTruncate, inodeWrite } from '../vfs/inode-data.js';
import { pageRoundUp } from '../mm/memory-file.js';
import { isReg } from '../vfs/stat.js';
import { fileWriteLimit } from '../kernel/rlimits.js';
import { FIONREAD, MAP_PRIVATE, O_ACCMODE, O_APPEND, O_RDONLY, O_TRUNC, PROT_READ } from '../abi/linux.js';
import { ALWAYS_READY, FileOps, copyToGuest, mapCopy, reopenFlags, seekBySize, statByPath } from './file-ops.js';

/** Graph record: which inode of the upper layer (fs.inodes) it reads and writes. */
export interface UpperFile extends OpenFileBase {
  readonly kind: 'upper';
  readonly inodeId: number;
}

/** Truncate (or extend with zeros) an upper-layer file to `size` bytes, updating mtime and ctime. */
export function truncateUpper(k: Kernel, inode: InodeState, size: number): void {
  inodeTruncate(k, inode, size);
  const now = k.clock.realtimeNs();
  k.emit({ type: 'file.truncate', inode: inode.id, size }, [['set', ['fs', 'inodes', inode.id, 'mtimeNs'], now], ['set', ['fs', 'inodes', inode.id, 'ctimeNs'], now]]);
}

export const upperFileOps: FileOps<UpperFile> = {
  read(t, f, buf, count, pos) {
    const usePos = pos ?? f.offset;
    const ino = t.kernel.state.fs.inodes[f.inodeId];
    if (!isReg(ino.mode)) return -E.EINVAL;
    const end = Math.min(ino.size, usePos + count);
    if (end <= usePos) return 0;
    const n = copyToGuest(t, buf, inodeRead(t.kernel, ino, usePos, end));
    if (pos === null && n > 0) t.kernel.seek(f, f.offset + n);
    return n;
  },
  write(t, f, buf, count, pos) {
    const ino = t.kernel.state.fs.inodes[f.inodeId];
    const at = pos ?? ((f.flags & O_APPEND) ? ino.size : f.offset);
    if (isReg(ino.mode)) count = fileWriteLimit(t, at, count); // RLIMIT_FSIZE: short write, or EFBIG + SIGXFSZ
    const end = at + count;
    t.mm.chunks(buf, count, PROT_READ, () => undefined); // EFAULT before the file changes
    inodeWrite(t.kernel, ino, at, count, (put) => t.mm.chunks(buf, count, PROT_READ, (view, ro) => put(view, ro)));
    const now = t.kernel.clock.realtimeNs();
    t.kernel.emit({ type: 'file.write', inode: ino.id, offset: at, len: count }, [['set', ['fs', 'inodes', ino.id, 'mtimeNs'], now], ['set', ['fs', 'inodes', ino.id, 'ctimeNs'], now]]);
    if (pos === null) t.kernel.seek(f, end);
    return count;
  },
  readiness: () => ALWAYS_READY,
  stat: (t, f) => statByPath(t, f, { kind: 'upper', path: f.path, inode: t.kernel.state.fs.inodes[f.inodeId] }),
  seek: (t, f, off, whence) => seekBySize(t, f, off, whence, () => t.kernel.state.fs.inodes[f.inodeId].size),
  ioctl(t, f, req, arg) {
    if (req !== FIONREAD) return -E.ENOTTY;
    t.mm.writeU32(arg, Math.max(0, t.kernel.state.fs.inodes[f.inodeId].size - f.offset));
    return 0;
  },
  reopen(t, f, flags) {
    const g = t.kernel.newOpenFile({ kind: 'upper', path: f.path, flags: reopenFlags(flags), inodeId: f.inodeId });
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) !== O_RDONLY) truncateUpper(t.kernel, t.kernel.state.fs.inodes[g.inodeId], 0);
    return g;
  },
  mmap(t, f, addr, len, prot, flags, off) {
    const ino = t.kernel.state.fs.inodes[f.inodeId];
    if ((flags & 3) !== MAP_PRIVATE) {
      // Shared file mapping: the file's bytes move into the memory file and are mapped, not copied.
      const block = inodeShare(t.kernel, ino, off + pageRoundUp(len));
      return t.mm.mapBlock(addr, len, prot, flags, f.path, off, block.offset, off);
    }
    return mapCopy(t, f, addr, len, prot, flags, off, inodeRead(t.kernel, ino, off, off + len));
  },
  /** The last reference gone: an unlinked file's data is freed once no other open file holds it. */
  release: (k, f) => k.releaseInodeIfUnused(f.inodeId),
  pollable: false,
};
