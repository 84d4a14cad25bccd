/**
 * The ptrace platform: each guest address space is a stub process traced with
 * PTRACE_SEIZE (EXITKILL, so no stub outlives the kernel) and run with PTRACE_SYSEMU,
 * so the host kernel never executes a guest syscall. Guest memory is the kernel's
 * memory file mapped MAP_SHARED|MAP_FIXED into the stub by injected mmap calls.
 *
 * Facts it relies on (shared/design/platform-notes.md): registers move through a
 * BigUint64Array passed as `void *`; stubs are started with posix_spawn (never
 * child_process, whose SIGCHLD handler steals ptrace stops) with SETSID and SETSIGDEF;
 * ptrace requests must come from the thread that seized the tracee (the main thread); a stub
 * that keeps running guest code is waited for through SIGCHLD (StopWatcher), never a blocking
 * call per stub.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as libc from '../host/libc.js';
import { GuestAddressRange, HostUsage, MAX_BACKING_LAYERS, Platform, PlatformTask, REG, REG_COUNT, Trap } from '../platform.js';
import { BATCH_ENTRY_BYTES, STUB_BACKING_FD, STUB_BASE, STUB_BATCH_ADDR, STUB_BATCH_TABLE_ADDR, STUB_BATCH_TABLE_BYTES, STUB_BATCH_TABLE_FD, STUB_MEMFD, STUB_SETUP_FAILED, STUB_SYSCALL_ADDR, STUB_TOUCH_ADDR, STUB_TOUCH_DONE_ADDR, TOUCH_ENTRY_BYTES, stubElf } from './stub.js';

const PTRACE_CONT = 7, PTRACE_KILL = 8, PTRACE_GETREGS = 12, PTRACE_SETREGS = 13;
const PTRACE_SYSEMU = 31, PTRACE_SEIZE = 0x4206, PTRACE_INTERRUPT = 0x4207;
const PTRACE_GETREGSET = 0x4204, PTRACE_SETREGSET = 0x4205, PTRACE_GETSIGINFO = 0x4202;
const PTRACE_GETFPREGS = 14, PTRACE_SETFPREGS = 15;
const PTRACE_O_TRACESYSGOOD = 1, PTRACE_O_EXITKILL = 0x100000;
const PTRACE_EVENT_STOP = 128;
const NT_X86_XSTATE = 0x202;
const SIGILL = 4, SIGTRAP = 5, SIGBUS = 7, SIGSEGV = 11, SIGSTOP = 19, SIGKILL = 9;
const SYS_mmap = 9, SYS_mprotect = 10, SYS_munmap = 11;
const SIGSYS = 31, SYS_SECCOMP = 1;
const PTRACE_GET_SYSCALL_INFO = 0x420e, AUDIT_ARCH_I386 = 0x40000003;
/** The [vsyscall] page (fixed by the x86-64 ABI): gettimeofday at +0, time at +0x400, getcpu at +0x800. */
const VSYSCALL_BASE = 0xffffffffff600000n;

/** How many non-blocking waitpid polls before handing the wait to a worker thread. */
const SPIN_POLLS = 64;

export class PtraceError extends Error {}

let stubPath: string | undefined;
/** Write the stub ELF once per kernel process (to a memfd, reached through /proc/self/fd). */
function stubExecutable(): string {
  if (stubPath) return stubPath;
  let fd = libc.memfdCreate('snapvisor-stub', libc.MFD_CLOEXEC | libc.MFD_EXEC);
  if (fd < 0) fd = libc.memfdCreate('snapvisor-stub', libc.MFD_CLOEXEC); // kernels without MFD_EXEC
  if (fd < 0) throw new PtraceError(`memfd_create failed: errno ${libc.errno()}`);
  fs.writeSync(fd, stubElf());
  stubPath = `/proc/${process.pid}/fd/${fd}`;
  return stubPath;
}

function spawnStub(memoryFileFd: number, backingFileFds: readonly number[] = []): number {
  // The stub's fds are STUB_MEMFD, then STUB_BACKING_FD + i for backing layer i + 1, dup2'ed in
  // that order: a source fd that an earlier dup2 already overwrote would be lost.
  if (backingFileFds.length > MAX_BACKING_LAYERS) throw new PtraceError(`${backingFileFds.length} backing files: at most ${MAX_BACKING_LAYERS}`);
  backingFileFds.forEach((fd, i) => {
    if (fd >= STUB_MEMFD && fd < STUB_BACKING_FD + i) {
      throw new PtraceError(`memory file fds ${[memoryFileFd, ...backingFileFds].join('/')} collide with the stub's fds ${STUB_MEMFD}-${STUB_BACKING_FD + backingFileFds.length - 1}`);
    }
  });
  const fa = new Uint8Array(256), attr = new Uint8Array(512), sigs = new Uint8Array(128), mask = new Uint8Array(128);
  libc.posixSpawnFileActionsInit(fa);
  libc.posixSpawnFileActionsAddDup2(fa, memoryFileFd, STUB_MEMFD);
  backingFileFds.forEach((fd, i) => libc.posixSpawnFileActionsAddDup2(fa, fd, STUB_BACKING_FD + i));
  // Numbered ≥ 100 (batchTable), so no dup2 above has overwritten it.
  libc.posixSpawnFileActionsAddDup2(fa, batchTable().fd, STUB_BATCH_TABLE_FD);
  libc.posixSpawnattrInit(attr);
  libc.sigfillset(sigs);
  libc.sigemptyset(mask);
  libc.posixSpawnattrSetsigdefault(attr, sigs);
  libc.posixSpawnattrSetsigmask(attr, mask);
  libc.posixSpawnattrSetflags(attr, libc.POSIX_SPAWN_SETSID | libc.POSIX_SPAWN_SETSIGDEF | libc.POSIX_SPAWN_SETSIGMASK);
  const pid = [0];
  const exe = stubExecutable();
  const rc = libc.posixSpawn(pid, exe, fa, attr, ['snapvisor-stub', null], [null]);
  libc.posixSpawnFileActionsDestroy(fa);
  libc.posixSpawnattrDestroy(attr);
  if (rc !== 0) throw new PtraceError(`posix_spawn of the stub failed: errno ${rc}`);
  return pid[0];
}

/** Bytes from STUB_BASE kept for the stub (its code page and batch table): no guest mapping may use them. */
const STUB_RESERVED_BYTES = 0x10_0000;
/** Entries one batch can hold (STUB_BATCH_TABLE_BYTES / BATCH_ENTRY_BYTES). */
const BATCH_CAPACITY = Math.floor(STUB_BATCH_TABLE_BYTES / BATCH_ENTRY_BYTES);
/** 64-bit words of one batch entry. */
const BATCH_ENTRY_WORDS = BATCH_ENTRY_BYTES / 8;
/** The touch loop reads its table where the batch loop does. */
const STUB_TOUCH_TABLE_ADDR = STUB_BATCH_TABLE_ADDR;
const ARG_REGS = [REG.rdi, REG.rsi, REG.rdx, REG.r10, REG.r8, REG.r9];
let theBatchTable: { fd: number; words: BigUint64Array } | undefined;
/**
 * The memfd behind every stub's batch table (stub.ts STUB_BATCH_TABLE_ADDR), and the platform's
 * writable view of it, made on first use. One for all stubs: the tracer runs one batch at a time.
 */
function batchTable(): { fd: number; words: BigUint64Array } {
  if (theBatchTable) return theBatchTable;
  const fd0 = libc.memfdCreate('snapvisor-stub-batch', libc.MFD_CLOEXEC);
  if (fd0 < 0) throw new PtraceError(`memfd_create for the stub's batch table: errno ${libc.errno()}`);
  const fd = libc.dupfdCloexec(fd0, 100);
  libc.close(fd0);
  if (fd < 0 || libc.ftruncate(fd, STUB_BATCH_TABLE_BYTES) < 0) throw new PtraceError(`the stub's batch table: errno ${libc.errno()}`);
  const ptr = libc.mmap(null, STUB_BATCH_TABLE_BYTES, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0);
  if (libc.pointerIsFailed(ptr)) throw new PtraceError(`mmap of the stub's batch table: errno ${libc.errno()}`);
  theBatchTable = { fd, words: new BigUint64Array(libc.view(ptr, STUB_BATCH_TABLE_BYTES)) };
  return theBatchTable;
}

/** Room for the largest XSAVE area (AMX makes it ~11 KiB); SETREGSET wants the exact size. */
const XSTATE_MAX = 16384;

let pinned = false;
/**
 * Pin the kernel's main thread (the tracer) to one CPU; stubs inherit it at spawn.
 * Measured here: a trapped syscall costs ~4.5 µs when tracer and stub share a CPU
 * and 16–70 µs when the wake-up crosses CPUs of this VM (npm run bench shows it).
 * SNAPVISOR_NO_PIN=1 turns it off.
 */
/** CPU masks: every CPU we may use, and the tracer's own (undefined when not pinned). */
let allCpus: Uint8Array | undefined;
let tracerCpu: Uint8Array | undefined;

function pinToOneCpu(): void {
  if (pinned || process.env.SNAPVISOR_NO_PIN) return;
  pinned = true;
  const mask = new Uint8Array(128);
  if (libc.schedGetaffinity(0, mask.length, mask) < 0) return;
  const cpus: number[] = [];
  for (let i = 0; i < mask.length * 8; i++) if (mask[i >> 3] & (1 << (i & 7))) cpus.push(i);
  if (cpus.length < 2) return;
  allCpus = new Uint8Array(mask);
  const cpu = cpus[process.pid % cpus.length];
  mask.fill(0);
  mask[cpu >> 3] |= 1 << (cpu & 7);
  tracerCpu = new Uint8Array(mask);
  libc.schedSetaffinity(0, mask.length, mask);
}

/**
 * Stubs that trap often stay on the tracer's CPU (cheap wake-ups); a stub that runs guest
 * code for milliseconds between traps is let onto every CPU, so compute-bound tasks run in
 * parallel. It comes back after this many quick traps in a row.
 */
const QUICK_TRAPS_TO_REPIN = 16;
/** Guest code running this long between traps (ms) counts as compute. */
const SPREAD_AFTER_MS = 2;

/**
 * Waits for the next stop of stubs that are running guest code, for any number of them at once:
 * the host sends the tracer SIGCHLD whenever a tracee stops or dies, and each SIGCHLD (plus a slow
 * sweep, in case one was coalesced away before a stub was watched) polls every watched stub with
 * waitpid(WNOHANG). No host call is left blocking on a worker thread per stub, so there is no cap
 * on runnable tasks (koffi allows 256 concurrent async calls, and they would queue on libuv's
 * 4-thread pool besides). Only our own stubs' pids are waited for; libuv's children are not touched.
 */
class StopWatcher {
  private readonly watched = new Map<number, (status: number) => void>();
  private readonly status = new Int32Array(1);
  private listening = false;
  private sweepTimer?: NodeJS.Timeout;
  /** Safety sweep period (ms) while any stub is watched. */
  private static readonly SWEEP_MS = 20;

  /** Resolves with the wait status of `pid`'s next stop (or death). */
  watch(pid: number): Promise<number> {
    if (!this.listening) {
      this.listening = true;
      process.on('SIGCHLD', () => this.sweep());
    }
    return new Promise<number>((resolve) => {
      this.watched.set(pid, resolve);
      // A stop that came before we watched: its SIGCHLD may already be handled.
      this.poll(pid, resolve);
      if (this.watched.size && !this.sweepTimer) {
        this.sweepTimer = setInterval(() => this.sweep(), StopWatcher.SWEEP_MS);
        this.sweepTimer.unref();
      }
    });
  }

  private poll(pid: number, resolve: (status: number) => void): void {
    for (;;) {
      const r = libc.waitpid(pid, this.status, libc.WNOHANG | libc.__WALL);
      if (r === pid) break;
      if (r === 0) return;
      const e = libc.errno();
      if (e === 4 /* EINTR */) continue;
      this.status[0] = 0; // ECHILD: reaped elsewhere (destroyed); report it as gone
      break;
    }
    this.watched.delete(pid);
    resolve(this.status[0]);
  }

  private sweep(): void {
    for (const [pid, resolve] of this.watched) this.poll(pid, resolve);
    if (!this.watched.size && this.sweepTimer) { clearInterval(this.sweepTimer); this.sweepTimer = undefined; }
  }
}
const stopWatcher = new StopWatcher();

/** Stubs killed by destroy() and not reaped yet. */
const dyingStubs = new Set<number>();
/**
 * Reap the killed stub `pid` when the host has torn it down (SIGCHLD, through stopWatcher), and
 * at the latest when this process exits: a stub left unreaped would be a zombie adopted by init,
 * which on some hosts never reaps.
 */
function reapLater(pid: number): void {
  if (!dyingStubs.size) process.once('exit', reapDyingStubs);
  dyingStubs.add(pid);
  const reaped = (status: number): void => {
    // A stop reported before the death (an interrupt not yet collected): the death comes next.
    if ((status & 0xff) === 0x7f) { void stopWatcher.watch(pid).then(reaped); return; }
    dyingStubs.delete(pid);
    if (!dyingStubs.size) process.removeListener('exit', reapDyingStubs);
  };
  void stopWatcher.watch(pid).then(reaped);
}
function reapDyingStubs(): void {
  const status = new Int32Array(1);
  for (const pid of dyingStubs) while (libc.waitpid(pid, status, libc.__WALL) < 0 && libc.errno() === 4 /* EINTR */);
  dyingStubs.clear();
}

class PtraceTask implements PlatformTask {
  readonly regs = new BigUint64Array(REG_COUNT);
  readonly regs32 = new Uint32Array(this.regs.buffer);
  private readonly status = new Int32Array(1);
  private readonly savedRegs = new BigUint64Array(REG_COUNT);
  private dead = false;
  private interruptRequested = false;
  private running = false;
  private readonly iov = new BigUint64Array(2);
  private readonly xstate = libc.nativeBuffer(XSTATE_MAX);
  /** Whether the stub may run on every CPU (it computes) rather than only the tracer's. */
  private spread = false;
  private quickTraps = 0;
  private useXstate = true;

  constructor(readonly pid: number) {}

  static start(memoryFileFd: number, backingFileFds?: readonly number[]): PtraceTask {
    let pid = 0;
    let t: PtraceTask;
    // Wait until the stub has stopped itself, then seize it. An exec that dies of SIGSEGV before
    // the stub's first instruction is the host's stack, placed at random (16 GiB of range below
    // the top of the address space), covering STUB_BASE: the ELF's fixed mapping then fails past
    // exec's point of no return (about 1 exec in 10^5; CI's syscall fuzzing met it once). Each
    // exec draws a new stack address, so spawn again.
    for (let attempt = 1; ; attempt++) {
      pid = spawnStub(memoryFileFd, backingFileFds);
      t = new PtraceTask(pid);
      const st = t.status;
      let r: number;
      do r = libc.waitpid(pid, st, libc.WUNTRACED); while (r < 0 && libc.errno() === 4 /* EINTR */);
      if (r === pid && (st[0] & 0xff) === 0x7f) break;
      // Not stopped: it died, and that waitpid reaped it. Its pid may be another process's by
      // now (pid_max wraps within minutes on a busy host), so it is not signalled.
      if (r !== pid) { const e = libc.errno(); libc.kill(pid, SIGKILL); throw new PtraceError(`waitpid for the stub: errno ${e}`); }
      if ((st[0] & 0x7f) === SIGSEGV && attempt < 4) continue;
      if ((st[0] & 0x7f) === 0 && (st[0] >> 8) === STUB_SETUP_FAILED) throw new PtraceError('stub could not map its batch table');
      throw new PtraceError(`stub did not stop (status 0x${st[0].toString(16)})`);
    }
    if (libc.ptraceInt(PTRACE_SEIZE, pid, 0, PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD) < 0) {
      const e = libc.errno();
      libc.kill(pid, SIGKILL);
      throw new PtraceError(`PTRACE_SEIZE failed: errno ${e} (is ptrace allowed here? see /proc/sys/kernel/yama/ptrace_scope)`);
    }
    // The stub prepared itself before it stopped (stub.ts SETUP): nothing to inject.
    t.waitStop();
    t.getRegs();
    return t;
  }

  private getRegs(): void {
    if (libc.ptraceBuf(PTRACE_GETREGS, this.pid, 0, this.regs) < 0) throw new PtraceError(`PTRACE_GETREGS: errno ${libc.errno()}`);
  }
  private setRegs(): void {
    if (libc.ptraceBuf(PTRACE_SETREGS, this.pid, 0, this.regs) < 0) throw new PtraceError(`PTRACE_SETREGS: errno ${libc.errno()}`);
  }

  /** Blocking wait for the next stop of a tracee we know is about to stop. */
  private waitStop(): number {
    for (;;) {
      const r = libc.waitpid(this.pid, this.status, libc.__WALL);
      if (r === this.pid) return this.status[0];
      if (libc.errno() !== 4 /* EINTR */) throw new PtraceError(`waitpid: errno ${libc.errno()}`);
    }
  }

  /**
   * Run one host syscall inside the stub (the `syscall; int3` site), preserving the
   * guest's registers. Returns the raw result (negative errno on failure).
   */
  inject(nr: number, args: number[]): number {
    this.flushPending();
    return this.runInStub(STUB_SYSCALL_ADDR, (r) => {
      r[REG.rax] = BigInt(nr);
      for (let i = 0; i < ARG_REGS.length; i++) r[ARG_REGS[i]] = BigInt.asUintN(64, BigInt(args[i] ?? 0));
    }, `injected syscall ${nr}`, () => Number(BigInt.asIntN(64, this.regs[REG.rax])));
  }

  /**
   * Run the stub's code at `rip` with registers set by `setup` until its int3, read the result
   * with `result` (from this.regs), and put the guest's registers back. `what` names the work in
   * errors (PtraceError: the stub died or its code page faulted).
   */
  private runInStub<T>(rip: number, setup: (r: BigUint64Array) => void, what: string, result: () => T, onFault?: () => boolean): T {
    this.savedRegs.set(this.regs);
    const r = this.regs;
    setup(r);
    r[REG.rip] = BigInt(rip);
    r[REG.orig_rax] = 0xffffffffffffffffn; // not in a syscall: no restart games on resume
    this.setRegs();
    if (libc.ptraceInt(PTRACE_CONT, this.pid, 0, 0) < 0) throw new PtraceError(`PTRACE_CONT: errno ${libc.errno()}`);
    for (;;) {
      const st = this.waitStop();
      if ((st & 0xff) !== 0x7f) { this.dead = true; throw new PtraceError(`stub died during ${what} (status 0x${st.toString(16)})`); }
      const sig = (st >> 8) & 0xff;
      if (sig === SIGTRAP && (st >> 16) === 0) break;
      if ((st >> 16) === 0 && (sig === SIGSEGV || sig === SIGBUS || sig === SIGILL)) {
        if (onFault?.()) { libc.ptraceInt(PTRACE_CONT, this.pid, 0, 0); continue; }
        if (!this.faultInStubPages()) {
          // A guest fault still pending from before: the stub was interrupted (PTRACE_INTERRUPT,
          // a mapping change while it ran) just as guest code faulted, and the event stop came
          // first. Dropped: the guest's instruction runs again when it resumes and faults again
          // if it still should. (This was the rare "injection site faulted" with threads.)
          libc.ptraceInt(PTRACE_CONT, this.pid, 0, 0);
          continue;
        }
        // The stub's own code or batch table faulted (its page is gone): resuming would fault forever.
        this.destroy();
        throw new PtraceError(`stub's injection site faulted (signal ${sig}) during ${what}`);
      }
      // A group-stop or other event: keep going until the int3.
      libc.ptraceInt(PTRACE_CONT, this.pid, 0, 0);
    }
    this.getRegs();
    const res = result();
    this.regs.set(this.savedRegs);
    this.setRegs();
    return res;
  }

  /** Whether the signal the stub is stopped with faulted inside the stub's reserved megabyte (its code, its batch table). */
  private faultInStubPages(): boolean {
    const si = new BigUint64Array(16);
    if (libc.ptraceBuf(PTRACE_GETSIGINFO, this.pid, 0, si) < 0) return true;
    const addr = Number(si[2]); // si_addr
    return addr >= STUB_BASE && addr < STUB_BASE + STUB_RESERVED_BYTES;
  }

  /**
   * Mapping changes waiting for the next time the stub runs (flat: BATCH_ENTRY_WORDS numbers per
   * syscall). The stub's mappings matter only to the guest code it runs (the kernel reaches guest
   * memory through the memory file), so they are sent in one batch before it runs again: one
   * ptrace round trip for a restore's hundreds of mmaps or a fault's remap of several VMAs.
   */
  private readonly pending: number[] = [];

  private queue(nr: number, args: number[]): void {
    const p = this.pending;
    p.push(nr);
    for (let i = 0; i < 6; i++) p.push(args[i] ?? 0);
    if (p.length >= BATCH_CAPACITY * BATCH_ENTRY_WORDS) this.flushPending();
  }

  /** Run the queued mapping syscalls in the stub (its batch loop); PtraceError names the first that failed. */
  flushPending(): void {
    const p = this.pending;
    if (!p.length || this.dead) { p.length = 0; return; }
    const n = p.length / BATCH_ENTRY_WORDS;
    const words = batchTable().words;
    for (let i = 0; i < p.length; i++) words[i] = BigInt(p[i]);
    const left = this.runInStub(STUB_BATCH_ADDR, (r) => { r[REG.r12] = BigInt(STUB_BATCH_TABLE_ADDR); r[REG.r13] = BigInt(n); },
      `a batch of ${n} mapping syscalls`, () => [Number(this.regs[REG.r13]), Number(BigInt.asIntN(64, this.regs[REG.rax]))]);
    const entries = p.splice(0);
    const [remaining, res] = left;
    if (remaining !== 0) {
      const e = entries.slice((n - remaining) * BATCH_ENTRY_WORDS, (n - remaining + 1) * BATCH_ENTRY_WORDS);
      throw new PtraceError(`injected syscall ${e[0]}(${e.slice(1).map((a) => '0x' + a.toString(16)).join(', ')}) failed: errno ${-res}`);
    }
  }

  residentPages(ranges: ReadonlyArray<readonly [number, number]>): Array<[number, number]> | undefined {
    if (this.dead) return undefined;
    const out: Array<[number, number]> = [];
    let fd: number;
    try { fd = fs.openSync(`/proc/${this.pid}/pagemap`, 'r'); } catch { return undefined; }
    try {
      const PAGES = 4096, buf = new BigUint64Array(PAGES);
      const bytes = new Uint8Array(buf.buffer);
      for (const [start, len] of ranges) {
        for (let a = start; a < start + len; a += PAGES * 4096) {
          const n = Math.min(PAGES, (start + len - a) / 4096);
          const got = fs.readSync(fd, bytes, 0, n * 8, (a / 4096) * 8) / 8;
          for (let i = 0; i < got; i++) {
            if (!(buf[i] >> 63n)) continue; // bit 63: present
            const page = a + i * 4096, last = out[out.length - 1];
            if (last && last[0] + last[1] * 4096 === page) last[1]++;
            else out.push([page, 1]);
          }
        }
      }
    } catch {
      return undefined;
    } finally {
      fs.closeSync(fd);
    }
    return out;
  }

  touchPages(runs: ReadonlyArray<readonly [number, number]>): boolean {
    if (this.dead || this.running) return false;
    this.flushPending();
    const per = STUB_BATCH_TABLE_BYTES / TOUCH_ENTRY_BYTES, words = batchTable().words;
    for (let i = 0; i < runs.length; i += per) {
      const part = runs.slice(i, i + per).filter(([, n]) => n > 0);
      if (!part.length) continue;
      part.forEach(([a, n], j) => { words[2 * j] = BigInt(a); words[2 * j + 1] = BigInt(n); });
      let faulted = false;
      this.runInStub(STUB_TOUCH_ADDR, (r) => { r[REG.r12] = BigInt(STUB_TOUCH_TABLE_ADDR); r[REG.r13] = BigInt(part.length); }, `a touch of ${part.length} page runs`, () => undefined, () => {
        // A page of the loop faulted: give up the rest (resume at its final int3).
        this.getRegs();
        const rip = Number(this.regs[REG.rip]);
        if (rip < STUB_TOUCH_ADDR || rip >= STUB_TOUCH_DONE_ADDR) return false;
        this.regs[REG.rip] = BigInt(STUB_TOUCH_DONE_ADDR);
        this.setRegs();
        faulted = true;
        return true;
      });
      if (faulted) return false;
    }
    return true;
  }

  map(addr: number, len: number, prot: number, fileOffset: number, backingLayer = 0): void {
    this.queue(SYS_mmap, [addr, len, prot, libc.MAP_SHARED | libc.MAP_FIXED, backingLayer > 0 ? STUB_BACKING_FD + backingLayer - 1 : STUB_MEMFD, fileOffset]);
  }
  unmap(addr: number, len: number): void { this.queue(SYS_munmap, [addr, len]); }
  protect(addr: number, len: number, prot: number): void { this.queue(SYS_mprotect, [addr, len, prot]); }

  async switch(): Promise<Trap> {
    if (this.dead) return { kind: 'died', status: 0 };
    this.flushPending();
    for (;;) {
      // ESRCH: the stub was killed from outside while its task waited in the kernel: it died.
      if (libc.ptraceBuf(PTRACE_SETREGS, this.pid, 0, this.regs) < 0) {
        if (libc.errno() === 3 /* ESRCH */) { this.dead = true; libc.waitpid(this.pid, this.status, libc.WNOHANG | libc.__WALL); return { kind: 'died', status: 0 }; }
        throw new PtraceError(`PTRACE_SETREGS: errno ${libc.errno()}`);
      }
      if (libc.ptraceInt(PTRACE_SYSEMU, this.pid, 0, 0) < 0) throw new PtraceError(`PTRACE_SYSEMU: errno ${libc.errno()}`);
      this.running = true;
      let st: number | undefined;
      for (let i = 0; i < SPIN_POLLS; i++) {
        if (libc.waitpid(this.pid, this.status, libc.WNOHANG | libc.__WALL) === this.pid) { st = this.status[0]; break; }
        libc.schedYield(); // the stub shares our CPU: give it the CPU rather than spin against it
      }
      if (st === undefined) {
        this.quickTraps = 0;
        // Guest code still running after a few milliseconds is compute: let it onto every CPU.
        const spreadTimer = !this.spread && allCpus ? setTimeout(() => {
          if (this.running && !this.dead && allCpus) { this.spread = true; libc.schedSetaffinity(this.pid, allCpus.length, allCpus); }
        }, SPREAD_AFTER_MS) : undefined;
        st = await this.waitAsync();
        if (spreadTimer) clearTimeout(spreadTimer);
      } else if (this.spread && ++this.quickTraps >= QUICK_TRAPS_TO_REPIN && tracerCpu) {
        this.spread = false;
        libc.schedSetaffinity(this.pid, tracerCpu.length, tracerCpu);
      }
      this.running = false;
      if ((st & 0xff) !== 0x7f) { this.dead = true; return { kind: 'died', status: st }; }
      const sig = (st >> 8) & 0xff, event = st >> 16;
      if (libc.ptraceBuf(PTRACE_GETREGS, this.pid, 0, this.regs) < 0) { this.dead = true; return { kind: 'died', status: st }; } // killed meanwhile
      if (sig === (SIGTRAP | 0x80)) {
        if (this.interruptRequested) { this.interruptRequested = false; this.pendingInterruptAck = true; }
        // The `syscall` instruction leaves rcx = rip and r11 = rflags; anything else may be `int 0x80`
        // (the i386 ABI): the host tells which (PTRACE_GET_SYSCALL_INFO), only in that rare case.
        const r = this.regs32; // 32-bit halves: no BigInt on the hot path
        const same = (a: number, b: number) => r[a * 2] === r[b * 2] && r[a * 2 + 1] === r[b * 2 + 1];
        if ((!same(REG.rcx, REG.rip) || !same(REG.r11, REG.eflags)) && this.syscallArch() === AUDIT_ARCH_I386) return { kind: 'syscall', abi: 'i386' };
        return { kind: 'syscall' };
      }
      if (event === PTRACE_EVENT_STOP) {
        if (this.interruptRequested || this.pendingInterruptAck) {
          const wasAck = this.pendingInterruptAck && !this.interruptRequested;
          this.interruptRequested = false; this.pendingInterruptAck = false;
          if (!wasAck) return { kind: 'interrupted' };
        }
        continue; // a stale interrupt stop or group-stop: resume
      }
      if (sig === SIGSTOP) continue; // stop signal aimed at the stub: swallow it
      const info = this.siginfo(sig);
      if (info) return info;
      return { kind: 'signal', signo: sig };
    }
  }
  private pendingInterruptAck = false;

  /** The audit arch of the syscall the stub stopped at (AUDIT_ARCH_X86_64 or AUDIT_ARCH_I386), or 0. */
  private syscallArch(): number {
    const info = new Uint32Array(22); // struct ptrace_syscall_info: op (u8), pad, arch (u32), …
    if (libc.ptraceBuf(PTRACE_GET_SYSCALL_INFO, this.pid, info.byteLength, info) < 0) return 0;
    return info[1];
  }

  private siginfo(sig: number): Trap | undefined {
    const si = new BigUint64Array(16);
    if (libc.ptraceBuf(PTRACE_GETSIGINFO, this.pid, 0, si) < 0) return undefined;
    const s32 = new Int32Array(si.buffer);
    const code = s32[2];
    if (sig === SIGSYS && code === SYS_SECCOMP && si[2] >= VSYSCALL_BASE && si[2] < VSYSCALL_BASE + 0x1000n) {
      // A vsyscall our filter trapped: the host has already emulated its `ret` (rip is the caller's,
      // rsp popped); hand it to the kernel as the syscall it stands for (si_syscall), then resume
      // without the SIGSYS.
      this.regs[REG.orig_rax] = BigInt(s32[6]);
      return { kind: 'syscall' };
    }
    // si_code > 0 means the kernel raised it for a fault in the stub (SEGV_MAPERR, BUS_ADRERR, …).
    if (code > 0 && [4, 5, 7, 8, 11].includes(sig)) return { kind: 'fault', signo: sig, code, addr: Number(si[2]) };
    return undefined;
  }

  private waitAsync(): Promise<number> {
    return stopWatcher.watch(this.pid);
  }

  isRunning(): boolean { return this.running && !this.dead; }

  interrupt(): void {
    if (this.dead) return;
    this.interruptRequested = true;
    if (this.running) libc.ptraceInt(PTRACE_INTERRUPT, this.pid, 0, 0);
  }

  getFpState(): Uint8Array {
    if (this.useXstate) {
      this.iov[0] = this.xstate.address;
      this.iov[1] = BigInt(XSTATE_MAX);
      if (libc.ptraceBuf(PTRACE_GETREGSET, this.pid, NT_X86_XSTATE, this.iov) >= 0) return this.xstate.bytes.slice(0, Number(this.iov[1]));
      this.useXstate = false;
    }
    const fx = new Uint8Array(512);
    if (libc.ptraceBuf(PTRACE_GETFPREGS, this.pid, 0, fx) < 0) throw new PtraceError(`PTRACE_GETFPREGS: errno ${libc.errno()}`);
    return fx;
  }

  setFpState(state: Uint8Array): void {
    if (state.length !== 512) {
      if (state.length > XSTATE_MAX) throw new PtraceError(`FP state of ${state.length} bytes is larger than this host's XSAVE area`);
      this.xstate.bytes.set(state);
      this.iov[0] = this.xstate.address;
      this.iov[1] = BigInt(state.length);
      if (libc.ptraceBuf(PTRACE_SETREGSET, this.pid, NT_X86_XSTATE, this.iov) < 0) throw new PtraceError(`PTRACE_SETREGSET(XSTATE): errno ${libc.errno()}`);
      return;
    }
    if (libc.ptraceBuf(PTRACE_SETFPREGS, this.pid, 0, new Uint8Array(state)) < 0) throw new PtraceError(`PTRACE_SETFPREGS: errno ${libc.errno()}`);
  }

  cpuTimeNs(): bigint {
    if (this.dead) return 0n;
    // CPUCLOCK_SCHED of another process: clockid = (~pid << 3) | 2 (include/linux/posix-timers.h).
    return libc.clockGettime((~this.pid << 3) | 2, this.cpuTs) === 0 ? this.cpuTs[0] * 1_000_000_000n + this.cpuTs[1] : 0n;
  }
  private readonly cpuTs = new BigInt64Array(2);

  /** From the stub's /proc/PID/stat (minflt, majflt, utime, stime in clock ticks of 10 ms) and, unless `timesOnly`, /proc/PID/status (VmHWM, VmRSS, nonvoluntary_ctxt_switches). */
  usage(timesOnly = false): HostUsage {
    const none: HostUsage = { utimeNs: 0n, stimeNs: 0n, minflt: 0, majflt: 0, nivcsw: 0, maxrssKb: 0, rssKb: 0 };
    if (this.dead) return none;
    try {
      const stat = readProcText(`/proc/${this.pid}/stat`);
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
      const status = timesOnly ? '' : readProcText(`/proc/${this.pid}/status`);
      const num = (re: RegExp) => Number(re.exec(status)?.[1] ?? 0);
      return {
        minflt: Number(f[7]), majflt: Number(f[9]),
        utimeNs: BigInt(f[11]) * 10_000_000n, stimeNs: BigInt(f[12]) * 10_000_000n,
        maxrssKb: num(/^VmHWM:\s+(\d+) kB/m), rssKb: num(/^VmRSS:\s+(\d+) kB/m), nivcsw: num(/^nonvoluntary_ctxt_switches:\s+(\d+)/m),
      };
    } catch {
      return none;
    }
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    libc.kill(this.pid, SIGKILL);
    // Reaped without waiting here: after SIGKILL a stopped stub never runs guest code again, but
    // the host takes milliseconds to tear down its mappings (~37 ms for a 240 MiB python3 here),
    // which a checkpoint's answer or a parent's wait4 need not wait for. A switch() in flight
    // (running) already waits for it and reaps it.
    if (!this.running) reapLater(this.pid);
  }
}

/** One read buffer for the stubs' /proc files (a status file is ~1.5 KiB). */
const procBuf = Buffer.allocUnsafe(8192);

/**
 * The text of a small host /proc file, latin1: open, reads into one reused buffer, close. Not
 * fs.readFileSync, whose fstat, buffer and string steps made it ~65 µs a file here, read for
 * every guest read of /proc/PID/stat and status. Throws what open or read throws.
 */
function readProcText(path: string): string {
  const fd = fs.openSync(path, 'r');
  try {
    let got = 0;
    for (let n; got < procBuf.length && (n = fs.readSync(fd, procBuf, got, procBuf.length - got, null)) > 0;) got += n;
    return procBuf.toString('latin1', 0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** The PTRACE_SYSEMU platform (portable; needs ptrace permission over our own children). */
/** Guest user addresses on x86-64 with 4-level paging, less the stub's reserved megabyte. */
const PTRACE_ADDRESS_RANGE: GuestAddressRange = { min: 0, max: 0x7fff_ffff_f000, reserved: [[STUB_BASE, STUB_BASE + STUB_RESERVED_BYTES]] };

export class PtracePlatform implements Platform {
  readonly name = 'ptrace';
  readonly addressRange = PTRACE_ADDRESS_RANGE;
  constructor() { pinToOneCpu(); }
  createTask(memoryFileFd: number, backingFileFds?: readonly number[]): PlatformTask & { inject(nr: number, args: number[]): number; flushPending(): void } {
    return PtraceTask.start(memoryFileFd, backingFileFds);
  }
}
void os; void path; void PTRACE_KILL;
