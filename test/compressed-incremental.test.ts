/**
 * Compressed incremental checkpoints (store format 5, docs/snapshot-format.md "Incremental
 * checkpoints"): a chain of checkpoints of a running sandbox whose pagemaps leave the CRC-32s of
 * inherited pages to the packs that hold them, so that each link's records grow with what
 * changed, not with the sandbox's memory; every link restores, also after the first is deleted;
 * a damaged pack a link takes its CRC-32s from is one line and no guest runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readPackTrailer } from '../snapshots/pack.js';
import { checkpointGate, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/**
 * ~20 MB of distinct 1,000-byte objects; rewrites one per numbered line (every 20 ms), then prints
 * a digest of all. Its arguments are pairs LINE GATE: after printing LINE it goes on rewriting that
 * line's object (the same bytes: the digest stays the native run's) every 20 ms until the file GATE
 * exists, which the test makes once it has checkpointed there. So the guest writes memory during
 * each capture (the copy-on-write this test is about) and is still running when the checkpoint
 * comes however slow the machine.
 */
const GUEST = [
  'import hashlib, os, sys, time',
  'gates = dict(zip(map(int, sys.argv[1::2]), sys.argv[2::2]))',
  'data = [bytes([i % 251]) * 1000 for i in range(20000)]',
  "print('ready', flush=True)",
  'for i in range(1, 301):',
  '    data[(i * 7919) % 20000] = bytes([i % 13]) * 1000',
  '    print(i, flush=True)',
  '    time.sleep(0.02)',
  '    while i in gates and not os.path.exists(gates[i]):',
  '        data[(i * 7919) % 20000] = bytes([i % 13]) * 1000; time.sleep(0.02)',
  "print('digest', hashlib.sha256(b''.join(data)).hexdigest(), flush=True)",
].join('\n');
const ARGV = ['/usr/bin/python3', '-c', GUEST];

async function inspectJson(store: string, id: string): Promise<{ checkpoint: { parent: string | null; formatVersion: number; inheritsFrom: string[] }; sizes: { pages: number; storedPageBytes: number } }> {
  const r = await snapvisor(['inspect', id, '--store', store, '--json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.toString());
}

describe('compressed incremental checkpoints (format 5)', () => {
  it('a chain of three of a running sandbox: records grow with what changed, every link restores, also after the first is deleted; a damaged inherited pack is one line', async () => {
    const at = [2, 7, 12];
    const gates = at.map((l) => checkpointGate(`packed-chain-${l}`));
    const args = (side: 'native' | 'sandbox') => at.flatMap((l, k) => [String(l), gates[k][side]]);
    const nat = await native([...ARGV, ...args('native')], { timeoutMs: 30_000 });
    expect(nat.status).toBe(0);
    const digest = nat.stdout.toString().split('\n').filter(Boolean).pop()!;
    const base = freshDir('packed-chain');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'chain', '--', ...ARGV, ...args('sandbox')], { timeoutMs: 150_000 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await run.waitFor((l) => l === String(at[i]), 40_000);
      const cp = await snapvisor(['--root', root, 'checkpoint', 'chain', '--store', store, ...(i < 2 ? ['--leave-running'] : [])], { timeoutMs: 30_000 });
      expect(cp.stderr).toBe('');
      expect(cp.status).toBe(0);
      gates[i].open();
      ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
    }
    expect(await run.done).toBe(137);

    const reports = await Promise.all(ids.map((id) => inspectJson(store, id)));
    expect(reports[0].checkpoint).toMatchObject({ parent: null, formatVersion: 6 });
    expect(reports[1].checkpoint).toMatchObject({ parent: ids[0], formatVersion: 5, inheritsFrom: [ids[0]] });
    expect(reports[2].checkpoint).toMatchObject({ parent: ids[1], formatVersion: 5 });
    expect(reports[2].checkpoint.inheritsFrom).toContain(ids[0]);
    // The pagemap of a link names the pages it inherits without their CRC-32s (4 bytes each for
    // ~5,000 pages in the first's): its restore record is the graph and little more.
    const metaBytes = ids.map((id) => fs.statSync(path.join(store, 'meta', id)).size);
    for (const i of [1, 2]) {
      expect(reports[i].sizes.pages).toBeGreaterThan(reports[0].sizes.pages * 0.9);
      expect(metaBytes[i] - metaBytes[0]).toBeLessThan(-(reports[0].sizes.pages * 4) / 2);
    }

    // Pages the guest wrote while a link was written were moved by a copy-on-write: the next
    // link names most of them in the earlier pack (CopyRef) instead of storing them again.
    const copied = ids.slice(1).map((id) => {
      const fd = fs.openSync(path.join(store, 'pages', `${id}.pack`), 'r');
      try { const t = readPackTrailer(fd); return typeof t === 'string' ? t : (t.copies ?? []).reduce((n, [, tr]) => n + tr.filter((_, i) => i % 3 === 2).reduce((a, b) => a + b, 0) / 4096, 0); } finally { fs.closeSync(fd); }
    });
    expect(copied.every((n) => typeof n === 'number'), String(copied)).toBe(true);
    expect((copied[0] as number) + (copied[1] as number)).toBeGreaterThan(0);
    // Each link restores to the native end (a page named in the wrong layer would break the heap).
    const restoresToTheEnd = async (id: string): Promise<void> => {
      const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 40_000 });
      expect(r.timedOut).toBe(false);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout.toString().split('\n').filter(Boolean).pop()).toBe(digest);
    };
    for (const id of ids) await restoresToTheEnd(id);
    // Deleting the first keeps its pack (both others take pages and CRC-32s from it).
    expect((await snapvisor(['delete', ids[0], '--store', store])).status).toBe(0);
    fs.rmSync(path.join(store, 'cache'), { recursive: true, force: true });
    // The list says the second's parent is gone (its pages stay: the second inherits them).
    const listing = (await snapvisor(['checkpoints', '--store', store])).stdout.toString();
    expect(listing).toContain(`${ids[0]} (deleted)`);
    expect(listing.split('\n').filter((l) => l.startsWith(ids[0]))).toEqual([]);
    for (const id of ids.slice(1)) await restoresToTheEnd(id);
    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);

    // The first's pack damaged where its trailer is: the second's restore is refused with one
    // line naming the pack it takes its CRC-32s from, and no guest runs.
    const pack = path.join(store, 'pages', `${ids[0]}.pack`);
    const fd = fs.openSync(pack, 'r+');
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, size - 200);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, size - 200);
    fs.closeSync(fd);
    const r = await snapvisor(['restore', ids[1], '--store', store], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.status).toBe(125);
    expect(r.stdout.toString()).toBe('');
    expect(r.stderr).toBe(`snapvisor: checkpoint ${ids[1]} is corrupt: the page pack pages/${ids[0]}.pack it inherits pages from cannot be used (page pack trailer failed its checksum)\n`);
    expect(orphanStubs()).toEqual([]);
  }, 300_000);
});
