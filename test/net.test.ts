/**
 * The sandbox's loopback network against native Linux: same output for TCP (v4 and v6)
 * across fork, UDP with addresses, truncation and peeking, AF_UNIX named and abstract
 * sockets, refused connections, addresses in use, non-loopback addresses, and poll/epoll.
 */
import { describe, expect, it } from 'vitest';
import { freshDir, native, snapvisor } from './helpers.js';

const CASES: Record<string, string> = {
  'TCP echo server in a forked child, v4 and v6': String.raw`
import os, socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen(2); port = srv.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        for _ in range(3):
            c, a = srv.accept(); c.sendall(c.recv(100).upper() + a[0].encode()); c.close()
        os._exit(0)
    srv.close()
    for w in (b"one", b"two", b"three"):
        k = socket.create_connection((host, port)); k.sendall(w); print(k.recv(100), k.getpeername()[1] == port); k.close()
    print("child", os.waitpid(pid, 0)[1])
`,
  'UDP: sender address, truncation, MSG_PEEK, connected send': String.raw`
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"hello", s.getsockname()); d, a = s.recvfrom(100); print(d, a == c.getsockname())
c.sendto(b"truncate me", s.getsockname()); print(s.recv(8))
c.connect(s.getsockname()); c.send(b"peek"); print(s.recv(10, socket.MSG_PEEK), s.recv(10))
`,
  'AF_UNIX: named and abstract, stream and datagram, and the socket file': String.raw`
import os, socket, stat
srv = socket.socket(socket.AF_UNIX); srv.bind("s.sock"); srv.listen(1)
print(stat.S_ISSOCK(os.stat("s.sock").st_mode))
c = socket.socket(socket.AF_UNIX); c.connect("s.sock"); a, _ = srv.accept(); c.sendall(b"named"); print(a.recv(10))
ab = socket.socket(socket.AF_UNIX); ab.bind("\0abstract-sv"); ab.listen(1)
d = socket.socket(socket.AF_UNIX); d.connect("\0abstract-sv"); e, _ = ab.accept(); e.sendall(b"abstract"); print(d.recv(10))
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); u.bind("d.sock")
v = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); v.sendto(b"dgram", "d.sock"); print(u.recv(10))
try:
    socket.socket(socket.AF_UNIX).bind("s.sock")
except OSError as x: print("rebind", x.errno == 98)
`,
  'SCM_RIGHTS: open files passed over unix sockets, across fork, and dropped when read plainly': String.raw`
import os, socket
a, b = socket.socketpair()
r, w = os.pipe(); os.write(w, b"through the passed fd")
socket.send_fds(a, [b"hello"], [r]); os.close(r)
msg, fds, flags, addr = socket.recv_fds(b, 100, 4)
print(msg, len(fds), os.read(fds[0], 100))
pid = os.fork()
if pid == 0:
    f = open("/etc/hostname", "rb"); socket.send_fds(b, [b"x"], [f.fileno()]); os._exit(0)
os.waitpid(pid, 0)
m, fds2, _, _ = socket.recv_fds(a, 10, 2); print(m, len(fds2), len(os.read(fds2[0], 3)))
socket.send_fds(a, [b"ignored"], [w]); print(b.recv(100))
a.sendall(b"plain"); print(b.recv(10))
`,
  'errors: refused, in use, unreachable; readiness through poll and epoll': String.raw`
import errno, select, socket
p = socket.socket(); p.bind(("127.0.0.1", 0)); port = p.getsockname()[1]; p.close()
try: socket.create_connection(("127.0.0.1", port))
except ConnectionRefusedError: print("refused")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
try: socket.socket().bind(s.getsockname())
except OSError as x: print("in use", errno.errorcode[x.errno])
try: socket.socket().bind(("10.0.0.1", 0))
except OSError as x: print("not local", errno.errorcode[x.errno])
ep = select.epoll(); ep.register(s.fileno(), select.EPOLLIN)
print("idle", ep.poll(0.05))
c = socket.create_connection(s.getsockname())
print("ready", [e for _, e in ep.poll(1)] == [select.EPOLLIN])
a, _ = s.accept(); c.close()
print("eof", select.select([a], [], [], 1)[0] == [a], a.recv(10))
`,
};

describe('loopback network: same as native', () => {
  for (const [name, script] of Object.entries(CASES)) {
    it(name, async () => {
      const dn = freshDir('net-native'), ds = freshDir('net-sandbox');
      const want = await native(['/usr/bin/python3', '-c', `import os; os.chdir(${JSON.stringify(dn)})\n${script}`]);
      const got = await snapvisor(['run', '--', '/usr/bin/python3', '-c', `import os; os.chdir(${JSON.stringify(ds)})\n${script}`], { timeoutMs: 30_000 });
      expect(want.status).toBe(0);
      expect(got.stderr).toBe('');
      expect(got.stdout.toString()).toBe(want.stdout.toString());
      expect(got.status).toBe(0);
    });
  }
});
