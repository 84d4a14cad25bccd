/**
 * The kernel's one clock: every time the guest sees comes from here, so it can be kept
 * continuous across checkpoint/restore (and virtualized later for deterministic runs).
 * CLOCK_MONOTONIC/BOOTTIME = host monotonic + an offset saved in the graph (like a time
 * namespace's offsets, compare CRIU); CLOCK_REALTIME follows the host.
 */
import { persisted } from './persist.js';
import type { ClockState } from './state.js';

export const NS_PER_SEC = 1_000_000_000n;

export class Clock {
  /**
   * CLOCK_REALTIME minus the host's monotonic clock (ns), read on first use: Node's `performance`
   * (µs-precise wall time) loads perf_hooks and its eight internal modules, ~2 ms of a restore
   * whose guest may never ask the time of day.
   */
  private realBase: bigint | undefined;
  constructor(readonly state: ClockState) {}

  /** Guest CLOCK_MONOTONIC in ns. */
  monotonicNs(): bigint { return process.hrtime.bigint() + this.state.monotonicOffsetNs; }
  /** Guest CLOCK_REALTIME in ns since the epoch. */
  realtimeNs(): bigint {
    this.realBase ??= BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)) - process.hrtime.bigint();
    return process.hrtime.bigint() + this.realBase;
  }
  /** The monotonicAtSaveNs a checkpoint records now (the kernel stores it with event checkpoint.taken). */
  saveValue(): bigint { return this.monotonicNs(); }
  /** The monotonicOffsetNs that continues guest monotonic time from the saved value (on restore; stored by event checkpoint.restored). */
  restoreValue(): bigint { return this.state.monotonicAtSaveNs - process.hrtime.bigint(); }
}

/** Decode a guest `struct timespec` (16 bytes) to ns; EINVAL semantics are the caller's. */
export function timespecToNs(b: Uint8Array): { sec: bigint; nsec: bigint } {
  const v = new DataView(b.buffer, b.byteOffset, 16);
  return { sec: v.getBigInt64(0, true), nsec: v.getBigInt64(8, true) };
}

export function nsToTimespec(ns: bigint): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, ns / NS_PER_SEC, true);
  v.setBigInt64(8, ns % NS_PER_SEC, true);
  return b;
}

/** Persistence: the clock's offsets; on restore guest monotonic time continues from the checkpoint. */
export const clockPersist = persisted<ClockState>({
  kind: 'clock',
  records: (g) => [['clock', g.clock]],
  // The event checkpoint.restored carries the new offset (the time spent saved does not pass).
  restore(k) { k.emit({ type: 'checkpoint.restored' }, [['set', ['clock', 'monotonicOffsetNs'], k.clock.restoreValue()]]); return undefined; },
  rebuilds: 'monotonic offset recomputed so CLOCK_MONOTONIC continues from monotonicAtSaveNs',
});
