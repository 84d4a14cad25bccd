/**
 * Migration: a checkpoint exported to one file and imported into another store restores and
 * continues as the original would; a truncated or corrupted export is refused with one line
 * and adds nothing to the store.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointGate, freshDir, snapvisor, snapvisorStreaming } from './helpers.js';

/** Counts to 40, waiting after 5 for its gate file (argv[1], made after the checkpoint). */
const COUNTER = 'import os, sys, time\nfor i in range(1, 41):\n    print(i, flush=True); time.sleep(0.05)\n' +
  '    while i == 5 and not os.path.exists(sys.argv[1]): time.sleep(0.02)';

describe('export and import', () => {
  it('an exported checkpoint restores from another store; a damaged export is refused', async () => {
    const root = freshDir('exp-root'), storeA = freshDir('exp-a'), storeB = freshDir('exp-b');
    const name = `exp-${process.pid}`;
    const gate = checkpointGate('exp');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', COUNTER, gate.sandbox], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === '5', 40_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', storeA]);
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    gate.open();
    const last = Number(run.lines[run.lines.length - 1]);
    expect(last).toBe(5);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;

    const file = path.join(freshDir('exp-file'), 'counter.svx');
    const ex = await snapvisor(['export', id, '--store', storeA, '-o', file]);
    expect(ex.stderr).toBe('');
    expect(ex.status).toBe(0);
    const im = await snapvisor(['import', file, '--store', storeB]);
    expect(im.status).toBe(0);
    const newId = im.stdout.toString().trim().split(/\s+/).pop()!;
    expect(newId).toMatch(/^[0-9a-f]{16}$/);
    const r = await snapvisor(['restore', newId, '--store', storeB], { timeoutMs: 40_000 });
    expect(r.status).toBe(0);
    const numbers = r.stdout.toString().split('\n').filter(Boolean).map(Number);
    expect(numbers).toEqual(Array.from({ length: 40 - last }, (_, i) => last + 1 + i));

    // Compressed: the file is a fraction of the pages it carries.
    const stored = JSON.parse((await snapvisor(['checkpoints', '--store', storeA, '--json'])).stdout.toString())[0].storedPageBytes;
    expect(fs.statSync(file).size).toBeLessThan(stored / 2);
    const bytes = fs.readFileSync(file);
    expect(bytes.subarray(0, 8).toString()).toBe('SVEXPRT2');
    const truncated = path.join(path.dirname(file), 'truncated.svx');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length >> 1));
    const flipped = path.join(path.dirname(file), 'flipped.svx');
    const copy = Buffer.from(bytes); copy[copy.length - 100] ^= 1;
    fs.writeFileSync(flipped, copy);
    for (const bad of [truncated, flipped]) {
      const b = await snapvisor(['import', bad, '--store', storeB]);
      expect(b.status).toBe(1);
      expect(b.stderr.trim().split('\n')).toHaveLength(1);
      expect(b.stderr).toMatch(/corrupt or truncated/);
    }
    // A file whose checksum holds but whose compressed stream is cut short (resealed): refused, one line.
    const cut = Buffer.from(bytes.subarray(0, bytes.length - 200));
    createHash('sha256').update(cut.subarray(40)).digest().copy(cut, 8);
    const resealed = path.join(path.dirname(file), 'resealed.svx');
    fs.writeFileSync(resealed, cut);
    const rs = await snapvisor(['import', resealed, '--store', storeB]);
    expect(rs.status).toBe(1);
    expect(rs.stderr.trim().split('\n')).toHaveLength(1);
    expect(rs.stderr).toMatch(/is corrupt \(/);
    const list = await snapvisor(['checkpoints', '--store', storeB, '--json']);
    expect(JSON.parse(list.stdout.toString()).map((c: { id: string }) => c.id)).toEqual([newId]);

    // Imported compressed (a page pack, format 6), as `checkpoint` writes by default; --no-compress: a flat page file.
    const formatOf = async (cid: string, store: string) => JSON.parse((await snapvisor(['inspect', cid, '--store', store, '--json'])).stdout.toString()).checkpoint.formatVersion;
    expect(await formatOf(newId, storeB)).toBe(6);
    const storeC = freshDir('exp-c');
    const flat = await snapvisor(['import', file, '--store', storeC, '--no-compress']);
    expect(flat.status).toBe(0);
    const flatId = flat.stdout.toString().trim().split(/\s+/).pop()!;
    expect(await formatOf(flatId, storeC)).toBe(2);
    const rf = await snapvisor(['restore', flatId, '--store', storeC], { timeoutMs: 40_000 });
    expect(rf.status).toBe(0);
    expect(rf.stdout.toString()).toBe(r.stdout.toString());
    // A file that is not there: one line, in words.
    const missing = await snapvisor(['import', path.join(path.dirname(file), 'none.svx'), '--store', storeC]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^snapvisor: cannot read .*none\.svx: No such file or directory$/);
  }, 150_000); // a python3 run, a checkpoint, seven store commands and two restores: limits for load 16
});
