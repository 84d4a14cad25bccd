/**
 * The platform interface: how guest code executes. A platform runs a task until it
 * traps (syscall, fault, signal, interruption) and hands back register state; it maps
 * ranges of the kernel's memory file into guest address spaces. It knows nothing of
 * files, signals or the state graph (compare gVisor pkg/sentry/platform/platform.go).
 *
 * Implementations: `platforms/ptrace` (PTRACE_SYSEMU, portable baseline), chosen by name
 * from `platforms/registry.ts`. The seccomp and KVM platforms of later issues implement
 * the same interface in a folder of their own plus one registry line.
 */

/** x86-64 `struct user_regs_struct` (27 × u64) word indices, as <sys/user.h> orders them. */
export const REG = {
  r15: 0, r14: 1, r13: 2, r12: 3, rbp: 4, rbx: 5, r11: 6, r10: 7, r9: 8, r8: 9,
  rax: 10, rcx: 11, rdx: 12, rsi: 13, rdi: 14, orig_rax: 15, rip: 16, cs: 17, eflags: 18,
  rsp: 19, ss: 20, fs_base: 21, gs_base: 22, ds: 23, es: 24, fs: 25, gs: 26,
} as const;
export const REG_COUNT = 27;
/** Syscall argument registers in order (x86-64 syscall ABI: rdi, rsi, rdx, r10, r8, r9). */
export const SYSCALL_ARG_REGS = [REG.rdi, REG.rsi, REG.rdx, REG.r10, REG.r8, REG.r9] as const;

/** Why a task stopped running guest code. */
export type Trap =
  | { kind: 'syscall'; abi?: 'i386' }                // registers hold a syscall at entry (orig_rax = number); abi 'i386': made with `int 0x80`
                                                     // (number and arguments in eax, ebx, ecx, edx, esi, edi, ebp). A call into the [vsyscall]
                                                     // page is reported as the syscall it stands for, rip already at its caller.
  | { kind: 'fault'; signo: number; code: number; addr: number } // synchronous fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP)
  | { kind: 'signal'; signo: number }                // an asynchronous host signal reached the stub
  | { kind: 'interrupted' }                          // the kernel asked the task to stop (Context.interrupt)
  | { kind: 'died'; status: number };                // the host process vanished (wait status)

/** Protection bits, as mmap(2) PROT_*. */
export type Prot = number;

/**
 * A guest address space plus the single execution context running in it (one
 * stub process for the ptrace platform). Addresses are guest virtual addresses
 * in bytes; lengths are bytes, multiples of 4096.
 */
export interface PlatformTask {
  /** Registers as 27 little-endian u64 words (REG indices), read by `switch`, written back before resuming. */
  readonly regs: BigUint64Array;
  /** The same buffer as 54 u32 halves, for cheap integer access on the hot path. */
  readonly regs32: Uint32Array;
  /**
   * Map `len` bytes of the memory file at `fileOffset` at guest address `addr` (MAP_FIXED,
   * shared). With `backingLayer` k ≥ 1, the bytes come from the read-only backing file
   * `backingFileFds[k - 1]` given to `createTask` instead (same offsets; `prot` must not
   * include PROT_WRITE). 0 (the default): the memory file.
   */
  map(addr: number, len: number, prot: Prot, fileOffset: number, backingLayer?: number): void;
  unmap(addr: number, len: number): void;
  protect(addr: number, len: number, prot: Prot): void;
  /** Run guest code until the next trap; `regs` hold the state at the trap. Never blocks the event loop for long. */
  switch(): Promise<Trap>;
  /** Make a running `switch` return `{kind:'interrupted'}` soon (for checkpoints and kills). */
  interrupt(): void;
  /** True while guest code runs (inside `switch`): mapping changes must wait until it stops. */
  isRunning(): boolean;
  /** Extended FP/SSE/AVX state (XSAVE layout, or 512-byte FXSAVE where XSTATE is unavailable). */
  getFpState(): Uint8Array;
  setFpState(state: Uint8Array): void;
  /** CPU time this context has used running guest code (ns); 0 once it is gone. */
  cpuTimeNs(): bigint;
  /**
   * What the host counted for this context (its user/system split, faults, preemptions, peak RSS);
   * zeros once it is gone. With `timesOnly`, the CPU times and faults only (the rest 0), which the
   * host gives at half the cost (/proc/PID/stat's reader: one host file, not two).
   */
  usage(timesOnly?: boolean): HostUsage;
  /**
   * Optional: the pages of guest ranges `ranges` ([address, bytes], page-aligned) the host process
   * behind this context has in its page tables now (touched since they were last mapped), as
   * [address, pages] runs in address order. Undefined where the host cannot tell.
   */
  residentPages?(ranges: ReadonlyArray<readonly [number, number]>): Array<[number, number]> | undefined;
  /**
   * Optional, only while stopped: read a byte of every page of `runs` ([address, pages ≥ 1]) in
   * the host process's own user mode, so its page tables hold them and the guest's first touch of
   * each costs no host fault. Every page must be mapped readable; a fault abandons the rest and
   * returns false.
   */
  touchPages?(runs: ReadonlyArray<readonly [number, number]>): boolean;
  /** Kill the host process behind this task; idempotent. */
  destroy(): void;
}

/**
 * Resource use of one guest context as the host counts it: user and system CPU time (ns, from
 * clock ticks), minor and major page faults, involuntary context switches (preemptions) and the
 * peak and current resident set (kB).
 */
export interface HostUsage { utimeNs: bigint; stimeNs: bigint; minflt: number; majflt: number; nivcsw: number; maxrssKb: number; rssKb: number }

/**
 * The guest virtual addresses a platform can give guests (compare gVisor's
 * platform.MinUserAddress/MaxUserAddress): [min, max) in bytes, less `reserved` ranges
 * [start, end) the platform keeps for itself (the ptrace stub's code page).
 */
export interface GuestAddressRange {
  min: number;
  max: number;
  reserved: ReadonlyArray<readonly [number, number]>;
}

/** Most backing files (page-file layers) a platform task maps from. */
export const MAX_BACKING_LAYERS = 16;

export interface Platform {
  readonly name: string;
  /** Where guest mappings may go; the kernel's address spaces never map outside it. */
  readonly addressRange: GuestAddressRange;
  /**
   * Start a new empty address space with one context. `memoryFileFd` is the host fd of
   * the kernel's memory file, which `map` offsets refer to; `backingFileFds` (at most
   * MAX_BACKING_LAYERS) are read-only files that `map(…, k)` maps from: the page files of a
   * checkpoint and of the checkpoints it inherits pages from.
   */
  createTask(memoryFileFd: number, backingFileFds?: readonly number[]): PlatformTask;
}
