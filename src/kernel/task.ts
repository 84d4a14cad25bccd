/**
 * A task's runtime half: its graph record (TaskState) bound to the live platform
 * context and address space. Syscall handlers receive a Task and read their
 * arguments through it (x86-64 syscall ABI: rdi, rsi, rdx, r10, r8, r9).
 */
import { byId, persisted } from './persist.js';
import type { Observable } from 'rxjs';
import type { PlatformTask } from '../../platforms/platform.js';
import { REG } from '../../platforms/platform.js';
import type { AddressSpace } from '../mm/address-space.js';
import type { Kernel } from './kernel.js';
import type { TaskState, ThreadGroupState, FdTableState, Waiter } from './state.js';
import type { Writable } from './events.js';

const ARG_WORDS = [REG.rdi, REG.rsi, REG.rdx, REG.r10, REG.r8, REG.r9];
/** i386 syscall ABI (`int 0x80`): ebx, ecx, edx, esi, edi, ebp. */
const I386_ARG_WORDS = [REG.rbx, REG.rcx, REG.rdx, REG.rsi, REG.rdi, REG.rbp];
const TWO32 = 4294967296;

/**
 * A blocked syscall: the waiter record (data, saved in the graph) plus the live
 * stream that completes with the syscall's result (runtime, never saved).
 */
export interface Block {
  waiter: Waiter;
  result$: Observable<number>;
  /**
   * Runs first, however the wait ended, with the stream's result or INTERRUPTED (kernel.ts); returns
   * the outcome to go on with (e.g. rt_sigtimedwait puts the caller's mask back and takes a signal
   * of its set that woke it). Runs in the same turn as the wake-up, before any checkpoint can see it.
   */
  settle?: (v: number) => number;
  /** Runs when a signal handler ends the wait with EINTR (e.g. nanosleep storing the time left). */
  onInterrupt?: () => void;
}

export type SyscallResult = number | Block;

/**
 * What a syscall hook decides at syscall entry (fault injection, `snapvisor run --inject`):
 * `{ result }` skips the handler and returns `result` (a negative errno such as -EINTR);
 * `{ arg, value }` runs the handler with argument `arg` (0–5) read as `value` instead (a shorter
 * byte count); the guest's register is put back before it resumes.
 */
export type SyscallHookDecision = { result: number } | { arg: number; value: number };

/**
 * A hook the kernel receives (KernelOptions.syscallHook) and calls before each syscall's
 * handler with the task and the syscall number; undefined lets the syscall run as usual.
 * It must be deterministic in what it is given if runs are to be replayed.
 */
export type SyscallHook = (t: Task, nr: number) => SyscallHookDecision | undefined;

/** Returned by handlers that set every register themselves (rt_sigreturn): rax is left alone. */
export const NO_RETURN = Number.MIN_SAFE_INTEGER;

/** Why a blocked syscall was abandoned (values a Block's race resolves to, never returned to a guest). */
export const INTERRUPTED = -0x7fff_0001, KILLED = -0x7fff_0002;

/** How a sandbox or process ended: exit status, or the signal that killed it. */
export type ExitInfo = { code: number } | { signal: number; core: boolean };

/** Thrown by exit_group (and fatal default signal actions) to end the caller's thread group. */
export class ExitGroup {
  constructor(readonly info: ExitInfo) {}
}

/** Thrown by exit(2) to end only the calling thread. */
export class ExitThread {
  constructor(readonly code: number) {}
}

/**
 * What the kernel needs of a syscall table entry: the syscall layer (src/syscalls/entry.ts)
 * declares richer entries and the composition root hands the kernel the table, as gVisor's
 * RegisterSyscallTable does. `handler` returns the result (≥ 0), -errno, or a Block.
 */
export interface SyscallHandlerEntry {
  name: string;
  /** Number of arguments (for --strace). */
  nargs: number;
  handler: (t: Task) => SyscallResult;
}

/** A syscall table indexed by x86-64 syscall number; holes return ENOSYS. */
export type SyscallTable = ReadonlyArray<SyscallHandlerEntry | undefined>;

export class Task {
  /** Set on restore for a task that was blocked: the waiter it had (deadline etc.); see `resumed`. */
  restoredWaiter?: Waiter;
  /** Consecutive faults retried as stale host mappings (bounded so a real fault is delivered). */
  faultRetries = 0;
  /** The last address a missing-mapping fault was served at, and how often in a row (AddressSpace.handleMissing). */
  lastMissing = -1;
  missingRetries = 0;

  constructor(
    readonly kernel: Kernel,
    public state: TaskState,
    readonly platform: PlatformTask,
    mm: AddressSpace,
  ) { this._mm = mm; }

  private _mm: AddressSpace;
  /** The address space the task runs in (shared by its threads, and by a CLONE_VM child until it execs). */
  get mm(): AddressSpace { return this._mm; }
  /** Point at a new address space (exec leaving one shared with another process: Processes.unshareAddressSpace). */
  rebindMm(mm: AddressSpace): void { this._mm = mm; }

  /**
   * The waiter this task was blocked in when the checkpoint it was restored from was taken, if of
   * `kind`: the handler re-entered after a restore takes its saved state (deadline, masks, progress)
   * from it. Valid during the first re-entry of the syscall only (dispatch clears it afterwards).
   */
  resumed<K extends Waiter['kind']>(kind: K): Extract<Waiter, { kind: K }> | undefined {
    const w = this.restoredWaiter;
    return w?.kind === kind ? (w as Extract<Waiter, { kind: K }>) : undefined;
  }

  get tid(): number { return this.state.tid; }
  /** Point at a moved graph record (de_thread: the caller takes over the leader's tid). */
  rebind(ts: TaskState): void { this.state = ts; }
  /**
   * CPU state the platform owns, written directly and never an event (src/kernel/events.ts,
   * Writable): registers and FP state (copied in at a capture), whether the registers stand at
   * a syscall entry ('user' | 'syscall'; 'exited' is event task.exit) and that syscall's ABI.
   */
  get cpu(): Writable<Pick<TaskState, 'regs' | 'fpState' | 'runState' | 'syscallAbi'>> { return this.state as Writable<TaskState>; }
  get tgid(): number { return this.state.tgid; }
  get tg(): ThreadGroupState { return this.kernel.state.threadGroups[this.state.tgid]; }
  get fdTable(): FdTableState { return this.kernel.state.fdTables[this.state.fdTableId]; }

  /** Syscall number at entry (the i386 number for an `int 0x80` call: see `i386`). */
  get sysno(): number { return this.platform.regs32[REG.orig_rax * 2]; }

  /** Register words holding the arguments, and the weight of their high halves (0 for i386: ignored). */
  private argWords: readonly number[] = ARG_WORDS;
  private hiWeight = TWO32;
  /**
   * Whether the syscall being served was made with `int 0x80` (the i386 ABI): arguments come from
   * ebx, ecx, edx, esi, edi, ebp, 32 bits each (zero-extended, as Linux's compat entry takes them).
   */
  get i386(): boolean { return this.hiWeight === 0; }
  set i386(on: boolean) { this.argWords = on ? I386_ARG_WORDS : ARG_WORDS; this.hiWeight = on ? 0 : TWO32; }

  /** Argument i as an unsigned integer (exact below 2^53: addresses, sizes). */
  arg(i: number): number {
    const w = this.argWords[i] * 2;
    const r = this.platform.regs32;
    return r[w] + r[w + 1] * this.hiWeight;
  }
  /** Argument i as a C `int` (low 32 bits, signed): fds, flags, AT_FDCWD. */
  argInt(i: number): number { return this.platform.regs32[this.argWords[i] * 2] | 0; }
  /** Argument i as a C `unsigned int`. */
  argU32(i: number): number { return this.platform.regs32[this.argWords[i] * 2]; }
  /** Argument i as a signed 64-bit value (off_t, long; a 32-bit long for i386). */
  argI64(i: number): number {
    const w = this.argWords[i] * 2;
    const r = this.platform.regs32;
    return this.hiWeight ? r[w] + (r[w + 1] | 0) * TWO32 : r[w] | 0;
  }
  argBig(i: number): bigint { return this.hiWeight ? this.platform.regs[this.argWords[i]] : BigInt(this.platform.regs32[this.argWords[i] * 2]); }
  /** Replace argument i's register (a syscall hook's shorter count); returns the old value to put back. */
  swapArg(i: number, v: bigint): bigint {
    const old = this.platform.regs[this.argWords[i]];
    this.platform.regs[this.argWords[i]] = v;
    return old;
  }

  /** Set the syscall's return value (negative = -errno) in rax. */
  setReturn(v: number): void {
    const r = this.platform.regs32;
    r[REG.rax * 2] = v >>> 0;
    r[REG.rax * 2 + 1] = v < 0 ? (Math.floor(v / TWO32) >>> 0) : Math.floor(v / TWO32);
  }
}

/** Persistence: a task's registers, FP state, masks, waiter, scheduling attributes and timer slack are data; its platform context is new. */
export const taskPersist = persisted<TaskState>({
  kind: 'task',
  records: (g) => byId(g.tasks),
  restore(k) {
    for (const ts of Object.values(k.state.tasks)) {
      if (ts.runState === 'exited') continue;
      const t = k.attachTask(ts, true);
      t.platform.regs.set(new BigUint64Array(new Uint8Array(ts.regs).buffer));
      if (ts.fpState.length) t.platform.setFpState(ts.fpState);
      if (ts.waiter) t.restoredWaiter = ts.waiter;
    }
    return undefined;
  },
  rebuilds: 'a new platform context (stub) per live task, its mappings replayed, registers and XSAVE state set; a blocked task re-enters its syscall with its waiter',
});

/** Persistence: thread groups (credentials, signal dispositions, rlimits, timers as deadlines) are data. */
export const threadGroupPersist = persisted<ThreadGroupState>({
  kind: 'thread-group',
  records: (g) => byId(g.threadGroups),
  rebuilds: 'interval timers are re-armed from their deadlines when the kernel runs (Signals.rearmTimers); CPU time goes on from cpuTimeNs',
});

/** Persistence: fd tables are data (fd -> open file id). */
export const fdTablePersist = persisted<FdTableState>({
  kind: 'fd-table',
  records: (g) => byId(g.fdTables),
  rebuilds: 'nothing: plain data',
});
