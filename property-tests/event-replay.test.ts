/**
 * Property: the event stream is the graph's one door. A random shell script (a small
 * grammar of file and process operations) runs under busybox sh through the real kernel
 * (cli/event-record.ts); applying the run's events, in order, to the graph captured at its
 * start yields the graph captured at its end. A capture taken mid-run (as a
 * --leave-running checkpoint does) starts the dirty set afresh: the events after it,
 * replayed on its graph, give the end graph too, and every object that differs between
 * the two is in the kernel's dirty set.
 *
 * Compared: the CBOR encodings (snapshots/format.ts) of both graphs, minus what EXCLUDED
 * names, each with its reason. Nothing else is left out.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { REPO_ROOT, testTmpDir } from '../test/helpers.js';
import { decodeCbor, encodeCbor } from '../snapshots/format.js';
import { replay, type KernelEvent } from '../src/kernel/events.js';
import type { KernelState } from '../src/kernel/state.js';
import { STUB_NAME } from '../platforms/ptrace/stub.js';

/**
 * What the comparison leaves out, and why. Each entry removes (or normalizes) the same
 * parts of both graphs.
 */
const EXCLUDED: Array<{ what: string; why: string; strip(g: KernelState): void }> = [
  {
    what: 'tasks.*.regs, tasks.*.fpState',
    why: 'CPU state lives in the platform between checkpoints (like guest memory in the memory file); capture() copies it in',
    strip: (g) => { for (const t of Object.values(g.tasks)) { t.regs = new Uint8Array(0); t.fpState = new Uint8Array(0); } },
  },
  {
    what: "tasks.*.runState while 'user' or 'syscall', tasks.*.syscallAbi",
    why: "whether the registers stand at a syscall entry, and that syscall's ABI, are CPU state, set by the run loop at every trap (Task.cpu); 'exited' is an event (task.exit)",
    strip: (g) => { for (const t of Object.values(g.tasks) as Array<Record<string, unknown>>) { if (t.runState !== 'exited') t.runState = 'user'; delete t.syscallAbi; } },
  },
  {
    what: 'threadGroups.*.cpuTimeNs',
    why: 'CPU time is counted by the platform (like the registers); capture() adds it to the checkpoint\'s copy only',
    strip: (g) => { for (const tg of Object.values(g.threadGroups)) tg.cpuTimeNs = 0n; },
  },
  {
    what: 'threadGroups.*.usageBase, threadGroups.*.forkRssKb',
    why: 'resource use (getrusage) is counted by the platform like CPU time; capture() folds the live counts and a fork\'s inherited RSS into usageBase in the checkpoint\'s copy only',
    strip: (g) => { for (const tg of Object.values(g.threadGroups) as Array<Record<string, unknown>>) { delete tg.usageBase; delete tg.forkRssKb; } },
  },
];

function strip(g: KernelState): KernelState {
  for (const e of EXCLUDED) e.strip(g);
  return g;
}

/** Paths where two plain-data values differ (for a readable failure). */
function diffPaths(a: unknown, b: unknown, p: string[] = [], out: string[] = []): string[] {
  if (out.length > 20 || a === b) return out;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) { out.push(`${p.join('.')}: ${String(a)} != ${String(b)}`); return out; }
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    if (Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength))) out.push(`${p.join('.')}: bytes differ`);
    return out;
  }
  const ka = a as Record<string, unknown>, kb = b as Record<string, unknown>;
  for (const k of new Set([...Object.keys(ka), ...Object.keys(kb)])) diffPaths(ka[k], kb[k], [...p, k], out);
  return out;
}

const RECORD = path.join(REPO_ROOT, 'dist', 'cli', 'event-record.js');
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((b) => fs.existsSync(b));

/** One command of the grammar (file names from a small set so operations meet each other's files). */
const name = fc.constantFrom('a', 'b', 'c', 'd/e');
const cmd: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.string({ maxLength: 12, unit: fc.constantFrom('x', 'y', ' ', '1') }), name).map(([s, n]) => `echo '${s}' > ${n}`),
  fc.tuple(fc.nat(99), name).map(([s, n]) => `echo ${s} >> ${n}`),
  name.map((n) => `cat ${n} > /dev/null`),
  name.map((n) => `cat ${n} | wc -c > /dev/null`),
  fc.tuple(name, name).map(([a, b]) => `mv ${a} ${b}`),
  fc.tuple(name, name).map(([a, b]) => `ln ${a} ${b}`),
  fc.tuple(name, name).map(([a, b]) => `cp ${a} ${b}`),
  name.map((n) => `rm -f ${n}`),
  fc.constant('mkdir -p d'),
  fc.constant('rmdir d'),
  fc.tuple(fc.constantFrom('600', '644', '755'), name).map(([m, n]) => `chmod ${m} ${n}`),
  fc.tuple(fc.nat(1 << 16), name).map(([s, n]) => `truncate -s ${s} ${n}`),
  fc.constantFrom('umask 077', 'umask 022'),
  fc.constantFrom('cd d', 'cd /tmp/ev'),
  fc.constant('(echo sub > s; exit 3); echo $? >> s'),
  fc.constant('trap "echo trapped >> t" USR1; kill -USR1 $$'),
  fc.constant('ls > /dev/null'),
  fc.constant('exec 5> five; echo five >&5; exec 5>&-'),
  fc.constant('sleep 0.01'),
  fc.constant('mkfifo ff 2>/dev/null; (echo fifo > ff &); cat ff > /dev/null'),
  fc.constant('dd if=/dev/zero of=big bs=64k count=3 2>/dev/null; truncate -s 70000 big'),
  fc.constant('setsid true; timeout 1 sleep 0.01; renice -n 1 $$ > /dev/null'),
);

/**
 * Object families busybox does not reach, one python3 snippet each (run as one python3 process,
 * a random subset in a random order): pipes, unix stream/datagram socketpairs, TCP and UDP on
 * loopback, POSIX/OFD/flock locks, interval timers, eventfd and epoll, a pty, anonymous and shared
 * file mappings, timerfd, signalfd and a POSIX timer (through libc), credentials and scheduling.
 * Each is wrapped in try/except: a failing call still leaves its events to replay.
 */
const PY: Record<string, string> = {
  pipe: "r, w = os.pipe(); os.write(w, b'p' * 3000); os.read(r, 1000); os.close(w); os.read(r, 5000)",
  socketpair: "a, b = socket.socketpair(); a.sendall(b'x' * 5000); b.recv(100); a.shutdown(socket.SHUT_WR)\n  c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); c.send(b'm1'); c.send(b''); d.recv(10); keep.extend([a, b, c, d])",
  seqpacket: "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET); a.send(b'one'); a.send(b'two'); b.recv(10); a.close(); keep.append(b)",
  tcp: "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c = socket.create_connection(s.getsockname()); a, _ = s.accept(); c.send(b'hi'); a.recv(2)\n  s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0)); u.sendto(b'u', u.getsockname()); u.recv(1); keep.extend([s, c, a, u])",
  unixname: "s = socket.socket(socket.AF_UNIX); s.bind('sock'); s.listen(); c = socket.socket(socket.AF_UNIX); c.connect('sock'); a, _ = s.accept(); c.send(b'z'); a.recv(1); keep.extend([s, c, a])",
  locks: "f = open('lk', 'w+'); fcntl.lockf(f, fcntl.LOCK_EX, 10, 0); fcntl.lockf(f, fcntl.LOCK_SH, 5, 20); fcntl.lockf(f, fcntl.LOCK_UN, 3, 2); fcntl.flock(f, fcntl.LOCK_EX); keep.append(f)",
  itimer: "signal.signal(signal.SIGALRM, lambda *a: None); signal.setitimer(signal.ITIMER_REAL, 0.03, 0.02); time.sleep(0.1); signal.setitimer(signal.ITIMER_REAL, 0); signal.setitimer(signal.ITIMER_VIRTUAL, 10); signal.alarm(100)",
  eventfd: "e = os.eventfd(3); os.eventfd_write(e, 2); os.eventfd_read(e); ep = select.epoll(); ep.register(e, select.EPOLLIN); ep.poll(0); ep.modify(e, select.EPOLLOUT); ep.unregister(e); ep.register(e); keep.append(ep)",
  pty: "m, sl = os.openpty(); os.write(m, b'ab\\n'); os.read(sl, 10); at = termios.tcgetattr(sl); termios.tcsetattr(sl, termios.TCSANOW, at); os.write(sl, b'out\\n'); os.read(m, 10)",
  mmap: "m = mmap.mmap(-1, 1 << 20); m[0:5] = b'hello'; g = mmap.mmap(-1, 3 << 20); g[2 << 20] = 1; g.close(); f = open('mm', 'w+b'); f.truncate(8192); sh = mmap.mmap(f.fileno(), 8192); sh[0:3] = b'abc'; sh.flush(); keep.extend([m, sh, f])",
  timerfd: "fd = L.timerfd_create(1, 0); L.timerfd_settime(fd, 0, (ctypes.c_long * 4)(0, 10_000_000, 0, 20_000_000), None); os.read(fd, 8)",
  signalfd: "signal.pthread_sigmask(signal.SIG_BLOCK, {10}); sfd = L.signalfd(-1, (ctypes.c_ulong * 1)(1 << 9), 0); os.kill(os.getpid(), 10); os.read(sfd, 128)",
  posixtimer: "tid = ctypes.c_void_p(); L.timer_create(1, None, ctypes.byref(tid)); L.timer_settime(tid, 0, (ctypes.c_long * 4)(0, 0, 50, 0), None)",
  creds: "os.setpgid(0, 0); os.nice(1); os.sched_setaffinity(0, {0}); os.umask(0o27); os.setgroups([1, 2]); os.setegid(1); os.setegid(0)",
};
const py = fc.subarray(Object.keys(PY), { minLength: 1 }).chain((ks) => fc.shuffledSubarray(ks, { minLength: ks.length, maxLength: ks.length })).map((ks) => [
  "python3 - > /dev/null 2>&1 <<'PY'",
  'import ctypes, fcntl, mmap, os, select, signal, socket, termios, time',
  'L = ctypes.CDLL(None, use_errno=True); keep = []',
  ...ks.map((k) => `try:\n  ${PY[k]}\nexcept Exception as e: print(e)`),
  'time.sleep(0.4)', // captures see the objects alive
  'PY',
].join('\n'));

describe.skipIf(!busybox)('event replay', () => {
  if (!busybox) console.log('event replay: skipped, busybox not installed');
  it('replaying a run\'s events on its start graph gives its end graph, and every capture taken on the way', () => {
    const numRuns = 8;
    const dir = testTmpDir();
    const t0 = Date.now();
    let midTaken = 0, capturesChecked = 0;
    fc.assert(fc.property(fc.array(cmd, { minLength: 1, maxLength: 12 }), fc.option(py, { freq: 2 }), fc.integer({ min: 100, max: 300 }), (cmds, pyScript, midMs) => {
      const script = ['rm -rf /tmp/ev', 'mkdir -p /tmp/ev', 'cd /tmp/ev', ...cmds.map((c) => `{ ${c}; } 2>/dev/null`), ...(pyScript ? [pyScript] : []), 'sleep 5 &', 'true'].join('\n');
      const out = path.join(dir, 'rec.cbor');
      const record = () => spawnSync(process.execPath, [RECORD, out, '/', String(midMs), '--', busybox!, 'sh', '-c', script], { timeout: 60_000, encoding: 'utf8' });
      let r = record();
      // A known bug outside the event stream, on main before it too (one run in a few with this
      // capture rate): a --leave-running capture's remapping faults a python3 stub
      // ("stub's injection site faulted ... during injected syscall 9") and the recorder dies.
      // The run is repeated once, saying so; a second failure fails the test.
      if (/stub's injection site faulted/.test(r.stderr ?? '')) {
        console.log(`event replay: the recorder hit the known capture fault (stub's injection site faulted); repeating the run once`);
        r = record();
      }
      expect(r.error, script).toBeUndefined();
      expect(r.stderr, script).not.toMatch(/internal error|event op on a missing/);
      expect(r.status, `${script}\n${r.stderr}`).toBe(0);
      const rec = decodeCbor(fs.readFileSync(out)) as { start: KernelState; end: KernelState; events: KernelEvent[]; mids: Array<{ graph: KernelState; seq: number }>; mid?: KernelState; midSeq: number; dirty: Record<string, Array<number | string>> };
      const { start, end, events } = rec;
      // Every capture taken while the guest ran (its objects alive, not yet released at the end)
      // is the start graph with the events up to it applied.
      const at = structuredClone(start);
      let next = 0;
      for (const m of rec.mids) {
        const upTo = events.findIndex((e) => e.seq > m.seq);
        replay(at, events.slice(next, upTo < 0 ? events.length : upTo));
        next = upTo < 0 ? events.length : upTo;
        expect(diffPaths(strip(structuredClone(at)), strip(structuredClone(m.graph))), `at the capture after event ${m.seq}: ${script}`).toEqual([]);
        capturesChecked++;
      }
      expect(events.length).toBeGreaterThan(cmds.length);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => events[0].seq + i));
      const got = strip(replay(start, events));
      const want = strip(end);
      const same = encodeCbor(got).equals(encodeCbor(want));
      expect(same ? [] : diffPaths(got, want), script).toEqual([]);
      expect(same).toBe(true);
      if (rec.mid) {
        midTaken++;
        const mid = strip(structuredClone(rec.mid));
        const fromMid = strip(replay(structuredClone(rec.mid), events.filter((e) => e.seq > rec.midSeq)));
        expect(diffPaths(fromMid, want), `from the mid-run capture: ${script}`).toEqual([]);
        // Every object that changed after the capture is dirty.
        const dirty = (kind: string, id: number | string) => (rec.dirty[kind] ?? []).includes(id);
        const changed: string[] = [];
        const compare = (kind: string, a: Record<string, unknown>, b: Record<string, unknown>, key: (k: string) => number | string) => {
          for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
            if (!encodeCbor(a[k] ?? null).equals(encodeCbor(b[k] ?? null)) && !dirty(kind, key(k))) changed.push(`${kind} ${k}`);
          }
        };
        compare('task', mid.tasks, want.tasks, Number);
        compare('threadGroup', mid.threadGroups, want.threadGroups, Number);
        compare('fdTable', mid.fdTables, want.fdTables, Number);
        compare('openFile', mid.openFiles, want.openFiles, Number);
        compare('inode', mid.fs.inodes, want.fs.inodes, Number);
        compare('dentry', mid.fs.upper, want.fs.upper, String);
        compare('pipe', mid.pipes, want.pipes, Number);
        compare('addressSpace', mid.addressSpaces, want.addressSpaces, Number);
        compare('pty', mid.ptys ?? {}, want.ptys ?? {}, Number);
        expect(changed, `changed but not dirty: ${script}`).toEqual([]);
      }
    }), { numRuns, seed: Number(process.env.SNAPVISOR_SEED ?? 20261201) });
    expect(Date.now() - t0).toBeLessThan(240_000);
    expect(midTaken).toBeGreaterThan(0);
    expect(capturesChecked).toBeGreaterThan(numRuns);
    // No stub outlives its sandbox (an orphan stub would be adopted by pid 1).
    const orphans = execFileSync('ps', ['-eo', 'ppid=,stat=,comm='], { encoding: 'utf8' }).split('\n').filter((l) => {
      const [ppid, stat, comm] = l.trim().split(/\s+/);
      return comm === STUB_NAME && ppid === '1' && !stat.startsWith('Z'); // as test/helpers.ts orphanStubs
    });
    expect(orphans).toEqual([]);
  }, 300_000);
});
