/**
 * Pseudo-terminals (man 7 pty, man 4 pts; drivers/tty/pty.c, n_tty.c): /dev/ptmx opens a
 * master, /dev/pts/N its slave. A small line discipline sits between them: canonical
 * input with erase/kill/EOF, echo, ICRNL, ONLCR output, ISIG (^C, ^\, ^Z signal the
 * terminal's foreground process group), raw mode with VMIN ≥ 1. All of it is data in the
 * graph (queues, termios, window size), so a pty checkpoints like a pipe.
 */
import { byId, persisted } from '../kernel/persist.js';
import type { PtyFile } from '../files/pty.js';
import { filter } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState, PtyState } from '../kernel/state.js';
import type { GraphOp, Writable } from '../kernel/events.js';
import { ECHO, ECHOCTL, ECHOE, ECHOK, ECHOKE, ECHONL, ICANON, ICRNL, IEXTEN, ISIG, IXON, ONLCR, OPOST, O_NONBLOCK, PROT_READ, PROT_WRITE, SIGINT, SIGQUIT, SIGTSTP, VEOF, VEOL, VERASE, VINTR, VKILL, VMIN, VQUIT, VSUSP } from '../abi/linux.js';

/** Characters one side may have queued (bytes); writers block past it. */
const QUEUE_LIMIT = 65536;

/** Linux's tty_std_termios for a new pty (struct termios, 36 bytes). */
function defaultTermios(): Uint8Array {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  v.setUint32(0, ICRNL | IXON, true);
  v.setUint32(4, OPOST | ONLCR, true);
  v.setUint32(8, 0o2277 /* B38400|CS8|CREAD|HUPCL */, true);
  v.setUint32(12, ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN, true);
  b.set([3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0], 17);
  return b;
}

const flag = (p: PtyState, off: number) => new DataView(p.termios.buffer, p.termios.byteOffset, 36).getUint32(off, true);
const cc = (p: PtyState, i: number) => p.termios[17 + i];

function append(q: Uint8Array, bytes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(q.length + bytes.length);
  out.set(q); out.set(bytes, q.length);
  return out;
}

export class Ptys {
  constructor(private readonly k: Kernel) {}

  private get table(): Readonly<Record<number, PtyState>> {
    if (!this.k.state.ptys) this.k.emit({ type: 'pty.init' }, [['set', ['ptys'], {}]]);
    return this.k.state.ptys!;
  }

  /**
   * Change pty `p` through the kernel's door: `fn` edits a shallow copy (queues are replaced,
   * never changed in place), and the fields it changed become one pty.update event.
   */
  private edit<R>(p: PtyState, what: string, fn: (d: Writable<PtyState>) => R): R {
    const d: Writable<PtyState> = { ...p };
    const r = fn(d);
    const ops: GraphOp[] = [];
    for (const key of Object.keys(d) as Array<keyof PtyState>) {
      if (d[key] !== p[key]) ops.push(d[key] === undefined ? ['del', ['ptys', p.id, key]] : ['set', ['ptys', p.id, key], d[key]]);
    }
    if (ops.length) this.k.emit({ type: 'pty.update', pty: p.id, what }, ops, true);
    return r;
  }

  private notify(p: PtyState): void { this.k.pipes.changed$.next(p.id); }
  private wake$(p: PtyState) { return this.k.pipes.changed$.pipe(filter((id) => id === p.id)); }

  /** open("/dev/ptmx"): a new master with the lowest free index. */
  openMaster(flags: number): OpenFileState {
    let index = 0;
    const used = new Set(Object.values(this.table).map((p) => p.index));
    while (used.has(index)) index++;
    const p: PtyState = {
      id: this.k.newId(), index, termios: defaultTermios(), winsize: new Uint8Array(8), input: new Uint8Array(0), line: new Uint8Array(0),
      output: new Uint8Array(0), masterOpen: true, slaveOpens: 0, locked: true, fgPgid: 0, sid: 0,
    };
    this.k.emit({ type: 'pty.create', pty: p.id, index }, [['set', ['ptys', p.id], p]], true);
    return this.k.newOpenFile({ kind: 'pty', path: '/dev/ptmx', flags, pty: { id: p.id, master: true } });
  }

  /** The pty with /dev/pts index `n`, if open. */
  byIndex(n: number): PtyState | undefined {
    return Object.values(this.table).find((p) => p.index === n && p.masterOpen);
  }

  /** open("/dev/pts/N") or TIOCGPTPEER: the slave side (EIO while locked). */
  openSlave(p: PtyState, flags: number): OpenFileState {
    if (p.locked) throw new SyscallError(E.EIO);
    this.edit(p, 'open', (d) => { d.slaveOpens++; d.everOpened = true; });
    return this.k.newOpenFile({ kind: 'pty', path: `/dev/pts/${p.index}`, flags, pty: { id: p.id, master: false } });
  }

  /** The last fd of one side closed. */
  release(f: PtyFile): void {
    const p = this.table[f.pty.id];
    if (!p) return;
    this.edit(p, 'close', (d) => { if (f.pty.master) d.masterOpen = false; else d.slaveOpens--; });
    if (!p.masterOpen && p.slaveOpens <= 0) this.k.emit({ type: 'pty.release', pty: p.id }, [['del', ['ptys', p.id]]]);
    this.notify(p);
  }

  state(f: PtyFile): PtyState {
    const p = this.table[f.pty.id];
    if (!p) throw new SyscallError(E.EIO);
    return p;
  }

  /** Output processing (OPOST/ONLCR) of bytes the slave writes or the discipline echoes. */
  private output(p: Writable<PtyState>, bytes: Uint8Array): void {
    if ((flag(p, 4) & (OPOST | ONLCR)) === (OPOST | ONLCR)) {
      const out: number[] = [];
      for (const b of bytes) { if (b === 10) out.push(13, 10); else out.push(b); }
      p.output = append(p.output, out);
    } else p.output = append(p.output, bytes);
  }

  /** The input side of the line discipline: one byte typed at the master. */
  private input(p: Writable<PtyState>, b: number): void {
    const iflag = flag(p, 0), lflag = flag(p, 12);
    if ((iflag & ICRNL) && b === 13) b = 10;
    if (lflag & ISIG) {
      const sig = b === cc(p, VINTR) ? SIGINT : b === cc(p, VQUIT) ? SIGQUIT : b === cc(p, VSUSP) ? SIGTSTP : 0;
      if (sig && b !== 0) {
        if (lflag & ECHO) this.output(p, new Uint8Array([94, b + 64, 10].slice(0, (lflag & ECHOCTL) ? 2 : 0)));
        p.line = new Uint8Array(0);
        this.signalGroup(p, sig);
        return;
      }
    }
    if (!(lflag & ICANON)) {
      p.input = append(p.input, [b]);
      if (lflag & ECHO) this.output(p, new Uint8Array([b]));
      return;
    }
    if (b === cc(p, VERASE)) {
      if (p.line.length) { p.line = p.line.subarray(0, p.line.length - 1); if (lflag & ECHO) this.output(p, new Uint8Array([8, 32, 8])); }
      return;
    }
    if (b === cc(p, VKILL)) { p.line = new Uint8Array(0); if (lflag & ECHOK) this.output(p, new Uint8Array([10])); return; }
    if (b === cc(p, VEOF)) { p.input = append(p.input, p.line); p.line = new Uint8Array(0); p.eofPending = (p.eofPending ?? 0) + 1; return; }
    p.line = append(p.line, [b]);
    if (lflag & ECHO) this.output(p, new Uint8Array([b]));
    else if (b === 10 && (lflag & ECHONL)) this.output(p, new Uint8Array([10]));
    if (b === 10 || (b === cc(p, VEOL) && b !== 0)) { p.input = append(p.input, p.line); p.line = new Uint8Array(0); }
  }

  private signalGroup(p: PtyState, sig: number): void {
    if (!p.fgPgid) return;
    for (const tg of Object.values(this.k.state.threadGroups)) {
      if (tg.pgid === p.fgPgid && !tg.zombie) this.k.signals.send(tg.tgid, sig, { signo: sig, code: 0x80 });
    }
  }

  /** read(2) on either side. */
  read(t: Task, f: PtyFile, buf: number, count: number): SyscallResult {
    if (count === 0) return 0;
    t.mm.chunks(buf, 1, PROT_WRITE, () => undefined);
    const master = f.pty.master;
    const attempt = (): number | undefined => {
      const p = this.table[f.pty.id];
      if (!p) return master ? -E.EIO : 0;
      if (master) {
        if (p.output.length) return this.take(t, p, 'output', buf, count);
        if (p.slaveOpens <= 0 && p.everOpened) return -E.EIO; // the slave hung up
        return undefined;
      }
      const canon = flag(p, 12) & ICANON;
      if (p.input.length) {
        // Canonical: at most one line; raw: what is there (VMIN 1).
        const nl = canon ? p.input.indexOf(10) : -1;
        const n = Math.min(count, nl >= 0 ? nl + 1 : p.input.length);
        return this.take(t, p, 'input', buf, n);
      }
      if (canon && p.eofPending) { this.edit(p, 'eof', (d) => { d.eofPending = p.eofPending! - 1; }); return 0; }
      if (!p.masterOpen) return 0;
      if (!canon && cc(p, VMIN) === 0) return 0;
      return undefined;
    };
    const now = attempt();
    if (now !== undefined) return now;
    if (f.flags & O_NONBLOCK) return -E.EAGAIN;
    return { waiter: { kind: 'pty-read', fileId: f.id, interruptible: true, restartable: true }, result$: this.k.whenRunnable(this.wake$(this.state(f)), attempt) };
  }

  private take(t: Task, p: PtyState, q: 'input' | 'output', buf: number, max: number): number {
    const n = Math.min(max, p[q].length);
    const data = p[q].subarray(0, n);
    t.mm.write(buf, data);
    this.edit(p, q === 'input' ? 'read' : 'read-master', (d) => { d[q] = p[q].slice(n); });
    this.notify(p);
    return n;
  }

  /** write(2) on either side: the master types into the discipline, the slave writes output. */
  write(t: Task, f: PtyFile, buf: number, count: number): SyscallResult {
    const p = this.state(f);
    if (f.pty.master) {
      const data = new Uint8Array(count);
      t.mm.chunks(buf, count, PROT_READ, (v, ro) => data.set(v, ro));
      this.edit(p, 'input', (d) => { for (const b of data) this.input(d, b); });
      this.notify(p);
      return count;
    }
    if (!p.masterOpen) return -E.EIO;
    const attempt = (): number | undefined => {
      if (!p.masterOpen) return -E.EIO;
      if (p.output.length >= QUEUE_LIMIT) return undefined;
      const data = new Uint8Array(Math.min(count, QUEUE_LIMIT));
      t.mm.chunks(buf, data.length, PROT_READ, (v, ro) => data.set(v, ro));
      this.edit(p, 'output', (d) => this.output(d, data));
      this.notify(p);
      return data.length;
    };
    const now = attempt();
    if (now !== undefined) return now;
    if (f.flags & O_NONBLOCK) return -E.EAGAIN;
    return { waiter: { kind: 'pty-write', fileId: f.id, interruptible: true, restartable: true }, result$: this.k.whenRunnable(this.wake$(p), attempt) };
  }

  /** Poll readiness (POLLIN 1, POLLOUT 4, POLLHUP 0x10). */
  readiness(f: PtyFile): number {
    const p = this.table[f.pty.id];
    if (!p) return 0x10 | 0x8;
    if (f.pty.master) return (p.output.length ? 1 : 0) | 4 | (p.slaveOpens <= 0 && p.everOpened ? 0x10 : 0);
    return (p.input.length || p.eofPending ? 1 : 0) | (p.output.length < QUEUE_LIMIT ? 4 : 0) | (!p.masterOpen ? 0x10 : 0);
  }

  /** Terminal ioctls on a pty (TCGETS/TCSETS*, window size, pty number/lock, process groups). */
  ioctl(t: Task, f: PtyFile, req: number, arg: number): number {
    const live = this.state(f);
    if (req === 0x5441) {                                                     // TIOCGPTPEER
      if (!f.pty.master) return -E.ENOTTY;
      const s = this.openSlave(live, arg);
      const fd = this.k.installFd(t, s.id, !!(arg & 0o2000000));
      if (fd < 0) { this.k.unrefFile(s.id); }
      return fd;
    }
    return this.edit(live, 'ioctl', (p) => this.ioctlOn(t, f, p, req, arg));
  }

  private ioctlOn(t: Task, f: PtyFile, p: Writable<PtyState>, req: number, arg: number): number {
    switch (req) {
      case 0x5401: t.mm.write(arg, p.termios); return 0;                      // TCGETS
      case 0x5402: case 0x5403: case 0x5404:                                 // TCSETS, TCSETSW, TCSETSF
        p.termios = new Uint8Array(t.mm.read(arg, 36));
        if (req === 0x5404) { p.input = new Uint8Array(0); p.line = new Uint8Array(0); }
        if (!(flag(p, 12) & ICANON) && p.line.length) { p.input = append(p.input, p.line); p.line = new Uint8Array(0); }
        this.notify(p);
        return 0;
      case 0x5413: t.mm.write(arg, p.winsize); return 0;                      // TIOCGWINSZ
      case 0x5414: p.winsize = new Uint8Array(t.mm.read(arg, 8)); this.signalGroup(p, 28); return 0; // TIOCSWINSZ (+SIGWINCH)
      case 0x80045430: t.mm.writeU32(arg, p.index); return 0;                 // TIOCGPTN
      case 0x40045431: p.locked = t.mm.readU32(arg) !== 0; return 0;         // TIOCSPTLCK
      case 0x80045439: t.mm.writeU32(arg, p.locked ? 1 : 0); return 0;       // TIOCGPTLCK
      case 0x540e: p.sid = t.tg.sid; p.fgPgid = t.tg.pgid; return 0;           // TIOCSCTTY
      case 0x5422: if (p.sid === t.tg.sid) { p.sid = 0; p.fgPgid = 0; } return 0; // TIOCNOTTY
      case 0x540f: t.mm.writeU32(arg, p.fgPgid || t.tg.pgid); return 0;        // TIOCGPGRP
      case 0x5410: p.fgPgid = t.mm.readU32(arg); return 0;                     // TIOCSPGRP
      case 0x5429: t.mm.writeU32(arg, p.sid || t.tg.sid); return 0;            // TIOCGSID
      case 0x541b: t.mm.writeU32(arg, f.pty.master ? p.output.length : p.input.length); return 0; // FIONREAD
      case 0x540b: p.input = new Uint8Array(0); p.line = new Uint8Array(0); p.output = new Uint8Array(0); this.notify(p); return 0; // TCFLSH
      case 0x5409: case 0x540a: case 0x5425: return 0;                       // TCSBRK, TCXONC, TCSBRKP
      default: return -E.ENOTTY;
    }
  }

  /** Names for /dev/pts: the indexes of open ptys. */
  list(): number[] {
    return Object.values(this.table).filter((p) => p.masterOpen).map((p) => p.index).sort((a, b) => a - b);
  }
}

/** Persistence: a pseudo-terminal's termios, window size and queues are data. */
export const ptyPersist = persisted<PtyState>({
  kind: 'pty',
  records: (g) => byId(g.ptys),
  rebuilds: 'nothing: plain data',
});
