/**
 * Bad input: one-line `snapvisor: …` errors on stderr (no stack traces) and the exit
 * status a shell would give (126 cannot execute, 127 not found).
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileStatic, freshDir, snapvisor, snapvisorStreaming } from './helpers.js';

/** stderr is exactly one line `snapvisor: …`, with no stack trace. */
function expectOneLineError(stderr: string, pattern?: RegExp): void {
  expect(stderr).toMatch(/^snapvisor: [^\n]+\n$/);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/\bat .*\.(js|ts):\d+/);
  if (pattern) expect(stderr).toMatch(pattern);
}

let dir: string;
beforeAll(() => {
  dir = freshDir('errors');
});

describe('run: programs that cannot start', () => {
  it('a non-ELF file without #! (exec bit set) → 126', async () => {
    const p = path.join(dir, 'not-elf');
    fs.writeFileSync(p, 'just some text\nnot a program\n', { mode: 0o755 });
    const r = await snapvisor(['run', p]);
    expect(r.status).toBe(126);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r.stderr, /not-elf/);
  });

  it('a truncated ELF (first 2000 bytes of /bin/ls) → 126', async () => {
    const p = path.join(dir, 'truncated-ls');
    fs.writeFileSync(p, fs.readFileSync('/bin/ls').subarray(0, 2000), { mode: 0o755 });
    const r = await snapvisor(['run', p]);
    expect(r.status).toBe(126);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r.stderr, /truncated-ls/);
  });

  it('an ELF whose PT_INTERP names a missing interpreter → 127', async () => {
    // Same length as the original path so that the ELF stays valid otherwise.
    // (The brief's "/lib64/ld-missing-x86-64.so.2" is 2 bytes longer than the original.)
    const from = Buffer.from('/lib64/ld-linux-x86-64.so.2');
    const to = Buffer.from('/lib64/ld-mssng-x86-64.so.2');
    expect(to.length).toBe(from.length);
    expect(fs.existsSync(to.toString())).toBe(false);
    const elf = Buffer.from(fs.readFileSync('/bin/ls'));
    const at = elf.indexOf(from);
    expect(at).toBeGreaterThan(0);
    to.copy(elf, at);
    const p = path.join(dir, 'bad-interp');
    fs.writeFileSync(p, elf, { mode: 0o755 });
    const r = await snapvisor(['run', p]);
    expect(r.status).toBe(127);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r.stderr, /ld-mssng/);
  });

  it('a missing program → 127', async () => {
    const r = await snapvisor(['run', '/nonexistent/prog']);
    expect(r.status).toBe(127);
    expectOneLineError(r.stderr, /\/nonexistent\/prog/);
  });

  it('a program name not in PATH → 127', async () => {
    const r = await snapvisor(['run', 'snapvisor-no-such-command-xyz']);
    expect(r.status).toBe(127);
    expectOneLineError(r.stderr, /snapvisor-no-such-command-xyz/);
  });

  it('a directory → 126', async () => {
    const r = await snapvisor(['run', '/usr']);
    expect(r.status).toBe(126);
    expectOneLineError(r.stderr, /\/usr/);
  });
});

const TICK_C = `
#include <stdio.h>
#include <time.h>
int main(void) {
  for (int i = 1; i <= 150; i++) {
    printf("tick %d\\n", i);
    fflush(stdout);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, 0);
  }
  return 0;
}
`;

describe('checkpoint/restore errors', () => {
  it('restore of an unknown id in an empty store', async () => {
    const store = freshDir('empty-store');
    const r = await snapvisor(['restore', 'abcd1234abcd1234', '--store', store]);
    expect(r.status).not.toBe(0);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r.stderr);
  });

  it('checkpoint of a name that is not running → status 1', async () => {
    const root = freshDir('root');
    const r = await snapvisor(['--root', root, 'checkpoint', 'nobody-runs-this', '--store', freshDir('store')]);
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r.stderr, /nobody-runs-this/);
  });

  it('restore from a store with a flipped byte in a page → corruption error, no guest output', async () => {
    const tick = compileStatic('tick', TICK_C);
    const root = freshDir('root');
    const store = freshDir('store');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'ticker', tick]);
    await run.waitFor((l) => l === 'tick 5');
    const cp = await snapvisor(['--root', root, 'checkpoint', 'ticker', '--store', store, '--no-compress']);
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(await run.done).toBe(137);

    // Flip a bit in the first non-zero page of the checkpoint's page file.
    const pageFile = path.join(store, 'pages', id);
    const bytes = fs.readFileSync(pageFile);
    let flipped = 0;
    for (let off = 0; off < bytes.length && !flipped; off += 4096) {
      if (bytes.subarray(off, off + 4096).some((b) => b !== 0)) {
        bytes[off + 100] ^= 0x40;
        flipped++;
      }
    }
    fs.writeFileSync(pageFile, bytes);
    expect(flipped).toBe(1);

    const r = await snapvisor(['restore', id, '--store', store]);
    expect(r.status).not.toBe(0);
    expect(r.stdout.toString()).toBe('');
    expectOneLineError(r.stderr, /corrupt/i);
  });
});
