/**
 * Generated syscall programs for the differential executor (executor.c): what a step is,
 * the fast-check generator, and the text form the executor reads.
 *
 * A program is a list of steps; an argument is a literal integer, a path, or a reference to
 * an earlier step's result (an fd, a mapping's address, a child's pid, a timer id). A
 * reference is stored as a distance back (`back`), so shrinking (which drops steps) keeps
 * every reference pointing at some earlier step; the first step's references become -1, a
 * deliberately bad argument. Bad literals (fd -1, 999, odd lengths, unknown flags) are drawn too.
 */
import fc from 'fast-check';

/** One argument of a step. */
export type Arg =
  | { t: 'i'; v: number }
  /** The result of the step `back`+1 steps before this one (modulo the step index); `second`: pipe/socketpair's second fd. */
  | { t: 'r'; back: number; second?: boolean }
  | { t: 'p'; s: string };

export interface Step { op: string; args: Arg[] }
export type Program = Step[];

const i = (v: number): Arg => ({ t: 'i', v });
const lit = (...vs: number[]) => fc.constantFrom(...vs).map(i);
const ref = fc.record({ t: fc.constant('r' as const), back: fc.nat({ max: 30 }), second: fc.boolean() }).map((r): Arg => (r.second ? r : { t: 'r', back: r.back }));
const firstRef = fc.nat({ max: 30 }).map((back): Arg => ({ t: 'r', back }));
/** An fd: mostly an earlier result, sometimes a bad number. */
const fd = fc.oneof({ weight: 9, arbitrary: ref }, { weight: 1, arbitrary: lit(-1, 999, 1 << 30) });
/** Paths inside the program's directory, with some that cannot work. */
const PATHS = ['a', 'b', 'd', 'd/a', 'd/e', 'd/e/f', 'l', 'ld', 'p', 'd/..', '.', 'd/', 'a/x', 'nonexistent/x', ''];
const path = fc.constantFrom(...PATHS).map((s): Arg => ({ t: 'p', s }));
const LINK_TARGETS = ['a', 'd', 'd/a', 'nonexistent', 'l', 'ld', '/nonexistent/x'];
const linkTarget = fc.constantFrom(...LINK_TARGETS).map((s): Arg => ({ t: 'p', s }));
const MODES = [0, 0o400, 0o600, 0o644, 0o755, 0o700, 0o222, 0o1777, 0o4755, 0o2755, 0o111, 0o777];
const mode = lit(...MODES);
const IDS = [0, 1000, 1001, -1];
const id = lit(...IDS);
const size = lit(0, 1, 5, 100, 4096, 10000);
const offset = lit(0, 1, 100, 4096, -1, 2 ** 40);
const O = { CREAT: 0o100, EXCL: 0o200, TRUNC: 0o1000, APPEND: 0o2000, NONBLOCK: 0o4000, DIRECTORY: 0o200000, NOFOLLOW: 0o400000, CLOEXEC: 0o2000000 };
const openFlags = fc.tuple(fc.constantFrom(0, 1, 2, 3), fc.subarray(Object.values(O), { maxLength: 3 }))
  .map(([acc, fl]) => i(fl.reduce((a, b) => a | b, acc)));
const SIGNALS = [1, 2, 10, 12, 13, 14, 15, 17, 18, 23, 28, 40];
const sig = fc.oneof({ weight: 9, arbitrary: lit(...SIGNALS) }, { weight: 1, arbitrary: lit(0, 9, 19, 65) });
const PAGE = 4096;
const memOff = lit(0, 1, PAGE - 1, PAGE, 2 * PAGE - 1, 3 * PAGE);
const memLen = lit(0, 1, PAGE, 2 * PAGE, 3 * PAGE + 1);
const prot = lit(0, 1, 3, 5, 7, 0x10);

const step = (op: string, ...args: fc.Arbitrary<Arg>[]): fc.Arbitrary<Step> => fc.tuple(...args).map((a) => ({ op, args: a }));

/** Every kind of step, with its weight (how often it is drawn). */
const STEPS: Array<[number, fc.Arbitrary<Step>]> = [
  // files
  [12, step('open', path, openFlags, mode)],
  [4, step('close', fd)],
  [6, step('read', fd, size)],
  [6, step('write', fd, size)],
  [2, step('pread', fd, size, offset)],
  [2, step('pwrite', fd, size, offset)],
  [3, step('lseek', fd, offset, lit(0, 1, 2, 3, 4, 9))],
  [2, step('ftruncate', fd, offset)],
  [1, step('truncate', path, offset)],
  [1, step('fsync', fd)],
  [3, step('fstat', fd)],
  [4, step('stat', path)],
  [3, step('lstat', path)],
  // directories and links
  [5, step('mkdir', path, mode)],
  [2, step('rmdir', path)],
  [3, step('unlink', path)],
  [3, step('rename', path, path)],
  [3, step('link', path, path)],
  [3, step('symlink', linkTarget, path)],
  [2, step('readlink', path, lit(255, 3, 0))],
  [2, step('mkfifo', path, mode)],
  [3, step('listdir', path)],
  [1, step('getdents', fd)],
  [1, step('chdir', path)],
  [1, step('getcwd')],
  // permissions and credentials
  [3, step('chmod', path, mode)],
  [1, step('fchmod', fd, mode)],
  [2, step('chown', path, id, id)],
  [1, step('fchown', fd, id, id)],
  [3, step('access', path, lit(0, 1, 2, 4, 7, 8))],
  [1, step('eaccess', path, lit(0, 1, 2, 4, 7))],
  [1, step('umask', lit(0, 0o22, 0o77, 0o777))],
  [2, step('setresuid', id, id, id)],
  [2, step('setresgid', id, id, id)],
  [1, step('setuid', id)],
  [1, step('setgid', id)],
  [1, step('setgroups', lit(0, 1, 3), id, id, id)],
  // fds
  [2, step('dup', fd)],
  [1, step('dup2', fd, lit(0, 5, 10, 63, -1))],
  [3, step('fcntl', fd, lit(0, 1, 2, 3, 4, 1030, 9999), lit(0, 1, 5, O.APPEND, O.NONBLOCK, O.APPEND | O.NONBLOCK))],
  // locks
  [2, step('flock', fd, lit(1, 2, 8, 0))],
  [3, step('fcntl', fd, lit(5, 6, 36, 37), lit(0, 1, 2, 7), lit(0, 10, 100), lit(0, 1, 10, -1))],
  // pipes and sockets
  [4, step('pipe', lit(0, O.NONBLOCK, O.CLOEXEC, 1))],
  [3, step('socketpair', lit(1, 2, 5, 1 | O.NONBLOCK, 3))],
  [2, step('send', fd, size)],
  [2, step('recv', fd, size)],
  [1, step('shutdown', fd, lit(0, 1, 2, 5))],
  // processes
  [2, step('fork', lit(0), lit(0, 1, 42))],
  [1, step('fork', lit(1), sig)],
  [2, step('fork', lit(2), fd, size)],
  [2, step('fork', lit(3), fd, lit(0, 1, 2), lit(0, 10), lit(0, 5))],
  [1, step('fork', lit(4), fd, lit(1, 2, 8))],
  [1, step('fork', lit(5), path, lit(0, 2, 4))],
  [1, step('fork', lit(6), path, lit(0, 1, 2, O.CREAT | 1))],
  [1, step('fork', lit(7), firstRef, memOff, lit(9))],
  [2, step('fork', lit(8), fd, lit(0, 1), lit(0, 10), lit(0, 5))],
  [2, step('spawn')],
  [2, step('kill', firstRef, lit(15, 9, 10, 2, 17, 23, 18, 0, 999))],
  [2, step('reap', fc.oneof({ weight: 5, arbitrary: firstRef }, { weight: 1, arbitrary: lit(-1, 999999) }))],
  // signals
  [3, step('sigaction', sig, lit(0, 1, 2, 3, 4))],
  [2, step('sigprocmask', lit(0, 1, 2, 7), fc.nat({ max: 0xfff }).map(i))],
  [1, step('sigpending')],
  [2, step('raise', sig)],
  // memory
  [4, step('mmap', lit(0, PAGE, 2 * PAGE, 3 * PAGE + 1, 1 << 20), prot, lit(0x22, 0x21, 0x2, 0x1, 0x32, 0x100022, 0), fc.oneof(fd, lit(-1)), lit(0, PAGE, 1), firstRef, memOff)],
  [2, step('munmap', firstRef, memOff, memLen)],
  [3, step('mprotect', firstRef, memOff, memLen, prot)],
  [2, step('madvise', firstRef, memOff, memLen, lit(0, 1, 2, 3, 4, 8, 9, 10, 99))],
  [4, step('peek', firstRef, memOff)],
  [4, step('poke', firstRef, memOff, lit(1, 200))],
  // timers
  [1, step('setitimer', lit(0, 1, 2, 5), lit(0, 5, 100))],
  [1, step('getitimer', lit(0, 1, 2, 5))],
  [1, step('alarm', lit(0, 5, 100))],
  [1, step('tick')],
  [1, step('timer_create', lit(0, 1, 7, 99))],
  [1, step('timer_settime', firstRef, lit(0, 5, 100))],
  [1, step('timer_gettime', firstRef)],
  [1, step('timer_delete', firstRef)],
];

/** One generated step. */
export const stepArb: fc.Arbitrary<Step> = fc.oneof(...STEPS.map(([weight, arbitrary]) => ({ weight, arbitrary })));

/** A generated program of 1..maxSteps steps. */
export const programArb = (maxSteps = 24): fc.Arbitrary<Program> => fc.array(stepArb, { minLength: 1, maxLength: maxSteps });

/** The executor's text form of one program, under the id `id`. */
export function programText(p: Program, id: number): string {
  const lines = [`P ${id}`];
  p.forEach((s, idx) => {
    const args = s.args.map((a) => {
      if (a.t === 'i') return String(a.v);
      if (a.t === 'p') return `'${a.s}`;
      if (idx === 0) return '-1';
      const k = idx - 1 - (a.back % idx);
      return `${a.second ? '#' : '@'}${k}`;
    });
    lines.push([s.op, ...args].join(' '));
  });
  return lines.join('\n') + '\n';
}

/** Parse the text form back (for named regression cases written by hand). Steps only, no `P` line. */
export function parseProgram(text: string): Program {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('P '));
  return lines.map((l, idx) => {
    const [op, ...toks] = l.split(/\s+/);
    return {
      op,
      args: toks.map((tok): Arg => {
        if (tok.startsWith("'")) return { t: 'p', s: tok.slice(1) };
        if (tok.startsWith('@') || tok.startsWith('#')) {
          const k = Number(tok.slice(1));
          if (!(k >= 0 && k < idx)) throw new Error(`step ${idx}: reference ${tok} is not to an earlier step`);
          return { t: 'r', back: idx - 1 - k, ...(tok[0] === '#' ? { second: true } : {}) };
        }
        const v = Number(tok);
        if (!Number.isFinite(v)) throw new Error(`step ${idx}: bad argument ${tok}`);
        return { t: 'i', v };
      }),
    };
  });
}
