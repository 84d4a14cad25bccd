/**
 * Real programs inside the sandbox, each against the same script run natively (issue 10's list):
 * git, sqlite3 (10,000 rows, a transaction, WAL), gcc compiling a program that then runs, make -j2,
 * tar czf/xzf keeping owners and modes, perl, python3 -m venv with pip, python3 -m http.server
 * fetched by urllib from another process, and Node itself (timer, worker thread, child process).
 * Each script runs in a scratch directory given as $1 (the sandbox's writes stay in its upper layer)
 * and prints only what is the same on every run (no hashes, times or paths). stdout and the exit
 * status must equal the native run's; the sandbox must finish in time and leave no stub behind.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { freshDir, native, orphanStubs, snapvisor } from './helpers.js';

interface Case { name: string; needs: string[]; script: string; timeoutMs?: number }

const CASES: Case[] = [
  {
    name: 'git init, add, commit, log',
    needs: ['git'],
    script: String.raw`
      cd "$1" && git init -q repo && cd repo
      export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@example.com GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@example.com
      echo one > a.txt && git add a.txt && git commit -qm first
      echo two >> a.txt && mkdir sub && echo three > sub/b.txt && git add -A && git commit -qm second
      git log --format=%s && git ls-files && git show HEAD:a.txt && git status --porcelain | wc -l
      git rev-list --count HEAD && git cat-file -p HEAD^{tree} | awk '{print $2, $4}'`,
  },
  {
    name: 'sqlite3: 10,000 rows in a transaction, WAL, queries',
    needs: ['sqlite3'],
    script: String.raw`
      cd "$1" && sqlite3 t.db "PRAGMA journal_mode=WAL;" &&
      sqlite3 t.db "BEGIN; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<10000) INSERT INTO t(a,b) SELECT x, hex(x*7) FROM c; COMMIT;" &&
      sqlite3 t.db "CREATE INDEX tb ON t(b); SELECT count(*), sum(a), min(b), max(b) FROM t; SELECT a FROM t WHERE b = hex(49); PRAGMA integrity_check; PRAGMA journal_mode;" &&
      ls t.db-wal >/dev/null && echo wal-file-present`,
  },
  {
    name: 'gcc compiles and links a program that then runs',
    needs: ['gcc'],
    script: String.raw`
      cd "$1" && printf '#include <stdio.h>\n#include <math.h>\nint main(int c, char **v){ printf("%%s %%.3f\\n", v[1], sqrt(2.0)); return 7; }\n' > m.c &&
      gcc -O1 -o m m.c -lm && ./m compiled; echo "status $?"`,
  },
  {
    name: 'make -j2 of a few files',
    needs: ['make', 'gcc'],
    script: String.raw`
      cd "$1" && for i in 1 2 3 4; do printf 'int f%s(void){return %s;}\n' $i $i > f$i.c; done &&
      printf '#include <stdio.h>\nint f1(void);int f2(void);int f3(void);int f4(void);\nint main(void){printf("%%d\\n",f1()+f2()+f3()+f4());return 0;}\n' > main.c &&
      printf 'OBJS=main.o f1.o f2.o f3.o f4.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n' > Makefile &&
      make -s -j2 && ./prog && make -q prog; echo "up to date: $?"; ls *.o | wc -l`,
  },
  {
    name: 'tar czf / tar xzf round trip keeps owners and modes',
    needs: ['tar', 'gzip'],
    script: String.raw`
      cd "$1" && mkdir -p src/d && echo x > src/d/f && echo y > src/g && chmod 0640 src/d/f && chmod 0751 src/d && chmod 0604 src/g &&
      if [ "$(id -u)" = 0 ]; then chown 1234:5678 src/d/f; fi &&
      tar czf a.tgz -C src . && mkdir out && tar xzf a.tgz -C out &&
      for p in d d/f g; do [ "$(stat -c '%a %u %g' src/$p)" = "$(stat -c '%a %u %g' out/$p)" ] && echo "$p kept $(stat -c %a out/$p)"; done &&
      cmp src/d/f out/d/f && tar tzf a.tgz | sort`,
  },
  {
    name: 'perl one-liners over a file',
    needs: ['perl'],
    script: String.raw`
      cd "$1" && printf 'alpha 3\nbeta 5\ngamma 7\n' > in.txt &&
      perl -lane '$s += $F[1]; END { print "sum $s" }' in.txt &&
      perl -pi -e 's/(\w+) (\d+)/$2 $1/' in.txt && cat in.txt &&
      perl -e 'opendir(my $d, ".") or die; print join(",", sort grep { !/^\./ } readdir $d), "\n"'`,
  },
  {
    name: 'python3 -m venv, then pip --version in it',
    needs: ['python3'],
    timeoutMs: 240_000,
    script: String.raw`
      cd "$1" && /usr/bin/python3 -m venv v && v/bin/python -c 'import sys; print(sys.prefix != sys.base_prefix)' &&
      v/bin/pip --version | cut -d' ' -f1,2 | sed 's/ [0-9.]*$/ VERSION/'`,
  },
  {
    name: 'python3 -m http.server fetched by urllib from another process',
    needs: ['python3'],
    timeoutMs: 90_000,
    script: String.raw`
      cd "$1" && echo served-content > page.txt &&
      /usr/bin/python3 -m http.server 0 --bind 127.0.0.1 > server.log 2>&1 &
      server=$!
      cd "$1" && /usr/bin/python3 - "$server" <<'EOF'
import re, time, urllib.request, os, sys
port = None
for _ in range(300):
    try:
        m = re.search(r'port (\d+)', open('server.log').read())
        if m: port = m.group(1); break
    except OSError: pass
    time.sleep(0.1)
print(urllib.request.urlopen(f'http://127.0.0.1:{port}/page.txt').read().decode().strip())
print(urllib.request.urlopen(f'http://127.0.0.1:{port}/').status)
EOF
      kill $server; wait $server; echo "server ended by signal $(($? - 128))"`,
  },
  {
    name: 'node -e with a timer, a worker thread and a child process',
    needs: ['node'],
    timeoutMs: 90_000,
    script: String.raw`
      node -e '
        const { Worker } = require("worker_threads"); const cp = require("child_process");
        setTimeout(() => {
          const w = new Worker("require(\"worker_threads\").parentPort.postMessage(6 * 7)", { eval: true });
          w.on("message", (m) => { console.log("worker says", m); console.log("child says", cp.execFileSync("/bin/echo", ["hi"]).toString().trim()); });
          w.on("exit", (c) => console.log("worker exit", c));
        }, 50);'`,
  },
];

const has = (prog: string) => spawnSync('sh', ['-c', `command -v ${prog}`]).status === 0;

describe('real programs inside the sandbox, against the same run natively', () => {
  afterEach(() => {
    expect(orphanStubs()).toEqual([]);
  });
  for (const c of CASES) {
    it(c.name, async (ctx) => {
      const missing = c.needs.filter((p) => !has(p));
      if (missing.length) {
        console.log(`skipped "${c.name}": ${missing.join(', ')} not installed on this machine`);
        ctx.skip();
      }
      const timeoutMs = c.timeoutMs ?? 60_000;
      const want = await native(['/bin/sh', '-c', c.script, 'sh', freshDir('real-native')], { timeoutMs });
      expect(want.timedOut).toBe(false);
      const got = await snapvisor(['run', '--', '/bin/sh', '-c', c.script, 'sh', freshDir('real-sandbox')], { timeoutMs });
      expect(got.timedOut, `timed out; stderr: ${got.stderr}`).toBe(false);
      expect(got.stdout.toString(), `status ${got.status}; stderr: ${got.stderr}`).toBe(want.stdout.toString());
      expect(got.status).toBe(want.status);
      expect(got.stdout.length).toBeGreaterThan(0);
      expect(got.stderr).not.toMatch(/internal error|unimplemented syscall/);
    }, (c.timeoutMs ?? 60_000) * 2 + 10_000);
  }
});
