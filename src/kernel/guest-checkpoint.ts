/**
 * Checkpoints the guest asks for: a write to /proc/snapvisor/checkpoint (as gVisor's
 * /proc/gvisor/checkpoint) checkpoints the whole sandbox at that point, leaving it running,
 * through `KernelOptions.checkpointRequest` (given by `snapvisor run --checkpoint-store`; the
 * kernel knows nothing of the store). The write returns once the checkpoint is stored; a
 * read of the file then says which side of it the reader is on:
 *
 * - `original\n`: the sandbox that asked is going on (its generation is still the one it had
 *   when it asked);
 * - `restored\n`: a clone restored from that checkpoint (restoring raises the generation);
 * - `none\n`: this sandbox's guest never asked for a checkpoint.
 *
 * Errors of the write (Linux-style errno, docs/snapshot-format.md "Checkpoints the guest asks for"):
 * EOPNOTSUPP when the sandbox has no checkpoint store, EBUSY while another checkpoint asked
 * for by the guest is being taken, EIO when the checkpoint failed (the kernel logs why), EFAULT
 * for an unreadable buffer. A zero-length write does nothing and returns 0. What is written
 * is ignored.
 *
 * Saved and restored: the writer blocks in a `checkpoint` waiter, which the checkpoint it asked
 * for captures; a restored clone re-enters the write and it returns its count at once. The
 * generation at the request is `SandboxConfig.checkpointGeneration` (graph).
 */
import { defer, from } from 'rxjs';
import { E } from '../errno.js';
import type { Kernel } from './kernel.js';
import type { SyscallResult, Task } from './task.js';

/** Sandboxes with a guest-requested checkpoint being taken (runtime only: never in a checkpoint). */
const inFlight = new WeakSet<Kernel>();

/**
 * write(2) of `count` bytes (already checked readable) to /proc/snapvisor/checkpoint: a Block
 * until the checkpoint is stored, then `count`; or -EOPNOTSUPP, -EBUSY, -EIO as above.
 */
export function checkpointWrite(t: Task, count: number): SyscallResult {
  const k = t.kernel;
  if (t.resumed('checkpoint')) return count; // a clone restored from the checkpoint this write asked for
  if (count === 0) return 0;
  const take = k.checkpointRequest;
  if (!take) return -E.EOPNOTSUPP;
  if (inFlight.has(k)) return -E.EBUSY;
  inFlight.add(k);
  const before = k.state.config.checkpointGeneration;
  // In the graph before the capture, so the checkpoint records what its clones compare against.
  k.emit({ type: 'config.set', what: 'checkpointGeneration' }, [['set', ['config', 'checkpointGeneration'], k.state.config.generation ?? 0]]);
  return {
    waiter: { kind: 'checkpoint', interruptible: false },
    // Started once the writer is parked in its waiter (quiesce waits for every task to be).
    result$: defer(() => from(take(k).then((line) => {
      if (line) k.log(line);
      return count;
    }, (e: Error) => {
      k.emit({ type: 'config.set', what: 'checkpointGeneration' }, [before === undefined ? ['del', ['config', 'checkpointGeneration']] : ['set', ['config', 'checkpointGeneration'], before]]);
      k.log(`snapvisor: the checkpoint the guest asked for failed: ${e.message}`);
      return -E.EIO;
    }).finally(() => inFlight.delete(k)))),
  };
}

/** What a read of /proc/snapvisor/checkpoint returns (see the module comment). */
export function checkpointStatus(k: Kernel): string {
  const at = k.state.config.checkpointGeneration;
  if (at === undefined) return 'none\n';
  return (k.state.config.generation ?? 0) === at ? 'original\n' : 'restored\n';
}
