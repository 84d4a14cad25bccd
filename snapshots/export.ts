/**
 * Export and import of checkpoints (for migration to another host or store): one file
 * holding a checkpoint's graph and its non-zero pages.
 *
 * File layout: the 8 bytes "SVEXPRT1", the sha256 (32 bytes) of the rest, then a CBOR map
 * { formatVersion: 1, source: {id, name, createdMs, host}, graph, memorySizeBytes,
 *   pages: [[offset, bytes], …] } (byte runs of consecutive non-zero pages).
 * Import checks the magic and the checksum before decoding, so a truncated or corrupted
 * file is refused with one line and nothing is written to the store.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { decodeCbor, encodeCbor } from './format.js';
import { CheckpointSummary, type ProgressCallback, SnapshotError, loadCheckpoint, restoreMemory, writeCheckpoint } from './store.js';

const MAGIC = Buffer.from('SVEXPRT1');
const EXPORT_VERSION = 1;

interface ExportBody {
  formatVersion: number;
  source: { id: string; name?: string; createdMs: number; host?: unknown };
  graph: unknown;
  memorySizeBytes: number;
  pages: Array<[number, Uint8Array]>;
}

/**
 * Write checkpoint `id` of `storeDir` to `file`. Returns the bytes written. Throws SnapshotError.
 * `onProgress` gets the bytes of stored pages read so far and their total (the encoding and the
 * file write that follow are not counted).
 */
export async function exportCheckpoint(storeDir: string, id: string, file: string, onProgress?: ProgressCallback): Promise<{ id: string; bytes: number }> {
  const loaded = await loadCheckpoint(storeDir, id);
  const pages: Array<[number, Uint8Array]> = [];
  await restoreMemory(storeDir, loaded.id, (offset, data) => { pages.push([offset, new Uint8Array(data)]); }, onProgress);
  const body: ExportBody = {
    formatVersion: EXPORT_VERSION,
    source: { id: loaded.id, name: loaded.manifest.name, createdMs: loaded.manifest.createdMs, host: loaded.manifest.host },
    graph: loaded.graph, memorySizeBytes: loaded.memorySizeBytes, pages,
  };
  const encoded = encodeCbor(body);
  const digest = createHash('sha256').update(encoded).digest();
  const out = Buffer.concat([MAGIC, digest, encoded]);
  try { await fs.writeFile(file, out); } catch (e) { throw new SnapshotError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
  return { id: loaded.id, bytes: out.length };
}

/**
 * Read an export file into `storeDir` as a new checkpoint. Throws SnapshotError for a bad file.
 * `onProgress` gets the bytes of pages written into the store so far and their total.
 */
export async function importCheckpoint(storeDir: string, file: string, onProgress?: ProgressCallback): Promise<CheckpointSummary & { sourceId: string }> {
  let raw: Buffer;
  try { raw = await fs.readFile(file); } catch (e) { throw new SnapshotError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
  if (raw.length < 40 || !raw.subarray(0, 8).equals(MAGIC)) throw new SnapshotError(`${file} is not a snapvisor checkpoint export`);
  const encoded = raw.subarray(40);
  if (!createHash('sha256').update(encoded).digest().equals(raw.subarray(8, 40))) throw new SnapshotError(`${file} is corrupt or truncated (checksum mismatch)`);
  let body: ExportBody;
  try { body = decodeCbor(encoded) as ExportBody; } catch { throw new SnapshotError(`${file} is corrupt (cannot be decoded)`); }
  if (body?.formatVersion !== EXPORT_VERSION || !Array.isArray(body.pages)) throw new SnapshotError(`${file} has export format ${String(body?.formatVersion)}, but this snapvisor reads only ${EXPORT_VERSION}`);
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
  const summary = await writeCheckpoint(storeDir, body.graph, memory, { name: body.source.name, note: `imported from checkpoint ${body.source.id}` }, onProgress);
  return { ...summary, sourceId: body.source.id };
}
