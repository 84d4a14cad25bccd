/**
 * readv/writev and multi-buffer sendmsg on sockets (src/net/socket.ts socketReadv, socketWritev):
 * on datagram, seqpacket and UDP sockets writev sends one message and readv receives one, scattered
 * over the buffers (never a second message in the next buffer); FIONREAD as Linux counts it; a
 * stream's readv fills the buffers from one receive; a blocking two-buffer sendmsg on a full stream
 * waits for room; against the same program natively.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, expectSandboxOutput, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static void pair(const char *name, int a, int b) {
  struct iovec w[3] = { { "hello ", 6 }, { "", 0 }, { "world", 5 } };
  SAY("%s writev: %ld\n", name, R(writev(a, w, 3)));
  SAY("%s writev again: %ld\n", name, R(writev(a, w, 3)));
  int n = -1; ioctl(b, FIONREAD, &n); SAY("%s FIONREAD: %d\n", name, n);
  char x[4] = "", y[32] = "";
  struct iovec r[2] = { { x, 4 }, { y, 10 } };
  long got = R(readv(b, r, 2));
  SAY("%s readv: %ld '%.4s' '%s'\n", name, got, x, y);
  char z[3] = ""; struct iovec s[1] = { { z, 3 } };
  SAY("%s readv short: %ld '%.3s'\n", name, R(readv(b, s, 1)), z);
  struct iovec e[1] = { { z, 3 } };
  SAY("%s readv empty nonblocking: %ld\n", name, R(recv(b, z, 3, MSG_DONTWAIT)));
  (void)e;
}
int main(void) {
  int sv[2];
  socketpair(AF_UNIX, SOCK_DGRAM, 0, sv); pair("dgram", sv[0], sv[1]);
  socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv); pair("seqpacket", sv[0], sv[1]);
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv); pair("stream", sv[0], sv[1]);
  int u = socket(AF_INET, SOCK_DGRAM, 0), v = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = { AF_INET, 0, { htonl(0x7f000001) } }; socklen_t al = sizeof a;
  bind(u, (struct sockaddr *)&a, sizeof a); getsockname(u, (struct sockaddr *)&a, &al); connect(v, (struct sockaddr *)&a, sizeof a);
  pair("udp", v, u);
  /* a blocking sendmsg of two buffers on a full stream waits for room instead of failing EAGAIN */
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  static char big[1 << 20];
  long filled = 0, r;
  while ((r = send(sv[0], big, sizeof big, MSG_DONTWAIT)) > 0) filled += r;
  pid_t c = fork();
  if (c == 0) { usleep(200000); long n = 0, k; while (n < filled + 8 && (k = read(sv[1], big, sizeof big)) > 0) n += k; _exit(0); }
  struct iovec two[2] = { { "abcd", 4 }, { "efgh", 4 } };
  struct msghdr m = { 0 }; m.msg_iov = two; m.msg_iovlen = 2;
  r = R(sendmsg(sv[0], &m, 0));
  SAY("blocking sendmsg on a full stream: %s\n", r > 0 ? "sent" : "failed");
  close(sv[0]); waitpid(c, 0, 0);
  return 0;
}
`;

describe('vectored I/O on sockets', () => {
  it('readv, writev and sendmsg answer as natively', async () => {
    const exe = compileStatic('socket-vectors', SOURCE);
    const want = await native([exe], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe], want.stdout.toString());
  }, 60_000);
});
