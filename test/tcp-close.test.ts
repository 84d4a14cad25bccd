/**
 * Writes to a TCP connection whose peer has closed (src/net/socket.ts socketWrite, tcp_poll): the
 * first write succeeds (its bytes draw the peer's reset: EPIPE in SO_ERROR), later ones fail EPIPE;
 * poll shows end of file, then HUP and ERR; against the same program natively, and the reset state
 * across checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, native, PY_WAIT_FOR_GATE } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static int pev(int fd) { struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP, 0 }; poll(&p, 1, 0); return p.revents; }
int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { AF_INET, 0, { htonl(0x7f000001) } }; socklen_t al = sizeof a;
  bind(l, (struct sockaddr *)&a, sizeof a); listen(l, 1); getsockname(l, (struct sockaddr *)&a, &al);
  int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (struct sockaddr *)&a, sizeof a);
  int s = accept(l, 0, 0);
  SAY("write before close: %ld\n", R(write(c, "a", 1)));
  char b[8]; SAY("server reads: %ld\n", R(read(s, b, 8)));
  close(s); usleep(100000);
  SAY("poll after peer close: %x\n", pev(c));
  SAY("first write after peer close: %ld\n", R(write(c, "b", 1))); usleep(100000);
  int e = 0; socklen_t el = 4; getsockopt(c, SOL_SOCKET, SO_ERROR, &e, &el); SAY("SO_ERROR: %d\n", e);
  SAY("poll after reset: %x\n", pev(c));
  SAY("second write: %ld\n", R(write(c, "c", 1)));
  SAY("third write: %ld\n", R(send(c, "d", 1, MSG_NOSIGNAL)));
  SAY("read: %ld\n", R(read(c, b, 8)));
  /* again, with the error read by the next write instead of SO_ERROR */
  int c2 = socket(AF_INET, SOCK_STREAM, 0); connect(c2, (struct sockaddr *)&a, sizeof a);
  int s2 = accept(l, 0, 0); close(s2); usleep(100000);
  SAY("first write: %ld\n", R(write(c2, "b", 1))); usleep(100000);
  SAY("second write: %ld\n", R(write(c2, "c", 1)));
  el = 4; getsockopt(c2, SOL_SOCKET, SO_ERROR, &e, &el); SAY("SO_ERROR after: %d\n", e);
  SAY("third write: %ld\n", R(write(c2, "c", 1)));
  SAY("read: %ld\n", R(read(c2, b, 8)));
  return 0;
}
`;

const CHECKPOINTED = String.raw`
import errno, os, select, socket, sys, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); s, _ = l.accept(); s.close(); time.sleep(0.1)
print("first write to a closed peer", c.send(b"x"), flush=True); time.sleep(0.1)
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
p = select.poll(); p.register(c, select.POLLIN | select.POLLOUT); print("poll", p.poll(0)[0][1], flush=True)
try: c.send(b"y")
except OSError as e: print("second", errno.errorcode[e.errno], flush=True)
print("read", c.recv(10), flush=True)
`;

describe('TCP writes after the peer closed', () => {
  it('answer as natively', async () => {
    const exe = compileStatic('tcp-close', SOURCE);
    const want = await native([exe], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe], want.stdout.toString());
  }, 60_000);

  it('keep the reset across checkpoint/restore', async () => {
    const gate = checkpointGate('tcp-close-cp');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, gate.native], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('tcp-close-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 150_000);
});
