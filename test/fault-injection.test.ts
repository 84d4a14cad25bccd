/**
 * `snapvisor run --inject SPEC --seed N` (docs/cli.md): seeded syscall faults that replay
 * exactly. A small program that mishandles EINTR fails at the same read with the same seed,
 * at another with another seed, and never without --inject; faults are only injected where
 * Linux could return them; bad SPECs are one-line usage errors.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, snapvisor, stderrLines } from './helpers.js';

/**
 * Reads 200 four-byte records a child writes into a pipe, four bytes per read. It installs a
 * SIGUSR1 handler without SA_RESTART (so Linux may end a blocked read with EINTR) but treats
 * every read error as fatal — the bug fault injection should find.
 */
const EINTR_BUG = String.raw`
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
static void on_usr1(int sig) { (void)sig; }
int main(void) {
  struct sigaction sa = { 0 };
  sa.sa_handler = on_usr1; /* no SA_RESTART */
  sigaction(SIGUSR1, &sa, 0);
  int p[2];
  if (pipe(p)) return 2;
  pid_t c = fork();
  if (c == 0) {
    close(p[0]);
    for (int i = 0; i < 200; i++) { char b[5]; snprintf(b, sizeof b, "%03d\n", i); if (write(p[1], b, 4) != 4) _exit(3); }
    _exit(0);
  }
  close(p[1]);
  char buf[4];
  int reads = 0;
  while (reads < 200) {
    ssize_t n = read(p[0], buf, 4);
    if (n < 0) { fprintf(stderr, "read #%d failed: %s\n", reads + 1, strerror(errno)); return 1; }
    if (n != 4) { fprintf(stderr, "read #%d was short: %zd bytes\n", reads + 1, n); return 1; }
    reads++;
  }
  waitpid(c, 0, 0);
  printf("read %d records\n", reads);
  return 0;
}
`;

const SEED_LINE = /^snapvisor: injecting faults \(read:EINTR:0\.02\) with seed (\d+)$/;

describe('fault injection (--inject, --seed)', () => {
  it('a program that mishandles EINTR fails reproducibly from its seed', async () => {
    const exe = compileStatic('eintr-bug', EINTR_BUG);
    const clean = await snapvisor(['run', '--', exe], { timeoutMs: 30_000 });
    expect(clean.timedOut).toBe(false);
    expect(clean.stderr).toBe('');
    expect(clean.stdout.toString()).toBe('read 200 records\n');
    expect(clean.status).toBe(0);

    const run = (seed: number) => snapvisor(['run', '--inject', 'read:EINTR:0.02', '--seed', String(seed), '--', exe], { timeoutMs: 30_000 });
    const failureOf = (r: Awaited<ReturnType<typeof run>>) => {
      expect(r.timedOut).toBe(false);
      const lines = stderrLines(r.stderr);
      expect(lines[0]).toMatch(SEED_LINE);
      return { status: r.status, seed: Number(SEED_LINE.exec(lines[0])![1]), rest: lines.slice(1) };
    };
    const a = failureOf(await run(7));
    const b = failureOf(await run(7));
    const c = failureOf(await run(8));
    expect(a.seed).toBe(7);
    expect(a.status).toBe(1);
    expect(a.rest).toHaveLength(1);
    expect(a.rest[0]).toMatch(/^read #\d+ failed: Interrupted system call$/);
    expect(b).toEqual(a); // same seed: the same read fails
    expect(c.seed).toBe(8);
    expect(c.status).toBe(1);
    expect(c.rest[0]).toMatch(/^read #\d+ failed: Interrupted system call$/);
    expect(c.rest).not.toEqual(a.rest); // another seed: another read
  }, 120_000);

  it('without --seed a random seed is printed, and that seed replays the run', async () => {
    const exe = compileStatic('eintr-bug', EINTR_BUG);
    const first = await snapvisor(['run', '--inject', 'read:EINTR:0.02', '--', exe], { timeoutMs: 30_000 });
    const [seedLine, ...rest] = stderrLines(first.stderr);
    expect(seedLine).toMatch(SEED_LINE);
    const seed = SEED_LINE.exec(seedLine)![1];
    const again = await snapvisor(['run', '--inject', 'read:EINTR:0.02', '--seed', seed, '--', exe], { timeoutMs: 30_000 });
    expect(stderrLines(again.stderr)).toEqual([seedLine, ...rest]);
    expect(again.status).toBe(first.status);
    expect(again.stdout.toString()).toBe(first.stdout.toString());
  }, 60_000);

  it('EINTR is injected only where Linux could return it: not for a program with no signal handler', async () => {
    // The same reads, but no handler: Linux never ends them with EINTR, so neither does the injector.
    const exe = compileStatic('eintr-nohandler', EINTR_BUG.replace('sigaction(SIGUSR1, &sa, 0);', ''));
    const r = await snapvisor(['run', '--inject', 'read:EINTR:1', '--seed', '1', '--', exe], { timeoutMs: 30_000 });
    expect(stderrLines(r.stderr)).toEqual(['snapvisor: injecting faults (read:EINTR:1) with seed 1']);
    expect(r.stdout.toString()).toBe('read 200 records\n');
    expect(r.status).toBe(0);
  }, 60_000);

  it('short writes replay exactly', async () => {
    const exe = compileStatic('short-write', String.raw`
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
  char line[64];
  for (int i = 0; i < 20; i++) {
    int n = snprintf(line, sizeof line, "line %02d of a program that ignores write's count\n", i);
    ssize_t w = write(1, line, n);
    if (w != n) fprintf(stderr, "write %d: %zd of %d bytes\n", i, w, n);
  }
  return 0;
}
`);
    const run = () => snapvisor(['run', '--inject', 'write:short:0.3', '--seed', '42', '--', exe], { timeoutMs: 30_000 });
    const a = await run(), b = await run();
    expect(a.status).toBe(0);
    const lines = stderrLines(a.stderr);
    expect(lines[0]).toBe('snapvisor: injecting faults (write:short:0.3) with seed 42');
    const shorts = lines.slice(1).filter((l) => /^write \d+: \d+ of \d+ bytes$/.test(l));
    expect(shorts.length).toBeGreaterThan(0);
    expect(a.stdout.length).toBeLessThan(20 * 49);
    expect(b.stderr).toBe(a.stderr);
    expect(b.stdout.equals(a.stdout)).toBe(true);
  }, 60_000);

  it('a bad SPEC is a one-line usage error', async () => {
    const cases: Array<[string[], string]> = [
      [['--inject', 'read:ENOSPC:0.5'], 'snapvisor: --inject: Linux never returns ENOSPC from read'],
      [['--inject', 'getpid:EIO:1'], 'snapvisor: --inject: Linux never returns EIO from getpid'],
      [['--inject', 'reed:EINTR:0.5'], "snapvisor: --inject: unknown syscall 'reed'"],
      [['--inject', 'read:EPERM:0.5'], "snapvisor: --inject: unknown fault 'EPERM' (one of EINTR, EAGAIN, ENOSPC, ENOMEM, EIO, short)"],
      [['--inject', 'read:EINTR:2'], "snapvisor: --inject: probability '2' is not a number from 0 to 1"],
      [['--inject', 'read:EINTR'], "snapvisor: --inject: 'read:EINTR' is not SYSCALL:FAULT:PROBABILITY"],
      [['--inject', 'read:EINTR:0.5', '--seed', 'x'], "snapvisor: --seed: 'x' is not a number from 0 to 4294967295"],
      [['--seed', '3'], 'snapvisor: --seed needs --inject'],
    ];
    for (const [opts, msg] of cases) {
      const r = await snapvisor(['run', ...opts, '--', '/bin/true']);
      expect([r.status, stderrLines(r.stderr)]).toEqual([2, [msg]]);
    }
  }, 60_000);
});
