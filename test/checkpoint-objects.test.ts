/**
 * Every kind of kernel object a guest can hold survives checkpoint and restore: the guest
 * creates them, checkpoints while it sleeps (the sandbox is killed), and after restore uses
 * each one. The restored output must equal an uninterrupted native run's.
 * Objects: an eventfd with a count, a socketpair with bytes queued, a pty with typed input
 * and echo pending, an epoll set, a memfd, a FIFO with data, an interval timer, a pidfd of
 * an exited child, a stopped child, a file in the upper layer, a TCP listener with a
 * connection waiting to be accepted (bytes sent), a UDP socket with a queued datagram,
 * a named AF_UNIX listener, a MAP_SHARED mapping of a file the sandbox wrote, an open file in
 * flight over a unix socket (SCM_RIGHTS), a timer_create(2) interval timer.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, freshDir, native, orphanStubs, PY_WAIT_FOR_GATE, snapvisor, snapvisorStreaming } from './helpers.js';

const GUEST = String.raw`
import os, sys, time, socket, select, signal, pty, mmap, ctypes, struct
os.chdir(sys.argv[1])
efd = os.eventfd(5)
a, b = socket.socketpair(); a.sendall(b"queued bytes")
m, s = pty.openpty(); os.write(m, b"typed line\n")
ep = select.epoll(); ep.register(efd, select.EPOLLIN)
mfd = os.memfd_create("blob"); os.write(mfd, b"memfd contents"); os.lseek(mfd, 0, 0)
os.mkfifo("fifo"); fr = os.open("fifo", os.O_RDONLY | os.O_NONBLOCK); fw = os.open("fifo", os.O_WRONLY); os.write(fw, b"fifo data")
ticks = []
signal.signal(signal.SIGALRM, lambda *_: ticks.append(1))
signal.setitimer(signal.ITIMER_REAL, 0.4, 0.4)
child = os.fork()
if child == 0: os._exit(9)
pfd = os.pidfd_open(child)
stopped = os.fork()
if stopped == 0:
    time.sleep(300); os._exit(0)  # ended by the SIGTERM after the restore, long before
os.kill(stopped, signal.SIGSTOP); os.waitpid(stopped, os.WUNTRACED)
with open("upper.txt", "w") as f: f.write("written before")
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4); port = srv.getsockname()[1]
pending = socket.create_connection(("127.0.0.1", port)); pending.sendall(b"sent before accept")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"queued datagram", udp.getsockname())
usrv = socket.socket(socket.AF_UNIX); usrv.bind("unix.sock"); usrv.listen(1)
sf = open("shared.bin", "w+b"); sf.write(b"x" * 8192); sf.flush(); sm = mmap.mmap(sf.fileno(), 8192); sm[0:6] = b"before"
libc = ctypes.CDLL(None, use_errno=True); ptimer_hits = []
signal.signal(signal.SIGUSR2, lambda *_: ptimer_hits.append(1))
sev = ctypes.create_string_buffer(struct.pack("qii", 0, signal.SIGUSR2, 0) + bytes(48)); tid = ctypes.c_void_p(0)
assert libc.timer_create(1, sev, ctypes.byref(tid)) == 0
spec = ctypes.create_string_buffer(struct.pack("qqqq", 0, 300_000_000, 0, 300_000_000))
assert libc.timer_settime(tid, 0, spec, None) == 0
ua, ub = socket.socketpair(socket.AF_UNIX); pr, pw = os.pipe(); os.write(pw, b"in flight"); socket.send_fds(ua, [b"fd"], [pr]); os.close(pr)
t_busy = time.process_time()
while time.process_time() - t_busy < 0.3: pass
cpu_before = time.process_time()
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
print("eventfd", os.eventfd_read(efd))
print("socketpair", b.recv(100)); b.sendall(b"reply"); print("reply", a.recv(100))
print("pty slave", os.read(s, 100)); print("pty master", os.read(m, 100))
os.eventfd_write(efd, 3); print("epoll", [e for _, e in ep.poll(1)])
print("memfd", os.read(mfd, 100))
print("fifo", os.read(fr, 100))
print("pidfd", select.select([pfd], [], [], 2)[0] == [pfd], os.waitid(os.P_PIDFD, pfd, os.WEXITED).si_status)
os.kill(stopped, signal.SIGCONT); os.kill(stopped, signal.SIGTERM); print("stopped child", os.waitpid(stopped, 0)[1])
t0 = time.monotonic(); n0 = len(ticks)
while len(ticks) < n0 + 2 and time.monotonic() - t0 < 5: time.sleep(0.05)
print("timer ticks on", len(ticks) >= n0 + 2)
print("upper", open("upper.txt").read())
conn, _ = srv.accept(); print("tcp accepted", conn.recv(100)); conn.sendall(b"answer"); print("tcp reply", pending.recv(100))
print("udp", udp.recvfrom(100)[0])
uc = socket.socket(socket.AF_UNIX); uc.connect("unix.sock"); us, _ = usrv.accept(); uc.sendall(b"over unix"); print("unix", us.recv(100))
print("port kept", srv.getsockname()[1] == port)
print("shared mmap", os.pread(sf.fileno(), 6, 0)); sm[100:105] = b"after"; print(os.pread(sf.fileno(), 5, 100))
os.pwrite(sf.fileno(), b"viafd", 200); print(sm[200:205])
_, got, _, _ = socket.recv_fds(ub, 10, 1); print("fd in flight", os.read(got[0], 20))
n0 = len(ptimer_hits); t0 = time.monotonic()
while len(ptimer_hits) < n0 + 2 and time.monotonic() - t0 < 5: time.sleep(0.05)
print("posix timer ticks on", len(ptimer_hits) >= n0 + 2)
print("cpu time carried on", time.process_time() >= cpu_before)
# Disarm both timers before exiting: interpreter shutdown resets Python's handlers to SIG_DFL, and a
# tick landing after that kills the process (exit 142 / 140), natively as in the sandbox, on a busy machine.
signal.setitimer(signal.ITIMER_REAL, 0); assert libc.timer_delete(tid) == 0
`;

describe('checkpoint/restore of every kind of kernel object', () => {
  it('eventfd, socketpair, pty, epoll, memfd, FIFO, itimer, pidfd, stopped child, upper file, TCP/UDP/unix sockets', async () => {
    const scratch = freshDir('objects-native');
    const gate = checkpointGate('objects');
    const expected = await native(['/usr/bin/python3', '-c', GUEST, scratch, gate.native], { timeoutMs: 30_000 });
    expect(expected.status).toBe(0);
    const want = expected.stdout.toString().split('\n').filter((l) => l && l !== 'ready');

    const root = freshDir('objects-root'), store = freshDir('objects-store'), dir = freshDir('objects-sandbox');
    const name = `objects-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', GUEST, dir, gate.sandbox], { timeoutMs: 90_000 });
    await run.waitFor((l) => l === 'ready', 60_000); // a python3 start-up under a loaded CI machine took over 20 s once
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['ready']);
    gate.open();
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = await snapvisor(['--root', root, 'restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(want);
    expect(orphanStubs()).toEqual([]);
  }, 150_000);
});
