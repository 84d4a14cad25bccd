/**
 * A unix listener's full backlog (src/net/socket.ts connect; unix_stream_connect): a nonblocking
 * connect fails EAGAIN once more than `backlog` connections wait, a blocking one waits for an
 * accept (a 'connect' waiter), for stream and seqpacket sockets; against the same program natively,
 * and a connect waiting across checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native, PY_WAIT_FOR_GATE } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1]) != 0) return 2;
  int types[] = { SOCK_STREAM, SOCK_SEQPACKET };
  for (int i = 0; i < 2; i++) {
    struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX; snprintf(a.sun_path, sizeof a.sun_path, "b%d.sock", i);
    int l = socket(AF_UNIX, types[i], 0); bind(l, (struct sockaddr *)&a, sizeof a); listen(l, 1);
    int n = 0; long r = 0;
    while (n < 10 && (r = R(connect(socket(AF_UNIX, types[i] | SOCK_NONBLOCK, 0), (struct sockaddr *)&a, sizeof a))) == 0) n++;
    SAY("type %d: %d nonblocking connects queued, then %ld\n", types[i], n, r);
    pid_t c = fork();
    if (c == 0) {
      int k = socket(AF_UNIX, types[i], 0);
      long cr = R(connect(k, (struct sockaddr *)&a, sizeof a));
      SAY("blocking connect after the wait: %ld\n", cr);
      send(k, "hi", 2, 0);
      _exit(0);
    }
    usleep(300000);
    SAY("accepting\n");
    for (int j = 0; j < n + 1; j++) { int s = accept(l, 0, 0); char b[4] = ""; if (j == n) { recv(s, b, 2, 0); SAY("last accepted got '%.2s'\n", b); } }
    waitpid(c, 0, 0);
  }
  return 0;
}
`;

const CHECKPOINTED = String.raw`
import os, socket, sys, time
os.chdir(sys.argv[1])
l = socket.socket(socket.AF_UNIX); l.bind("l.sock"); l.listen(1)
queued = [socket.socket(socket.AF_UNIX) for _ in range(2)]
for q in queued: q.connect("l.sock")
pid = os.fork()
if pid == 0:
    k = socket.socket(socket.AF_UNIX); k.connect("l.sock"); k.send(b"waited"); os._exit(0)
time.sleep(0.5)
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
conns = [l.accept()[0] for _ in range(3)]
print("third connection got", conns[2].recv(10), flush=True)
print("child", os.waitpid(pid, 0)[1], flush=True)
`;

describe('unix listener backlog', () => {
  it('nonblocking connects fail EAGAIN, blocking ones wait, as natively', async () => {
    const exe = compileStatic('unix-backlog', SOURCE);
    const want = await native([exe, freshDir('backlog-native')], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe, freshDir('backlog-sandbox')], want.stdout.toString());
  }, 60_000);

  it('a waiting connect completes after checkpoint/restore', async () => {
    const gate = checkpointGate('unix-backlog-cp');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('backlog-cp-native'), gate.native], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('unix-backlog-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('backlog-cp-sandbox'), gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 150_000);
});
