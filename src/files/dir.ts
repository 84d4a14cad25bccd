/** 'dir' files: open directories (and O_PATH handles of directories), read with getdents64. */
import { E } from '../errno.js';
import type { DirEntry, OpenFileBase } from '../kernel/state.js';
import { SEEK_DATA, SEEK_HOLE } from '../abi/linux.js';
import { ALWAYS_READY, FileOps, reopenFlags, seekBySize, statByPath } from './file-ops.js';

/** Graph record: the directory's entries, captured at the first getdents64 (a stable order across restore); `offset` indexes them. */
export interface DirFile extends OpenFileBase {
  readonly kind: 'dir';
  readonly entries?: readonly DirEntry[];
}

export const dirFileOps: FileOps<DirFile> = {
  read: () => -E.EISDIR,
  write: () => -E.EISDIR,
  readiness: () => ALWAYS_READY,
  stat: (t, f) => statByPath(t, f),
  seek(t, f, off, whence) {
    if (whence === SEEK_DATA || whence === SEEK_HOLE) return seekBySize(t, f, off, whence, () => statByPath(t, f).size);
    const r = seekBySize(t, f, off, whence, () => 0);
    if (r === 0 && f.entries) t.kernel.setDirEntries(f, undefined); // rewinddir: list the directory again
    return r;
  },
  reopen: (t, f, flags) => t.kernel.newOpenFile({ kind: 'dir', path: f.path, flags: reopenFlags(flags) }),
  pollable: false,
};
