/**
 * Worker thread of a checkpoint's page writer: runs crunchPages (./page-crunch.ts) on each read
 * buffer it is sent, in order, and sends the buffer back with the result. Messages in:
 * `{ buf: ArrayBuffer, len, base, skip?: Uint8Array, writeFd }` (buf transferred), or `'end'`
 * (answered `'ended'`, then the worker closes). Out: `{ buf, kind, checks }` (transferred) or
 * `{ error: { message, code?, syscall? } }`. Loads no native addon (see ./verify-worker.ts).
 */
import { parentPort } from 'node:worker_threads';
import { crunchPages } from './page-crunch.js';

interface Job { buf: ArrayBuffer; len: number; base: number; skip?: Uint8Array; writeFd: number }

if (parentPort) {
  const port = parentPort;
  port.on('message', (m: Job | 'end') => {
    if (m === 'end') { port.postMessage('ended'); port.close(); return; }
    try {
      const r = crunchPages(new Uint8Array(m.buf), m.len, m.base, m.skip, m.writeFd);
      port.postMessage({ buf: m.buf, kind: r.kind, checks: r.checks }, [m.buf, r.kind.buffer as ArrayBuffer, r.checks.buffer as ArrayBuffer]);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      port.postMessage({ error: { message: err.message, code: err.code, syscall: err.syscall } });
    }
  });
}
