/**
 * The readiness polls of platforms/host (HostStreams.onReadable, fd-passing's waitReadable) are
 * koffi asynchronous calls, which hold no reference to their arguments while poll(2) runs on a
 * worker thread. The pollfd they pass must outlive the call: poll writes revents into it as it
 * returns. HostStreams' did not (nothing referred to it once the call began): a collection in
 * between freed it and the returning poll wrote POLLIN into freed memory, which aborted
 * pool-host's hosting process ("malloc(): smallbin double linked list corrupted", about one CI run
 * in three). Here, in a node of its own (the built dist/): a poll waits on an empty eventfd, the
 * heap is collected, 8-byte buffers (the pollfd's size) are allocated, and the eventfd is made
 * readable; no buffer may change and the process must not crash. The unfixed build crashed
 * (SIGSEGV) in each of 3 runs.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

const ROUNDS = 50;

const SCRIPT = `
const fs = await import('node:fs');
const dir = ${JSON.stringify(pathToFileURL(path.join(REPO_ROOT, 'dist', 'platforms', 'host')).href)};
const { HostStreams } = await import(dir + '/host-streams.js');
const { waitReadable } = await import(dir + '/fd-passing.js');
const libc = await import(dir + '/libc.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// One eventfd per way of waiting: a wake-up of one (which drains it) must not take the other's bytes.
const streamFd = libc.eventfd(0, libc.EFD_NONBLOCK), waitFd = libc.eventfd(0, libc.EFD_NONBLOCK);
const drain = (fd) => { try { fs.readSync(fd, Buffer.alloc(8)); } catch { /* empty */ } };
const hs = new HostStreams();
let woke;
hs.onReadable(streamFd, () => { drain(streamFd); woke?.(); });
let overwritten = 0;
for (let round = 0; round < ${ROUNDS}; round++) {
  // Half the rounds through waitReadable, half through onReadable (re-armed 2 ms after a wake).
  const viaWait = round % 2 === 1;
  const waited = viaWait ? waitReadable(waitFd, 10_000) : undefined;
  await sleep(10);
  globalThis.gc();
  await sleep(5);
  const held = [];
  for (let i = 0; i < 256; i++) held.push(Buffer.allocUnsafeSlow(8).fill(0xaa));
  const w = viaWait ? waited : new Promise((r) => { woke = r; });
  fs.writeSync(viaWait ? waitFd : streamFd, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
  if (viaWait) { if (!(await w)) throw new Error('waitReadable: not readable'); drain(waitFd); } else await w;
  for (const b of held) if (b[6] !== 0xaa || b[7] !== 0xaa) overwritten++;
}
console.log('rounds ${ROUNDS} overwritten ' + overwritten);
process.exit(0);
`;

describe('host readiness polls', () => {
  it('a poll in flight across a garbage collection writes revents into its own pollfd, not into freed memory', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', SCRIPT], { encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`rounds ${ROUNDS} overwritten 0\n`);
    expect(r.status).toBe(0);
  }, 90_000);
});
