/**
 * Worker thread of a checkpoint's page writer: runs crunchPages (./page-crunch.ts) on each read
 * buffer it is sent, in order, and sends the buffer back with the result. Messages in:
 * `{ buf: ArrayBuffer, len, base, skip?: Uint8Array, writeFd, read?: { fd, bytes, parts? }, pack?: { mask?, warmFd? }, parts? }`
 * (buf transferred; with `read`, it is filled here first; with `pack`, its pack chunk is compressed
 * here too), `'end'` (answered `'ended'`, then the worker closes), or `'halt'` (the worker closes,
 * unanswered; with status element 3 set, the jobs before it are skipped), or `{ pull: { claim, jobs } }`
 * (PageCrunch.pull: whole pack pieces `{ base, read, pack, parts? }`, taken one at a time by raising
 * `claim[0]`, an Int32Array on shared memory the writer's thread takes jobs from too, until none is
 * left or status element 3 is set). Out: `{ buf, kind, checks, packed?, warmed? }` (transferred but
 * `packed`), for a pull's job `{ pulled: index, kind, checks, packed, warmed }`, or `{ error: { message, code?,
 * syscall? } }`. workerData: `{ status, trace }`, `status` an Int32Array of 4 on a
 * SharedArrayBuffer: element 0 it raises by one as each buffer is done (before its answer is
 * sent: the writer's thread reads it without a turn of its event loop, to share the work); with
 * `trace` (SNAPVISOR_TRACE_CHECKPOINT), element 1 is its CPU time so far and element 2 the time
 * it waited between buffers (ms); element 3 the writer sets to stop it (PageCrunch.halt): jobs
 * not begun are skipped, unanswered. Loads no native addon (see ./verify-worker.ts).
 *
 * The writer never terminates this thread while it may be working: Node 20 aborts the whole
 * process (`Assertion failed: init_done_ && "close before init"`, node_zlib.cc, in the worker's
 * cleanup) when a worker is terminated between the construction of a zlib handle and its init,
 * a window every brotliCompressSync opens. It ends itself, between jobs, on 'halt'.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PACK_PIECE_BYTES, type PackAsk, type PullJob, type ReadParts, crunchPages } from './page-crunch.js';

interface Job { buf: ArrayBuffer; len: number; base: number; skip?: Uint8Array; writeFd: number; read?: ReadParts; pack?: PackAsk; parts?: number[] }
/** `{ pull: { claim, jobs } }`: take jobs by raising claim[0] until there are none left (PageCrunch.pull). */
interface Pull { pull: { claim: Int32Array; jobs: PullJob[] } }

if (parentPort) {
  const port = parentPort;
  const { status, trace } = (workerData ?? {}) as { status?: Int32Array; trace?: boolean };
  let waited = 0, last = -1;
  /** This thread's utime + stime and its waits, for SNAPVISOR_TRACE_CHECKPOINT (status elements 1 and 2). */
  const traceStatus = (): void => {
    if (!status || !trace) return;
    const f = fs.readFileSync('/proc/thread-self/stat', 'latin1').split(') ')[1]?.split(' ') ?? [];
    Atomics.store(status, 1, (Number(f[11]) + Number(f[12])) * 10);
    Atomics.store(status, 2, Math.round(waited));
  };
  /** A job's failure, for the writer's thread (PageCrunch.fail). */
  const postError = (e: unknown): void => {
    const err = e as NodeJS.ErrnoException;
    port.postMessage({ error: { message: err.message, code: err.code, syscall: err.syscall } });
  };
  port.on('message', (m: Job | Pull | 'end' | 'halt') => {
    if (m === 'end') { port.postMessage('ended'); port.close(); return; }
    if (m === 'halt') { port.close(); return; }
    if ('pull' in m) {
      // The jobs shared with the writer's thread, which takes them from the same counter: each
      // thread takes the next as soon as it is done, so neither waits on a queue the other holds.
      const { claim, jobs } = m.pull;
      const buf = new Uint8Array(PACK_PIECE_BYTES);
      if (trace && last >= 0) waited += performance.now() - last;
      for (let i = Atomics.add(claim, 0, 1); i < jobs.length; i = Atomics.add(claim, 0, 1)) {
        if (status && Atomics.load(status, 3) !== 0) return;
        const j = jobs[i];
        try {
          const r = crunchPages(buf, PACK_PIECE_BYTES, j.base, undefined, -1, j.read, j.pack, j.parts);
          if (status) { traceStatus(); Atomics.add(status, 0, 1); }
          port.postMessage({ pulled: i, kind: r.kind, checks: r.checks, packed: r.packed, warmed: r.warmed }, [r.kind.buffer as ArrayBuffer, r.checks.buffer as ArrayBuffer]);
        } catch (e) {
          postError(e);
          return;
        }
      }
      last = performance.now();
      return;
    }
    // Stopped: the jobs queued before 'halt' write nothing more.
    if (status && Atomics.load(status, 3) !== 0) return;
    if (trace && last >= 0) waited += performance.now() - last;
    try {
      const r = crunchPages(new Uint8Array(m.buf), m.len, m.base, m.skip, m.writeFd, m.read, m.pack, m.parts);
      if (status) {
        traceStatus();
        Atomics.add(status, 0, 1);
      }
      last = performance.now();
      port.postMessage({ buf: m.buf, kind: r.kind, checks: r.checks, packed: r.packed, warmed: r.warmed }, [m.buf, r.kind.buffer as ArrayBuffer, r.checks.buffer as ArrayBuffer]);
    } catch (e) {
      if (status) Atomics.add(status, 0, 1);
      postError(e);
    }
  });
}
