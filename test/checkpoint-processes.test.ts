/**
 * Checkpoint/restore of guests made of several processes and threads, through the real
 * CLI: a busybox loop forking a child per step, a producer | consumer pipeline with bytes
 * in the pipe, python3 threads blocked on a Condition and in sleep with a sleeping child
 * process, and --leave-running followed by two restores. Each test has its own --root
 * and --store.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming, type Streaming } from './helpers.js';

const PY = '/usr/bin/python3';

interface Setup { root: string; store: string; name: string }
function setup(): Setup {
  return { root: freshDir('root'), store: freshDir('store'), name: `sv-${randomBytes(4).toString('hex')}` };
}

function start(s: Setup, argv: string[]): Streaming {
  return snapvisorStreaming(['--root', s.root, 'run', '--name', s.name, '--', ...argv], { timeoutMs: 60_000 });
}

/** Checkpoint the named sandbox; returns the id and how many stdout lines the test had seen before and after. */
async function checkpoint(s: Setup, run: Streaming, extra: string[] = []) {
  const seenBefore = run.lines.length;
  const cp = await snapvisor(['--root', s.root, 'checkpoint', s.name, '--store', s.store, ...extra], { timeoutMs: 20_000 });
  const seenAfter = run.lines.length;
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
  expect(id).toMatch(/^[0-9a-f]{16}$/);
  return { id, seenBefore, seenAfter };
}

async function restore(s: Setup, id: string, timeoutMs = 30_000, extra: string[] = []) {
  const r = await snapvisor(['--root', s.root, 'restore', id, '--store', s.store, ...extra], { timeoutMs });
  expect(r.timedOut).toBe(false);
  return { ...r, lines: r.stdout.toString().split('\n').filter((l) => l !== '') };
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
const numbersIn = (lines: string[]) => lines.filter((l) => /^\d+$/.test(l)).map(Number);

// ---------------------------------------------------------------------------------------

const STEPS = 40;
/**
 * A busybox sh loop forking a child per step that appends i to a counter file; prints i every 50 ms,
 * then a report on the file. After printing step N of `gates` it waits (polling with busybox sleep)
 * until that gate file exists: the test makes it after its checkpoint, so the loop is still
 * running when the checkpoint comes however slow the machine.
 */
function counterLoop(file: string, gates: Array<[number, string]> = []): string {
  return [
    'i=0',
    `while [ $i -lt ${STEPS} ]; do`,
    '  i=$((i+1))',
    `  /bin/busybox sh -c "echo $i >> ${file}"`,
    '  echo $i',
    ...gates.map(([n, g]) => `  if [ $i -eq ${n} ]; then while [ ! -e ${g} ]; do /bin/busybox sleep 0.02; done; fi`),
    '  /bin/busybox sleep 0.05',
    'done',
    `echo "lines $(/bin/busybox wc -l < ${file}) last $(/bin/busybox tail -n 1 ${file})"`,
  ].join('\n');
}

describe('checkpoint and restore of processes', () => {
  it('(a) a busybox loop forking a child per step: no number lost or repeated, the counter file is whole', async () => {
    const s = setup();
    const file = `/tmp/counter-${randomBytes(6).toString('hex')}`;
    const gate = checkpointGate('loop');
    const run = start(s, ['/bin/busybox', 'sh', '-c', counterLoop(file, [[10, gate.sandbox]])]);
    await run.waitFor((l) => l === '10', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    const before = numbersIn(run.lines);
    expect(before).toEqual(range(1, 10));
    expect(run.lines.some((l) => l.startsWith('lines '))).toBe(false);
    gate.open();

    const r = await restore(s, id, 60_000);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(numbersIn(r.lines)).toEqual(range(before.length + 1, STEPS));
    expect(r.lines.filter((l) => !/^\d+$/.test(l))).toEqual([`lines ${STEPS} last ${STEPS}`]);
    expect(fs.existsSync(file)).toBe(false); // the guest's writes stayed in the sandbox
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(b) producer | consumer with bytes in the pipe: the checksum equals an uninterrupted native run', async () => {
    const dir = freshDir('pipeline');
    const producer = path.join(dir, 'producer.py');
    const consumer = path.join(dir, 'consumer.py');
    // 3000 lines of 100 bytes: 300 KB, far more than the 64 KiB pipe, so the producer
    // is still blocked in write() when the slow consumer is at line 300 (until about 2300).
    fs.writeFileSync(producer, [
      'import sys',
      'for i in range(1, 3001):',
      '    sys.stdout.write(f"{i:05d} " + "abcdefghij" * 9 + "\\n")',
      'sys.stdout.flush()',
      'print("producer done", file=sys.stderr, flush=True)',
    ].join('\n'));
    fs.writeFileSync(consumer, [
      'import os, sys, hashlib, time',
      'h = hashlib.sha256(); n = 0',
      'for line in sys.stdin.buffer:',
      '    h.update(line); n += 1',
      '    if n % 100 == 0:',
      '        print("progress", n, flush=True)',
      '        time.sleep(0.1)',
      '    # The producer stays blocked on the full pipe until the gate exists (made after the checkpoint).',
      '    if n == 300:',
      '        while not os.path.exists(sys.argv[1]): time.sleep(0.02)',
      'print("consumer", n, h.hexdigest(), flush=True)',
    ].join('\n'));
    const gate = checkpointGate('pipeline');
    const pipeline = (g: string) => `${PY} ${producer} | ${PY} ${consumer} ${g}`;
    const expectedSum = createHash('sha256');
    for (let i = 1; i <= 3000; i++) expectedSum.update(`${String(i).padStart(5, '0')} ${'abcdefghij'.repeat(9)}\n`);
    const expectedLast = `consumer 3000 ${expectedSum.digest('hex')}`;

    const nat = native(['/bin/sh', '-c', pipeline(gate.native)], { timeoutMs: 60_000 });
    const s = setup();
    const run = start(s, ['/bin/sh', '-c', pipeline(gate.sandbox)]);
    await run.waitFor((l) => l === 'progress 300', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    const progressBefore = run.lines.map((l) => Number(/^progress (\d+)$/.exec(l)?.[1]));
    expect(progressBefore).toEqual([100, 200, 300]);
    // The checkpoint caught the producer before its end: blocked on a full pipe.
    expect(run.stderr()).not.toContain('producer done');
    gate.open();

    const r = await restore(s, id, 60_000);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('producer done\n');
    const after = r.lines.slice(0, -1).map((l) => Number(/^progress (\d+)$/.exec(l)?.[1]));
    expect([...progressBefore, ...after]).toEqual(range(1, 30).map((i) => i * 100));
    const n = await nat;
    expect(n.status).toBe(0);
    const nativeLast = n.stdout.toString().trim().split('\n').pop();
    expect(nativeLast).toBe(expectedLast);
    expect(r.lines[r.lines.length - 1]).toBe(nativeLast);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(c) python3 threads blocked on a Condition and in sleep, plus a sleeping child: restore finishes like an uninterrupted run', async () => {
    const program = [
      'import hashlib, os, sys, threading, time',
      'pid = os.fork()',
      'if pid == 0:',
      '    time.sleep(2)',
      '    os._exit(7)',
      'cond = threading.Condition(); go = False; waiting = 0; results = []',
      'def waiter(k):',
      '    global waiting',
      '    with cond:',
      '        waiting += 1; cond.notify_all()',
      '        while not go: cond.wait()',
      '    results.append(f"waiter{k} notified")',
      'def sleeper():',
      '    t0 = time.monotonic(); time.sleep(1)',
      '    results.append(f"sleeper slept {time.monotonic() - t0 >= 1}")',
      'def worker():',
      '    h = b""',
      '    for i in range(3_000_000): h = hashlib.sha256(h).digest()',
      '    results.append(f"worker {h.hex()[:16]}")',
      'ts = [threading.Thread(target=waiter, args=(1,)), threading.Thread(target=waiter, args=(2,)),',
      '      threading.Thread(target=sleeper), threading.Thread(target=worker)]',
      'for t in ts: t.start()',
      'with cond:',
      '    while waiting < 2: cond.wait()',
      'print("blocked", threading.active_count(), flush=True)',
      '# Until the gate exists (made after the checkpoint), not a fixed sleep that a loaded machine outlasts.',
      'while not os.path.exists(sys.argv[-1]): time.sleep(0.02)',
      'with cond:',
      '    go = True; cond.notify_all()',
      'for t in ts: t.join()',
      'wpid, st = os.waitpid(pid, 0)',
      'print("child", wpid == pid, os.WIFEXITED(st) and os.WEXITSTATUS(st))',
      'print("summary", sorted(results), threading.active_count(), flush=True)',
    ].join('\n');
    const gate = checkpointGate('threads');
    const nat = native([PY, '-c', program, gate.native], { timeoutMs: 60_000 });
    const s = setup();
    const run = start(s, [PY, '-c', program, gate.sandbox]);
    await run.waitFor((l) => l.startsWith('blocked'), 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['blocked 5']);
    gate.open();

    const r = await restore(s, id, 60_000);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const n = await nat;
    expect(n.status).toBe(0);
    const natLines = n.stdout.toString().trim().split('\n');
    expect(natLines[0]).toBe('blocked 5');
    expect(natLines.slice(1)).toEqual([
      'child True 7',
      expect.stringMatching(/^summary \['sleeper slept True', 'waiter1 notified', 'waiter2 notified', 'worker [0-9a-f]{16}'\] 1$/),
    ]);
    expect(r.lines).toEqual(natLines.slice(1));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(d) --leave-running with a multi-process guest, then two restores with the same continuation', async () => {
    const s = setup();
    const file = `/tmp/counter-${randomBytes(6).toString('hex')}`;
    // The loop's output goes through a pipe to a reading subshell: loop, per-step children, reader.
    const gate = checkpointGate('lr-loop');
    const script = `{ ${counterLoop(file, [[10, gate.sandbox]])}\n} | while read l; do echo "$l"; done`;
    const run = start(s, ['/bin/busybox', 'sh', '-c', script]);
    await run.waitFor((l) => l === '10', 40_000);
    const { id, seenBefore, seenAfter } = await checkpoint(s, run, ['--leave-running']);
    gate.open(); // the original goes on, and so will the restores
    expect(await run.done).toBe(0);
    expect(numbersIn(run.lines)).toEqual(range(1, STEPS));
    expect(run.lines[run.lines.length - 1]).toBe(`lines ${STEPS} last ${STEPS}`);

    const first = await restore(s, id, 60_000);
    const second = await restore(s, id, 60_000);
    for (const r of [first, second]) {
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const nums = numbersIn(r.lines);
      const k = nums[0] - 1;
      expect(k).toBeGreaterThanOrEqual(seenBefore);
      expect(k).toBeLessThanOrEqual(seenAfter);
      expect(nums).toEqual(range(k + 1, STEPS));
      // Each restore has its own copy of the sandbox's files as they were at the checkpoint.
      expect(r.lines[r.lines.length - 1]).toBe(`lines ${STEPS} last ${STEPS}`);
    }
    expect(second.lines).toEqual(first.lines);
    expect(orphanStubs()).toEqual([]);
  }, 180_000); // 67 s seen at load 13

  it('(e) a thread restored in a timed futex wait: its later waits still block and time out', async () => {
    // FUTEX_WAIT with a 500 ms timeout, again and again until the gate (argv[1], made after the
    // checkpoint) exists, then three more. The wait cut by the checkpoint may end early after
    // restore (a spurious wake-up, allowed); the following ones may not.
    const exe = compileStatic('futexloop', String.raw`
      #define _GNU_SOURCE
      #include <errno.h>
      #include <linux/futex.h>
      #include <stdint.h>
      #include <stdio.h>
      #include <string.h>
      #include <sys/syscall.h>
      #include <time.h>
      #include <unistd.h>
      static uint32_t w;
      static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
      int main(int argc, char **argv) {
        (void)argc;
        setvbuf(stdout, NULL, _IONBF, 0);
        for (int i = 0, last = -1; i != last; i++) {
          printf("wait %d start\n", i);
          struct timespec ts = {0, 500000000};
          double t0 = now();
          long r = syscall(SYS_futex, &w, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
          int e = errno;
          if (last < 0 && access(argv[1], F_OK) == 0) last = i + 4;
          printf("wait %d: %s %s\n", i, r ? strerrorname_np(e) : "woken", now() - t0 >= 0.5 ? "full" : "early");
        }
        return 0;
      }`);
    const gate = checkpointGate('futex');
    const s = setup();
    const run = start(s, [exe, gate.sandbox]);
    await run.waitFor((l) => l === 'wait 0 start', 40_000);
    await new Promise((r) => setTimeout(r, 100));
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    gate.open();
    // The wait the checkpoint cut: the last one started.
    const k = Math.max(...run.lines.map((l) => Number(/^wait (\d+) start$/.exec(l)?.[1] ?? -1)));
    expect(k).toBeGreaterThanOrEqual(0);
    const r = await restore(s, id, 30_000);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // Every wait but the cut one times out in full, and at least three come after the cut one.
    const all = [...run.lines, ...r.lines];
    const n = all.length / 2;
    expect(n).toBeGreaterThanOrEqual(k + 4);
    const full = (i: number) => [`wait ${i} start`, `wait ${i}: ETIMEDOUT full`];
    expect(all[2 * k + 1]).toMatch(new RegExp(`^wait ${k}: (ETIMEDOUT|woken) (full|early)$`));
    expect(all.map((l, i) => (i === 2 * k + 1 ? 'cut' : l))).toEqual(range(0, n - 1).flatMap(full).map((l, i) => (i === 2 * k + 1 ? 'cut' : l)));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(f) python3 threading.Event().wait(timeout) in a thread across a checkpoint times out after restore', async () => {
    // The thread waits again until its gate (made after the checkpoint) exists, so a timed wait
    // is in progress at the checkpoint however late the checkpoint comes on a loaded machine.
    const program = [
      'import os, sys, threading, time',
      'res = []',
      'ev = threading.Event()',
      'def waiter():',
      '    while True:',
      '        r = ev.wait(1.5)',
      '        if os.path.exists(sys.argv[-1]): break',
      '    res.append(r)',
      'th = threading.Thread(target=waiter)',
      'th.start()',
      'print("ready", flush=True)',
      'time.sleep(0.5)',
      'th.join()',
      'print("event", res, flush=True)',
    ].join('\n');
    const gate = checkpointGate('event');
    const s = setup();
    const run = start(s, [PY, '-c', program, gate.sandbox]);
    await run.waitFor((l) => l === 'ready', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['ready']);
    gate.open();
    const r = await restore(s, id, 30_000);
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.lines).toEqual(['event [False]']);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(g) restore --name, checkpoint the restored sandbox, restore that: the loop still ends whole', async () => {
    const s = setup();
    const file = `/tmp/counter-${randomBytes(6).toString('hex')}`;
    const gate1 = checkpointGate('loop-1'), gate2 = checkpointGate('loop-2');
    const run = start(s, ['/bin/busybox', 'sh', '-c', counterLoop(file, [[8, gate1.sandbox], [16, gate2.sandbox]])]);
    await run.waitFor((l) => l === '8', 40_000);
    const first = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    const part1 = numbersIn(run.lines);
    expect(part1).toEqual(range(1, 8));
    gate1.open();

    const name2 = `${s.name}-2`;
    const second = snapvisorStreaming(['--root', s.root, 'restore', first.id, '--store', s.store, '--name', name2], { timeoutMs: 60_000 });
    await second.waitFor((l) => l === '16', 40_000);
    const cp2 = await checkpoint({ ...s, name: name2 }, second);
    expect(await second.done).toBe(137);
    const part2 = numbersIn(second.lines);
    expect(part2).toEqual(range(9, 16));
    gate2.open();

    const r = await restore(s, cp2.id, 60_000);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect([...part1, ...part2, ...numbersIn(r.lines)]).toEqual(range(1, STEPS));
    expect(r.lines[r.lines.length - 1]).toBe(`lines ${STEPS} last ${STEPS}`);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(h) a single 1 MiB write() to a pipe, blocked mid-way at the checkpoint, completes whole after restore', async () => {
    const exe = compileStatic('bigwrite', String.raw`
      #include <stdio.h>
      #include <stdlib.h>
      #include <sys/wait.h>
      #include <time.h>
      #include <unistd.h>
      int main(int argc, char **argv) {
        (void)argc;
        int p[2];
        pipe(p);
        size_t N = 1 << 20;
        pid_t c = fork();
        if (c == 0) {
          close(p[1]);
          unsigned long sum = 0, n = 0;
          unsigned char buf[4096];
          ssize_t r;
          int k = 0;
          while ((r = read(p[0], buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < r; i++) sum = sum * 31 + buf[i] + 1;
            n += r;
            if (++k % 16 == 0) { printf("read %lu\n", n); fflush(stdout); usleep(100000); }
            /* After 'read 131072' the writer stays blocked until the gate (argv[1]) exists: made after the checkpoint. */
            struct timespec ts = {0, 20000000};
            if (k == 32) while (access(argv[1], F_OK)) nanosleep(&ts, 0);
          }
          printf("reader total=%lu sum=%lx\n", n, sum);
          fflush(stdout);
          _exit(0);
        }
        close(p[0]);
        unsigned char *b = malloc(N);
        for (size_t i = 0; i < N; i++) b[i] = (unsigned char)(i * 7 + i / 4093);
        ssize_t w = write(p[1], b, N);
        close(p[1]);
        int st;
        waitpid(c, &st, 0);
        printf("writer wrote=%zd, reader status=%d\n", w, WEXITSTATUS(st));
        return 0;
      }`);
    const gate = checkpointGate('bigwrite');
    const nat = await native([exe, gate.native]);
    const natTail = nat.stdout.toString().trim().split('\n').slice(-2);
    expect(natTail).toEqual([expect.stringMatching(/^reader total=1048576 sum=[0-9a-f]+$/), 'writer wrote=1048576, reader status=0']);
    const s = setup();
    const run = start(s, [exe, gate.sandbox]);
    await run.waitFor((l) => l === 'read 131072', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['read 65536', 'read 131072']);
    gate.open();
    const r = await restore(s, id);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const reads = [...run.lines, ...r.lines].filter((l) => l.startsWith('read ')).map((l) => Number(l.slice(5)));
    expect(reads).toEqual(range(1, 16).map((i) => i * 65536));
    expect(r.lines.slice(-2)).toEqual(natTail);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(i) a parent suspended in vfork() while its child sleeps before exec: one child, one exec after restore', async () => {
    // The child sleeps until its gate (argv[1], made after the checkpoint) exists, not a fixed time.
    const exe = compileStatic('vforksleep', String.raw`
      #define _GNU_SOURCE
      #include <stdio.h>
      #include <sys/syscall.h>
      #include <sys/wait.h>
      #include <time.h>
      #include <unistd.h>
      int main(int argc, char **argv) {
        (void)argc;
        setvbuf(stdout, NULL, _IONBF, 0);
        printf("ready\n");
        pid_t c = vfork();
        if (c == 0) {
          struct timespec ts = {0, 20000000};
          while (syscall(SYS_access, argv[1], F_OK)) syscall(SYS_nanosleep, &ts, NULL); /* raw syscalls only: this is a vfork child */
          char *av[] = {"busybox", "echo", "child exec'd", NULL};
          execv("/bin/busybox", av);
          _exit(127);
        }
        int st;
        pid_t w = waitpid(c, &st, 0);
        printf("parent resumed, waited=%d status=%d\n", w == c, WEXITSTATUS(st));
        printf("more children: %d\n", waitpid(-1, NULL, WNOHANG) > 0);
        return 0;
      }`);
    const gate = checkpointGate('vfork');
    const nat = await native([exe, gate.native]);
    expect(nat.stdout.toString()).toBe("ready\nchild exec'd\nparent resumed, waited=1 status=0\nmore children: 0\n");
    const s = setup();
    const run = start(s, [exe, gate.sandbox]);
    await run.waitFor((l) => l === 'ready', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['ready']);
    gate.open();
    const r = await restore(s, id);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe("child exec'd\nparent resumed, waited=1 status=0\nmore children: 0\n");
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(j) a pending blocked signal, an alarm, a stopped child, a zombie and an Event.wait(timeout) across a checkpoint', async () => {
    // The guest waits for its gate (made after the checkpoint) instead of a fixed sleep, and keeps
    // the alarm and the Event.wait armed anew while it waits: both are in progress at the
    // checkpoint however long the checkpoint command takes on a loaded machine, and both end after
    // the unblock, so the order of the handlers is fixed.
    const program = [
      'import os, signal, sys, threading, time',
      'gate = sys.argv[-1]',
      'got = []; armed = [0.0]',
      'signal.signal(signal.SIGALRM, lambda s, f: got.append(("alrm", time.monotonic() - armed[0] >= 1.99)))',
      'signal.signal(signal.SIGUSR1, lambda s, f: got.append("usr1"))',
      'z = os.fork()',
      'if z == 0: os._exit(21)            # a zombie until reaped after the restore',
      'r, w = os.pipe()',
      'st = os.fork()',
      'if st == 0:',
      '    os.read(r, 1); os._exit(22)     # exits once the parent has continued it and written',
      'os.kill(st, signal.SIGSTOP)         # stopped across the checkpoint',
      'print("stopped", os.WSTOPSIG(os.waitpid(st, os.WUNTRACED)[1]), flush=True)',
      'signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})',
      'os.kill(os.getpid(), signal.SIGUSR1)  # pending across the checkpoint',
      '# The thread inherits the mask: SIGUSR1 stays pending until the main thread unblocks it.',
      'ev = threading.Event(); res = []',
      'def waiter():',
      '    while True:',
      '        timed_out = not ev.wait(1)   # a timed wait in progress at the checkpoint',
      '        if os.path.exists(gate): break',
      '    res.append(("event", not timed_out))',
      'th = threading.Thread(target=waiter); th.start()',
      'print("ready", signal.SIGUSR1 in signal.sigpending(), flush=True)',
      'armed[0] = time.monotonic(); signal.alarm(2)  # due 2 s after the last arming',
      'while not os.path.exists(gate):',
      '    time.sleep(0.02); armed[0] = time.monotonic(); signal.alarm(2)',
      'signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})',
      'th.join()',
      'os.kill(st, signal.SIGCONT); os.write(w, b"x")',
      'print("stopped child", os.WEXITSTATUS(os.waitpid(st, 0)[1]))',
      'print("zombie", os.WEXITSTATUS(os.waitpid(z, 0)[1]))',
      'while not any(isinstance(g, tuple) for g in got): signal.pause()',
      'print("got", got, res, flush=True)',
    ].join('\n');
    const gate = checkpointGate('sigs');
    const nat = native([PY, '-c', program, gate.native], { timeoutMs: 30_000 });
    const s = setup();
    const run = start(s, [PY, '-c', program, gate.sandbox]);
    await run.waitFor((l) => l.startsWith('ready'), 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['stopped 19', 'ready True']);
    gate.open();
    const r = await restore(s, id, 30_000);
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const n = await nat;
    expect(n.stdout.toString()).toBe("stopped 19\nready True\nstopped child 22\nzombie 21\ngot ['usr1', ('alrm', True)] [('event', False)]\n");
    expect(r.lines).toEqual(n.stdout.toString().trim().split('\n').slice(2));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
