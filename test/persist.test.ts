/**
 * Save/restore per object kind (src/kernel/persist.ts, PERSISTED_KINDS): a guest holding
 * objects of every kind is checkpointed through the CLI; then, in this process, its graph is
 * restored into a kernel (every kind rebuilds its runtime part), captured again, encoded with
 * cbor-x and decoded, and each kind's records must equal the checkpoint's. Also the graph
 * schema: an older graph is migrated, a newer or unknown one refused naming both versions.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, freshDir, snapvisor, snapvisorStreaming } from './helpers.js';
import { loadCheckpoint } from '../snapshots/store.js';
import { decodeCbor, encodeCbor } from '../snapshots/format.js';
import { PERSISTED_KINDS } from '../src/kernel/persisted-kinds.js';
import { GraphVersionError, migrateGraph } from '../src/kernel/graph-schema.js';
import { GRAPH_VERSION, type KernelState } from '../src/kernel/state.js';

const GUEST = String.raw`
import os, sys, time, socket, select, signal, pty
os.chdir(sys.argv[1])
held = [os.open("/etc/passwd", os.O_RDONLY), os.open("/dev/null", os.O_RDWR), os.open("/proc/self/status", os.O_RDONLY), os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)]
os.read(held[0], 7)
efd = os.eventfd(5)
a, b = socket.socketpair(); a.sendall(b"queued bytes")
m, s = pty.openpty(); os.write(m, b"typed line\n")
ep = select.epoll(); ep.register(efd, select.EPOLLIN)
import ctypes; libc = ctypes.CDLL(None, use_errno=True)
tfd = libc.timerfd_create(1, 0); libc.timerfd_settime(tfd, 0, (ctypes.c_long * 4)(1, 0, 100, 0), None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); sfd = libc.signalfd(-1, (ctypes.c_ulong * 16)(1 << 9), 0)
assert tfd > 0 and sfd > 0
ifd = libc.inotify_init1(0); assert ifd > 0 and libc.inotify_add_watch(ifd, b".", 0x100) > 0
mfd = os.memfd_create("blob"); os.write(mfd, b"memfd contents")
pr, pw = os.pipe(); os.write(pw, b"in the pipe")
with open("upper.txt", "w") as f: f.write("upper file")
up = os.open("upper.txt", os.O_RDONLY)
signal.setitimer(signal.ITIMER_REAL, 100, 100); signal.signal(signal.SIGALRM, lambda *_: None)
child = os.fork()
if child == 0:
    time.sleep(60); os._exit(0)
pfd = os.pidfd_open(child)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
print("ready", flush=True)
time.sleep(60)
`;

/** A --network=host guest (host-backed sockets, file:hostinet): a TCP listener with an option set and a bound UDP socket. */
const HOST_GUEST = String.raw`
import socket, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 0)); l.listen(7)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
print("ready", flush=True)
time.sleep(60)
`;

/**
 * The records of one kind with what moves on by design made comparable: the clock (time
 * passes), CPU time (new stubs use some), the sandbox's identity (a restore is a new sandbox:
 * a new boot id and the next generation, checked on their own below).
 */
function comparable(kind: string, records: Array<[string, unknown]>): Array<[string, unknown]> {
  if (kind === 'clock') return [];
  if (kind === 'config') return records.map(([id, c]) => [id, { ...(c as object), bootId: undefined, generation: undefined }]);
  // CPU time and resource usage go on growing with the restored stubs (they start anew): compared apart.
  if (kind === 'thread-group') return records.map(([id, tg]) => [id, { ...(tg as object), cpuTimeNs: 0n, usageBase: undefined }]);
  return records;
}

describe('save/restore declared per object kind', () => {
  let before: KernelState;
  let after: KernelState;
  /** The --network=host sandbox's graphs (kind file:hostinet). */
  let hostBefore: KernelState;
  let hostAfter: KernelState;
  let cpuGrowthNs: bigint[] = [];
  let stubsLeft = -1;

  beforeAll(async () => {
    const root = freshDir('persist-root'), store = freshDir('persist-store'), dir = freshDir('persist-sandbox');
    const name = `persist-${process.pid}`;
    // A tmpfs and a volume: the mount table and its superblocks.
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--tmpfs', '/mnt/t:size=1m', '--volume', `${dir}:/mnt/v:ro`, '--', '/usr/bin/python3', '-c', GUEST, dir]);
    await run.waitFor((l) => l === 'ready', 30_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;

    before = (await loadCheckpoint(store, id)).graph as KernelState;
    // The built restore (dist/): its page-verifying worker thread is a .js file beside it.
    const { restoreKernel } = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'checkpoint.js')).href) as typeof import('../snapshots/checkpoint.js');

    // Host-backed sockets: a --network=host sandbox, checkpointed with --tcp-close-on-checkpoint; its restore listens and binds again.
    const hostRun = snapvisorStreaming(['--root', root, 'run', '--name', `${name}-host`, '--network=host', '--tcp-close-on-checkpoint', '--', '/usr/bin/python3', '-c', HOST_GUEST]);
    await hostRun.waitFor((l) => l === 'ready', 30_000);
    const hostCp = await snapvisor(['--root', root, 'checkpoint', `${name}-host`, '--store', store], { timeoutMs: 30_000 });
    expect(hostCp.stderr).toBe('');
    expect(await hostRun.done).toBe(137);
    const hostId = hostCp.stdout.toString().trim().split(/\s+/).pop()!;
    hostBefore = (await loadCheckpoint(store, hostId)).graph as KernelState;
    const restoredHost = await restoreKernel(store, hostId);
    try {
      const cap = restoredHost.kernel.capture(false);
      cap.release();
      hostAfter = decodeCbor(encodeCbor(cap.graph)) as KernelState;
    } finally {
      restoredHost.kernel.destroy();
    }

    const { kernel, verified } = await restoreKernel(store, id);
    const stubPids = [...kernel.tasks.values()].map((t) => (t.platform as unknown as { pid: number }).pid);
    try {
      expect(await verified).toBeUndefined(); // every page of the checkpoint checked out
      const cap = kernel.capture(false);
      cap.release();
      after = decodeCbor(encodeCbor(cap.graph)) as KernelState;
    } finally {
      kernel.destroy();
    }
    cpuGrowthNs = Object.keys(before.threadGroups).map((k) => after.threadGroups[Number(k)].cpuTimeNs - before.threadGroups[Number(k)].cpuTimeNs);
    // Killed stubs are reaped once the host has torn them down (platforms/ptrace destroy(): not
    // waited for there): give it up to 5 s, then count what is left (zombies included).
    for (let waited = 0; ; waited += 50) {
      const alive = spawnSync('ps', ['-o', 'pid=', '-p', stubPids.join(',')], { encoding: 'utf8' }).stdout.trim(); // ps exits 1 when none is left
      stubsLeft = alive ? alive.split('\n').length : 0;
      if (!stubsLeft || waited >= 5000) break;
      await new Promise((res) => setTimeout(res, 50));
    }
  }, 120_000);

  afterAll(() => undefined);

  it('the restored kernel left no stub behind; CPU time only grew by the new stubs\' start-up; it is the next generation', () => {
    expect(stubsLeft).toBe(0);
    expect(after.config.generation).toBe((before.config.generation ?? 0) + 1);
    expect(after.config.bootId).toBeTruthy();
    expect(after.config.bootId).not.toBe(before.config.bootId);
    for (const d of cpuGrowthNs) { expect(d).toBeGreaterThanOrEqual(0n); expect(d).toBeLessThan(500_000_000n); }
    // Usage counters only grow across the restore.
    for (const k of Object.keys(before.threadGroups)) {
      const b = before.threadGroups[Number(k)].usageBase, a = after.threadGroups[Number(k)].usageBase;
      if (b && a) for (const f of ['minflt', 'majflt', 'nivcsw'] as const) expect(Number(a[f] ?? 0)).toBeGreaterThanOrEqual(Number(b[f] ?? 0));
    }
  });

  it.each(PERSISTED_KINDS.map((k) => [k.kind, k] as const))('%s: capture → cbor → restore → capture gives the same records', (kind, k) => {
    const [b, a] = kind === 'file:hostinet' ? [hostBefore, hostAfter] : [before, after];
    const was = k.records(b);
    expect(was.length, `the guest holds no ${kind}`).toBeGreaterThan(0);
    expect(comparable(kind, k.records(a))).toEqual(comparable(kind, was));
    expect(k.rebuilds.length).toBeGreaterThan(0);
  });
});

describe('graph schema version', () => {
  const graph = (v: number, openFiles: Record<number, object> = {}) => ({ graphVersion: v, openFiles });

  it('a version-1 graph is migrated: directory records lose the fields version 2 dropped', () => {
    const g = graph(1, { 7: { id: 7, kind: 'dir', path: '/usr', flags: 0, offset: 0, refs: 1, content: new Uint8Array(0), pidfdTgid: 3 }, 8: { id: 8, kind: 'pipe', path: 'pipe:[1]', flags: 0, offset: 0, refs: 1, pipeId: 2 } });
    expect(migrateGraph(g)).toEqual([1]);
    expect(g.graphVersion).toBe(GRAPH_VERSION);
    expect(g.openFiles).toEqual({ 7: { id: 7, kind: 'dir', path: '/usr', flags: 0, offset: 0, refs: 1 }, 8: { id: 8, kind: 'pipe', path: 'pipe:[1]', flags: 0, offset: 0, refs: 1, pipeId: 2 } });
  });

  it('a current graph is left as it is', () => {
    const g = graph(GRAPH_VERSION);
    expect(migrateGraph(g)).toEqual([]);
  });

  it('a newer graph, or one older than any migration, is refused with one line naming both versions', () => {
    expect(() => migrateGraph(graph(GRAPH_VERSION + 1))).toThrow(GraphVersionError);
    expect(() => migrateGraph(graph(GRAPH_VERSION + 1))).toThrow(`checkpoint graph version ${GRAPH_VERSION + 1} is newer than this snapvisor's graph version ${GRAPH_VERSION}`);
    expect(() => migrateGraph(graph(0))).toThrow(`checkpoint graph version 0 is too old for this snapvisor's graph version ${GRAPH_VERSION}`);
    expect(() => migrateGraph({ openFiles: {} })).toThrow(GraphVersionError);
  });
});
