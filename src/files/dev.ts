/**
 * 'dev' files: the character devices of /dev (null, zero, full, random, urandom; tty without a
 * terminal) and /proc/snapvisor/checkpoint (src/kernel/guest-checkpoint.ts: a write checkpoints
 * the sandbox, a read says original, restored or none).
 */
import crypto from 'node:crypto';
import { E } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { MAP_ANONYMOUS, PROT_READ, PROT_WRITE } from '../abi/linux.js';
import { checkpointStatus, checkpointWrite } from '../kernel/guest-checkpoint.js';
import { ALWAYS_READY, FileOps, copyToGuest, reopenFlags, statByPath } from './file-ops.js';

/** Graph record: which device ('null', 'zero', 'full', 'random', 'urandom', 'tty', 'snapvisor-checkpoint'). */
export interface DevFile extends OpenFileBase {
  readonly kind: 'dev';
  readonly dev: string;
}

export const devFileOps: FileOps<DevFile> = {
  read(t, f, buf, count, pos) {
    if (f.dev === 'null') return 0;
    if (f.dev === 'tty') return -E.ENXIO;
    if (f.dev === 'snapvisor-checkpoint') {
      const c = new TextEncoder().encode(checkpointStatus(t.kernel));
      const usePos = pos ?? f.offset;
      const end = Math.min(c.length, usePos + count);
      if (end <= usePos) return 0;
      const n = copyToGuest(t, buf, c.subarray(usePos, end));
      if (pos === null && n > 0) t.kernel.seek(f, f.offset + n);
      return n;
    }
    t.mm.chunks(buf, count, PROT_WRITE, (view) => {
      if (f.dev === 'random' || f.dev === 'urandom') crypto.randomFillSync(view); else view.fill(0);
    });
    return count;
  },
  write(t, f, buf, count) {
    if (f.dev === 'full') return -E.ENOSPC;
    t.mm.chunks(buf, count, PROT_READ, () => undefined);
    if (f.dev === 'snapvisor-checkpoint') return checkpointWrite(t, count);
    return count;
  },
  readiness: () => ALWAYS_READY,
  stat: (t, f) => statByPath(t, f),
  /** /dev/zero maps anonymous zero pages (drivers/char/mem.c mmap_zero); other devices cannot be mapped. */
  mmap: (t, f, addr, len, prot, flags) => t.mm.map(addr, len, prot, flags | MAP_ANONYMOUS, '/dev/zero (deleted)', 0),
  hasMmap: (f) => f.dev === 'zero',
  /** Devices ignore lseek (drivers/char/mem.c null_lseek): the offset stays 0. */
  seek: () => 0,
  reopen: (t, f, flags) => t.kernel.newOpenFile({ kind: 'dev', path: f.path, flags: reopenFlags(flags), dev: f.dev }),
};
