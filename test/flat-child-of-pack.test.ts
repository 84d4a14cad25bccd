/**
 * A flat (`--no-compress`) checkpoint incremental on a compressed one (docs/snapshot-format.md
 * "Incremental checkpoints"): its inherited pages live in the base pack's restore cache, filled
 * piece by piece as the restored guest needs them (LazyPack), each piece checked as it is filled.
 * The background page check of the flat child must leave those runs to the filling: reading the
 * cache's unfilled pieces found zeros where the pagemap's CRC-32s say data, and stopped a sound
 * sandbox as corrupt ("page at offset 0x500000 (inherited) failed its checksum").
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, checkpointGate, freshDir, snapvisor, snapvisorStreaming } from './helpers.js';

/**
 * 100 MiB of non-zero pages (distinct per page), which it never touches again; then, until its
 * checkpointGate file exists, a numbered line every 20 ms; then 40 more lines, and exit 0.
 */
const GUEST = [
  'import os, sys, time',
  'x = bytearray(100 << 20)',
  'for j in range(0, len(x), 4096): x[j:j + 8] = (j // 4096 + 1).to_bytes(8, "little")',
  "print('ready', flush=True)",
  'i = 0',
  'while not os.path.exists(sys.argv[-1]):',
  '    print(i, flush=True); i += 1; time.sleep(0.02)',
  'for k in range(40):',
  '    print(i, flush=True); i += 1; time.sleep(0.02)',
  "print('done', flush=True)",
].join('\n');

describe('a flat checkpoint incremental on a pack', () => {
  it('restores: its background page check passes and leaves the pack\'s lazily filled cache to the filling', async () => {
    const gate = checkpointGate('flat-child');
    const base = freshDir('flat-child');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'fc', '--', '/usr/bin/python3', '-c', GUEST, gate.sandbox], { timeoutMs: 120_000 });
    await run.waitFor((l) => l === '3', 60_000);
    const ids: string[] = [];
    // A pack; a flat child of it (checked in the background, but for the pack's runs); a pack child of that flat one.
    for (const extra of [[], ['--no-compress'], []]) {
      const cp = await snapvisor(['--root', root, 'checkpoint', 'fc', '--store', store, '--leave-running', ...extra], { timeoutMs: 60_000 });
      expect(cp.stderr.toString()).toBe('');
      expect(cp.status).toBe(0);
      ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
    }
    gate.open();
    expect(await run.done).toBe(0);
    const inspect = async (id: string): Promise<{ parent: string | null; inheritsFrom: string[] }> => (JSON.parse((await snapvisor(['inspect', id, '--store', store, '--json'])).stdout.toString()) as { checkpoint: { parent: string | null; inheritsFrom: string[] } }).checkpoint;
    expect(await inspect(ids[1])).toMatchObject({ parent: ids[0], inheritsFrom: [ids[0]] });
    expect(await inspect(ids[2])).toMatchObject({ parent: ids[1] });

    // In this process, to wait for the background check's verdict (the built restore: its
    // worker thread is a .js file beside it). No pack has a restore cache yet on this host.
    const { restoreKernel } = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'checkpoint.js')).href) as typeof import('../snapshots/checkpoint.js');
    for (const id of [ids[1], ids[2]]) {
      const { kernel, verified } = await restoreKernel(store, id);
      try {
        const bad = await Promise.race([verified, new Promise<string>((res) => setTimeout(() => res('no verdict in 60 s'), 60_000).unref())]);
        expect(bad, `restore of ${id}`).toBeUndefined();
      } finally {
        kernel.destroy();
      }
    }

    // Through the CLI: the guest runs to its end.
    const r = await snapvisor(['restore', ids[1], '--store', store], { timeoutMs: 60_000 });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.toString().trim().split('\n').pop()).toBe('done');
  }, 240_000);
});
