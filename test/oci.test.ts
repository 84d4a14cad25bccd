/**
 * snapvisor as an OCI runtime (runc's command set over bundles): the lifecycle as a shim
 * drives it (create → start → state → exec → kill → delete, pid files whose processes the
 * shim reaps, a console socket for a terminal container), config.json honoured, checkpoint
 * --image-path / restore --image-path, and bad input leaving nothing behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, freshDir, native, snapvisor } from './helpers.js';
import { makeBundle, processesMentioning, until } from './oci-helpers.js';

const SHIM = path.join(REPO_ROOT, 'test', 'oci-shim.py');
let work: string;
let root: string;
const sv = (args: string[], opts: Parameters<typeof snapvisor>[1] = {}) => snapvisor(['--root', root, ...args], opts);

beforeAll(() => {
  work = freshDir('oci');
  root = path.join(work, 'root');
});

// A failed test must not leave containers running: delete whatever is left under the root.
afterAll(async () => {
  for (const id of fs.existsSync(root) ? fs.readdirSync(root).filter((n) => fs.existsSync(path.join(root, n, 'state.json'))) : []) {
    await sv(['delete', '--force', id]);
  }
});

/**
 * `create`: the container keeps the stdio it is given, so (as a shim does) give it files and
 * wait for the command's exit, not for end-of-file on pipes the container holds.
 */
async function svCreate(args: string[]): Promise<{ status: number | null; stderr: string; stdoutFile: string }> {
  const { spawn } = await import('node:child_process');
  const dir = freshDir('create-io');
  const out = path.join(dir, 'out'), err = path.join(dir, 'err');
  const [o, e] = [fs.openSync(out, 'w'), fs.openSync(err, 'w')];
  const child = spawn(process.execPath, [CLI, '--root', root, 'create', ...args], { stdio: ['ignore', o, e] });
  const status = await new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  fs.closeSync(o);
  fs.closeSync(e);
  return { status, stderr: fs.readFileSync(err, 'utf8'), stdoutFile: out };
}

/** Run the python shim over a fresh bundle; returns what it saw. */
async function shim(id: string, mode: 'plain' | 'terminal', edit: (c: Record<string, any>) => void) {
  const dir = freshDir(`shim-${mode}`);
  const bundle = makeBundle(path.join(dir, 'bundle'), edit);
  const t0 = Date.now();
  const r = await native(['python3', SHIM, CLI, root, bundle, id, mode], { timeoutMs: 90_000 });
  expect(r.timedOut).toBe(false);
  expect(r.stderr).toBe('');
  return { out: JSON.parse(r.stdout.toString()), dir, ms: Date.now() - t0 };
}

describe('OCI lifecycle as a shim drives it', () => {
  it('create → start → state → exec → kill → delete, with pid files the shim reaps', async () => {
    const { out, dir } = await shim('life1', 'plain', (c) => { c.process.args = ['sh', '-c', 'echo init-out; exec sleep 600']; });
    expect(out.create).toEqual([0, '']);
    expect(out.init_pid_alive).toBe(true);
    expect(out.init_ppid_is_shim).toBe(true);
    expect(out.state_created).toMatchObject({ ociVersion: '1.0.2', id: 'life1', status: 'created', bundle: path.join(dir, 'bundle'), rootfs: path.join(dir, 'bundle', 'rootfs') });
    expect(out.state_created.pid).toBeGreaterThan(1);
    expect(out.start).toEqual([0, '']);
    expect(out.state_running).toMatchObject({ status: 'running', pid: out.state_created.pid });
    expect(out.exec).toEqual([0, '']);
    expect(out.exec_status).toBe(9);
    expect(out.exec_output).toBe('exec-out\n');
    expect(out.kill).toEqual([0, '']);
    expect(out.init_status).toBe(-9); // the shim's waitpid sees the container's init die of SIGKILL
    expect(out.state_stopped).toMatchObject({ status: 'stopped', pid: 0 });
    expect(out.delete).toEqual([0, '']);
    expect(out.state_after_delete[0]).toBe(1);
    expect(out.state_after_delete[1]).toBe('snapvisor: container life1 does not exist\n');
    expect(fs.readFileSync(path.join(dir, 'init.out'), 'utf8')).toBe('init-out\n');
    // The last command's error is in the log as runc writes it: one JSON line.
    const lines = fs.readFileSync(path.join(dir, 'runtime-log.json'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ level: 'error', msg: 'container life1 does not exist' });
    expect(Number.isNaN(Date.parse(lines.at(-1).time))).toBe(false);
    expect(fs.existsSync(path.join(root, 'life1'))).toBe(false);
    expect(processesMentioning('__oci-init ' + root + ' life1')).toEqual([]);
  }, 120_000);

  it('a terminal container: the pty master arrives on the console socket and talks to the guest shell', async () => {
    const { out } = await shim('tty1', 'terminal', (c) => { c.process.terminal = true; c.process.args = ['sh']; });
    expect(out.create).toEqual([0, '']);
    expect(out.console_name).toBe('/dev/ptmx');
    expect(out.master_is_tty).toBe(true);
    expect(out.console_output_ok).toBe(true);
    expect(out.exec_status).toBe(9);
    expect(out.init_status).toBe(-9);
    expect(out.delete).toEqual([0, '']);
    expect(processesMentioning('__oci-init ' + root + ' tty1')).toEqual([]);
  }, 120_000);
});

describe('config.json honoured', () => {
  it('args, env, cwd, user (uid, gid, additionalGids), hostname, rlimits; state shows annotations; run returns the status', async () => {
    const bundle = makeBundle(path.join(freshDir('cfg'), 'bundle'), (c) => {
      c.process.args = ['sh', '-c', 'echo "$GREETING"; pwd; id -u; id -g; id -G; hostname; ulimit -n; exit 4'];
      c.process.env = ['PATH=/bin', 'GREETING=hi there'];
      c.process.cwd = '/tmp';
      c.process.user = { uid: 1234, gid: 567, additionalGids: [567, 42] };
      c.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 321, hard: 400 }];
      c.hostname = 'oci-box';
      c.annotations = { 'org.example/k': 'v' };
    });
    const r = await sv(['run', '--bundle', bundle, 'cfg1']);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('hi there\n/tmp\n1234\n567\n567 42\noci-box\n321\n');
    expect(r.status).toBe(4);
    expect(fs.existsSync(path.join(root, 'cfg1'))).toBe(false); // run removes the container after it exits

    const c2 = await svCreate(['--bundle', bundle, 'cfg2']);
    expect(c2.status).toBe(0);
    const st = await sv(['state', 'cfg2']);
    expect(JSON.parse(st.stdout.toString())).toMatchObject({ status: 'created', annotations: { 'org.example/k': 'v' } });
    expect((await sv(['delete', 'cfg2'])).status).toBe(0); // a created container is deleted without --force, as runc does
    expect(fs.existsSync(path.join(root, 'cfg2'))).toBe(false);
  }, 120_000);

  it('mounts: a read-write and a read-only bind and a tmpfs with size and mode are made; proc, devpts and /dev/shm stay the sandbox\'s own', async () => {
    const dir = freshDir('mounts');
    const rw = path.join(dir, 'rw'), ro = path.join(dir, 'ro');
    fs.mkdirSync(rw);
    fs.mkdirSync(ro);
    fs.writeFileSync(path.join(ro, 'r'), 'read only\n');
    const bundle = makeBundle(path.join(dir, 'bundle'), (c) => {
      c.process.args = ['sh', '-c', 'echo written > /data/out; cat /ro/r; (echo x > /ro/new) 2>/dev/null || echo refused; df /scratch | tail -1; stat -c %a /scratch; grep -E " /(data|ro|scratch) " /proc/mounts'];
      c.mounts.push({ destination: '/data', type: 'bind', source: rw, options: ['rbind', 'rw'] });
      c.mounts.push({ destination: '/ro', type: 'bind', source: '../ro', options: ['bind', 'ro', 'nosuid'] });
      c.mounts.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=1m', 'mode=750'] });
    });
    const r = await sv(['run', '--bundle', bundle, 'mnt1']);
    expect(r.stderr).toBe('');
    const out = r.stdout.toString().split('\n');
    expect(out[0]).toBe('read only');
    expect(out[1]).toBe('refused');
    expect(out[2]).toMatch(/^tmpfs\s+1024\s+0\s+1024\s+0% \/scratch$/);
    expect(out.slice(3, 7)).toEqual(['750', `${rw} /data hostfs rw,relatime 0 0`, `${ro} /ro hostfs ro,nosuid,relatime 0 0`, 'tmpfs /scratch tmpfs rw,nosuid,relatime,size=1024k,mode=750 0 0']);
    expect(r.status).toBe(0);
    expect(fs.readFileSync(path.join(rw, 'out'), 'utf8')).toBe('written\n');
    expect(fs.readdirSync(ro)).toEqual(['r']);
  }, 60_000);

  it('root.readonly: writes on the root give EROFS, /proc/mounts says ro, mounts and /dev/shm stay writable', async () => {
    const dir = freshDir('roroot');
    const bundle = makeBundle(path.join(dir, 'bundle'), (c) => {
      c.root.readonly = true;
      c.process.args = ['sh', '-c', 'echo x > /tmp/f || echo refused; mkdir /newdir || echo refused; echo y > /scratch/f && cat /scratch/f; echo z > /dev/shm/f && cat /dev/shm/f; grep " / " /proc/mounts'];
      c.mounts.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] });
    });
    const r = await sv(['run', '--bundle', bundle, 'roroot1']);
    expect(r.stdout.toString()).toBe('refused\nrefused\ny\nz\nnone / overlay ro,relatime 0 0\n');
    expect(r.stderr.toString()).toMatch(/^sh: can't create \/tmp\/f: Read-only file system\nmkdir: can't create directory '\/newdir': Read-only file system\n$/);
    expect(r.status).toBe(0);
    expect(fs.existsSync(path.join(bundle, 'rootfs', 'tmp', 'f'))).toBe(false);
  }, 60_000);

  it('linux.resources.pids.limit: fork past it gets EAGAIN', async () => {
    const bundle = makeBundle(path.join(freshDir('pids'), 'bundle'), (c) => {
      c.process.args = ['sh', '-c', 'sleep 5 & sleep 5 & sleep 5 & echo started; wait'];
      c.linux.resources = { pids: { limit: 3 } };
    });
    const r = await sv(['run', '--bundle', bundle, 'pids1']);
    expect(r.stderr).toMatch(/can't fork|Resource temporarily unavailable|EAGAIN/i);
    expect(r.status).not.toBe(0);
  });
});

describe('linux.resources.memory.limit', () => {
  it('is the sandbox memory limit: a writer filling /tmp past 32 MiB is OOM-killed', async () => {
    const bundle = makeBundle(path.join(freshDir('mem'), 'bundle'), (c) => {
      c.process.args = ['sh', '-c', 'head -c 60000000 /dev/zero > /tmp/big; echo "head $?"; rm /tmp/big; echo after'];
      c.linux.resources = { memory: { limit: 32 * 1024 * 1024 } };
    });
    const r = await sv(['run', '--bundle', bundle, 'mem1']);
    // head dies of SIGKILL (the OOM killer) once /tmp holds 32 MiB; removing the file gives the memory back.
    expect(r.stdout.toString()).toBe('head 137\nafter\n');
    expect(r.status).toBe(0);
  }, 60_000);
});

describe('checkpoint --image-path and restore --image-path', () => {
  it('a counter checkpointed into an image directory goes on from there when restored, its read-only root still read-only', async () => {
    const dir = freshDir('ck');
    const ro = '(echo x > /f) 2>/dev/null || echo refused';
    // After printing 5 the counter waits for /gate/go in its rootfs, made after the checkpoint: it
    // is still counting when the checkpoint comes however slow the machine.
    const bundle = makeBundle(path.join(dir, 'bundle'), (c) => {
      c.root.readonly = true;
      c.process.args = ['sh', '-c', `${ro}; i=0; while [ $i -lt 150 ]; do echo $i; i=$((i+1)); if [ $i -eq 6 ]; then while [ ! -e /gate/go ]; do sleep 0.02; done; fi; sleep 0.05; done; ${ro}; grep " / " /proc/mounts`];
    });
    fs.mkdirSync(path.join(bundle, 'rootfs', 'gate'));
    const create = await svCreate(['--bundle', bundle, 'ck1']);
    expect(create.status).toBe(0);
    const outFile = create.stdoutFile;
    expect((await sv(['start', 'ck1'])).status).toBe(0);
    expect(await until(() => fs.readFileSync(outFile, 'utf8').split('\n').includes('5'), 40_000)).toBe(true);
    const image = path.join(dir, 'image');
    const ck = await sv(['checkpoint', '--image-path', image, '--work-path', path.join(dir, 'work'), 'ck1']);
    expect(ck.stderr).toBe('');
    expect(ck.status).toBe(0);
    expect(JSON.parse((await sv(['state', 'ck1'])).stdout.toString()).status).toBe('stopped');
    const [first, ...counted] = fs.readFileSync(outFile, 'utf8').trim().split('\n');
    expect(first).toBe('refused');
    const before = counted.map(Number);
    expect(before).toEqual([0, 1, 2, 3, 4, 5]);
    fs.writeFileSync(path.join(bundle, 'rootfs', 'gate', 'go'), '');
    expect((await sv(['delete', 'ck1'])).status).toBe(0);
    // The restored root is read-only because the checkpoint says so (FilesystemState.rootReadonly),
    // not because the bundle does: the bundle now says otherwise.
    const config = path.join(bundle, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ ...JSON.parse(fs.readFileSync(config, 'utf8')), root: { path: 'rootfs', readonly: false } }));
    const r = await sv(['restore', '--image-path', image, '--bundle', bundle, 'ck1'], { timeoutMs: 80_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines.slice(-2)).toEqual(['refused', 'none / overlay ro,relatime 0 0']);
    const after = lines.slice(0, -2).map(Number);
    expect(after[0]).toBe(before.at(-1)! + 1);
    expect(after.at(-1)).toBe(149);
    expect(fs.existsSync(path.join(bundle, 'rootfs', 'f'))).toBe(false);
  }, 150_000);
});

describe('bad input: one line, JSON in --log, non-zero status, nothing left', () => {
  const log = () => path.join(work, 'bad.log');
  const lastLog = () => JSON.parse(fs.readFileSync(log(), 'utf8').trim().split('\n').at(-1)!);
  const bad = async (args: string[], msg: RegExp) => {
    const r = await sv(['--log', log(), '--log-format', 'json', ...args]);
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(msg);
    expect(lastLog()).toMatchObject({ level: 'error' });
    expect(lastLog().msg).toMatch(msg);
    return r;
  };

  it('unknown container id', async () => {
    for (const cmd of [['state', 'nope'], ['start', 'nope'], ['kill', 'nope', 'KILL'], ['exec', 'nope', 'true'], ['pause', 'nope'], ['checkpoint', '--image-path', path.join(work, 'x'), 'nope']]) {
      await bad(cmd, /container nope does not exist/);
    }
    await bad(['delete', '--force', 'nope'], /container nope does not exist/);
  }, 120_000);

  it('missing bundle, malformed config.json, missing mount source, bad rlimit: nothing half-created', async () => {
    await bad(['create', '--bundle', path.join(work, 'no-such-bundle'), 'b1'], /bundle .*no-such-bundle does not exist/);
    const b2 = makeBundle(path.join(freshDir('bad'), 'bundle'));
    fs.writeFileSync(path.join(b2, 'config.json'), '{"process": {');
    await bad(['create', '--bundle', b2, 'b2'], /config\.json: malformed JSON/);
    const b3 = makeBundle(path.join(freshDir('bad'), 'bundle'), (c) => { c.mounts.push({ destination: '/data', type: 'bind', source: '/no/such/dir', options: ['rbind'] }); });
    await bad(['create', '--bundle', b3, 'b3'], /mount source \/no\/such\/dir for \/data does not exist/);
    const b4 = makeBundle(path.join(freshDir('bad'), 'bundle'), (c) => { c.process.rlimits = [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }]; });
    await bad(['create', '--bundle', b4, 'b4'], /wrong rlimit value: RLIMIT_BOGUS/);
    const b5 = makeBundle(path.join(freshDir('bad'), 'bundle'), (c) => { c.process.args = ['/bin/no-such-program']; });
    await bad(['create', '--bundle', b5, 'b5'], /no-such-program/);
    for (const id of ['b1', 'b2', 'b3', 'b4', 'b5']) {
      expect(fs.existsSync(path.join(root, id))).toBe(false);
      expect(fs.existsSync(path.join(root, `${id}.sock`))).toBe(false);
      expect(processesMentioning(`__oci-init ${root} ${id}`)).toEqual([]);
    }
  }, 120_000);

  it('a second create of the same id is refused and leaves the first alone', async () => {
    const b = makeBundle(path.join(freshDir('dup'), 'bundle'), (c) => { c.process.args = ['sleep', '60']; });
    expect((await svCreate(['--bundle', b, 'dup1'])).status).toBe(0);
    await bad(['create', '--bundle', b, 'dup1'], /container with id exists: dup1/);
    expect(JSON.parse((await sv(['state', 'dup1'])).stdout.toString()).status).toBe('created');
    await bad(['delete', 'nonexistent-after'], /does not exist/);
    expect((await sv(['delete', '--force', 'dup1'])).status).toBe(0);
    expect(processesMentioning(`__oci-init ${root} dup1`)).toEqual([]);
  }, 120_000);
});
