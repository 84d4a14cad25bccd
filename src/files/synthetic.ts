/**
 * 'synthetic' files: /proc files, whose bytes are generated when opened (like a seq_file
 * read at once), and O_PATH handles of non-directories (no content).
 */
import { E } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { ALWAYS_READY, FileOps, GONE_SYNTHETIC_STAT, copyToGuest, mapCopy, nodeByPath, reopenFlags, seekBySize, statByPath } from './file-ops.js';

/** Graph record: the bytes generated at open. */
export interface SyntheticFile extends OpenFileBase {
  readonly kind: 'synthetic';
  readonly content: Uint8Array;
}

export const syntheticFileOps: FileOps<SyntheticFile> = {
  read(t, f, buf, count, pos) {
    const usePos = pos ?? f.offset;
    const c = f.content;
    const end = Math.min(c.length, usePos + count);
    if (end <= usePos) return 0;
    const n = copyToGuest(t, buf, c.subarray(usePos, end));
    if (pos === null && n > 0) t.kernel.seek(f, f.offset + n);
    return n;
  },
  write: () => -E.EBADF,
  readiness: () => ALWAYS_READY,
  stat(t, f) {
    const n = nodeByPath(t, f);
    if (!n) return GONE_SYNTHETIC_STAT;
    const s = statByPath(t, f, n);
    if (!(n.kind === 'synthetic' && n.node.magicFileId !== undefined && t.kernel.state.openFiles[n.node.magicFileId])) s.size = 0;
    return s;
  },
  seek: (t, f, off, whence) => seekBySize(t, f, off, whence, () => f.content.length),
  mmap: (t, f, addr, len, prot, flags, off) => mapCopy(t, f, addr, len, prot, flags, off, f.content.subarray(off, off + len)),
  reopen: (t, f, flags) => t.kernel.newOpenFile({ kind: 'synthetic', path: f.path, flags: reopenFlags(flags), content: f.content }),
};
