/**
 * Export and import of checkpoints (for migration to another host or store): one file
 * holding a checkpoint's graph and its non-zero pages, compressed.
 *
 * File layout (export format 2): the 8 bytes "SVEXPRT2", the sha256 (32 bytes) of the rest,
 * then gzip members (zlib's deflate, level EXPORT_GZIP_LEVEL; one per record, concatenated: a
 * valid multi-member gzip stream) whose uncompressed bytes are: a u32 little-endian length and
 * a CBOR map { formatVersion: 2, source: {id, name, createdMs, host}, graph, memorySizeBytes };
 * then page records, each a u64 little-endian memory-file offset, a u32 length and that many
 * bytes (consecutive non-zero pages, at most 1 MiB); then an end record (offset 0, length 0).
 * Export and import stream: memory use does not grow with the checkpoint (a 2 GB heap
 * exports in bounded memory). Import checks the magic and the checksum in a first pass, so a
 * truncated or corrupted file is refused with one line and nothing is written to the store.
 * Format 1 files ("SVEXPRT1": one uncompressed CBOR map with the pages inside) are still read.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createGunzip, gzipSync } from 'node:zlib';
import { strerror } from '../src/errno.js';
import { decodeCbor, encodeCbor } from './format.js';
import { CheckpointSummary, type ProgressCallback, SnapshotError, type WriteOptions, loadCheckpoint, restoreMemory, writeCheckpoint } from './store.js';

const MAGIC_V1 = Buffer.from('SVEXPRT1');
const MAGIC = Buffer.from('SVEXPRT2');
const EXPORT_VERSION = 2;
/**
 * gzip level of export files: 1 (zlib's fastest). The pages of a warmed-up heap are mostly
 * object headers and zeros; level 1 already shrinks them ~20–50× at a few hundred MB/s, and
 * higher levels cost several times the CPU for a few per cent more.
 */
const EXPORT_GZIP_LEVEL = 1;

/** A host file error in words ("No such file or directory"), as a user's shell would say it. */
function hostError(e: unknown): string {
  const errno = (e as NodeJS.ErrnoException).errno;
  return typeof errno === 'number' ? strerror(-errno) : (e as Error).message;
}

/** How import writes the checkpoint into the store (WriteOptions.compress: format 6 unless false). */
export interface ImportOptions { compress?: boolean }

interface ExportHeader {
  formatVersion: number;
  source: { id: string; name?: string; createdMs: number; host?: unknown };
  graph: unknown;
  memorySizeBytes: number;
}

interface ExportBodyV1 extends ExportHeader {
  pages: Array<[number, Uint8Array]>;
}

/**
 * Write checkpoint `id` of `storeDir` to `file` (export format 2, streamed). Returns the bytes
 * written. Throws SnapshotError (nothing is left at `file` then). `onProgress` gets the bytes
 * of stored pages read so far and their total.
 */
export async function exportCheckpoint(storeDir: string, id: string, file: string, onProgress?: ProgressCallback): Promise<{ id: string; bytes: number }> {
  const loaded = await loadCheckpoint(storeDir, id);
  let fd: number;
  try { fd = fs.openSync(file, 'w', 0o600); } catch (e) { throw new SnapshotError(`cannot write ${file}: ${hostError(e)}`); }
  const hash = createHash('sha256');
  let pos = MAGIC.length + 32;
  const put = (raw: Uint8Array): void => {
    const z = gzipSync(raw, { level: EXPORT_GZIP_LEVEL });
    hash.update(z);
    for (let done = 0; done < z.length;) done += fs.writeSync(fd, z, done, z.length - done, pos + done);
    pos += z.length;
  };
  try {
    fs.writeSync(fd, Buffer.concat([MAGIC, Buffer.alloc(32)]), 0, MAGIC.length + 32, 0);
    const header: ExportHeader = {
      formatVersion: EXPORT_VERSION,
      source: { id: loaded.id, name: loaded.manifest.name, createdMs: loaded.manifest.createdMs, host: loaded.manifest.host },
      graph: loaded.graph, memorySizeBytes: loaded.memorySizeBytes,
    };
    const encoded = encodeCbor(header);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(encoded.length);
    put(Buffer.concat([len, encoded]));
    await restoreMemory(storeDir, loaded.id, (offset, data) => put(pageRecord(offset, data)), onProgress);
    put(pageRecord(0, new Uint8Array(0)));
    fs.writeSync(fd, hash.digest(), 0, 32, MAGIC.length);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(`cannot write ${file}: ${hostError(e)}`);
  }
  fs.closeSync(fd);
  return { id: loaded.id, bytes: pos };
}

/** One page record: u64 LE offset, u32 LE length, the bytes. */
function pageRecord(offset: number, data: Uint8Array): Buffer {
  const h = Buffer.alloc(12);
  h.writeBigUInt64LE(BigInt(offset), 0);
  h.writeUInt32LE(data.length, 8);
  return Buffer.concat([h, data]);
}

/**
 * Read an export file into `storeDir` as a new checkpoint: compressed (a page pack, format 6, as
 * `checkpoint` writes by default) unless `options.compress` is false (a flat page file, format 2).
 * Host-file pages are stored, never named: the file may come from a host whose files differ.
 * Throws SnapshotError for a bad file. `onProgress` gets the bytes of pages written into the store
 * so far and their total.
 */
export async function importCheckpoint(storeDir: string, file: string, onProgress?: ProgressCallback, options: ImportOptions = {}): Promise<CheckpointSummary & { sourceId: string }> {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch (e) { throw new SnapshotError(`cannot read ${file}: ${hostError(e)}`); }
  const top = Buffer.alloc(40);
  let magic: Buffer;
  try {
    const n = fs.readSync(fd, top, 0, 40, 0);
    magic = top.subarray(0, 8);
    if (n < 40 || !(magic.equals(MAGIC) || magic.equals(MAGIC_V1))) throw new SnapshotError(`${file} is not a snapvisor checkpoint export`);
    // First pass: the checksum of everything after the first 40 bytes, before anything is decoded or written.
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let at = 40; ;) {
      const got = fs.readSync(fd, buf, 0, buf.length, at);
      if (got === 0) break;
      hash.update(buf.subarray(0, got));
      at += got;
    }
    if (!hash.digest().equals(top.subarray(8, 40))) throw new SnapshotError(`${file} is corrupt or truncated (checksum mismatch)`);
  } catch (e) {
    // A directory opens but does not read (EISDIR); an I/O error mid-file: the file, in words.
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(`cannot read ${file}: ${hostError(e)}`);
  } finally {
    fs.closeSync(fd);
  }
  const write: WriteOptions = { compress: options.compress ?? true };
  return magic.equals(MAGIC_V1) ? importV1(storeDir, file, write, onProgress) : importV2(storeDir, file, write, onProgress);
}

/** Format 2: stream the gzip records into a sparse scratch file, then write the checkpoint from it. */
async function importV2(storeDir: string, file: string, write: WriteOptions, onProgress?: ProgressCallback): Promise<CheckpointSummary & { sourceId: string }> {
  const scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-import-'));
  const scratch = path.join(scratchDir, 'memory');
  const mfd = fs.openSync(scratch, 'w+', 0o600);
  try {
    let header: ExportHeader | undefined;
    let ended = false;
    const runs: Array<[number, number]> = [];
    let pending: Buffer = Buffer.alloc(0);
    // Chunks after `pending`, joined only once the next record is whole (records are up to 1 MiB, chunks 16 KiB).
    let parts: Buffer[] = [], partBytes = 0, want = 4;
    const bad = (why: string) => new SnapshotError(`${file} is corrupt (${why})`);
    try {
      for await (const chunk of fs.createReadStream(file, { start: 40 }).pipe(createGunzip())) {
        parts.push(chunk as Buffer);
        partBytes += (chunk as Buffer).length;
        if (pending.length + partBytes < want) continue;
        pending = Buffer.concat([pending, ...parts]);
        parts = []; partBytes = 0;
        for (;;) {
          if (!header) {
            if (pending.length < 4) { want = 4; break; }
            const n = pending.readUInt32LE(0);
            if (pending.length < 4 + n) { want = 4 + n; break; }
            try { header = decodeCbor(pending.subarray(4, 4 + n)) as ExportHeader; } catch { throw bad('its header cannot be decoded'); }
            if (header?.formatVersion !== EXPORT_VERSION || typeof header.memorySizeBytes !== 'number') throw new SnapshotError(`${file} has export format ${String(header?.formatVersion)}, but this snapvisor reads only 1 and ${EXPORT_VERSION}`);
            pending = pending.subarray(4 + n);
            continue;
          }
          if (ended) { if (pending.length) throw bad('bytes after its end record'); want = 1; break; }
          if (pending.length < 12) { want = 12; break; }
          const off = Number(pending.readBigUInt64LE(0)), len = pending.readUInt32LE(8);
          if (len === 0 && off === 0) { ended = true; pending = pending.subarray(12); continue; }
          if (len > 64 << 20) throw bad('a page record longer than any it writes');
          if (pending.length < 12 + len) { want = 12 + len; break; }
          if (off % 4096 !== 0 || off + len > header.memorySizeBytes + 4096) throw bad('a page record outside its memory');
          const data = pending.subarray(12, 12 + len);
          for (let done = 0; done < len;) done += fs.writeSync(mfd, data, done, len - done, off + done);
          runs.push([off, len]);
          pending = pending.subarray(12 + len);
        }
      }
    } catch (e) {
      if (e instanceof SnapshotError) throw e;
      throw bad(`it cannot be decompressed: ${(e as Error).message}`);
    }
    if (!header || !ended) throw bad('it ends before its end record');
    const memory = {
      sizeBytes: header.memorySizeBytes,
      populated: runs,
      read(offset: number, length: number): Uint8Array {
        const out = Buffer.alloc(length);
        for (let done = 0; done < length;) { const n = fs.readSync(mfd, out, done, length - done, offset + done); if (n === 0) break; done += n; }
        return out;
      },
    };
    const summary = await writeCheckpoint(storeDir, header.graph, memory, { name: header.source.name, note: `imported from checkpoint ${header.source.id}` }, onProgress, write);
    return { ...summary, sourceId: header.source.id };
  } finally {
    fs.closeSync(mfd);
    fs.rmSync(scratchDir, { recursive: true, force: true });
  }
}

/** Format 1: one CBOR map with the pages inside (files written before format 2). */
async function importV1(storeDir: string, file: string, write: WriteOptions, onProgress?: ProgressCallback): Promise<CheckpointSummary & { sourceId: string }> {
  const raw = await fsp.readFile(file);
  let body: ExportBodyV1;
  try { body = decodeCbor(raw.subarray(40)) as ExportBodyV1; } catch { throw new SnapshotError(`${file} is corrupt (cannot be decoded)`); }
  if (body?.formatVersion !== 1 || !Array.isArray(body.pages)) throw new SnapshotError(`${file} has export format ${String(body?.formatVersion)}, but this snapvisor reads only 1 and ${EXPORT_VERSION}`);
  const runs = body.pages;
  const memory = {
    sizeBytes: body.memorySizeBytes,
    populated: runs.map(([o, d]) => [o, d.length] as [number, number]),
    read(offset: number, length: number): Uint8Array {
      for (const [o, d] of runs) if (offset >= o && offset + length <= o + d.length) return d.subarray(offset - o, offset - o + length);
      // A read spanning several runs (the store merges touching ranges): assemble it.
      const out = new Uint8Array(length);
      for (const [o, d] of runs) {
        const lo = Math.max(o, offset), hi = Math.min(o + d.length, offset + length);
        if (lo < hi) out.set(d.subarray(lo - o, hi - o), lo - offset);
      }
      return out;
    },
  };
  const summary = await writeCheckpoint(storeDir, body.graph, memory, { name: body.source.name, note: `imported from checkpoint ${body.source.id}` }, onProgress, write);
  return { ...summary, sourceId: body.source.id };
}
