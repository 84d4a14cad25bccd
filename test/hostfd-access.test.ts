/**
 * The caller's stdio as the guest gets it (src/files/hostfd.ts): each fd's open file description
 * has the access mode of the host fd behind it (fcntl F_GETFL & O_ACCMODE), as a child inheriting
 * it has on Linux. A stdout redirected to a file or a pipe is write-only: the guest's read(2) of it
 * is EBADF. Before, the description was O_RDWR: the read reached the host and its EBADF came out as
 * "snapvisor: internal error in read" with a stack trace (file), or the read reopened the pipe's
 * write end as a read end and waited for minutes (pipe). A host error that does happen is the
 * guest's errno. The mode is plain data in the graph: inspect shows it, and a restore keeps it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI, freshDir, REPO_ROOT, snapvisor } from './helpers.js';

const RUN = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)}`;

/** Run shell command `cmd` with /bin/sh (its redirections set up the stdio under test), bounded to `timeoutMs`. */
function sh(cmd: string, timeoutMs = 60_000) {
  const t0 = Date.now();
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0, timedOut: r.error !== undefined };
}

describe('the caller\'s stdio keeps its access mode', () => {
  it('busybox cat of a stdout redirected to a file: EBADF as natively, no internal error', () => {
    const out = path.join(freshDir('hostfd-acc'), 'out');
    const guest = `/bin/busybox sh -c 'cat <&1'`;
    const nat = sh(`${guest} > ${out}; echo status=$?`);
    const sand = sh(`${RUN} run -- ${guest} > ${out}; echo status=$?`);
    expect(nat.stderr).toBe('cat: read error: Bad file descriptor\n');
    expect(sand.timedOut).toBe(false);
    expect(sand.stderr).toBe(nat.stderr);
    expect(sand.stdout).toBe('status=1\n');
    expect(sand.stdout).toBe(nat.stdout);
  });

  it('busybox cat of a stdout that is a pipe\'s write end: EBADF at once, no hang', () => {
    const guest = `/bin/busybox sh -c 'cat <&1; echo status=$? >&2'`;
    const nat = sh(`${guest} | cat`);
    const sand = sh(`${RUN} run -- ${guest} | cat`, 30_000);
    expect(nat.stderr).toBe('cat: read error: Bad file descriptor\nstatus=1\n');
    expect(sand.timedOut).toBe(false);
    expect(sand.stderr).toBe(nat.stderr);
  });

  it('python3 os.read(1) of a write-only stdout raises EBADF; a write to a read-only stdin too', () => {
    const dir = freshDir('hostfd-acc');
    const out = path.join(dir, 'out'), inp = path.join(dir, 'in');
    fs.writeFileSync(inp, 'x\n');
    const py = `python3 -c 'import os
try: os.read(1, 10)
except OSError as e: print("read", e.errno, flush=True)
try: os.write(0, b"y")
except OSError as e: print("write", e.errno, flush=True)'`;
    const sand = sh(`${RUN} run -- ${py} > ${out} < ${inp}`);
    expect(sand.timedOut).toBe(false);
    expect(sand.stderr).toBe('');
    expect(sand.status).toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toBe('read 9\nwrite 9\n');
    expect(fs.readFileSync(inp, 'utf8')).toBe('x\n');
  });

  it('inspect shows stdout to a file as w; a restore onto a pipe of a stdout saved rw reads EBADF, without a hang', async () => {
    const dir = freshDir('hostfd-acc');
    const root = path.join(dir, 'state'), store = path.join(dir, 'store');
    const gate = path.join(dir, 'go'), out = path.join(dir, 'out'), rw = path.join(dir, 'rw');
    fs.writeFileSync(rw, '');
    const guest = `/bin/busybox sh -c 'echo ready >&2; while [ ! -e ${gate} ]; do sleep 0.02; done; cat <&1; echo status=$? >&2'`;
    // Two sandboxes: stdout a write-only file, and stdout opened read-write (1<>).
    const ids: string[] = [];
    for (const [i, redir] of [`> ${out}`, `1<> ${rw}`].entries()) {
      const name = `hostfd-acc-${process.pid}-${i}`;
      const readyFile = path.join(dir, `err${i}`);
      const run = spawnSync('/bin/sh', ['-c', `${RUN} --root ${root} run --name ${name} -- ${guest} ${redir} 2> ${readyFile} & echo $!`], { encoding: 'utf8' });
      const pid = Number(run.stdout.trim());
      try {
        for (const t0 = Date.now(); !fs.existsSync(readyFile) || !fs.readFileSync(readyFile, 'utf8').includes('ready'); await new Promise((r) => setTimeout(r, 100))) {
          expect(Date.now() - t0).toBeLessThan(60_000);
        }
        const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
        expect(cp.stderr).toBe('');
        expect(cp.status).toBe(0);
        ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
      } finally {
        try { process.kill(pid, 'SIGKILL'); } catch { /* ended with its checkpoint */ }
      }
    }
    const access = async (id: string) => {
      const r = await snapvisor(['inspect', id, '--store', store, '--json'], { timeoutMs: 30_000 });
      expect(r.stderr).toBe('');
      const sh1 = JSON.parse(r.stdout.toString()).processes.find((p: { pid: number }) => p.pid === 1);
      return [0, 1, 2].map((fd) => sh1.files.find((f: { fd: number }) => f.fd === fd).access);
    };
    expect(await access(ids[0])).toEqual(['r', 'w', 'w']);
    expect((await access(ids[1]))[1]).toBe('rw');
    fs.writeFileSync(gate, '');
    // Restored onto a pipe: the saved write-only stdout is EBADF by its mode; the saved read-write
    // one by the host fd, which is not open for reading.
    for (const id of ids) {
      const r = sh(`${RUN} restore ${id} --store ${store} | cat`, 20_000);
      expect(r.timedOut).toBe(false);
      expect(r.stderr).toBe('cat: read error: Bad file descriptor\nstatus=1\n');
    }
  });

  it('HostStreams.readNow of a pipe\'s write end is EBADF, not a reopened read end that waits', () => {
    // Unguarded, readNow reopened /proc/self/fd/1 for reading: a new read end of the caller's
    // pipe, empty, so "nothing yet" (undefined) and a wait that no byte ends.
    const script = path.join(freshDir('hostfd-acc'), 'readnow.mjs');
    fs.writeFileSync(script, `const { HostStreams } = await import(${JSON.stringify(pathToFileURL(path.join(REPO_ROOT, 'dist', 'platforms', 'host', 'host-streams.js')).href)});
const hs = new HostStreams();
try { console.error('readNow', hs.readNow(1, Buffer.alloc(10))); } catch (e) { console.error('errno', e.errno); }
hs.destroy();
`);
    const r = sh(`${JSON.stringify(process.execPath)} ${script} | cat`, 20_000);
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('errno 9\n');
  });
});
