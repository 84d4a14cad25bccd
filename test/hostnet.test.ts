/**
 * run --network=host (issue 8 point 4): the guest's TCP and UDP sockets are host sockets. A C
 * client talks to host-side servers started here exactly as it does natively (blocking and
 * non-blocking connect, names, a 1 MiB echo, MSG_PEEK, MSG_WAITALL across a forked child's send,
 * SO_RCVTIMEO, a receive a signal interrupts, shutdown,
 * poll and epoll, a refused port, UDP with addresses and truncation); busybox wget fetches from a
 * host HTTP server; a guest asyncio server is reached from the host; names resolve as the host
 * resolves them. A checkpoint with host sockets open is refused, naming them, unless
 * --tcp-close-on-checkpoint: then the restored guest's connection is reset and its listener
 * listens again. With --network=sandbox the same client cannot reach the host's listener, which
 * sees no connection.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileStatic, freePort, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/** Bad pointers and bad arguments to the socket calls: what Linux answers (EFAULT, EINVAL, ENOTCONN). */
const ERRORS = `#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#define BAD ((void *)1)
#define SHOW(what, call) do { errno = 0; long r_ = (long)(call); printf("%s %ld %s\\n", what, r_, r_ < 0 ? strerror(errno) : ""); } while (0)
int main(int argc, char **argv) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET }; inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t al = sizeof a;
  SHOW("bind bad", bind(l, BAD, 16));
  SHOW("bind short", bind(l, (struct sockaddr *)&a, 4));
  SHOW("bind", bind(l, (struct sockaddr *)&a, sizeof a));
  SHOW("listen", listen(l, 4));
  SHOW("getsockname bad", getsockname(l, BAD, &al));
  SHOW("getsockname badlen", getsockname(l, (struct sockaddr *)&a, BAD));
  getsockname(l, (struct sockaddr *)&a, &al);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  SHOW("connect bad", connect(s, BAD, 16));
  SHOW("connect", connect(s, (struct sockaddr *)&a, sizeof a));
  SHOW("accept bad", accept(l, BAD, &al));
  s = socket(AF_INET, SOCK_STREAM, 0);
  connect(s, (struct sockaddr *)&a, sizeof a);
  int c = accept(l, 0, 0);
  SHOW("send bad", send(s, BAD, 10, 0));
  SHOW("send", send(s, "hello", 5, 0));
  usleep(50000);
  SHOW("recv bad", recv(c, BAD, 10, 0));
  int v; socklen_t vl = sizeof v;
  SHOW("getsockopt bad", getsockopt(s, SOL_SOCKET, SO_TYPE, BAD, &vl));
  SHOW("getsockopt badlen", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, BAD));
  SHOW("setsockopt bad", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, BAD, 4));
  SHOW("sendto bad addr", sendto(socket(AF_INET, SOCK_DGRAM, 0), "x", 1, 0, BAD, 16));
  SHOW("shutdown bad how", shutdown(s, 7));
  SHOW("accept4 bad flags", accept4(l, 0, 0, 0x1234));
  SHOW("recv listener", recv(l, &v, 4, MSG_DONTWAIT));
  SHOW("getpeername unconnected", getpeername(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&a, &al));
  return 0;
}
`;

const CLIENT = `/* TCP and UDP client against host servers: argv[1] TCP echo port, argv[2] UDP echo port, argv[3] a closed port. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static struct sockaddr_in at(int port) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  return a;
}
static void on_alarm(int s) { (void)s; }

int main(int argc, char **argv) {
  int tport = atoi(argv[1]), uport = atoi(argv[2]), closed = atoi(argv[3]);
  struct sockaddr_in a = at(tport);
  /* Blocking TCP: connect, names, a large send and its echo, TCP_NODELAY read back. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
  struct sockaddr_in me, peer; socklen_t ml = sizeof me, pl = sizeof peer;
  getsockname(s, (struct sockaddr *)&me, &ml); getpeername(s, (struct sockaddr *)&peer, &pl);
  printf("names %s %d\\n", inet_ntoa(me.sin_addr), ntohs(peer.sin_port) == tport);
  int one = 1, v = 0; socklen_t vl = sizeof v;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
  printf("nodelay %d\\n", v != 0);
  size_t n = 1 << 20; char *buf = malloc(n), *back = malloc(n);
  for (size_t i = 0; i < n; i++) buf[i] = (char)(i * 7);
  size_t sent = 0, got = 0;
  while (sent < n) { ssize_t w = send(s, buf + sent, n - sent, 0); if (w < 0) { perror("send"); return 1; } sent += w;
    while (got < sent) { ssize_t r = recv(s, back + got, n - got, MSG_DONTWAIT); if (r <= 0) break; got += r; } }
  while (got < n) { ssize_t r = recv(s, back + got, n - got, 0); if (r <= 0) { perror("recv"); return 1; } got += r; }
  printf("echo %zu %s\\n", got, memcmp(buf, back, n) ? "differs" : "same");
  /* MSG_PEEK, then a blocking recv interrupted by SIGALRM (no SA_RESTART): EINTR. */
  send(s, "peek", 4, 0);
  char p[8] = {0}; ssize_t pk = recv(s, p, 4, MSG_PEEK | MSG_WAITALL);
  ssize_t rd = recv(s, p, 4, 0);
  printf("peek %zd %zd %.4s\\n", pk, rd, p);
  /* MSG_WAITALL: one receive takes 4 bytes that arrive in two parts, the second from a child 100 ms later. */
  send(s, "ab", 2, 0);
  pid_t kid = fork();
  if (kid == 0) { usleep(100000); send(s, "cd", 2, 0); _exit(0); }
  memset(p, 0, sizeof p);
  ssize_t wa = recv(s, p, 4, MSG_WAITALL);
  waitpid(kid, 0, 0);
  printf("waitall %zd %.4s\\n", wa, p);
  /* SO_RCVTIMEO: a receive with nothing to read gives EAGAIN once the timeout passes. */
  struct timeval tv = { 0, 200000 };
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t to = recv(s, p, 1, 0);
  printf("timeout %zd %s\\n", to, to < 0 ? strerror(errno) : "");
  tv.tv_usec = 0;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sigaction sa = { .sa_handler = on_alarm }; sigaction(SIGALRM, &sa, 0);
  struct itimerval it = { .it_value = { 0, 200000 } }; setitimer(ITIMER_REAL, &it, 0);
  ssize_t r = recv(s, p, 1, 0);
  printf("interrupted %zd %s\\n", r, r < 0 ? strerror(errno) : "");
  /* shutdown(SHUT_WR): the echo server ends too: end of file. */
  shutdown(s, SHUT_WR);
  r = recv(s, p, 1, 0);
  printf("eof %zd\\n", r);
  close(s);
  /* Non-blocking connect: EINPROGRESS or 0, writable, SO_ERROR 0; epoll sees the echo. */
  s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int c = connect(s, (struct sockaddr *)&a, sizeof a);
  printf("nb connect %s\\n", c == 0 || errno == EINPROGRESS ? "in progress or done" : strerror(errno));
  struct pollfd pf = { .fd = s, .events = POLLOUT }; poll(&pf, 1, 5000);
  int err = -1; socklen_t el = sizeof err; getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
  printf("writable %d so_error %d\\n", !!(pf.revents & POLLOUT), err);
  int ep = epoll_create1(0); struct epoll_event ev = { .events = EPOLLIN, .data.fd = s }, out;
  epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
  printf("epoll before %d\\n", epoll_wait(ep, &out, 1, 0));
  send(s, "x", 1, 0);
  printf("epoll after %d\\n", epoll_wait(ep, &out, 1, 5000));
  r = recv(s, p, 8, 0); r = recv(s, p, 8, 0);
  printf("nb empty %zd %s\\n", r, strerror(errno));
  close(s); close(ep);
  /* A closed port: ECONNREFUSED. */
  struct sockaddr_in cl = at(closed);
  s = socket(AF_INET, SOCK_STREAM, 0);
  c = connect(s, (struct sockaddr *)&cl, sizeof cl);
  printf("closed %d %s\\n", c, strerror(errno));
  close(s);
  /* UDP: sendto, recvfrom with the sender's address, a connected socket, truncation. */
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in ua = at(uport);
  sendto(u, "datagram", 8, 0, (struct sockaddr *)&ua, sizeof ua);
  struct sockaddr_in from; socklen_t fl = sizeof from; char d[64] = {0};
  r = recvfrom(u, d, sizeof d, 0, (struct sockaddr *)&from, &fl);
  printf("udp %zd %.*s from port ok %d\\n", r, (int)r, d, ntohs(from.sin_port) == uport);
  connect(u, (struct sockaddr *)&ua, sizeof ua);
  send(u, "0123456789", 10, 0);
  struct iovec iv = { d, 4 }; struct msghdr m = { .msg_iov = &iv, .msg_iovlen = 1 };
  r = recvmsg(u, &m, 0);
  printf("udp trunc %zd %d %.4s\\n", r, !!(m.msg_flags & MSG_TRUNC), d);
  close(u);
  return 0;
}
`;

/** Host-side servers: a TCP echo server, a UDP echo server, and a port nobody listens on; counts what reached them. */
interface Servers { tcp: number; udp: number; closed: number; tcpConnections: number; datagrams: number; close(): Promise<void> }

async function startServers(): Promise<Servers> {
  const out = { tcpConnections: 0, datagrams: 0 } as Servers;
  const t = net.createServer((c) => { out.tcpConnections++; c.on('data', (d) => c.write(d)); c.on('end', () => c.end()); c.on('error', () => undefined); });
  const u = dgram.createSocket('udp4');
  u.on('message', (m, r) => { out.datagrams++; u.send(m, r.port, r.address); });
  await new Promise<void>((r) => t.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  out.tcp = (t.address() as net.AddressInfo).port;
  out.udp = u.address().port;
  out.closed = await freePort();
  out.close = async () => { u.close(); await new Promise((r) => t.close(r)); };
  return out;
}


/** Connect to 127.0.0.1:port (retrying while refused, up to `ms`), send `data`, collect until the other side closes. */
async function exchange(port: number, data: string, ms = 20_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await new Promise<string>((resolve, reject) => {
        const c = net.createConnection(port, '127.0.0.1');
        let got = '';
        c.on('data', (d) => { got += d; });
        c.on('end', () => resolve(got));
        c.on('error', reject);
        c.write(data);
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

let servers: Servers;
let client: string;
beforeAll(async () => {
  servers = await startServers();
  client = compileStatic('hostnet-client', CLIENT);
});
afterAll(async () => { await servers.close(); });

describe('run --network=host', () => {
  it('a C client talks TCP and UDP to host servers exactly as natively (blocking, non-blocking, signals, poll, epoll, refused, truncation)', async () => {
    const args = [String(servers.tcp), String(servers.udp), String(servers.closed)];
    const nat = await native([client, ...args]);
    expect(nat.status).toBe(0);
    const before = servers.tcpConnections;
    const r = await snapvisor(['run', '--network=host', '--', client, ...args], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(nat.stdout.toString());
    expect(r.stdout.toString()).toContain('echo 1048576 same\n');
    expect(r.stdout.toString()).toContain('interrupted -1 Interrupted system call\n');
    expect(r.stdout.toString()).toContain('waitall 4 abcd\ntimeout -1 Resource temporarily unavailable\n');
    expect(r.stdout.toString()).toContain('udp trunc 4 1 0123\n');
    expect(r.status).toBe(0);
    expect(servers.tcpConnections - before).toBe(2);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);

  it('IPv6: a guest client reaches a host server on ::1; a guest dual-stack listener takes IPv4 and IPv6 connections from the host', async () => {
    const v6 = net.createServer((c) => { c.on('data', (d) => c.end(`v6 ${d}`)); c.on('error', () => undefined); });
    const up = await new Promise<boolean>((r) => { v6.once('error', () => r(false)); v6.listen(0, '::1', () => r(true)); });
    if (!up) { console.log('skipped: the host has no ::1 to listen on'); return; }
    try {
      const port = (v6.address() as net.AddressInfo).port;
      const lport = await freePort();
      const guest = `
import socket, sys
c = socket.create_connection(('::1', int(sys.argv[1]))); c.sendall(b'hi'); print(c.recv(100).decode(), c.getpeername()[0], c.family == socket.AF_INET6)
l = socket.socket(socket.AF_INET6); l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); l.bind(('::', int(sys.argv[2]))); l.listen()
print('listening', flush=True)
for _ in range(2):
    a, addr = l.accept(); a.sendall(addr[0].encode()); a.close()
`;
      const run = snapvisorStreaming(['run', '--network=host', '--', '/usr/bin/python3', '-c', guest, String(port), String(lport)], { timeoutMs: 60_000 });
      await run.waitFor((l) => l === 'listening', 30_000);
      expect(await exchange(lport, '')).toBe('::ffff:127.0.0.1');
      const six = await new Promise<string>((resolve, reject) => {
        const c = net.createConnection(lport, '::1');
        let got = '';
        c.on('data', (d) => { got += d; });
        c.on('end', () => resolve(got));
        c.on('error', reject);
      });
      expect(six).toBe('::1');
      expect(await run.done).toBe(0);
      expect(run.lines).toEqual(['v6 hi ::1 True', 'listening']);
      expect(run.stderr()).toBe('');
    } finally {
      v6.close();
    }
    expect(orphanStubs()).toEqual([]);
  }, 60_000);

  it('bad pointers and arguments get the errors Linux gives (EFAULT, EINVAL, ENOTCONN), as natively', async () => {
    const prog = compileStatic('hostnet-errors', ERRORS);
    const nat = await native([prog]);
    expect(nat.status).toBe(0);
    const r = await snapvisor(['run', '--network=host', '--', prog], { timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(nat.stdout.toString());
    expect(r.stdout.toString()).toContain('recv bad -1 Bad address\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 40_000);

  it('the host\'s interfaces, addresses and routes are the guest\'s (netlink GET requests and interface ioctls answered by the host), and changing them is refused', async () => {
    // One shell for all the views: ip addr, ip link (which asks SIOCGIFTXQLEN), ip route, if_nameindex (glibc over netlink).
    const views = ['/bin/busybox', 'sh', '-c', 'busybox ip -o addr; busybox ip -o link; busybox ip route; /usr/bin/python3 -c "import socket; print(socket.if_nameindex())"'];
    const nat = await native(views);
    const r = await snapvisor(['run', '--network=host', '--', ...views], { timeoutMs: 30_000 });
    expect(r.stderr).toBe(nat.stderr);
    expect(r.stdout.toString()).toBe(nat.stdout.toString());
    expect(r.stdout.toString()).toContain('lo');
    expect(r.status).toBe(nat.status);
    // A change (RTM_NEWLINK) is not passed to the host, whatever snapvisor's privileges.
    const mtu = () => native(['/bin/busybox', 'ip', '-o', 'link', 'show', 'lo']).then((x) => x.stdout.toString());
    const before = await mtu();
    const set = await snapvisor(['run', '--network=host', '--', '/bin/busybox', 'ip', 'link', 'set', 'dev', 'lo', 'mtu', '1280'], { timeoutMs: 30_000 });
    expect(set.status).not.toBe(0);
    expect(await mtu()).toBe(before);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);

  it('busybox wget fetches from a host HTTP server', async () => {
    const srv = http.createServer((req, res) => res.end(`hello from the host, ${req.url}\n`));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (srv.address() as net.AddressInfo).port;
      const r = await snapvisor(['run', '--network=host', '--', '/bin/busybox', 'wget', '-q', '-O', '-', `http://127.0.0.1:${port}/x`], { timeoutMs: 30_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout.toString()).toBe('hello from the host, /x\n');
      expect(r.status).toBe(0);
    } finally {
      srv.close();
    }
  }, 40_000);

  it('busybox httpd serves a 3 MB file to the host (sendfile into a host socket, blocking while the reader is slow)', async () => {
    const dir = freshDir('hostnet-www');
    const body = crypto.randomBytes(3_000_000);
    fs.writeFileSync(path.join(dir, 'big.bin'), body);
    const port = await freePort();
    const run = snapvisorStreaming(['run', '--network=host', '--', '/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', dir], { timeoutMs: 60_000 });
    try {
      const got = await new Promise<Buffer>((resolve, reject) => {
        const until = Date.now() + 20_000;
        const attempt = () => {
          const req = http.get({ host: '127.0.0.1', port, path: '/big.bin' }, (res) => {
            const parts: Buffer[] = [];
            // A slow reader: the socket's buffers fill and the guest's sendfile has to wait.
            res.on('data', (d: Buffer) => { parts.push(d); res.pause(); setTimeout(() => res.resume(), 2); });
            res.on('end', () => resolve(Buffer.concat(parts)));
            res.on('error', reject);
          });
          req.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'ECONNREFUSED' && Date.now() < until) setTimeout(attempt, 100); else reject(e); });
        };
        attempt();
      });
      expect(got.length).toBe(body.length);
      expect(got.equals(body)).toBe(true);
    } finally {
      run.child.kill('SIGTERM');
    }
    await run.done;
    expect(run.stderr()).toBe('');
    expect(orphanStubs()).toEqual([]);
  }, 60_000);

  it('a guest asyncio server (epoll) and a UDP responder are reached from the host', async () => {
    const port = await freePort();
    const server = `
import asyncio, socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', port))
async def handle(r, w):
    line = await r.readline()
    w.write(b'guest got ' + line); await w.drain(); w.close()
    if line.startswith(b'quit'): stop.set()
async def main():
    global stop
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(u, lambda: (lambda d, a: u.sendto(d.upper(), a))(*u.recvfrom(100)))
    srv = await asyncio.start_server(handle, '127.0.0.1', port)
    print('listening', flush=True)
    await stop.wait()
    srv.close()
asyncio.run(main())
print('done', flush=True)
`;
    const run = snapvisorStreaming(['run', '--network=host', '--', '/usr/bin/python3', '-c', server, String(port)], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'listening', 30_000);
    expect(await exchange(port, 'one\n')).toBe('guest got one\n');
    const sock = dgram.createSocket('udp4');
    const reply = await new Promise<string>((resolve) => { sock.on('message', (m) => resolve(m.toString())); sock.send('ping', port, '127.0.0.1'); });
    sock.close();
    expect(reply).toBe('PING');
    expect(await exchange(port, 'quit\n')).toBe('guest got quit\n');
    expect(await run.done).toBe(0);
    expect(run.lines).toEqual(['listening', 'done']);
    expect(run.stderr()).toBe('');
    expect(orphanStubs()).toEqual([]);
  }, 90_000);

  it('names resolve as the host resolves them (localhost from /etc/hosts, a real name through the host\'s resolver)', async () => {
    const lookup = `
import socket, sys
for name in sys.argv[1:]:
    try: print(name, sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)}))
    except socket.gaierror as e: print(name, 'error', e.errno)
`;
    const names = ['localhost', 'example.com'];
    const r = await snapvisor(['run', '--network=host', '--', '/usr/bin/python3', '-c', lookup, 'localhost'], { timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe("localhost ['127.0.0.1']\n");
    const t0 = Date.now();
    const nat = await native(['/usr/bin/python3', '-c', lookup, ...names], { timeoutMs: 60_000 });
    const nativeMs = Date.now() - t0;
    if (nat.timedOut || nativeMs > 5000) {
      console.log(`skipped the real-name lookup: the host's resolver took ${nativeMs} ms natively (no network?)`);
      expect(orphanStubs()).toEqual([]);
      return;
    }
    expect(nat.status).toBe(0);
    expect(nat.stdout.toString()).toContain("localhost ['127.0.0.1']");
    // Whatever the host's resolver answers (addresses, or "not found" on a machine without a
    // route), the guest gets the same answer through its host sockets.
    const real = await snapvisor(['run', '--network=host', '--', '/usr/bin/python3', '-c', lookup, ...names], { timeoutMs: 30_000 });
    expect(real.stderr).toBe('');
    expect(real.stdout.toString()).toBe(nat.stdout.toString());
    expect(orphanStubs()).toEqual([]);
  }, 90_000);
});

describe('privileges on host sockets are the guest\'s, not snapvisor\'s', () => {
  it('an unprivileged guest cannot bind a port below 1024 (EACCES) or set SO_MARK / SO_RCVBUFFORCE (EPERM); the host sees no listener', async () => {
    const probe = `
import socket, sys
s = socket.socket()
try: s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('bound')
except OSError as e: print('bind', e.errno)
for name, opt in (('mark', 36), ('rcvbufforce', 33)):
    try: s.setsockopt(socket.SOL_SOCKET, opt, 1); print(name, 'set')
    except OSError as e: print(name, e.errno)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); print('reuseaddr', s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)
`;
    // A port below 1024 free on the host (the test may not be root: then 999, and the check of the host side is that nothing answers).
    let low = 999;
    for (let p = 990; p > 900; p--) {
      const ok = await new Promise<boolean>((r) => { const srv = net.createServer(); srv.once('error', () => r(false)); srv.listen(p, '127.0.0.1', () => srv.close(() => r(true))); });
      if (ok) { low = p; break; }
    }
    const r = await snapvisor(['run', '--network=host', '--user', '65534', '--', '/usr/bin/python3', '-c', probe, String(low)], { timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('bind 13\nmark 1\nrcvbufforce 1\nreuseaddr True\n');
    expect(r.status).toBe(0);
    await expect(exchange(low, 'x', 0)).rejects.toThrow(/ECONNREFUSED/);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});

describe('checkpoints of host sockets', () => {
  /** A guest with a TCP connection to a host server, a listener and a bound UDP socket; after a restore it reports what its connection does. */
  const GUEST = `
import errno, socket, sys
hp, lp = int(sys.argv[1]), int(sys.argv[2])
c = socket.create_connection(('127.0.0.1', hp))
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('127.0.0.1', lp)); l.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
print('ready', c.getsockname()[1], u.getsockname()[1], flush=True)
a, _ = l.accept()
print('accepted', a.recv(10).decode(), flush=True)
a.sendall(b'ok'); a.close()
try: print('held', c.recv(10))
except OSError as e: print('held reset', e.errno == errno.ECONNRESET)
print('then', c.recv(10), flush=True)
`;

  it('is refused with one line naming them; with --tcp-close-on-checkpoint the restored connection is reset and the listener listens again', async () => {
    const held: net.Socket[] = [];
    const hold = net.createServer((c) => { held.push(c); c.on('error', () => undefined); });
    await new Promise<void>((r) => hold.listen(0, '127.0.0.1', () => r()));
    const hp = (hold.address() as net.AddressInfo).port;
    const base = freshDir('hostnet');
    const root = `${base}/state`, store = `${base}/store`;
    try {
      // Without the flag: one line naming each host socket; the sandbox goes on.
      const lp = await freePort();
      const a = snapvisorStreaming(['--root', root, 'run', '--name', 'hn-a', '--network=host', '--', '/usr/bin/python3', '-c', GUEST, String(hp), String(lp)], { timeoutMs: 60_000 });
      const ready = await a.waitFor((l) => l.startsWith('ready '), 30_000);
      const [, cport, uport] = ready.split(' ');
      const refused = await snapvisor(['--root', root, 'checkpoint', 'hn-a', '--store', store], { timeoutMs: 30_000 });
      expect(refused.status).toBe(1);
      expect(stderrLines(refused.stderr)).toEqual([`snapvisor: checkpoint of 'hn-a' failed: 3 host sockets are open (--network=host): TCP 127.0.0.1:${cport} -> 127.0.0.1:${hp}, TCP 127.0.0.1:${lp} (listening), UDP 127.0.0.1:${uport}; host sockets cannot be checkpointed (close them, or run with --tcp-close-on-checkpoint: a restore then resets connections and opens listeners and UDP sockets again)`]);
      expect(await exchange(lp, 'live')).toBe('ok');
      await a.waitFor((l) => l === 'accepted live', 10_000);
      held[0].end('bye');
      expect(await a.done).toBe(0);
      expect(a.lines.slice(1)).toEqual(['accepted live', "held b'bye'", "then b''"]);

      // With it: the checkpoint goes ahead; the restore resets the connection and listens again on lp.
      const lp2 = await freePort();
      const b = snapvisorStreaming(['--root', root, 'run', '--name', 'hn-b', '--network=host', '--tcp-close-on-checkpoint', '--', '/usr/bin/python3', '-c', GUEST, String(hp), String(lp2)], { timeoutMs: 60_000 });
      await b.waitFor((l) => l.startsWith('ready '), 30_000);
      const cp = await snapvisor(['--root', root, 'checkpoint', 'hn-b', '--store', store], { timeoutMs: 30_000 });
      expect(cp.stderr).toBe('');
      expect(cp.status).toBe(0);
      expect(await b.done).toBe(137);
      const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
      const r = snapvisorStreaming(['--root', root, 'restore', id, '--store', store], { timeoutMs: 60_000 });
      expect(await exchange(lp2, 'again')).toBe('ok');
      expect(await r.done).toBe(0);
      expect(r.lines).toEqual(['accepted again', 'held reset True', "then b''"]);
      expect(r.stderr()).toBe('');
    } finally {
      for (const c of held) c.destroy();
      hold.close();
    }
    expect(orphanStubs()).toEqual([]);
  }, 150_000);
});

describe('run --network=sandbox', () => {
  it('cannot reach the host: the host\'s listener sees no connection and its UDP server no datagram', async () => {
    const bad = await snapvisor(['run', '--network=internet', '--', '/bin/true'], { timeoutMs: 20_000 });
    expect(bad.status).toBe(2);
    expect(stderrLines(bad.stderr)).toEqual(["snapvisor: option '--network <mode>' argument 'internet' is invalid. Allowed choices are sandbox, host. (see snapvisor run --help)"]);
    const before = { tcp: servers.tcpConnections, udp: servers.datagrams };
    const r = await snapvisor(['run', '--network=sandbox', '--', client, String(servers.tcp), String(servers.udp), String(servers.closed)], { timeoutMs: 30_000 });
    expect(r.stdout.toString()).toBe('');
    expect(stderrLines(r.stderr)).toEqual(['connect: Connection refused']);
    expect(r.status).toBe(1);
    // A UDP datagram to the host's UDP server and a connect to the host's own non-loopback address fail too.
    const ext = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    const probe = `
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('127.0.0.1', int(sys.argv[1])))
u.settimeout(0.5)
try: print('udp reply', u.recv(10))
except socket.timeout: print('udp no reply')
if len(sys.argv) > 2:
    try: socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=2); print('connected')
    except OSError as e: print('external', e.strerror)
`;
    const p = await snapvisor(['run', '--', '/usr/bin/python3', '-c', probe, String(servers.udp), ...(ext ? [ext, String(servers.tcp)] : [])], { timeoutMs: 30_000 });
    expect(p.stderr).toBe('');
    expect(p.stdout.toString()).toBe(`udp no reply\n${ext ? 'external Network is unreachable\n' : ''}`);
    expect(servers.tcpConnections).toBe(before.tcp);
    expect(servers.datagrams).toBe(before.udp);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});
