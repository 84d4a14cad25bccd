/**
 * Datagram and seqpacket unix socketpairs (src/net/socket.ts pairSend; man 7 unix): message
 * boundaries, truncation, MSG_PEEK/MSG_TRUNC, EMSGSIZE, shutdown, a closed peer (ECONNREFUSED then
 * ENOTCONN for datagrams, EOF and EPIPE for seqpacket), poll readiness, blocking receives, a queue
 * bounded also for zero-length datagrams; against
 * the same program natively, and queued messages plus a blocked receive across a checkpoint.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, native, PY_WAIT_FOR_GATE } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static int pev(int fd) { struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP, 0 }; poll(&p, 1, 0); return p.revents; }
int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };
  const char *names[] = { "dgram", "seqpacket" };
  for (int i = 0; i < 2; i++) {
    int sv[2];
    SAY("%s socketpair: %d\n", names[i], R(socketpair(AF_UNIX, types[i], 0, sv)));
    int ty = 0; socklen_t tl = 4; getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &ty, &tl); SAY("SO_TYPE %d\n", ty);
    SAY("poll empty: %x\n", pev(sv[0]));
    SAY("send 'one': %ld\n", (long)R(send(sv[0], "one", 3, 0)));
    SAY("send 'second': %ld\n", (long)R(send(sv[0], "second", 6, 0)));
    SAY("poll peer: %x\n", pev(sv[1]));
    char b[64]; memset(b, 0, sizeof b);
    SAY("recv 2 of 'one' (trunc): %ld '%.*s'\n", (long)R(recv(sv[1], b, 2, 0)), 2, b);
    SAY("recv MSG_PEEK: %ld\n", (long)R(recv(sv[1], b, 64, MSG_PEEK)));
    SAY("recv MSG_TRUNC len: %ld\n", (long)R(recv(sv[1], b, 1, MSG_TRUNC)));
    SAY("recv nothing nonblocking: %ld\n", (long)R(recv(sv[1], b, 64, MSG_DONTWAIT)));
    struct sockaddr_un from; socklen_t fl = sizeof from;
    send(sv[1], "back", 4, 0);
    SAY("recvfrom: %ld fromlen %d\n", (long)R(recvfrom(sv[0], b, 64, 0, (struct sockaddr *)&from, &fl)), (int)fl);
    struct iovec iov[2] = { { "ab", 2 }, { "cd", 2 } };
    struct msghdr mh = { 0 }; mh.msg_iov = iov; mh.msg_iovlen = 2;
    SAY("sendmsg 2 iovecs: %ld\n", (long)R(sendmsg(sv[0], &mh, 0)));
    SAY("recv: %ld '%.4s'\n", (long)R(recv(sv[1], b, 64, 0)), b);
    static char big[300000];
    SAY("send too big: %ld\n", (long)R(send(sv[0], big, sizeof big, 0)));
    SAY("shutdown WR: %d\n", R(shutdown(sv[0], SHUT_WR)));
    SAY("send after SHUT_WR: %ld\n", (long)R(send(sv[0], "x", 1, 0)));
    SAY("peer recv after SHUT_WR (nonblocking): %ld\n", (long)R(recv(sv[1], b, 64, MSG_DONTWAIT)));
    SAY("poll peer after SHUT_WR: %x\n", pev(sv[1]));
    close(sv[0]);
    SAY("poll after close: %x\n", pev(sv[1]));
    SAY("send to closed peer: %ld\n", (long)R(send(sv[1], "x", 1, 0)));
    SAY("send again: %ld\n", (long)R(send(sv[1], "x", 1, 0)));
    SAY("recv after close (nonblocking): %ld\n", (long)R(recv(sv[1], b, 64, MSG_DONTWAIT)));
    close(sv[1]);
    /* blocking recv woken by a child's send */
    socketpair(AF_UNIX, types[i], 0, sv);
    pid_t c = fork();
    if (c == 0) { usleep(200000); send(sv[1], "late", 4, 0); _exit(0); }
    SAY("blocking recv: %ld\n", (long)R(recv(sv[0], b, 64, 0)));
    waitpid(c, 0, 0);
    close(sv[0]); close(sv[1]);
  }
  int sv[2];
  SAY("raw pair: %d\n", R(socketpair(AF_UNIX, SOCK_RAW, 0, sv)));
  int ty = 0; socklen_t tl = 4; getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &ty, &tl); SAY("raw SO_TYPE %d\n", ty);
  SAY("rdm pair: %d\n", R(socketpair(AF_UNIX, SOCK_RDM, 0, sv)));
  SAY("bad protocol: %d\n", R(socketpair(AF_UNIX, SOCK_DGRAM, 7, sv)));
  SAY("inet dgram pair: %d\n", R(socketpair(AF_INET, SOCK_DGRAM, 0, sv)));
  /* Zero-length datagrams still fill a queue (each costs its bookkeeping): EAGAIN, not endless growth. */
  socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
  long n = 0; while (n < 10000000 && send(sv[0], "", 0, MSG_DONTWAIT) == 0) n++;
  SAY("zero-length datagrams: %s, then %ld\n", n < 10000000 ? "bounded" : "UNBOUNDED", R(send(sv[0], "", 0, MSG_DONTWAIT)));
  return 0;
}
`;

/** Messages queued both ways in a datagram and a seqpacket pair; a child blocked in recv across the checkpoint. */
const CHECKPOINTED = String.raw`
import os, socket, sys, time
d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
d1.send(b"first datagram"); d1.send(b"second"); s1.send(b"a record"); s1.send(b"")
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    d1.close(); s1.close()
    print("child got", s2.recv(100), s2.recv(100), flush=True)
    print("child waits", flush=True)
    os.write(w, b"w")
    print("child got after restore", s2.recv(100), flush=True)
    print("child then sees end of file", s2.recv(100), flush=True)
    os._exit(0)
s2.close()
os.read(r, 1)
time.sleep(0.3)
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
print("datagrams", d2.recv(100), d2.recv(3), flush=True)
s1.send(b"sent after restore")
s1.close()
os.waitpid(pid, 0)
print("types", d2.type == socket.SOCK_DGRAM, s1.type == socket.SOCK_SEQPACKET, flush=True)
`;

describe('datagram and seqpacket unix socketpairs', () => {
  it('answer as natively', async () => {
    const exe = compileStatic('unix-pairs', SOURCE);
    const want = await native([exe], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe], want.stdout.toString());
  }, 60_000);

  it('keep queued messages and a blocked receive across checkpoint/restore', async () => {
    const gate = checkpointGate('pairs');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, gate.native], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('pairs-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 120_000);
});
