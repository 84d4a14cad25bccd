/**
 * Loopback TCP throughput (issue 8 point 4): one connection carrying MIB MiB from a forked sender
 * (256 KiB writes) to its parent (256 KiB reads), timed by the program itself (CLOCK_MONOTONIC,
 * fork to the sender's exit; start-up not included), natively, under `run --network=host` (host
 * sockets: src/net/hostinet.ts) and under `run --network=sandbox` (the kernel's own loopback
 * network, connections as pipes in the state graph). The program is compiled with gcc at bench time.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const SOURCE = `/* Loopback TCP throughput: argv[1] MiB through one connection (a forked sender, 256 KiB writes; the parent reads), printing "BYTES NS". */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv) {
  long long total = (argc > 1 ? atoll(argv[1]) : 256) << 20;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET };
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t al = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &al)) { perror("listen"); return 1; }
  char *buf = malloc(CHUNK);
  memset(buf, 'x', CHUNK);
  long long t0 = now();
  pid_t pid = fork();
  if (pid == 0) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); _exit(1); }
    for (long long sent = 0; sent < total;) {
      ssize_t w = write(s, buf, total - sent < CHUNK ? total - sent : CHUNK);
      if (w <= 0) { perror("write"); _exit(1); }
      sent += w;
    }
    close(s);
    _exit(0);
  }
  int c = accept(l, 0, 0);
  long long got = 0;
  for (;;) { ssize_t r = read(c, buf, CHUNK); if (r < 0) { perror("read"); return 1; } if (r == 0) break; got += r; }
  int st; waitpid(pid, &st, 0);
  long long ns = now() - t0;
  printf("%lld %lld\\n", got, ns);
  return got == total && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
`;

/** One measured run: bytes moved and nanoseconds, or why it failed. */
export interface ThroughputRun { bytes?: number; ns?: number; error?: string }

/** Compile the throughput program into `dir`: its path, or an Error saying why not (no gcc, a failed compile). */
export function buildTcpBench(dir: string): string | Error {
  const src = path.join(dir, 'tcpbench.c'), exe = path.join(dir, 'tcpbench');
  fs.writeFileSync(src, SOURCE);
  const r = spawnSync('gcc', ['-static', '-O2', '-o', exe, src], { encoding: 'utf8' });
  if (r.error) return new Error(`gcc cannot run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`);
  if (r.status !== 0) return new Error(`gcc failed: ${r.stderr.split('\n')[0]}`);
  return exe;
}

/** Run `cmd args` (the program last, with MIB) and read its "BYTES NS" line. */
export function throughputRun(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<ThroughputRun> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '', err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { if (err.length < 4096) err += d.toString(); });
    child.on('error', (e) => { clearTimeout(timer); resolve({ error: e.message }); });
    child.on('close', (code) => {
      clearTimeout(timer);
      const m = /^(\d+) (\d+)$/m.exec(out);
      if (code !== 0 || !m) { resolve({ error: `status ${code}: ${(err.trim().split('\n')[0] || out.trim()).slice(0, 200)}` }); return; }
      resolve({ bytes: Number(m[1]), ns: Number(m[2]) });
    });
  });
}

/** MiB per second of a run. */
export const mibPerSecond = (r: ThroughputRun): number | undefined => (r.bytes !== undefined && r.ns ? r.bytes / 1048576 / (r.ns / 1e9) : undefined);
