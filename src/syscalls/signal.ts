/**
 * Signal syscalls (man 2 rt_sigaction, rt_sigprocmask, sigaltstack, kill, tgkill).
 * Dispositions and masks are kept in the graph exactly; delivery to guest handlers
 * (rt_sigframe) comes with the signals issue, so a signal sent to a handled disposition
 * is reported as ENOSYS for now, default-fatal signals end the sandbox, and ignored
 * ones are dropped, as Linux would.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { ExitGroup } from '../kernel/kernel.js';
import { syscall } from './table.js';

export const SIGKILL = 9, SIGSTOP = 19, SIGCHLD = 17, SIGCONT = 18, SIGWINCH = 28, SIGURG = 23;
const SIG_DFL = 0, SIG_IGN = 1;
/** Signals whose default action is to ignore (man 7 signal). */
const DEFAULT_IGNORE = new Set([SIGCHLD, SIGCONT, SIGWINCH, SIGURG]);
const CORE = new Set([3, 4, 5, 6, 7, 8, 11, 24, 25, 31]);
const UNBLOCKABLE = (1n << BigInt(SIGKILL - 1)) | (1n << BigInt(SIGSTOP - 1));

function rtSigaction(t: Task): number {
  const sig = t.argInt(0), act = t.arg(1), oact = t.arg(2);
  if (t.arg(3) !== 8) return -E.EINVAL;
  if (sig < 1 || sig > 64) return -E.EINVAL;
  if (act && (sig === SIGKILL || sig === SIGSTOP)) return -E.EINVAL;
  const tg = t.tg;
  let next;
  if (act) {
    const b = t.mm.read(act, 32);
    const v = new DataView(b.buffer, b.byteOffset, 32);
    next = { handler: Number(v.getBigUint64(0, true)), flags: Number(v.getBigUint64(8, true)), restorer: Number(v.getBigUint64(16, true)), mask: v.getBigUint64(24, true) & ~UNBLOCKABLE };
  }
  if (oact) {
    const cur = tg.sigactions[sig] ?? { handler: SIG_DFL, flags: 0, restorer: 0, mask: 0n };
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(cur.handler), true); v.setBigUint64(8, BigInt(cur.flags), true);
    v.setBigUint64(16, BigInt(cur.restorer), true); v.setBigUint64(24, cur.mask, true);
    t.mm.write(oact, b);
  }
  if (next) {
    if (next.handler === SIG_DFL) delete tg.sigactions[sig]; else tg.sigactions[sig] = next;
  }
  return 0;
}

function rtSigprocmask(t: Task): number {
  const how = t.argInt(0), set = t.arg(1), oset = t.arg(2);
  if (t.arg(3) !== 8) return -E.EINVAL;
  const old = t.state.sigmask;
  if (set) {
    if (how < 0 || how > 2) return -E.EINVAL;
    const s = t.mm.readU64(set);
    if (oset) t.mm.writeU64(oset, old);
    const m = how === 0 ? old | s : how === 1 ? old & ~s : s;
    t.state.sigmask = m & ~UNBLOCKABLE;
    return 0;
  }
  if (oset) t.mm.writeU64(oset, old);
  return 0;
}

/** Send `sig` to the caller's own thread group (the only one until fork exists). */
function sendToSelf(t: Task, sig: number): number {
  if (sig === 0) return 0;
  if (sig < 0 || sig > 64) return -E.EINVAL;
  const act = t.tg.sigactions[sig];
  if (sig === SIGKILL || !act || act.handler === SIG_DFL) {
    if (DEFAULT_IGNORE.has(sig)) return 0;
    if (sig === SIGSTOP || sig === 20 || sig === 21 || sig === 22) return 0; // job-control stops: no controlling shell yet
    throw new ExitGroup({ signal: sig, core: CORE.has(sig) });
  }
  if (act.handler === SIG_IGN) return 0;
  return -E.ENOSYS;
}

function sigaltstack(t: Task): number {
  const ss = t.arg(0), old = t.arg(1);
  const st = t.state as typeof t.state & { altStack?: { sp: number; flags: number; size: number } };
  if (old) {
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    const cur = st.altStack ?? { sp: 0, flags: 2 /* SS_DISABLE */, size: 0 };
    v.setBigUint64(0, BigInt(cur.sp), true); v.setInt32(8, cur.flags, true); v.setBigUint64(16, BigInt(cur.size), true);
    t.mm.write(old, b);
  }
  if (ss) {
    const b = t.mm.read(ss, 24);
    const v = new DataView(b.buffer, b.byteOffset, 24);
    const flags = v.getInt32(8, true);
    if (flags & ~(2 | 0x80000000)) return -E.EINVAL;
    const size = Number(v.getBigUint64(16, true));
    if (!(flags & 2) && size < 2048) return -E.ENOMEM;
    st.altStack = { sp: Number(v.getBigUint64(0, true)), flags, size };
  }
  return 0;
}

export const signalSyscalls = [
  syscall('rt_sigaction', 4, rtSigaction),
  syscall('rt_sigprocmask', 4, rtSigprocmask),
  syscall('rt_sigpending', 2, (t) => { if (t.arg(1) > 8) return -E.EINVAL; t.mm.writeU64(t.arg(0), 0n); return 0; }),
  syscall('sigaltstack', 2, sigaltstack),
  syscall('kill', 2, (t) => (t.argInt(0) === t.state.tgid || t.argInt(0) === 0 || t.argInt(0) === -1 || t.argInt(0) === -t.tg.pgid ? sendToSelf(t, t.argInt(1)) : -E.ESRCH), 'partial', 'no delivery to guest handlers yet'),
  syscall('tgkill', 3, (t) => (t.argInt(0) === t.state.tgid && t.argInt(1) === t.tid ? sendToSelf(t, t.argInt(2)) : -E.ESRCH), 'partial', 'no delivery to guest handlers yet'),
  syscall('tkill', 2, (t) => (t.argInt(0) === t.tid ? sendToSelf(t, t.argInt(1)) : -E.ESRCH), 'partial', 'no delivery to guest handlers yet'),
];
