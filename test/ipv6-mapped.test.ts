/**
 * IPv4-mapped IPv6 addresses on the loopback network (src/net/socket.ts; man 7 ipv6): an AF_INET6
 * socket without IPV6_V6ONLY takes IPv4 connections and datagrams and names them
 * ::ffff:127.0.0.1, an AF_INET6 socket reaches an AF_INET one by its mapped address, V6ONLY
 * refuses IPv4, ports clash across families as on Linux; against the same program natively, and a
 * dual-stack listener with a mapped connection carrying bytes across checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, expectCheckpointRestoreMatches, native, PY_WAIT_FOR_GATE } from './helpers.js';

const MAPPED = String.raw`
import errno, os, socket, sys, time
V6ONLY = socket.IPV6_V6ONLY
def tcp(server_fam, server_host, client_fam, client_host, v6only=0):
    s = socket.socket(server_fam)
    if server_fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, V6ONLY, v6only)
    s.bind((server_host, 0)); s.listen(2); port = s.getsockname()[1]
    c = socket.socket(client_fam)
    try: c.connect((client_host, port))
    except OSError as x: print("  connect", errno.errorcode[x.errno]); return
    a, peer = s.accept()
    c.sendall(b"ping"); a.sendall(a.recv(10).upper())
    print("  accepted from", peer[0], "server name", a.getsockname()[0], "client name", c.getsockname()[0], "client peer", c.getpeername()[0], c.recv(10))
    return s, a, c
print("v4 client to dual-stack v6 server"); tcp(socket.AF_INET6, "::", socket.AF_INET, "127.0.0.1")
print("v6 client to v4 server by mapped address"); tcp(socket.AF_INET, "127.0.0.1", socket.AF_INET6, "::ffff:127.0.0.1")
print("v4 client to V6ONLY server"); tcp(socket.AF_INET6, "::", socket.AF_INET, "127.0.0.1", 1)
print("v6 client to mapped-bound v6 server"); tcp(socket.AF_INET6, "::ffff:127.0.0.1", socket.AF_INET6, "::ffff:127.0.0.1")
print("v6 ::1 client to dual-stack server"); tcp(socket.AF_INET6, "::", socket.AF_INET6, "::1")
# UDP
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(("::", 0)); p6 = u6.getsockname()[1]
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u4.bind(("127.0.0.1", 0))
u4.sendto(b"v4 to v6", ("127.0.0.1", p6)); d, a = u6.recvfrom(100); print("udp", d, a[0], a[1] == u4.getsockname()[1])
u6.sendto(b"v6 back", ("::ffff:127.0.0.1", u4.getsockname()[1])); d, a = u4.recvfrom(100); print("udp", d, a[0], a[1] == p6)
# ports across families
d6 = socket.socket(socket.AF_INET6); d6.bind(("::", 0)); port = d6.getsockname()[1]
try: socket.socket(socket.AF_INET).bind(("127.0.0.1", port)); print("v4 bind on dual-stack port: ok")
except OSError as x: print("v4 bind on dual-stack port:", errno.errorcode[x.errno])
o6 = socket.socket(socket.AF_INET6); o6.setsockopt(socket.IPPROTO_IPV6, V6ONLY, 1); o6.bind(("::", 0)); port = o6.getsockname()[1]
try: b = socket.socket(socket.AF_INET); b.bind(("127.0.0.1", port)); print("v4 bind on V6ONLY port: ok")
except OSError as x: print("v4 bind on V6ONLY port:", errno.errorcode[x.errno])
print("V6ONLY default", socket.socket(socket.AF_INET6).getsockopt(socket.IPPROTO_IPV6, V6ONLY))
try: socket.socket(socket.AF_INET6).bind(("::ffff:10.0.0.1", 0))
except OSError as x: print("mapped non-local:", errno.errorcode[x.errno])
# across a checkpoint: a dual-stack listener, a mapped connection with bytes in flight
s = socket.socket(socket.AF_INET6); s.bind(("::", 0)); s.listen(2); port = s.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port)); a, peer = s.accept(); c.sendall(b"in flight")
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
print("after", a.recv(100), peer[0], a.getpeername()[0], flush=True)
c2 = socket.create_connection(("127.0.0.1", port)); a2, peer2 = s.accept(); print("new", peer2[0], a2.getsockname()[0], flush=True)
`;

describe('IPv4-mapped IPv6 addresses', () => {
  it('dual-stack sockets answer as natively, also across checkpoint/restore', async () => {
    const gate = checkpointGate('ipv6-mapped');
    const want = await native(['/usr/bin/python3', '-c', MAPPED, gate.native], { timeoutMs: 30_000 });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('ipv6-mapped', ['/usr/bin/python3', '-c', MAPPED, gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 150_000);
});
