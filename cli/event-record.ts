/**
 * `node dist/cli/event-record.js OUT ROOTFS [MID_MS] -- PROGRAM ARGS…`: run a sandbox to its
 * end and write to OUT, as CBOR (snapshots/format.ts), `{ start, end, events, mid?, dirty }`:
 * the state graph as it was when the run started (after the sandbox was created, before any
 * guest code ran), the graph at its end, and every event emitted in between, ops included.
 * With MID_MS, a --leave-running style capture is taken every MID_MS ms of the run: `mids` holds
 * each one's graph and the seq of the last event before it (`mid`/`midSeq`: the last one), and
 * `dirty` is the kernel's dirty set at the end (objects changed since the last capture).
 * The event-replay property test (property-tests/event-replay.test.ts) replays `events` on
 * `start` (and those after the capture on `mid`) and compares with `end`. Exits with the
 * guest's status.
 */
import fs from 'node:fs';
import { createSandbox } from '../src/sandbox/create.js';
import { createPlatform } from '../platforms/registry.js';
import { encodeCbor } from '../snapshots/format.js';
import type { KernelEvent } from '../src/kernel/events.js';
import { exitStatus } from './run.js';

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const [out, rootfs] = args;
  const midMs = args[2] !== '--' ? Number(args[2]) : undefined;
  const dd = args.indexOf('--');
  const argv = args.slice(dd + 1);
  if (!out || !rootfs || dd < 0 || !argv.length || (midMs !== undefined && !(midMs >= 0))) {
    process.stderr.write('usage: event-record OUT ROOTFS [MID_MS] -- PROGRAM ARGS…\n');
    return 2;
  }
  const kernel = createSandbox({ rootfs, cwd: '/', argv, env: ['PATH=/usr/bin:/bin', 'HOME=/'], platform: createPlatform(undefined) });
  const start = structuredClone(kernel.state);
  const events: KernelEvent[] = [];
  const sub = kernel.events.subscribe((evs) => { events.push(...evs); });
  const mids: Array<{ graph: unknown; seq: number }> = [];
  let busy = false;
  const timer = midMs === undefined ? undefined : setInterval(async () => {
    if (busy || kernel.exitInfo) return;
    busy = true;
    try {
      await kernel.quiesce();
      if (kernel.exitInfo) return;
      const c = kernel.capture(true);
      const seq = kernel.events.seq;
      kernel.thaw();
      c.release();
      mids.push({ graph: c.graph, seq });
    } finally { busy = false; }
  }, midMs);
  const info = await kernel.run();
  clearInterval(timer);
  const mid = mids[mids.length - 1]?.graph, midSeq = mids[mids.length - 1]?.seq ?? 0;
  kernel.events.flush();
  sub.close();
  const end = structuredClone(kernel.state);
  const dirty = kernel.dirty.toJSON();
  kernel.destroy();
  fs.writeFileSync(out, encodeCbor({ start, end, events, mids, mid, midSeq, dirty }));
  return exitStatus(info);
}

main().then((code) => { process.exitCode = code; }, (e) => { process.stderr.write(`event-record: ${(e as Error).stack}\n`); process.exitCode = 125; });
