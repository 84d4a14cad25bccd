/**
 * Compressed checkpoints (`checkpoint --compress`, store format 4, snapshots/pack.ts): the
 * pages are a brotli pack a fraction of their size, pages that are bytes of host files are
 * named instead of stored, a restore fills the uncompressed restore cache piece by piece as the
 * guest needs it (every page checked) and later restores map it; incremental links,
 * export/import, store check and delete work on packs; a damaged pack and a changed host file
 * are refused with one line and no guest output.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCbor } from '../snapshots/format.js';
import { materializePack, readPackTrailer } from '../snapshots/pack.js';
import { checkpointAfter, checkpointGate, freshDir, native, orphanStubs, restoresToTheEnd, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/**
 * A python3 holding ~20 MB of distinct 1,000-byte objects; rewrites one per numbered line, then
 * prints a digest of all. After line 3 it waits for the gate file argv[1], after line 6 for argv[2]:
 * the test makes each once it has checkpointed there (checkpointGate), so the guest is still
 * running when a checkpoint comes however slow the machine.
 */
const GUEST = [
  'import hashlib, os, sys, time',
  'data = [bytes([i % 251]) * 1000 for i in range(20000)]',
  "print('ready', flush=True)",
  'for i in range(1, 61):',
  '    data[(i * 7919) % 20000] = bytes([i % 13]) * 1000',
  '    print(i, flush=True)',
  '    time.sleep(0.05)',
  '    while i in (3, 6) and not os.path.exists(sys.argv[i // 3]): time.sleep(0.02)',
  "print('digest', hashlib.sha256(b''.join(data)).hexdigest(), flush=True)",
].join('\n');
const ARGV = ['/usr/bin/python3', '-c', GUEST];

const bytesOnDisk = (p: string): number => fs.statSync(p).blocks * 512;

describe('compressed checkpoints (format 4)', () => {
  it('are a fraction of the flat size, name host-file pages, restore through a cache made once, chain, export, check and delete', async () => {
    const g3 = checkpointGate('packed-3'), g6 = checkpointGate('packed-6');
    const nat = await native([...ARGV, g3.native, g6.native], { timeoutMs: 30_000 });
    expect(nat.status).toBe(0);
    const digest = nat.stdout.toString().split('\n').filter(Boolean).pop()!;
    expect(digest).toMatch(/^digest [0-9a-f]{64}$/);
    const base = freshDir('packed');
    const root = path.join(base, 'state'), store = path.join(base, 'store');

    const run1 = snapvisorStreaming(['--root', root, 'run', '--name', 'pk-a', '--', ...ARGV, g3.sandbox, g6.sandbox], { timeoutMs: 90_000 });
    await run1.waitFor((l) => l === 'ready', 40_000);
    const c1 = await checkpointAfter(root, store, 'pk-a', run1, 3, ['--compress']);
    expect(c1.lastLine).toBe(3);
    g3.open();
    const m = /(\d+) pages \((\d+) new, [\d.]+ (?:B|KiB|MiB|GiB) stored, [\d.]+ (?:B|KiB|MiB|GiB) compressed, (\d+) pages named in host files\)/.exec(c1.stdout);
    expect(m, c1.stdout).not.toBeNull();
    const [pages, filePages] = [Number(m![1]), Number(m![3])];
    expect(filePages).toBeGreaterThan(100); // libpython's and libc's text at least
    const pack = path.join(store, 'pages', `${c1.id}.pack`);
    expect(fs.existsSync(path.join(store, 'pages', c1.id))).toBe(false);
    expect(bytesOnDisk(pack)).toBeLessThan((pages * 4096) / 5);
    const info = JSON.parse((await snapvisor(['inspect', c1.id, '--store', store, '--json'])).stdout.toString());
    expect(info.checkpoint.formatVersion).toBe(6);

    // An incremental link from a restored one (restored here, checkpointed at its line 6; checked below).
    const run2 = snapvisorStreaming(['--root', root, 'restore', c1.id, '--store', store, '--name', 'pk-b'], { timeoutMs: 90_000 });
    const c2 = await checkpointAfter(root, store, 'pk-b', run2, 3, ['--compress']);
    expect(c2.lastLine).toBe(6);
    g6.open();

    // That restore made the cache (named by the boot, with its piece map); the next ones map it.
    await restoresToTheEnd(store, c1.id, c1.lastLine, digest);
    // (besides the working set a restore records there, test/restore-working-set.test.ts)
    const caches = fs.readdirSync(path.join(store, 'cache')).filter((n) => !/\.(ws|trailer)$/.test(n)).sort();
    expect(caches).toHaveLength(2);
    expect(caches[0]).toMatch(new RegExp(`^${c1.id}\\.[0-9a-f]{8}$`));
    expect(caches[1]).toBe(`${caches[0]}.ready`);
    const cacheIno = fs.statSync(path.join(store, 'cache', caches[0])).ino;
    await restoresToTheEnd(store, c1.id, c1.lastLine, digest);
    expect(fs.statSync(path.join(store, 'cache', caches[0])).ino).toBe(cacheIno);

    // The incremental link: format 5, inherits from the first.
    const info2 = JSON.parse((await snapvisor(['inspect', c2.id, '--store', store, '--json'])).stdout.toString());
    expect(info2.checkpoint).toMatchObject({ formatVersion: 5, parent: c1.id, inheritsFrom: [c1.id] });
    // Its caches gone (a reboot, or gc of another boot's): both packs are materialized again.
    fs.rmSync(path.join(store, 'cache'), { recursive: true });
    await restoresToTheEnd(store, c2.id, c2.lastLine, digest);
    expect(fs.readdirSync(path.join(store, 'cache')).filter((n) => !/\.(ws|trailer)$/.test(n)).sort()).toEqual([c1.id, c2.id].flatMap((id) => [`${id}.${caches[0].split('.')[1]}`, `${id}.${caches[0].split('.')[1]}.ready`]).sort());

    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);

    // Export (decompressed into the export file) and import elsewhere (a flat checkpoint there).
    const file = path.join(freshDir('packed-export'), 'c2.svx');
    const ex = await snapvisor(['export', c2.id, '--store', store, '-o', file]);
    expect(ex.stderr).toBe('');
    expect(ex.status).toBe(0);
    const store2 = path.join(base, 'store2');
    const im = await snapvisor(['import', file, '--store', store2]);
    expect(im.status).toBe(0);
    await restoresToTheEnd(store2, im.stdout.toString().trim().split(/\s+/).pop()!, c2.lastLine, digest);

    // Deleting the first keeps its pack and cache (the second inherits them); deleting both removes all.
    expect((await snapvisor(['delete', c1.id, '--store', store])).status).toBe(0);
    expect(fs.existsSync(pack)).toBe(true);
    await restoresToTheEnd(store, c2.id, c2.lastLine, digest);
    expect((await snapvisor(['delete', c2.id, '--store', store])).status).toBe(0);
    expect(fs.readdirSync(path.join(store, 'pages'))).toEqual([]);
    expect(fs.readdirSync(path.join(store, 'cache'))).toEqual([]);
  }, 300_000);

  it('a restore fills the cache lazily: a guest that touches little of its memory leaves most of it unfilled; clones at once share it', async () => {
    // 40 MB the guest never touches after the checkpoint, and a counter.
    const argv = ['/usr/bin/python3', '-c', [
      'import os, sys, time',
      'data = [bytes([i % 251]) * 1000 for i in range(40000)]',
      "print('ready', flush=True)",
      'i = 0',
      'while i < 40:',
      '    i += 1',
      '    print(i, flush=True)',
      '    time.sleep(0.05)',
      '    while i == 3 and not os.path.exists(sys.argv[1]): time.sleep(0.02)  # made after the checkpoint',
      'import os; os._exit(0)', // no teardown: freeing `data` would touch every object
    ].join('\n')];
    const base = freshDir('packed-lazy');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const gate = checkpointGate('packed-lazy');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'pk-lazy', '--', ...argv, gate.sandbox], { timeoutMs: 90_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const c = await checkpointAfter(root, store, 'pk-lazy', run, 3, ['--compress']);
    expect(c.lastLine).toBe(3);
    gate.open();
    const pages = Number(/(\d+) pages/.exec(c.stdout)![1]);
    // Three restores at once: each counts on from where it was, to the end.
    const outs = await Promise.all([0, 1, 2].map(() => snapvisor(['restore', c.id, '--store', store], { timeoutMs: 60_000 })));
    for (const r of outs) {
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const nums = r.stdout.toString().split('\n').filter(Boolean).map(Number);
      expect(nums[0]).toBe(Number(c.lastLine) + 1);
      expect(nums[nums.length - 1]).toBe(40);
    }
    const names = fs.readdirSync(path.join(store, 'cache')).filter((n) => !/\.(ws|trailer)$/.test(n)).sort();
    expect(names).toHaveLength(2);
    const ready = fs.readFileSync(path.join(store, 'cache', names[1]));
    const filled = ready.filter((b) => b === 1).length;
    // Most of the 40 MB lies in pieces no restore needed: they were never written.
    expect(filled).toBeGreaterThan(0);
    expect(filled).toBeLessThan(ready.length / 2);
    expect(bytesOnDisk(path.join(store, 'cache', names[0]))).toBeLessThan((pages * 4096) / 2);
    // A store check fills the rest (every page checked; pieces with no page of the pack need no filling) and finds nothing wrong.
    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
    expect(fs.readFileSync(path.join(store, 'cache', names[1])).filter((b) => b === 1).length).toBeGreaterThan(filled * 2);
    await new Promise((res) => setTimeout(res, 300));
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('leaves the pieces costly to fill in the restore cache, byte for byte what a restore fills; the first restore runs on them', async () => {
    // 8 MB of random bytes (pieces brotli hardly shrinks: costly to decompress), 40 MB of equal
    // objects (pieces it shrinks a thousandfold: cheap), the interpreter's text (host-file pages), a counter.
    const argv = ['/usr/bin/python3', '-c', [
      'import hashlib, os, sys, time',
      'noise = [os.urandom(1000) for _ in range(8000)]',
      'data = [bytes(1000) for _ in range(40000)]',
      "digest = hashlib.sha256(b''.join(noise)).hexdigest()",
      "print('ready', flush=True)",
      'for i in range(1, 21):',
      '    print(i, flush=True)',
      '    time.sleep(0.05)',
      '    while i == 3 and not os.path.exists(sys.argv[1]): time.sleep(0.02)',
      "print('digest', hashlib.sha256(b''.join(noise)).hexdigest() == digest, flush=True)",
    ].join('\n')];
    const base = freshDir('packed-warm');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const gate = checkpointGate('packed-warm');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'pk-warm', '--', ...argv, gate.sandbox], { timeoutMs: 90_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const c = await checkpointAfter(root, store, 'pk-warm', run, 3, ['--compress']);
    expect(c.lastLine).toBe(3);
    gate.open();

    // The checkpoint left a restore cache (no temporary file), some of its pieces ready, not the
    // equal objects', and the known-good copy of its pack's trailer (the restore need not hash it).
    const all = fs.readdirSync(path.join(store, 'cache')).sort();
    expect(all.filter((n) => n.endsWith('.trailer'))).toEqual([`${all[0]}.trailer`]);
    const names = all.filter((n) => !n.endsWith('.trailer'));
    expect(names).toHaveLength(2);
    expect(names[0]).toMatch(new RegExp(`^${c.id}\\.[0-9a-f]{8}$`));
    expect(names[1]).toBe(`${names[0]}.ready`);
    const ready = fs.readFileSync(path.join(store, 'cache', names[1]));
    const warmed = ready.filter((b) => b === 1).length;
    expect(warmed).toBeGreaterThan(8); // 8 MB of noise at least
    expect(warmed).toBeLessThan(ready.length / 2); // not the 40 MB of equal objects

    // Each ready piece holds what filling it from the pack (and the host files) gives.
    const packFd = fs.openSync(path.join(store, 'pages', `${c.id}.pack`), 'r');
    const whole = path.join(base, 'whole');
    const outFd = fs.openSync(whole, 'w+');
    try {
      const trailer = readPackTrailer(packFd);
      if (typeof trailer === 'string') throw new Error(trailer);
      // As the sandbox's lookup gives them (src/vfs/host-files.ts hostIdentity: mtime to the µs):
      // Node's mtimeMs keeps the ns, and a file changed since boot (/etc/ld.so.cache after an apt
      // install) then differs in its last digits.
      const opener = (p: string): { fd: number; size: number; mtimeMs: number } => {
        const fd = fs.openSync(p, 'r');
        const st = fs.fstatSync(fd, { bigint: true });
        return { fd, size: Number(st.size), mtimeMs: Number(st.mtimeNs / 1000n) / 1000 };
      };
      const made = await materializePack(packFd, trailer, opener, outFd);
      expect(typeof made, String(made)).not.toBe('string');
    } finally {
      fs.closeSync(packFd);
      fs.closeSync(outFd);
    }
    const cacheBytes = fs.readFileSync(path.join(store, 'cache', names[0])), wholeBytes = fs.readFileSync(whole);
    const PIECE = 1 << 20;
    for (let i = 0; i < ready.length; i++) {
      if (ready[i] !== 1) continue;
      expect(Buffer.compare(cacheBytes.subarray(i * PIECE, (i + 1) * PIECE), wholeBytes.subarray(i * PIECE, (i + 1) * PIECE)), `piece ${i}`).toBe(0);
    }

    // The first restore runs to the end, the noise intact, and fills only pieces that were not ready.
    const r = await snapvisor(['restore', c.id, '--store', store], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().split('\n').filter(Boolean);
    expect(lines[0]).toBe(String(c.lastLine + 1));
    expect(lines[lines.length - 1]).toBe('digest True');
    const after = fs.readFileSync(path.join(store, 'cache', names[1]));
    for (let i = 0; i < ready.length; i++) if (ready[i] === 1) expect(after[i]).toBe(1);

    // A byte of the pack's trailer damaged: it no longer equals its known-good copy, so it is hashed, and refused.
    const packPath = path.join(store, 'pages', `${c.id}.pack`);
    const good = fs.readFileSync(packPath);
    const bad = Buffer.from(good);
    bad[bad.length - 44 - 10] ^= 0xff; // in the trailer's CBOR (44 bytes of sha256, length and magic follow it)
    fs.writeFileSync(packPath, bad);
    const refused = await snapvisor(['restore', c.id, '--store', store], { timeoutMs: 30_000 });
    expect(refused.status).not.toBe(0);
    expect(refused.stdout.toString()).toBe('');
    expect(refused.stderr).toBe(`snapvisor: checkpoint ${c.id} is corrupt: its page pack trailer failed its checksum\n`);
    fs.writeFileSync(packPath, good);

    // A store where no cache can be made (a file where its directory goes): the checkpoint is made all the same.
    const store2 = path.join(base, 'store2');
    fs.mkdirSync(store2);
    fs.writeFileSync(path.join(store2, 'cache'), '');
    const run2 = snapvisorStreaming(['--root', root, 'run', '--name', 'pk-warm2', '--', '/bin/busybox', 'sh', '-c', 'i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo $i; usleep 50000; done'], { timeoutMs: 60_000 });
    const c2 = await checkpointAfter(root, store2, 'pk-warm2', run2, 3, ['--compress']);
    expect(fs.existsSync(path.join(store2, 'pages', `${c2.id}.pack`))).toBe(true);
    expect(fs.readFileSync(path.join(store2, 'cache'), 'utf8')).toBe('');
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a guest asks for a compressed checkpoint (run --checkpoint-compress) and a warm pool serves it', async () => {
    const store = freshDir('packed-pool-store'), sock = path.join(freshDir('packed-pool-sock'), 'p.sock');
    const guest = ['/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; read l; echo "$(cat /proc/snapvisor/checkpoint) $l"; exit ${#l}'];
    const r = await snapvisor(['run', '--checkpoint-store', store, '--checkpoint-compress', '--', ...guest], { timeoutMs: 30_000 });
    expect(r.stdout.toString()).toBe('original \n');
    expect(r.status).toBe(0);
    const id = /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
    expect(fs.existsSync(path.join(store, 'pages', `${id}.pack`))).toBe(true);
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '2', '--listen', sock], { timeoutMs: 120_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    for (const input of ['one', 'three']) {
      const t = await snapvisor(['pool', 'take', sock], { input: input + '\n', timeoutMs: 60_000 });
      expect(t.stderr.toString()).toBe('');
      expect(t.stdout.toString()).toBe(`restored ${input}\n`);
      expect(t.status).toBe(input.length);
    }
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    await new Promise((res) => setTimeout(res, 500));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a damaged or truncated pack, or a changed host file, is refused with one line and no guest runs', async () => {
    // A rootfs of its own, so the test may change a host file the guest's memory maps.
    const base = freshDir('packed-bad');
    const rootfs = path.join(base, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    // After 3 it waits for /gate/go in its rootfs, made after the checkpoint.
    fs.mkdirSync(path.join(rootfs, 'gate'));
    const script = 'i=0; while [ $i -lt 120 ]; do i=$((i+1)); echo $i; if [ $i -eq 3 ]; then while [ ! -e /gate/go ]; do usleep 20000; done; fi; usleep 50000; done';
    const run = snapvisorStreaming(['--root', root, 'run', '--rootfs', rootfs, '--name', 'pk-bad', '--', '/bin/busybox', 'sh', '-c', script], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === '3', 40_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', 'pk-bad', '--store', store, '--compress'], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(cp.stdout.toString()).toMatch(/[1-9]\d* pages named in host files/);
    expect(await run.done).toBe(137);
    fs.writeFileSync(path.join(rootfs, 'gate', 'go'), '');
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const refused = async (pattern: RegExp): Promise<void> => {
      fs.rmSync(path.join(store, 'cache'), { recursive: true, force: true });
      const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 30_000 });
      expect(r.timedOut).toBe(false);
      expect(r.status).not.toBe(0);
      expect(r.stdout.toString()).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(orphanStubs()).toEqual([]);
    };

    // The busybox binary the guest runs is changed on the host (same bytes, new mtime): named.
    const bin = path.join(rootfs, 'bin', 'busybox'), ref = path.join(base, 'mtime-ref');
    fs.writeFileSync(ref, '');
    execFileSync('touch', ['-r', bin, ref]); // keeps the nanoseconds, which a Date would lose
    const { atime, mtime } = fs.statSync(bin);
    fs.utimesSync(bin, atime, new Date(mtime.getTime() + 5000));
    await refused(new RegExp(`^snapvisor: checkpoint ${id} cannot be restored here: the host file /bin/busybox, which its memory maps, changed since the checkpoint`));
    execFileSync('touch', ['-r', ref, bin]);

    // A flipped byte in the middle of the pack's chunks; then a pack cut in half.
    const pack = path.join(store, 'pages', `${id}.pack`);
    const good = fs.readFileSync(pack);
    const bad = Buffer.from(good);
    bad[bad.length >> 2] ^= 0xff;
    fs.writeFileSync(pack, bad);
    await refused(new RegExp(`^snapvisor: checkpoint ${id} is corrupt: its page pack chunk at 0x[0-9a-f]+ failed its checksum`));
    // `store check` names the chunk too (format 6: each chunk checked by the CRC-32 of its compressed bytes).
    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.status).toBe(1);
    expect(check.stderr).toMatch(new RegExp(`^snapvisor: checkpoint ${id} is corrupt: its page pack chunk at 0x[0-9a-f]+ failed its checksum\n$`));
    fs.writeFileSync(pack, good.subarray(0, good.length >> 1));
    await refused(new RegExp(`^snapvisor: checkpoint ${id} is corrupt: its page pack is truncated or damaged`));

    // Whole again, but no room for its restore cache (a file where the cache directory goes): one line, not "corrupt".
    fs.writeFileSync(pack, good);
    fs.rmSync(path.join(store, 'cache'), { recursive: true, force: true });
    fs.writeFileSync(path.join(store, 'cache'), '');
    const noCache = await snapvisor(['restore', id, '--store', store], { timeoutMs: 30_000 });
    expect(noCache.status).toBe(125);
    expect(noCache.stderr).toBe(`snapvisor: checkpoint ${id}: cannot write the restore cache into ${path.join(store, 'cache')} (EEXIST)\n`);
    fs.rmSync(path.join(store, 'cache'));

    // Whole again: it restores and goes on counting.
    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const nums = r.stdout.toString().split('\n').filter(Boolean).map(Number);
    expect(nums[nums.length - 1]).toBe(120);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('a damaged piece that only a syscall reads (write(2) of an untouched buffer) stops the restored sandbox with one line, status 125', async () => {
    // A 4 MiB buffer in its own mapping (glibc mmaps a chunk that big), never touched by the guest
    // after it is filled: after the restore only the kernel reads it, for write(2).
    const guest = [
      'import os, sys, time',
      "buf = bytearray(b'SNAPVISOR-MARKER' * (1 << 18))",
      "print('ready', flush=True)",
      'while not os.path.exists(sys.argv[1]): time.sleep(0.01)',
      'n = os.write(1, buf)',
      "print('\\nwrote', n, flush=True)",
    ].join('\n');
    const base = freshDir('packed-syscall');
    const root = path.join(base, 'state'), store = path.join(base, 'store'), flag = path.join(base, 'go');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'pk-sys', '--', '/usr/bin/python3', '-c', guest, flag], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 60_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', 'pk-sys', '--store', store], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(await run.done).toBe(137);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    fs.writeFileSync(flag, '');

    // Whole: the buffer comes back through write(2).
    const good = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
    expect(good.stdout.toString()).toBe('SNAPVISOR-MARKER'.repeat(1 << 18) + `\nwrote ${4 << 20}\n`);

    // The restore cache is laid out like the memory file: the marker's offset there is the
    // buffer's memory-file offset, and the pack's index names the chunk of that 1 MiB piece.
    const cacheName = fs.readdirSync(path.join(store, 'cache')).find((f) => /^[0-9a-f]{16}\.[0-9a-f]{8}$/.test(f))!;
    const cache = fs.readFileSync(path.join(store, 'cache', cacheName));
    const marker = Buffer.from('SNAPVISOR-MARKER'.repeat(4096)); // 64 KiB of it
    const at = cache.indexOf(marker, 2 << 20); // past its first piece, so the buffer's start is not hit
    expect(at).toBeGreaterThan(0);
    const piece = Math.floor(at / (1 << 20)) * (1 << 20);
    const packPath = path.join(store, 'pages', `${id}.pack`);
    const pack = fs.readFileSync(packPath);
    const trailerLen = pack.readUInt32LE(pack.length - 12);
    const trailer = decodeCbor(pack.subarray(pack.length - 12 - 32 - trailerLen, pack.length - 12 - 32)) as { index: Uint8Array };
    const index = Buffer.from(trailer.index.buffer, trailer.index.byteOffset, trailer.index.byteLength);
    let chunk: [number, number] | undefined;
    for (let i = 0; i < index.length; i += 24) {
      if (Number(index.readBigUInt64LE(i)) === piece) chunk = [Number(index.readBigUInt64LE(i + 8)), index.readUInt32LE(i + 16)];
    }
    expect(chunk).toBeDefined();
    const bad = Buffer.from(pack);
    bad[chunk![0] + (chunk![1] >> 1)] ^= 0xff;
    fs.writeFileSync(packPath, bad);
    fs.rmSync(path.join(store, 'cache'), { recursive: true, force: true });

    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(r.timedOut).toBe(false);
    expect(r.status).toBe(125);
    expect(stderrLines(r.stderr)).toEqual([expect.stringMatching(new RegExp(`^snapvisor: checkpoint ${id} is corrupt: .*; stopping the sandbox$`))]);
    expect(r.stdout.toString()).not.toContain('wrote');
    expect(orphanStubs()).toEqual([]);
  }, 180_000);
});
