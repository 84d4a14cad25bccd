/** 'eventfd' files: a 64-bit counter (the object and its read/write are src/ipc/eventfd.ts). */
import type { OpenFileBase } from '../kernel/state.js';
import { eventfdRead, eventfdWrite } from '../ipc/eventfd.js';
import { POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM } from '../abi/linux.js';
import { FileOps, anonInodeStat } from './file-ops.js';

/** Graph record: the counter and whether it is a semaphore (EFD_SEMAPHORE). */
export interface EventFdFile extends OpenFileBase {
  readonly kind: 'eventfd';
  readonly eventfd: { readonly count: bigint; readonly semaphore: boolean };
}

export const eventFdFileOps: FileOps<EventFdFile> = {
  read: (t, f, buf, count) => eventfdRead(t, f, buf, count),
  write: (t, f, buf, count) => eventfdWrite(t, f, buf, count),
  readiness(t, f) {
    const c = f.eventfd.count;
    return (c > 0n ? POLLIN | POLLRDNORM : 0) | (c < 0xfffffffffffffffen ? POLLOUT | POLLWRNORM : 0);
  },
  /** The shared anon inode: mode 0600, no file type, owned by root (fstat used to fail with EBADF). */
  stat: () => anonInodeStat(),
  anonInode: true,
  seek: (t, f) => f.offset, // noop_llseek
  syncable: false,
};
