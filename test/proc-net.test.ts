/**
 * /proc/net/{tcp,tcp6,udp,udp6,unix} (src/vfs/proc-net.ts): a python guest opens TCP listeners
 * and a connection, UDP sockets bound and connected (v4 and v6), a named and an abstract unix
 * socket and a socketpair, then finds each of its sockets in the tables by inode (its fstat
 * st_ino) and prints what the line says (addresses decoded, state, queues, uid, unix flags,
 * type, state, refcount and path). The same program run natively must print the same lines,
 * with --network=sandbox (the sandbox's own sockets) and --network=host (host-backed ones).
 * Kernel pointers are not compared (Linux hashes them), nor the lengths of the v6 lines (they
 * hold the inode number unpadded).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, snapvisor } from './helpers.js';

const PY = String.raw`
import socket, os, sys
def port(s): return s.getsockname()[1]
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(5)
c = socket.create_connection(('127.0.0.1', port(l))); a, _ = l.accept()
l6 = socket.socket(socket.AF_INET6); l6.bind(('::1', 0)); l6.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(('::', 0))
uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); uc.connect(('127.0.0.1', port(u)))
ux = socket.socket(socket.AF_UNIX); ux.bind(sys.argv[1] + '/pn.sock'); ux.listen()
ud = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ud.bind('\0pn-abstract-%d\0x' % os.getpid())
p1, p2 = socket.socketpair()
socks = [('l', l), ('c', c), ('a', a), ('l6', l6), ('u', u), ('u6', u6), ('uc', uc), ('ux', ux), ('ud', ud), ('p1', p1), ('p2', p2)]
mine = {os.fstat(s.fileno()).st_ino: n for n, s in socks}
ports = {port(s): n for n, s in socks if s.family != socket.AF_UNIX and n != 'a'}
def dec4(h):
    ip, p = h.split(':'); return '%s:%d' % ('.'.join(map(str, bytes.fromhex(ip)[::-1])), int(p, 16))
def dec6(h):
    ip, p = h.split(':'); raw = b''.join(bytes.fromhex(ip[i:i+8])[::-1] for i in range(0, 32, 8))
    return '[%s]:%d' % (socket.inet_ntop(socket.AF_INET6, raw), int(p, 16))
def named(s):
    a, p = s.rsplit(':', 1); return a + ':' + ports.get(int(p), p if p == '0' else 'other')
for name in ['tcp', 'tcp6', 'udp', 'udp6']:
    lines = open('/proc/net/' + name).read().split('\n')
    print(name, repr(lines[0]))
    dec = dec6 if name.endswith('6') else dec4
    out = []
    for line in lines[1:]:
        f = line.split()
        if len(f) >= 10 and int(f[9]) in mine:
            out.append(' '.join([mine[int(f[9])], named(dec(f[1])), named(dec(f[2])), f[3], f[4], f[5], f[6], 'uid=' + f[7], 'len=%s' % (len(line) if name in ('tcp', 'udp') else '-')]))
    print('\n'.join(sorted(out)))
lines = open('/proc/self/net/unix').read().split('\n')
print('unix', repr(lines[0]))
out = []
for line in lines[1:]:
    f = line.split()
    if len(f) >= 7 and int(f[6]) in mine:
        out.append(' '.join([mine[int(f[6])]] + f[1:6] + [x.replace(sys.argv[1], 'DIR').replace(str(os.getpid()), 'PID') for x in f[7:]]))
print('\n'.join(sorted(out)))
print('/proc/net ->', os.readlink('/proc/net'), sorted(os.listdir('/proc/self/net')))
`;

/** What the program prints natively (its unix socket in a fresh directory). */
function nativeLines(): string {
  const r = spawnSync('/usr/bin/python3', ['-c', PY, freshDir('procnet-native')], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.replace(/^(\/proc\/net -> self\/net ).*$/m, "$1['tcp', 'tcp6', 'udp', 'udp6', 'unix']");
}

describe('/proc/net', () => {
  for (const network of ['sandbox', 'host']) {
    it(`lists the guest's sockets as Linux does (--network=${network})`, async () => {
      const r = await snapvisor(['run', `--network=${network}`, '--', '/usr/bin/python3', '-c', PY, freshDir('procnet')], { timeoutMs: 30_000 });
      expect(r.timedOut).toBe(false);
      expect(r.stderr).toBe('');
      const out = r.stdout.toString();
      // Every socket found, with the state Linux gives it.
      expect(out).toMatch(/^l 127\.0\.0\.1:l 0\.0\.0\.0:0 0A /m);
      expect(out).toMatch(/^c 127\.0\.0\.1:c 127\.0\.0\.1:l 01 /m);
      expect(out).toMatch(/^ux 00000002 00000000 00010000 0001 01 DIR\/pn\.sock$/m);
      expect(out).toBe(nativeLines());
      expect(r.status).toBe(0);
      expect(orphanStubs()).toEqual([]);
    });
  }

  it("busybox netstat reads the tables: a guest's listener is listed", async () => {
    const r = await snapvisor(['run', '--', '/bin/busybox', 'sh', '-c', 'busybox nc -l -p 7777 & for i in $(seq 100); do busybox netstat -tln | grep -q 7777 && break; sleep 0.1; done; busybox netstat -tln | tail -n +3; kill %1'], { timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toMatch(/^tcp +0 +0 :::7777 +:::\* +LISTEN *\n$/);
  });
});
