/**
 * Futexes (man 2 futex, kernel/futex/): wait queues keyed like Linux's futex keys
 * (kernel/futex/core.c get_futex_key). Private futexes (FUTEX_PRIVATE_FLAG) are keyed by
 * (address space, address) whatever the mapping; shared ones on a MAP_SHARED mapping by the
 * memory-file offset of the word, so processes sharing memory meet on the same key; shared ones
 * on a private mapping by (address space, address) again, but apart from the private key (Linux's
 * FUT_OFF_MMSHARED): a copy-on-write copy moves the word in the memory file, not its key.
 *
 * The queues are runtime; each blocked task keeps a 'futex' Waiter in the graph. A task
 * restored while blocked in FUTEX_WAIT returns 0 (a spurious wake-up, which every futex
 * user must tolerate), so no wake-up can be lost across a checkpoint.
 */
import { Subject, take, finalize } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { merge, map } from 'rxjs';
import { untilDeadline } from '../kernel/deadline.js';
import { FUTEX_BITSET_MATCH_ANY, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS } from '../abi/linux.js';

interface QueuedWaiter { tid: number; bitset: number; wake$: Subject<number> }

export class Futexes {
  private readonly queues = new Map<string, QueuedWaiter[]>();

  /** The futex key of `addr` (EFAULT if unmapped, EINVAL if misaligned). */
  key(t: Task, addr: number, priv: boolean): string {
    if (addr % 4) throw new SyscallError(E.EINVAL);
    const v = t.mm.find(addr);
    if (!v) throw new SyscallError(E.EFAULT);
    if (priv) return `p${t.mm.id}:${addr}`;
    if (!(v.flags & 1 /* MAP_SHARED */)) return `m${t.mm.id}:${addr}`;
    return `s${v.fileOffset + (addr - v.start)}`;
  }

  /** FUTEX_WAIT/WAIT_BITSET: block while *addr == val, until woken, the deadline (guest monotonic ns), or a signal. */
  wait(t: Task, addr: number, val: number, bitset: number, deadlineNs: bigint | undefined, priv: boolean): SyscallResult {
    if (bitset === 0) return -E.EINVAL;
    if (t.resumed('futex')) return 0; // restored mid-wait: a spurious wake-up
    const key = this.key(t, addr, priv);
    if (t.mm.readU32(addr) !== val) return -E.EAGAIN;
    const entry: QueuedWaiter = { tid: t.tid, bitset, wake$: new Subject<number>() };
    let q = this.queues.get(key);
    if (!q) this.queues.set(key, q = []);
    q.push(entry);
    const remove = () => {
      const qq = this.queues.get(key);
      if (!qq) return;
      const i = qq.indexOf(entry);
      if (i >= 0) qq.splice(i, 1);
      if (!qq.length) this.queues.delete(key);
    };
    const sources = [entry.wake$.asObservable()];
    if (deadlineNs !== undefined) sources.push(untilDeadline(t, deadlineNs).pipe(map(() => -E.ETIMEDOUT)));
    return {
      // A timed wait is not restarted after a handler (restart_block gives EINTR); an untimed one is.
      waiter: { kind: 'futex', addr, interruptible: true, restartable: deadlineNs === undefined, deadlineNs },
      result$: merge(...sources).pipe(take(1), finalize(remove)),
    };
  }

  /** Wake up to `n` waiters on a key whose bitset matches; returns how many. */
  wakeKey(key: string, n: number, bitset = FUTEX_BITSET_MATCH_ANY): number {
    const q = this.queues.get(key);
    if (!q) return 0;
    let woken = 0;
    for (const w of [...q]) {
      if (woken >= n) break;
      if (!(w.bitset & bitset)) continue;
      q.splice(q.indexOf(w), 1);
      w.wake$.next(0);
      woken++;
    }
    if (!q.length) this.queues.delete(key);
    return woken;
  }

  wake(t: Task, addr: number, n: number, bitset: number, priv: boolean): number {
    if (bitset === 0) return -E.EINVAL;
    return this.wakeKey(this.key(t, addr, priv), n, bitset);
  }

  /** FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: wake n, move up to n2 others to addr2. */
  requeue(t: Task, addr: number, n: number, addr2: number, n2: number, cmp: number | undefined, priv: boolean): number {
    const key = this.key(t, addr, priv), key2 = this.key(t, addr2, priv);
    if (cmp !== undefined && t.mm.readU32(addr) !== cmp) return -E.EAGAIN;
    const woken = this.wakeKey(key, n);
    const q = this.queues.get(key);
    let moved = 0;
    if (q && key !== key2) {
      let q2 = this.queues.get(key2);
      if (!q2) this.queues.set(key2, q2 = []);
      while (q.length && moved < n2) { q2.push(q.shift()!); moved++; }
      if (!q.length) this.queues.delete(key);
      if (!q2.length) this.queues.delete(key2);
    }
    return woken + moved;
  }

  /** FUTEX_WAKE_OP: atomically update *addr2, wake n on addr, and n2 on addr2 if the old value passes the test. */
  wakeOp(t: Task, addr: number, n: number, addr2: number, n2: number, encoded: number, priv: boolean): number {
    const op = (encoded >>> 28) & 7, shift = (encoded >>> 28) & 8, cmp = (encoded >>> 24) & 15;
    let oparg = (encoded << 8) >> 20, cmparg = (encoded << 20) >> 20;
    if (shift) oparg = 1 << (oparg & 31);
    const old = t.mm.readU32(addr2) | 0;
    const next = [oparg, old + oparg, old | oparg, old & ~oparg, old ^ oparg][op];
    if (next === undefined) return -E.ENOSYS;
    t.mm.writeU32(addr2, next);
    let woken = this.wake(t, addr, n, FUTEX_BITSET_MATCH_ANY, priv);
    const pass = [old === cmparg, old !== cmparg, old < cmparg, old <= cmparg, old > cmparg, old >= cmparg][cmp];
    if (pass === undefined) return -E.ENOSYS;
    if (pass) woken += this.wake(t, addr2, n2, FUTEX_BITSET_MATCH_ANY, priv);
    return woken;
  }

  /**
   * A thread is exiting: mark the futexes it still owns on its robust list OWNER_DIED and
   * wake a waiter of each (kernel/futex/core.c exit_robust_list), then clear and wake its
   * clear_child_tid word (what pthread_join waits on).
   */
  exitCleanup(t: Task): void {
    const mm = t.mm;
    try {
      if (t.state.robustList) {
        const head = t.state.robustList;
        const offset = Number(BigInt.asIntN(64, mm.readU64(head + 8)));
        const pending = Number(mm.readU64(head + 16));
        let entry = Number(mm.readU64(head));
        const visit = (e: number) => {
          const word = e + offset;
          const v = mm.readU32(word);
          if ((v & FUTEX_TID_MASK) !== t.tid) return;
          mm.writeU32(word, (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED);
          if (v & FUTEX_WAITERS) { this.wakeKey(this.key(t, word, true), 1); this.wakeKey(this.key(t, word, false), 1); }
        };
        for (let i = 0; entry !== head && entry !== 0 && i < 2048; i++) {
          const next = Number(mm.readU64(entry));
          if (entry !== pending) visit(entry & ~1);
          entry = next;
        }
        if (pending) visit(pending & ~1);
      }
    } catch { /* a corrupt robust list is ignored, as Linux does */ }
    const ctid = t.state.clearChildTid;
    if (ctid) {
      try {
        mm.writeU32(ctid, 0);
        this.wakeKey(this.key(t, ctid, false), 1);
        this.wakeKey(this.key(t, ctid, true), 1);
      } catch { /* unmapped: nothing to clear */ }
    }
  }
}
