/**
 * What compressing a checkpoint's pack costs, one way or another (docs/benchmarks.md,
 * "Checkpoint writer"): the chunks of an existing pack (`pages/<id>.pack`, written by
 * `checkpoint --compress`) are decompressed into memory, then compressed again with brotli
 * quality 1 as PackWriter does — synchronously on this thread, and on libuv's thread pool with
 * 3 in flight (as the writer did before) — and CRC-32'd per page; each pass reports wall ms,
 * this process's CPU ms (all threads) and minor page faults.
 *
 *   node dist/bench/pack-compress-bench.js STORE/pages/ID.pack [sync|async|crc]…
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { readPackTrailer } from '../snapshots/pack.js';
import { PAGE_SIZE, pageCheck } from '../snapshots/page-format.js';

const [packPath, ...passes] = process.argv.slice(2);
if (!packPath) {
  process.stderr.write('usage: pack-compress-bench.js PACK [sync|async|crc]…\n');
  process.exit(2);
}
const fd = fs.openSync(packPath, 'r');
const trailer = readPackTrailer(fd);
if (typeof trailer === 'string') throw new Error(`${packPath}: ${trailer}`);
const index = Buffer.from(trailer.index.buffer, trailer.index.byteOffset, trailer.index.byteLength);
const chunks: Buffer[] = [];
for (let o = 0; o < index.length; o += 24) {
  const z = Buffer.alloc(index.readUInt32LE(o + 16));
  fs.readSync(fd, z, 0, z.length, Number(index.readBigUInt64LE(o + 8)));
  chunks.push(zlib.brotliDecompressSync(z));
}
fs.closeSync(fd);
const options = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: 1 << 20 } };
const brotliCompress = promisify(zlib.brotliCompress);
const usage = (): { cpu: number; faults: number } => { const u = process.resourceUsage(); return { cpu: (u.userCPUTime + u.systemCPUTime) / 1000, faults: u.minorPageFault }; };
const mib = chunks.reduce((n, c) => n + c.length, 0) / 2 ** 20;
process.stdout.write(`${chunks.length} chunks, ${mib.toFixed(1)} MiB of pages\n`);
for (const pass of passes.length ? passes : ['sync', 'async', 'crc']) {
  const t0 = performance.now(), u0 = usage();
  let out = 0;
  if (pass === 'sync') for (const c of chunks) out += zlib.brotliCompressSync(c, options).length;
  else if (pass === 'async') {
    const inFlight = new Set<Promise<void>>();
    for (const c of chunks) {
      while (inFlight.size >= 3) await Promise.race(inFlight);
      const job: Promise<void> = brotliCompress(c, options).then((z) => { out += z.length; inFlight.delete(job); });
      inFlight.add(job);
    }
    await Promise.all(inFlight);
  } else if (pass === 'crc') for (const c of chunks) for (let p = 0; p < c.length; p += PAGE_SIZE) out ^= pageCheck(c, p);
  else throw new Error(`unknown pass ${pass}`);
  const u1 = usage();
  process.stdout.write(`${pass.padEnd(5)} ${(performance.now() - t0).toFixed(0)} ms wall, ${(u1.cpu - u0.cpu).toFixed(0)} ms CPU, ${u1.faults - u0.faults} faults${pass === 'crc' ? '' : `, ${(out / 2 ** 20).toFixed(2)} MiB out`}\n`);
}
