/**
 * sendmmsg(2)/recvmmsg(2): several datagrams in one call, each one's length in its msg_len, the
 * count returned; the same natively and in the sandbox (glibc's resolver sends its A and AAAA
 * queries with one sendmmsg).
 */
import { describe, it } from 'vitest';
import { compileStatic, expectSandboxOutput, native } from './helpers.js';

const SOURCE = `
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
int main(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) return 1;
  char *words[3] = { "one", "three", "fifteen letters" };
  struct iovec iov[3]; struct mmsghdr out[3]; memset(out, 0, sizeof out);
  for (int i = 0; i < 3; i++) { iov[i].iov_base = words[i]; iov[i].iov_len = strlen(words[i]); out[i].msg_hdr.msg_iov = &iov[i]; out[i].msg_hdr.msg_iovlen = 1; }
  int n = sendmmsg(sv[0], out, 3, 0);
  printf("sent %d: %u %u %u\\n", n, out[0].msg_len, out[1].msg_len, out[2].msg_len);
  char bufs[4][32]; struct iovec in_iov[4]; struct mmsghdr in[4]; memset(in, 0, sizeof in);
  for (int i = 0; i < 4; i++) { in_iov[i].iov_base = bufs[i]; in_iov[i].iov_len = 31; in[i].msg_hdr.msg_iov = &in_iov[i]; in[i].msg_hdr.msg_iovlen = 1; }
  n = recvmmsg(sv[1], in, 4, MSG_DONTWAIT, NULL);
  printf("received %d:", n);
  for (int i = 0; i < n; i++) { bufs[i][in[i].msg_len] = 0; printf(" %s(%u)", bufs[i], in[i].msg_len); }
  printf("\\n");
  n = recvmmsg(sv[1], in, 4, MSG_DONTWAIT, NULL);
  printf("again %d %s\\n", n, n < 0 ? strerror(errno) : "");
  printf("zero %d\\n", sendmmsg(sv[0], out, 0, 0));
  n = sendmmsg(sv[0], (struct mmsghdr *)8, 1, 0);
  printf("bad vector %d %s\\n", n, strerror(errno));
  return 0;
}
`;

describe('sendmmsg and recvmmsg', () => {
  it('send three datagrams and receive them in one call each, as natively', async () => {
    const bin = compileStatic('mmsg', SOURCE);
    const want = await native([bin]);
    await expectSandboxOutput([bin], want.stdout.toString());
  }, 60_000);
});
