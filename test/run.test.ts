/**
 * `snapvisor run`: real programs under the real kernel give the same stdout bytes and
 * exit status as when run natively.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, freshDir, native, sha256, snapvisor } from './helpers.js';

/** Run `argv` in the sandbox (with extra run options before it) and natively; expect the same stdout and status. */
async function expectSameAsNative(argv: string[], runOpts: string[] = [], nativeArgv: string[] = argv) {
  const [sv, nat] = await Promise.all([snapvisor(['run', ...runOpts, '--', ...argv]), native(nativeArgv)]);
  expect(sv.timedOut).toBe(false);
  expect(sv.stdout.toString()).toBe(nat.stdout.toString());
  expect(sv.stdout.equals(nat.stdout)).toBe(true);
  expect(sv.status).toBe(nat.status);
  return { sv, nat };
}

let dir: string;
let file1M: string;
let file20M: string;

beforeAll(() => {
  dir = freshDir('run');
  file1M = path.join(dir, 'random-1M');
  file20M = path.join(dir, 'random-20M');
  fs.writeFileSync(file1M, randomBytes(1 << 20));
  fs.writeFileSync(file20M, randomBytes(20 << 20));
});

describe('run: same output and status as native', () => {
  it('busybox echo', async () => {
    const { sv } = await expectSameAsNative(['/bin/busybox', 'echo', 'hello', 'world']);
    expect(sv.stdout.toString()).toBe('hello world\n');
    expect(sv.status).toBe(0);
  });

  it('busybox ls -l /usr', async () => {
    const { sv } = await expectSameAsNative(['/bin/busybox', 'ls', '-l', '/usr']);
    expect(sv.stdout.toString()).toMatch(/\bbin\n/);
  });

  it('busybox sha256sum of a 1 MB random file', async () => {
    const { sv } = await expectSameAsNative(['/bin/busybox', 'sha256sum', file1M]);
    expect(sv.stdout.toString()).toBe(`${sha256(fs.readFileSync(file1M))}  ${file1M}\n`);
  });

  it('/bin/ls -la /usr', async () => {
    const { sv } = await expectSameAsNative(['/bin/ls', '-la', '/usr']);
    expect(sv.stdout.toString()).toMatch(/^total \d+\n/);
  });

  it('/bin/cat of a 20 MB random file', async () => {
    const sv = await snapvisor(['run', '/bin/cat', file20M]);
    expect(sv.stderr).toBe('');
    expect(sv.status).toBe(0);
    expect(sv.stdout.length).toBe(20 << 20);
    expect(sha256(sv.stdout)).toBe(sha256(fs.readFileSync(file20M)));
  });

  it('/usr/bin/env with a fixed environment', async () => {
    const { sv } = await expectSameAsNative(
      ['/usr/bin/env'],
      ['--clear-env', '--env', 'A=1', '--env', 'B=two'],
      ['/usr/bin/env', '-i', 'A=1', 'B=two', '/usr/bin/env'],
    );
    expect(sv.stdout.toString()).toBe('A=1\nB=two\n');
  });

  it('/bin/true exits 0 and /bin/false exits 1', async () => {
    const [t, f] = await Promise.all([snapvisor(['run', '/bin/true']), snapvisor(['run', '/bin/false'])]);
    expect(t.status).toBe(0);
    expect(f.status).toBe(1);
    expect(t.stdout.length + f.stdout.length).toBe(0);
  });

  it('python3 json + hashlib', async () => {
    const code = "import json,hashlib; print(json.dumps({'a': hashlib.sha256(b'x').hexdigest()}))";
    const { sv } = await expectSameAsNative(['/usr/bin/python3', '-c', code]);
    expect(JSON.parse(sv.stdout.toString())).toEqual({ a: sha256(Buffer.from('x')) });
  });

  it('#!/bin/sh script with arguments and exit 3', async () => {
    const script = path.join(dir, 'args.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho "argc=$# 0=$0"\nfor a in "$@"; do echo "[$a]"; done\nexit 3\n', { mode: 0o755 });
    const { sv } = await expectSameAsNative([script, 'one', 'two words', '']);
    expect(sv.status).toBe(3);
    expect(sv.stdout.toString()).toBe(`argc=3 0=${script}\n[one]\n[two words]\n[]\n`);
  });

  it('#!/usr/bin/python3 script', async () => {
    const script = path.join(dir, 'script.py');
    fs.writeFileSync(script, '#!/usr/bin/python3\nimport sys\nprint(sys.argv)\nsys.exit(7)\n', { mode: 0o755 });
    const { sv } = await expectSameAsNative([script, 'a', 'b c']);
    expect(sv.status).toBe(7);
    expect(sv.stdout.toString()).toBe(`['${script}', 'a', 'b c']\n`);
  });

  it('a static-pie executable (compiled here with gcc -static-pie), its argv[0] and exit status', async () => {
    const dir = freshDir('static-pie');
    const src = path.join(dir, 'sp.c'), exe = path.join(dir, 'sp');
    fs.writeFileSync(src, '#include <stdio.h>\nint main(int c, char **v) { printf("static-pie %s %d\\n", v[0], c); return 3; }\n');
    execFileSync('gcc', ['-static-pie', '-O1', '-o', exe, src]);
    const [a, b] = await Promise.all([snapvisor(['run', '--', exe, 'x']), native([exe, 'x'])]);
    expect(a.stdout.toString()).toBe(`static-pie ${exe} 2\n`);
    expect(a.stdout.equals(b.stdout)).toBe(true);
    expect(a.status).toBe(3);
  });

  it('dash arithmetic and cd', async () => {
    const { sv } = await expectSameAsNative(['/bin/dash', '-c', 'echo $((6*7)); cd /usr && pwd']);
    expect(sv.stdout.toString()).toBe('42\n/usr\n');
  });
});

describe('run: sandbox behaviour', () => {
  it('writes stay inside the sandbox', async () => {
    const host = `/tmp/sv-test-${randomBytes(8).toString('hex')}`;
    expect(fs.existsSync(host)).toBe(false);
    const sv = await snapvisor(['run', '/usr/bin/python3', '-c', `open('${host}','w').write('x'); print(open('${host}').read())`]);
    expect(sv.stderr).toBe('');
    expect(sv.status).toBe(0);
    expect(sv.stdout.toString()).toBe('x\n');
    expect(fs.existsSync(host)).toBe(false);
  });

  it('--cwd sets the working directory', async () => {
    const sv = await snapvisor(['run', '--cwd', '/usr', '/bin/pwd']);
    expect(sv.status).toBe(0);
    expect(sv.stdout.toString()).toBe('/usr\n');
  });

  it('without --cwd, the caller\'s directory when the root is the host\'s own, else /; --cwd wins', async () => {
    const here = freshDir('cwd');
    fs.writeFileSync(path.join(here, 'f'), 'in the caller\'s dir\n');
    const [own, other, explicit] = await Promise.all([
      snapvisor(['run', '--', '/bin/sh', '-c', 'pwd; cat f'], { cwd: here }),
      snapvisor(['run', '--rootfs', '/usr', '--', '/bin/busybox', 'pwd'], { cwd: here }),
      snapvisor(['run', '--cwd', '/usr', '--', '/bin/busybox', 'pwd'], { cwd: here }),
    ]);
    expect(own.stderr).toBe('');
    expect([own.status, own.stdout.toString()]).toEqual([0, `${fs.realpathSync(here)}\nin the caller's dir\n`]);
    expect([other.status, other.stdout.toString()]).toEqual([0, '/\n']);
    expect([explicit.status, explicit.stdout.toString()]).toEqual([0, '/usr\n']);
    // A caller whose directory is gone (so not there inside either) starts in /.
    const gone = path.join(here, 'gone');
    fs.mkdirSync(gone);
    const r = await native(['/bin/sh', '-c', 'rmdir "$1" && exec "$2" "$3" run -- /bin/busybox pwd', 'sh', gone, process.execPath, CLI], { cwd: gone });
    expect(r.stderr).toBe('');
    expect([r.status, r.stdout.toString()]).toEqual([0, '/\n']);
  });

  it('--strace prints syscalls on stderr, and only with --strace', async () => {
    const [traced, plain] = await Promise.all([
      snapvisor(['run', '--strace', '/bin/busybox', 'echo', 'hi']),
      snapvisor(['run', '/bin/busybox', 'echo', 'hi']),
    ]);
    expect(traced.status).toBe(0);
    expect(traced.stdout.toString()).toBe('hi\n');
    const writes = traced.stderr.split('\n').filter((l) => l.includes('write('));
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.some((l) => /write\(1, .*\) = 3$/.test(l))).toBe(true);
    expect(plain.stdout.toString()).toBe('hi\n');
    expect(plain.stderr).not.toContain('write(');
  });
});
