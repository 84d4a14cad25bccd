/**
 * The working set of a plain restore (docs/snapshot-format.md, "Working set"): the first
 * restore of a checkpoint records the write faults its guest takes first in the store's cache,
 * later restores take them before the guest runs; the guest's output is the same either way, and
 * a damaged record is ignored. gc keeps it, delete removes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, orphanStubs, snapvisor, stderrLines } from './helpers.js';

// Waits until it is a restored sandbox (generation 1), writes into a heap made before the
// checkpoint (its pages are in the page file: each first write after a restore is a write
// fault), counts to 20 and ends.
const GUEST = [
  'import sys, time',
  'heap = [bytearray(4096) for _ in range(400)]',
  'print("ready", flush=True)',
  'while open("/proc/snapvisor/generation").read().strip() == "0": time.sleep(0.02)',
  'for i in range(20):',
  '    for b in heap[i::20]: b[0] = i',
  '    print(i, sum(b[0] for b in heap), flush=True)',
].join('\n');
const EXPECTED = Array.from({ length: 20 }, (_, i) => `${i} ${Array.from({ length: 400 }, (_, k) => (k % 20 <= i ? k % 20 : 0)).reduce((a, b) => a + b, 0)}`);

const TRACE = { ...process.env, SNAPVISOR_TRACE_RESTORE: '1' };
const taken = (stderr: string): string | undefined => /\] working set: (\d+ of \d+) write faults taken/.exec(stderr)?.[1];
/** Lines on stderr other than the restore's trace marks. */
const untraced = (stderr: string): string[] => stderrLines(stderr).filter((l) => !l.startsWith('[restore '));

describe('restore working set', () => {
  it('the first restore records its guest\'s first write faults, the next takes them before the guest runs, with the same output', async () => {
    const c = await checkpointAtReady('ws', ['/usr/bin/python3', '-c', GUEST]);
    const wsFiles = () => fs.readdirSync(path.join(c.store, 'cache')).filter((n) => n.startsWith(c.id) && n.endsWith('.ws'));
    /** One traced restore that must end well with the expected output; its stderr. */
    const restoreOnce = async (): Promise<string> => {
      const r = await snapvisor(['restore', c.id, '--store', c.store], { env: TRACE, timeoutMs: 30_000 });
      expect(r.timedOut).toBe(false);
      expect(untraced(r.stderr)).toEqual([]);
      expect(r.status).toBe(0);
      expect(r.stdout.toString().trim().split('\n')).toEqual(EXPECTED);
      return r.stderr;
    };

    const first = await restoreOnce();
    expect(taken(first)).toBeUndefined();
    expect(wsFiles()).toHaveLength(1);
    const recorded = JSON.parse(fs.readFileSync(path.join(c.store, 'cache', wsFiles()[0]), 'utf8')) as { v: number; faults: Array<[number, number]> };
    expect(recorded.v).toBe(1);
    expect(recorded.faults.length).toBeGreaterThan(0);

    const second = await restoreOnce();
    // Every recorded fault applies again (the same checkpoint, the same guest addresses).
    expect(taken(second)).toBe(`${recorded.faults.length} of ${recorded.faults.length}`);

    // A damaged record is ignored: the restore neither fails nor takes anything from it.
    fs.writeFileSync(path.join(c.store, 'cache', wsFiles()[0]), '{"v":1,"faults":[[1,"x"],[99,4096],[1');
    const third = await restoreOnce();
    expect(taken(third)).toBeUndefined();
    // ...and recorded anew by it.
    expect(JSON.parse(fs.readFileSync(path.join(c.store, 'cache', wsFiles()[0]), 'utf8')).faults.length).toBeGreaterThan(0);

    // gc keeps it with its checkpoint's cache; delete takes it along.
    expect((await snapvisor(['gc', '--store', c.store])).status).toBe(0);
    expect(wsFiles()).toHaveLength(1);
    expect((await snapvisor(['delete', c.id, '--store', c.store])).status).toBe(0);
    expect(wsFiles()).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
