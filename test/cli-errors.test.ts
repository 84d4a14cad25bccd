/**
 * The CLI's bad input (docs/cli.md): each gives one `snapvisor: …` line on stderr (no stack
 * trace, no bare Node error) and a non-zero status, and leaves what the store holds as it was.
 * A malformed checkpoint id is a usage error (2) everywhere; `checkpoints` lists the sound
 * checkpoints of a store with damaged ones and names each damaged one. Real commands as
 * subprocesses, on a store of real checkpoints of a busybox sandbox.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freshDir, native, sha256, snapvisor, snapvisorStreaming } from './helpers.js';

/** stderr is exactly `lines` lines, each `snapvisor: …`, with no stack trace or raw Node error. */
function expectLines(stderr: string, lines: number, pattern?: RegExp): void {
  const got = stderr.split('\n').filter(Boolean);
  expect(got, stderr).toHaveLength(lines);
  for (const l of got) expect(l).toMatch(/^snapvisor: \S/);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/\b(ENOENT|EACCES|ENOTDIR|EISDIR|EEXIST|ECONNREFUSED)\b: /);
  expect(stderr).not.toMatch(/\bat .*\.(c?js|ts):\d+/);
  if (pattern) expect(stderr).toMatch(pattern);
}

/** Every file of a store with its bytes' hash: what "nothing stored is lost" compares. */
function storeFiles(store: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sub of ['meta', 'pages']) {
    for (const n of fs.readdirSync(path.join(store, sub))) out[`${sub}/${n}`] = sha256(fs.readFileSync(path.join(store, sub, n)));
  }
  return out;
}

let base: string, root: string, store: string;
/** Three checkpoints of one sandbox, oldest first: compressed, compressed (incremental), flat (--no-compress). */
let ids: string[];

beforeAll(async () => {
  base = freshDir('cli-errors');
  root = path.join(base, 'state');
  store = path.join(base, 'store');
  const name = `cli-errors-${process.pid}`;
  const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'echo ready; while :; do sleep 1; done'], { timeoutMs: 60_000 });
  await run.waitFor((l) => l === 'ready', 30_000);
  ids = [];
  for (const extra of [[], [], ['--no-compress']]) {
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running', ...extra], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
  }
  expect((await snapvisor(['--root', root, 'kill', name])).status).toBe(0);
  expect(await run.done).toBe(137);
}, 90_000);

/** A copy of the store, to damage. */
function copyStore(): string {
  const dir = path.join(freshDir('store-copy'), 'store');
  fs.cpSync(store, dir, { recursive: true });
  return dir;
}

describe('checkpoints: a damaged checkpoint hides no other', () => {
  it('lists the sound ones, one line per damaged one, status 1; nothing removed', async () => {
    const s = copyStore();
    // The oldest loses its restore record, the newest's page file is cut short (nothing inherits from it).
    fs.rmSync(path.join(s, 'meta', ids[0]));
    const flat = path.join(s, 'pages', ids[2]);
    fs.truncateSync(flat, fs.statSync(flat).size - 4096);
    const before = storeFiles(s);

    const r = await snapvisor(['checkpoints', '--store', s]);
    expect(r.status).toBe(1);
    const rows = r.stdout.toString().trim().split('\n');
    expect(rows[0]).toMatch(/^ID +CREATED/);
    expect(rows.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([ids[1]]);
    // Its parent is there but damaged, not deleted.
    expect(rows[1]).toContain(`${ids[0]} (damaged)`);
    expectLines(r.stderr, 2);
    const lines = r.stderr.trim().split('\n');
    const first = lines.find((l) => l.includes(ids[0])), second = lines.find((l) => l.includes(ids[2]));
    expect(first).toBe(`snapvisor: checkpoint ${ids[0]} is corrupt: its restore record meta/${ids[0]} is missing (not listed)`);
    expect(second).toMatch(new RegExp(`^snapvisor: checkpoint ${ids[2]} is corrupt: its page file is \\d+ bytes, expected \\d+ \\(not listed\\)$`));

    const json = await snapvisor(['checkpoints', '--store', s, '--json']);
    expect(json.status).toBe(1);
    expect((JSON.parse(json.stdout.toString()) as Array<{ id: string }>).map((c) => c.id)).toEqual([ids[1]]);
    expectLines(json.stderr, 2);
    // `store check` agrees (status 1, both named), and listing removed nothing.
    const check = await snapvisor(['store', 'check', '--store', s]);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain(ids[0]);
    expect(check.stderr).toContain(ids[2]);
    expect(storeFiles(s)).toEqual(before);
  });

  it('a checkpoint inheriting pages from a damaged page file is damaged too', async () => {
    const s = copyStore();
    // The first checkpoint's pack, which the later ones take their unchanged pages from.
    const pack = path.join(s, 'pages', `${ids[0]}.pack`);
    fs.truncateSync(pack, Math.floor(fs.statSync(pack).size / 2));
    const r = await snapvisor(['checkpoints', '--store', s, '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout.toString())).toEqual([]);
    expectLines(r.stderr, 3, new RegExp(`checkpoint ${ids[1]} is corrupt: the page file of ${ids[0]}, which it inherits pages from, is damaged`));
  });

  it('a sound store: status 0, nothing on stderr', async () => {
    const r = await snapvisor(['checkpoints', '--store', store, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout.toString()) as Array<{ id: string }>).map((c) => c.id)).toEqual(ids);
  });
});

describe('checkpoint ids', () => {
  const commands = (id: string): Array<[string[], number]> => [
    [['restore', id, '--store', store], 125],
    [['inspect', id, '--store', store], 1],
    [['delete', id, '--store', store], 1],
    [['export', id, '--store', store, '-o', path.join(base, 'out.svx')], 1],
    [['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '1', '--listen', path.join(base, 'p.sock')], 1],
  ];

  it('a malformed id is a usage error (status 2) for every command taking one', async () => {
    for (const bad of ['ZZZZ', 'abc', '0123456789abcdef0', '../x']) {
      for (const [args] of commands(bad)) {
        const r = await snapvisor(args, { timeoutMs: 30_000 });
        expect(r.status, args.join(' ')).toBe(2);
        expectLines(r.stderr, 1, /invalid checkpoint id '.*': expected 4 to 16 hex characters$/m);
      }
    }
  });

  it('an unknown well-formed id is the store\'s one line (125 for restore, else 1)', async () => {
    const before = storeFiles(store);
    for (const [args, status] of commands('abcdef0123456789')) {
      const r = await snapvisor(args, { timeoutMs: 30_000 });
      expect(r.status, args.join(' ')).toBe(status);
      expectLines(r.stderr, 1, /checkpoint abcdef0123456789 not found in store/);
    }
    expect(storeFiles(store)).toEqual(before);
  });
});

describe('store paths', () => {
  const readers = (s: string): string[][] => [
    ['checkpoints', '--store', s], ['gc', '--store', s], ['store', 'check', '--store', s], ['inspect', ids[0], '--store', s],
    ['delete', ids[0], '--store', s], ['export', ids[0], '--store', s, '-o', path.join(base, 'o.svx')], ['restore', ids[0], '--store', s],
  ];

  it('a file, or a path through a file: one line naming it', async () => {
    const file = path.join(freshDir('store-file'), 'afile');
    fs.writeFileSync(file, 'not a store\n');
    for (const [s, msg] of [[file, `checkpoint store ${file} is not a directory`], [path.join(file, 'sub'), `checkpoint store ${file}/sub: ${file} is not a directory`]]) {
      for (const args of [...readers(s), ['import', path.join(base, 'none.svx'), '--store', s]]) {
        const r = await snapvisor(args, { timeoutMs: 30_000 });
        expect(r.status, args.join(' ')).toBe(args[0] === 'restore' ? 125 : 1);
        expectLines(r.stderr, 1);
        expect(r.stderr).toBe(`snapvisor: ${msg}\n`);
      }
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('not a store\n');
  });

  it('a missing store: checkpoints lists nothing (0); the others one line', async () => {
    const s = path.join(base, 'no-store');
    const list = await snapvisor(['checkpoints', '--store', s, '--json']);
    expect(list.status).toBe(0);
    expect(JSON.parse(list.stdout.toString())).toEqual([]);
    for (const args of readers(s).slice(1)) {
      const r = await snapvisor(args, { timeoutMs: 30_000 });
      expect(r.status, args.join(' ')).toBe(args[0] === 'restore' ? 125 : 1);
      expect(r.stderr).toBe(`snapvisor: no checkpoint store at ${s}\n`);
    }
    expect(fs.existsSync(s)).toBe(false);
  });

  // Root reads a mode-000 directory anyway: as root, run the commands as nobody (setpriv).
  const asRoot = process.getuid?.() === 0;
  const unprivileged = (args: string[]) => asRoot ? native(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args], { timeoutMs: 30_000 }) : snapvisor(args, { timeoutMs: 30_000 });
  const canDrop = !asRoot || spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '--version']).status === 0;
  let outside: string | undefined;
  afterAll(() => { if (outside) fs.rmSync(outside, { recursive: true, force: true }); });

  it.runIf(canDrop)('a store this user may not read: one line saying so, not "no store"', async () => {
    // Outside the test's 0700 temp directory, which nobody could not enter at all.
    outside = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-unreadable-'));
    fs.chmodSync(outside, 0o755);
    const s = path.join(outside, 'store');
    fs.cpSync(store, s, { recursive: true });
    fs.chmodSync(s, 0o000);
    for (const args of readers(s)) {
      const r = await unprivileged(args);
      expect(r.status, args.join(' ')).toBe(args[0] === 'restore' ? 125 : 1);
      expect(r.stderr).toBe(`snapvisor: cannot read checkpoint store ${s}: Permission denied\n`);
    }
    fs.chmodSync(s, 0o755);
    expect(storeFiles(s)).toEqual(storeFiles(store));
  });
});

describe('export and import', () => {
  it('a failed export leaves the file already at -o as it was; -o inside the store is refused', async () => {
    const out = path.join(base, 'kept.svx');
    fs.writeFileSync(out, 'an earlier export\n');
    const s = copyStore();
    const pack = path.join(s, 'pages', `${ids[0]}.pack`);
    fs.truncateSync(pack, Math.floor(fs.statSync(pack).size / 2));
    const r = await snapvisor(['export', ids[0], '--store', s, '-o', out], { timeoutMs: 30_000 });
    expect(r.status).toBe(1);
    expectLines(r.stderr, 1, new RegExp(`checkpoint ${ids[0]} is corrupt`));
    expect(fs.readFileSync(out, 'utf8')).toBe('an earlier export\n');
    expect(fs.readdirSync(base).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    // Into the store's own page file: refused before anything is written.
    const before = storeFiles(store);
    const own = path.join(store, 'pages', `${ids[0]}.pack`);
    const into = await snapvisor(['export', ids[0], '--store', store, '-o', own], { timeoutMs: 30_000 });
    expect(into.status).toBe(1);
    expectLines(into.stderr, 1, /is inside the checkpoint store/);
    expect(storeFiles(store)).toEqual(before);
    const dir = await snapvisor(['export', ids[0], '--store', store, '-o', base], { timeoutMs: 30_000 });
    expect(dir.status).toBe(1);
    expect(dir.stderr).toBe(`snapvisor: cannot write ${base}: Is a directory\n`);

    // A good export replaces the earlier file.
    const ok = await snapvisor(['export', ids[0], '--store', store, '-o', out], { timeoutMs: 30_000 });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(fs.readFileSync(out).subarray(0, 4).toString()).not.toBe('an e');
  });

  it('a truncated export file is refused and writes nothing into the store', async () => {
    const out = path.join(base, 'whole.svx');
    expect((await snapvisor(['export', ids[1], '--store', store, '-o', out], { timeoutMs: 30_000 })).status).toBe(0);
    const cut = path.join(base, 'cut.svx');
    fs.writeFileSync(cut, fs.readFileSync(out).subarray(0, Math.floor(fs.statSync(out).size / 2)));
    const s = copyStore();
    const before = storeFiles(s);
    const r = await snapvisor(['import', cut, '--store', s], { timeoutMs: 30_000 });
    expect(r.status).toBe(1);
    expectLines(r.stderr, 1, /cut\.svx is corrupt or truncated/);
    expect(storeFiles(s)).toEqual(before);
  });
});

describe('sockets', () => {
  /** A unix socket file nothing listens on: what a sandbox or pool killed with SIGKILL leaves. */
  function staleSocket(p: string): void {
    const r = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', p]);
    expect(r.status).toBe(0);
    expect(fs.statSync(p).isSocket()).toBe(true);
  }

  it('a dead sandbox\'s control socket: checkpoint, kill, ps, events say no sandbox runs there', async () => {
    const state = freshDir('dead-state');
    staleSocket(path.join(state, 'gone.sock'));
    for (const args of [['checkpoint', 'gone', '--store', store], ['kill', 'gone'], ['ps', 'gone'], ['events', 'gone']]) {
      const r = await snapvisor(['--root', state, ...args], { timeoutMs: 30_000 });
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(`snapvisor: no sandbox is running on the control socket ${state}/gone.sock (Connection refused: left behind by a sandbox that ended)\n`);
    }
  });

  it('run --name of a name whose socket path another program listens on: one line, that socket kept; a stale one is replaced', async () => {
    const state = freshDir('taken-state');
    const sock = path.join(state, 'taken.sock');
    // Answers anything with a line that is no sandbox's answer.
    const server = net.createServer((c) => c.once('data', () => c.end('hello\n')));
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const r = await snapvisor(['--root', state, 'run', '--name', 'taken', '--', '/bin/true'], { timeoutMs: 30_000 });
      expect(r.stderr).toBe(`snapvisor: the control socket path ${sock} is in use by another program (it accepts connections but does not answer as a sandbox)\n`);
      expect(r.status).toBe(125);
      expect(fs.statSync(sock).isSocket()).toBe(true);
    } finally {
      server.close();
    }
    staleSocket(path.join(state, 'stale.sock'));
    const ok = await snapvisor(['--root', state, 'run', '--name', 'stale', '--', '/bin/echo', 'ran'], { timeoutMs: 30_000 });
    expect(ok.stdout.toString()).toBe('ran\n');
    expect(ok.status).toBe(0);
  });

  it('pool take: no pool, a stale socket, a file that is no socket', async () => {
    const dir = freshDir('take');
    staleSocket(path.join(dir, 'stale.sock'));
    fs.writeFileSync(path.join(dir, 'file'), '');
    for (const [name, why] of [['none.sock', 'No such file or directory'], ['stale.sock', 'Connection refused'], ['file', 'it is not a socket']]) {
      const r = await snapvisor(['pool', 'take', path.join(dir, name)], { timeoutMs: 30_000 });
      expect(r.status).toBe(125);
      expect(r.stderr).toBe(`snapvisor: no pool is serving on ${path.join(dir, name)} (${why})\n`);
    }
  });

  it('pool serve: a --listen path in a missing directory or through a file, taken by a file, or too long', async () => {
    const dir = freshDir('serve');
    fs.writeFileSync(path.join(dir, 'file'), '');
    for (const [listen, why] of [
      [path.join(dir, 'nodir', 'p.sock'), `cannot listen on ${dir}/nodir/p.sock: no directory ${dir}/nodir`],
      [path.join(dir, 'file', 'p.sock'), `cannot listen on ${dir}/file/p.sock: ${dir}/file is not a directory`],
      [path.join(dir, 'file'), `${dir}/file exists and is not a socket`],
      // bind(2) would cut it short silently: the pool would serve on another path than it says.
      [path.join(dir, 'x'.repeat(120) + '.sock'), `cannot listen on the socket path ${dir}/${'x'.repeat(120)}.sock is ${dir.length + 126} bytes, more than a unix socket address holds (107)`],
    ]) {
      const r = await snapvisor(['pool', 'serve', '--checkpoint', ids[0], '--store', store, '--size', '1', '--no-probe', '--listen', listen], { timeoutMs: 60_000 });
      expect(r.status, listen).toBe(1);
      expect(r.stderr).toBe(`snapvisor: pool: ${why}\n`);
    }
  }, 120_000);
});

describe('run: paths it will write to', () => {
  it('--events in a missing directory, --root and --checkpoint-store that are files, a missing --rootfs or one that is a file, a --root too long for the socket: one line, 125, no guest', async () => {
    const dir = freshDir('run-paths');
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    for (const [args, line] of [
      [['run', '--events', path.join(dir, 'no', 'ev.json'), '--', '/bin/busybox', 'echo', 'ran'], `--events: cannot open ${dir}/no/ev.json: No such file or directory`],
      [['--root', file, 'run', '--name', 'x', '--', '/bin/busybox', 'echo', 'ran'], `state directory ${file} is not a directory`],
      [['run', '--checkpoint-store', file, '--', '/bin/busybox', 'echo', 'ran'], `checkpoint store (--checkpoint-store) ${file} is not a directory`],
      [['run', '--rootfs', path.join(dir, 'none'), '--', '/bin/busybox', 'echo', 'ran'], `rootfs ${dir}/none does not exist`],
      [['run', '--rootfs', file, '--', '/bin/busybox', 'echo', 'ran'], `rootfs ${file} is not a directory`],
      // The control socket's path would not fit a unix socket address (it was listen's raw EADDRINUSE).
      [['--root', path.join(dir, 'r'.repeat(100)), 'run', '--name', 'abc', '--', '/bin/busybox', 'echo', 'ran'], `the socket path ${dir}/${'r'.repeat(100)}/abc.sock is ${dir.length + 110} bytes, more than a unix socket address holds (107)`],
    ] as Array<[string[], string]>) {
      const r = await snapvisor(args, { timeoutMs: 30_000 });
      expect(r.status, args.join(' ')).toBe(125);
      expect(r.stdout.toString()).toBe('');
      expect(r.stderr).toBe(`snapvisor: ${line}\n`);
    }
    // Refused before anything was made: the --root too long for its socket was not created.
    expect(fs.existsSync(path.join(dir, 'r'.repeat(100)))).toBe(false);
  });
});

describe('command groups and help', () => {
  it('pool or store without a subcommand, or with an unknown one: one line, status 2; help COMMAND: status 0', async () => {
    for (const [args, line] of [
      [['pool'], 'pool: a subcommand is missing (serve, take; see snapvisor pool --help)'],
      [['store'], 'store: a subcommand is missing (check; see snapvisor store --help)'],
      [['pool', 'bogus'], 'unknown command \'bogus\' (see snapvisor pool --help)'],
      [['store', 'bogus'], 'unknown command \'bogus\' (see snapvisor store --help)'],
    ] as Array<[string[], string]>) {
      const r = await snapvisor(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout.toString()).toBe('');
      expect(r.stderr).toBe(`snapvisor: ${line}\n`);
    }
    for (const args of [['help', 'run'], ['pool', 'help', 'serve'], ['store', 'help', 'check'], ['pool', '--help']]) {
      const r = await snapvisor(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout.toString()).toMatch(/^Usage: snapvisor /);
      expect(r.stderr).toBe('');
    }
  });
});

describe('a sandbox of 24 MiB (its pages checked in the background on restore)', () => {
  let root: string, pyStore: string, flat: string, run: ReturnType<typeof snapvisorStreaming>;
  const name = `cli-errors-py-${process.pid}`;

  beforeAll(async () => {
    const dir = freshDir('cli-errors-py');
    root = path.join(dir, 'state');
    pyStore = path.join(dir, 'store');
    run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c',
      'import time\nb = bytearray(24 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint("ready", flush=True)\nwhile True: time.sleep(0.1)'], { timeoutMs: 300_000 });
    await run.waitFor((l) => l === 'ready', 90_000);
    // Flat, more than restoreKernel checks before the guest starts (8 MiB): checked by a worker once it runs.
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', pyStore, '--leave-running', '--no-compress'], { timeoutMs: 60_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    flat = cp.stdout.toString().trim().split(/\s+/).pop()!;
  }, 150_000);
  afterAll(async () => {
    await snapvisor(['--root', root, 'kill', name]);
    expect(await run.done).toBe(137);
  });

  it('restore --name of a taken name: the name clash alone, never a page check that outlived the refusal', async () => {
    const clash = `snapvisor: a sandbox named 'x' is already running\n`;
    // A live sandbox slow to answer (a loaded host): the refusal comes after the background page
    // check began (150 ms after the restore), while the restored kernel was destroyed meanwhile;
    // the delays sweep the moments of the refusal around the check's start.
    const slowRoot = freshDir('slow-root');
    let delayMs = 0;
    const server = net.createServer((c) => c.once('data', () => setTimeout(() => c.end('{"ok":true,"pid":1,"name":"x"}\n'), delayMs)));
    await new Promise<void>((r) => server.listen(path.join(slowRoot, 'x.sock'), r));
    try {
      for (const d of [0, 50, 100, 125, 150, 160, 175, 190, 200, 225, 250, 300, 400, 150, 175, 200]) {
        delayMs = d;
        const t0 = Date.now();
        const r = await snapvisor(['--root', slowRoot, 'restore', flat, '--store', pyStore, '--name', 'x'], { timeoutMs: 30_000 });
        expect(r.timedOut, `delay ${d} ms`).toBe(false);
        expect(r.stderr, `delay ${d} ms`).toBe(clash);
        expect(r.status).toBe(125);
        expect(Date.now() - t0).toBeLessThan(25_000);
      }
    } finally {
      server.close();
    }
    // The real clash: the sandbox that took the name.
    for (let i = 0; i < 3; i++) {
      const r = await snapvisor(['--root', root, 'restore', flat, '--store', pyStore, '--name', name], { timeoutMs: 30_000 });
      expect(r.stderr).toBe(`snapvisor: a sandbox named '${name}' is already running\n`);
      expect(r.status).toBe(125);
    }
  }, 240_000);

  it('checkpoint --store FILE (or through a file): the store-path line of the other commands, from every client', async () => {
    const file = path.join(freshDir('ck-store-file'), 'afile');
    fs.writeFileSync(file, 'not a store\n');
    const FRONT = path.join(path.dirname(CLI), 'snapvisor');
    for (const [s, line] of [[file, `checkpoint store ${file} is not a directory`], [path.join(file, 'sub'), `checkpoint store ${file}/sub: ${file} is not a directory`]]) {
      // The node client without the bundle, the full CLI (--log), the native front (answered by the sandbox).
      for (const client of [[process.execPath, CLI], [process.execPath, CLI, '--log', path.join(path.dirname(file), 'log')], [FRONT]]) {
        const r = await native([...client, '--root', root, 'checkpoint', name, '--store', s], { timeoutMs: 30_000 });
        expect(r.stderr, client.join(' ')).toBe(`snapvisor: ${line}\n`);
        expect(r.status).toBe(1);
      }
    }
    // Relative to the caller's directory, named as given (the front's request is answered by the sandbox, in its own directory).
    const r = await native([FRONT, '--root', root, 'checkpoint', name, '--store', 'afile/sub'], { cwd: path.dirname(file), timeoutMs: 30_000 });
    expect(r.stderr).toBe('snapvisor: checkpoint store afile/sub: afile is not a directory\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('not a store\n');
    // The sandbox ran on.
    const ps = await snapvisor(['--root', root, 'ps', name]);
    expect(ps.status).toBe(0);
    expect(ps.stdout.toString()).toMatch(/python3/);
  }, 120_000);
});

describe('not-found lines', () => {
  it('ps, kill, checkpoint and events of a name nothing runs under name the state directory they looked in', async () => {
    const state = freshDir('nf-state');
    for (const args of [['ps', 'nosuch'], ['kill', 'nosuch'], ['checkpoint', 'nosuch', '--store', store], ['events', 'nosuch']]) {
      const r = await snapvisor(['--root', state, ...args], { timeoutMs: 30_000 });
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(`snapvisor: container nosuch does not exist (nor a running sandbox of that name in ${state})\n`);
    }
  });
});
