/**
 * Lazy restore and clones (docs/snapshot-format.md, "Restore" and "Clones"): one checkpoint
 * restored many times at once from one store, each clone an independent sandbox with its
 * own randomness, boot id and generation, sharing the pages none of them wrote; damaged
 * page files and missing rootfs refused with one line.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decode as decodeCbor } from 'cbor-x';
import { freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/**
 * Fills 16 MiB with a pattern before the checkpoint, then (after "ready", once the host
 * file argv[1] exists: the test makes it after the checkpoint) reports what it sees: the pattern's checksum, then rewrites
 * half of it and checksums again (first writes to restored pages), fresh os.urandom bytes,
 * boot_id, generation, and the random value it drew before the checkpoint.
 */
const CLONE_GUEST = [
  'import hashlib, os, sys, time',
  'buf = bytearray(16 << 20)',
  'for i in range(0, len(buf), 4096): buf[i:i + 8] = i.to_bytes(8, "little")',
  'before = os.urandom(8).hex()',
  "gen0 = open('/proc/snapvisor/generation').read().strip()",
  "boot0 = open('/proc/sys/kernel/random/boot_id').read().strip()",
  "print('ready', gen0, boot0, flush=True)",
  'while not os.path.exists(sys.argv[1]): time.sleep(0.02)',
  'h1 = hashlib.sha256(buf).hexdigest()',
  'for i in range(0, len(buf) // 2, 4096): buf[i] ^= 0xff',
  'h2 = hashlib.sha256(buf).hexdigest()',
  "gen = open('/proc/snapvisor/generation').read().strip()",
  "boot = open('/proc/sys/kernel/random/boot_id').read().strip()",
  "print('after', h1, h2, os.urandom(16).hex(), boot, gen, before, flush=True)",
].join('\n');

/** What the guest must print as h1 and h2, computed here the same way. */
function expectedHashes(): [string, string] {
  const buf = Buffer.alloc(16 << 20);
  for (let i = 0; i < buf.length; i += 4096) buf.writeBigUInt64LE(BigInt(i), i);
  const h1 = createHash('sha256').update(buf).digest('hex');
  for (let i = 0; i < buf.length / 2; i += 4096) buf[i] ^= 0xff;
  const h2 = createHash('sha256').update(buf).digest('hex');
  return [h1, h2];
}

/** Run the guest, checkpoint it (ending it) after "ready", then let restored clones go on (the flag file appears). */
async function checkpointGuest(root: string, store: string, release = true, extra: string[] = []): Promise<{ id: string; ready: string[] }> {
  const name = `clone-${randomBytes(4).toString('hex')}`;
  const flag = path.join(freshDir('flag'), 'go');
  const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', CLONE_GUEST, flag], { timeoutMs: 90_000 });
  const ready = (await run.waitFor((l) => l.startsWith('ready '), 40_000)).split(' '); // a python3 start-up under load took over 20 s once
  const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, ...extra], { timeoutMs: 30_000 });
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  expect(await run.done).toBe(137);
  if (release) fs.writeFileSync(flag, '');
  return { id: cp.stdout.toString().trim().split(/\s+/).pop()!, ready };
}

describe('clones', () => {
  it('10 concurrent restores of one checkpoint each run to the end with their own randomness, boot id and generation', async () => {
    const root = freshDir('clone-root'), store = freshDir('clone-store');
    const { id, ready } = await checkpointGuest(root, store);
    expect(ready[1]).toBe('0'); // never restored
    const t0 = Date.now();
    const clones = await Promise.all(Array.from({ length: 10 }, () => snapvisor(['restore', id, '--store', store], { timeoutMs: 120_000 })));
    const elapsed = Date.now() - t0;
    const [h1, h2] = expectedHashes();
    const seen = { urandom: new Set<string>(), boot: new Set<string>() };
    for (const c of clones) {
      expect(c.timedOut).toBe(false);
      expect(c.stderr).toBe('');
      expect(c.status).toBe(0);
      const line = c.stdout.toString().trim().split('\n').pop()!.split(' ');
      expect(line[0]).toBe('after');
      expect(line[1]).toBe(h1); // the pages as captured
      expect(line[2]).toBe(h2); // its own writes, on top of pages the others share
      seen.urandom.add(line[3]);
      seen.boot.add(line[4]);
      expect(line[4]).not.toBe(ready[2]);
      expect(line[5]).toBe('1');
    }
    // Drawn before the checkpoint: the same in every clone (what a guest must reseed itself).
    expect(new Set(clones.map((c) => c.stdout.toString().trim().split(' ')[6])).size).toBe(1);
    expect(seen.urandom.size).toBe(10);
    expect(seen.boot.size).toBe(10);
    expect(elapsed).toBeLessThan(120_000);
  }, 180_000);

  it('a flipped byte in the page file stops the restored sandbox with one line naming the checkpoint; store check names it too', async () => {
    const root = freshDir('bad-root'), store = freshDir('bad-store');
    // The clone waits forever (no flag file): only the background page check can end it.
    // A flat page file (a compressed checkpoint checks each page as its piece is filled: test/compressed-checkpoint.test.ts).
    const { id } = await checkpointGuest(root, store, false, ['--no-compress']);
    const pageFile = path.join(store, 'pages', id);
    // Flip a byte in the last non-zero 4 KiB page of the file (a data page, read only after the sleep).
    const fd = fs.openSync(pageFile, 'r+');
    const size = fs.fstatSync(fd).size;
    const page = Buffer.alloc(4096);
    let at = -1;
    for (let off = size - 4096; off >= 0 && at < 0; off -= 4096) {
      fs.readSync(fd, page, 0, 4096, off);
      if (page.some((b) => b !== 0)) at = off + page.findIndex((b) => b !== 0);
    }
    expect(at).toBeGreaterThanOrEqual(0);
    fs.readSync(fd, page, 0, 1, at);
    page[0] ^= 0x40;
    fs.writeSync(fd, page, 0, 1, at);
    fs.closeSync(fd);

    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(r.status).toBe(125);
    expect(stderrLines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`snapvisor: checkpoint ${id} is corrupt: page at offset 0x[0-9a-f]+ failed its checksum; stopping the sandbox`));
    expect(r.stdout.toString()).not.toContain('after');

    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.status).toBe(1);
    expect(stderrLines(check.stderr)).toEqual([expect.stringMatching(new RegExp(`^snapvisor: checkpoint ${id} is corrupt: page at offset 0x[0-9a-f]+ failed its checksum$`))]);
  }, 180_000); // a python3 run, its checkpoint, a restore that may take 60 s and a store check: limits for load 16

  it.each([['flat', '--no-compress'], ['compressed', '--compress']])('a flipped byte in the restore record\'s pagemap (%s), checked in the background, stops the restored sandbox with one line', async (_kind, how) => {
    const root = freshDir('badrec-root'), store = freshDir('badrec-store');
    const { id } = await checkpointGuest(root, store, false, [how]);
    // The record is manifest, graph, pagemap: its last byte is in the pagemap's last page CRC-32,
    // which decodes as well as before (a restore of this size leaves the record's checksums to the
    // background check, with the pages of a flat page file, alone for a pack whose restore cache
    // checks its pages as it fills them: node:crypto is not loaded on its way to the guest).
    const meta = path.join(store, 'meta', id);
    const bytes = fs.readFileSync(meta);
    bytes[bytes.length - 1] ^= 0x40;
    fs.writeFileSync(meta, bytes);
    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(r.status).toBe(125);
    expect(stderrLines(r.stderr)).toEqual([`snapvisor: checkpoint ${id} is corrupt: pagemap checksum mismatch in its restore record; stopping the sandbox`]);
    expect(r.stdout.toString()).not.toContain('after');
    // store check says it without running anything.
    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.status).toBe(1);
    expect(stderrLines(check.stderr)).toEqual([`snapvisor: checkpoint ${id} is corrupt: pagemap checksum mismatch in its restore record`]);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('a flipped byte in the restore record\'s graph or manifest is refused before the guest runs, with one line (the record\'s quick check)', async () => {
    const root = freshDir('badgraph-root'), store = freshDir('badgraph-store');
    const { id } = await checkpointGuest(root, store, true, ['--no-compress']);
    const meta = path.join(store, 'meta', id);
    const good = fs.readFileSync(meta);
    expect(good.subarray(0, 8).toString()).toBe('SVMETA03');
    const manifestBytes = good.readUInt32LE(8);
    // Bytes of the manifest (its first field's value) and of the graph (its first, middle and last
    // byte): before the fix, some of these ran the guest on a damaged graph, and some crashed the
    // kernel with pages of stack traces. Each is refused with the record's own checksum named.
    const graphStart = 16 + manifestBytes;
    const { graphBytes } = decodeCbor(good.subarray(16, graphStart)) as { graphBytes: number };
    expect(graphBytes).toBeGreaterThan(10_000);
    for (const at of [20, graphStart, graphStart + (graphBytes >> 1), graphStart + graphBytes - 1]) {
      const bad = Buffer.from(good);
      bad[at] ^= 0x10;
      fs.writeFileSync(meta, bad);
      const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
      expect(r.stdout.toString(), `byte ${at}`).toBe('');
      expect(stderrLines(r.stderr), `byte ${at}`).toEqual([expect.stringMatching(new RegExp(`^snapvisor: checkpoint ${id} (is corrupt: (graph checksum mismatch in its restore record|its manifest fails its checksum \\(seal\\))|has a corrupt manifest \\(checksum mismatch\\))$`))]);
      expect(r.status, `byte ${at}`).toBe(125);
    }
    // The quick check's own 4 bytes damaged: the record is still refused, saying so.
    const bad = Buffer.from(good);
    bad[12] ^= 0x01;
    fs.writeFileSync(meta, bad);
    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(stderrLines(r.stderr)).toEqual([`snapvisor: checkpoint ${id} is corrupt: restore record checksum mismatch (its quick check)`]);
    expect(r.status).toBe(125);
    // Undamaged, it restores and runs on; so does the same record in the previous layout
    // (SVMETA02: no quick check, checked in full before the guest runs).
    for (const record of [good, Buffer.concat([Buffer.from('SVMETA02'), good.subarray(8, 12), good.subarray(16)])]) {
      fs.writeFileSync(meta, record);
      const ok = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
      expect(ok.stdout.toString()).toMatch(/^after /);
      expect(ok.status).toBe(0);
    }
    expect(orphanStubs()).toEqual([]);
  }, 240_000);

  it('restore refuses a checkpoint whose rootfs is gone, with one line naming it', async () => {
    const root = freshDir('rootfs-root'), store = freshDir('rootfs-store');
    const rootfs = freshDir('rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'));
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    const name = `rootfs-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--rootfs', rootfs, '--name', name, '--', '/bin/busybox', 'sh', '-c', 'echo ready; busybox sleep 30'], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 20_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
    expect(cp.status).toBe(0);
    await run.done;
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const ok = await snapvisor(['store', 'check', '--store', store]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout.toString()).toMatch(/1 checkpoint verified, no damage found/);
    fs.rmSync(rootfs, { recursive: true });
    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 30_000 });
    expect(r.status).toBe(125);
    expect(stderrLines(r.stderr)).toEqual([`snapvisor: checkpoint ${id} needs the rootfs ${rootfs}, which is missing or not a directory`]);
    expect(r.stdout.toString()).toBe('');
  });
});
