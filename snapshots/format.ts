/**
 * On-disk format of the snapshot store (format version 2): constants, key layout and
 * the small pure helpers that encode, seal and check records. The store itself
 * (opening LevelDB, batching, resolving ids) lives in `./store.ts`; the format is
 * described for humans in `docs/snapshot-format.md` — keep the three in step.
 *
 * Everything here is synchronous and free of I/O so it can be unit-tested directly.
 */
import { randomBytes } from 'node:crypto';
import { HASH_BYTES, sha256 } from './record-check.js';
import { Decoder, Encoder } from 'cbor-x';
import { PAGE_CHECK_BYTES, PAGE_SIZE, type PagemapRun, runLayer } from './page-format.js';

// Pages and pagemap runs: in a module of their own, which loads no native addon (the restore's
// page verifier, a worker thread, uses them; see ./page-format.ts).
export { LITTLE_ENDIAN, PAGE_CHECK_BYTES, PAGE_SIZE, ZERO_PAGE, checkpointProblem, isZeroPage, pageCheck, readRunChecks, runLayer, type PagemapRun } from './page-format.js';

/** Value of the `magic` field of every manifest. */
export const FORMAT_MAGIC = 'snapvisor-checkpoint';
/**
 * The newest manifest `formatVersion` this code reads and writes (it reads FULL_FORMAT_VERSION
 * too). 3: an incremental checkpoint, whose pagemap names page files of earlier checkpoints
 * (`layers`); a full checkpoint is still written as version 2, which older builds read. Bump
 * on any incompatible change.
 */
export const FORMAT_VERSION = 6;
/**
 * Versions this code reads besides FORMAT_VERSION: 2 (a full checkpoint, flat page file
 * `pages/<id>`) and 3 (an incremental one, flat page file plus `layers`). Version 4, written
 * for a full compressed checkpoint (older builds read it too): its own pages are compressed in
 * `pages/<id>.pack` (snapshots/pack.ts) and pages that are bytes of host files are named, not
 * stored. Version 5, written for a compressed incremental one: as 4, and a pagemap run of a
 * layer that is a pack may give its page count instead of its CRC-32s, which are in that pack's
 * trailer (ELIDED in docs/snapshot-format.md): the pagemap grows with what changed, not with the
 * sandbox's memory. Version 6, written for a full compressed checkpoint since: as 4, but its pack
 * (trailer version 3, snapshots/pack.ts) checks each compressed chunk by the CRC-32 of its
 * compressed bytes, and the check of a page held in such a chunk (in its pagemap and its pack's
 * runs) is that chunk check, not the page's CRC-32 (which the checkpoint no longer computes).
 */
export const READ_FORMAT_VERSIONS: readonly number[] = [2, 3, 4, 5, 6];
/** The version of a full compressed checkpoint before chunk checks (own pages in a pack, no `layers`); still read. */
export const PACK_FORMAT_VERSION = 4;
/** The version of a full compressed checkpoint (own pages in a pack whose chunks carry their checks, no `layers`). */
export const PACK_CHUNK_CHECKED_FORMAT_VERSION = 6;
/** The version of a compressed incremental checkpoint (a pack plus `layers`, CRC-32s of pack layers' pages elided). */
export const PACK_INCREMENTAL_FORMAT_VERSION = 5;
/** Whether a checkpoint of manifest version `v` keeps its own pages in a pack (`pages/<id>.pack`). */
export const isPacked = (v: number): boolean => v === PACK_FORMAT_VERSION || v === PACK_INCREMENTAL_FORMAT_VERSION || v === PACK_CHUNK_CHECKED_FORMAT_VERSION;
/** The version of a flat checkpoint that holds all of its pages itself (no `layers`). */
export const FULL_FORMAT_VERSION = 2;
/** The version of a flat incremental checkpoint (its pagemap names earlier checkpoints' page files: `layers`). */
export const FLAT_INCREMENTAL_FORMAT_VERSION = 3;

/** Maximum size of one `graph/<id>/<n>` chunk, in bytes (1 MiB). */
export const GRAPH_CHUNK_BYTES = 1 << 20;

/** Length of a checkpoint id in hex characters (8 random bytes). */
export const ID_HEX_CHARS = 16;
/** Shortest id prefix accepted where an id is expected, in hex characters. */
export const MIN_ID_PREFIX = 4;

/** Key prefixes. Keys are UTF-8 strings; values are raw bytes. */
export const KEY = {
  manifest: 'manifest/',
  graph: 'graph/',
  pagemap: 'pagemap/',
} as const;

/** Directory (inside the store) of the page files: `pages/<id>`. */
export const PAGES_DIR = 'pages';
/** Directory (inside the store) of the restore records: `meta/<id>`. */
export const META_DIR = 'meta';
/** First 8 bytes of a restore record this build writes (docs/snapshot-format.md, "Restore record"). */
export const META_MAGIC = Buffer.from('SVMETA03');
/** First 8 bytes of a restore record of the previous layout (no quick check), still read. */
export const META_MAGIC_V2 = Buffer.from('SVMETA02');

/** `manifest/<id>`: sealed CBOR manifest (see {@link sealManifest}). */
export const manifestKey = (id: string): string => KEY.manifest + id;
/** `graph/<id>/<index>`: chunk `index` (decimal, from 0) of the CBOR-encoded graph. */
export const graphKey = (id: string, index: number): string => `${KEY.graph}${id}/${index}`;
/** `pagemap/<id>`: CBOR run list of the checkpoint's non-zero pages (see {@link encodePagemap}). */
export const pagemapKey = (id: string): string => KEY.pagemap + id;

/**
 * Key range holding exactly the keys that start with `prefix`, for LevelDB iterators,
 * `clear` and friends. Works for any prefix ending in '/' (the next code point is '0')
 * and for hex-id prefixes (every hex digit sorts below '~').
 */
export function prefixRange(prefix: string): { gte: string; lt: string } {
  if (prefix.endsWith('/')) return { gte: prefix, lt: prefix.slice(0, -1) + '0' };
  return { gte: prefix, lt: prefix + '~' };
}
/** Range of all `graph/<id>/…` chunk keys of one checkpoint. */
export const graphRange = (id: string): { gte: string; lt: string } => prefixRange(`${KEY.graph}${id}/`);

/** A fresh checkpoint id: 16 lowercase hex characters from 8 random bytes. */
export function newCheckpointId(): string {
  return randomBytes(ID_HEX_CHARS / 2).toString('hex');
}
/** True for a full checkpoint id (16 lowercase hex characters). */
export function isCheckpointId(s: string): boolean {
  return /^[0-9a-f]{16}$/.test(s);
}
/** True for something usable as an id or id prefix (4–16 hex characters, any case). */
export function isCheckpointIdPrefix(s: string): boolean {
  return /^[0-9a-fA-F]{4,16}$/.test(s);
}

export { HASH_BYTES, manifestSealIsValid, sha256, sha256Hex } from './record-check.js';


// ---------------------------------------------------------------------------
// CBOR

/**
 * Options for every CBOR encoding in the store: no cbor-x record extension (plain
 * RFC 8949 maps), maps decode to plain objects, Uint8Array and other typed arrays
 * carry their RFC 8746 tags, bigint uses 64-bit integers or tags 2/3 (so it always
 * decodes as bigint), decoded byte strings are copies (not views of the record).
 */
const CBOR_OPTIONS = { useRecords: false, mapsAsObjects: true, copyBuffers: true } as const;
const encoder = new Encoder(CBOR_OPTIONS);

/**
 * Encode `value` as CBOR into a fresh, unshared buffer.
 * Throws (a plain Error from cbor-x) for values CBOR cannot carry: functions, symbols.
 * Known lossy cases: `-0` is stored as `0`, and an own key named `__proto__` is renamed
 * `__proto_` by cbor-x's prototype-pollution guard; class instances lose their prototype.
 */
export function encodeCbor(value: unknown): Buffer {
  // cbor-x returns a view into a reused scratch buffer: copy it before anyone keeps it.
  return Buffer.from(encoder.encode(value));
}

/**
 * Decode one CBOR item that must span all of `bytes`. A fresh decoder is used every
 * time so that hostile input can never leave state behind in a shared decoder.
 * Throws a plain Error on malformed input or trailing bytes.
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  return new Decoder(CBOR_OPTIONS).decode(bytes);
}

// ---------------------------------------------------------------------------
// Manifest

/** Name of the manifest field that holds its own checksum; always the last field. */
export const MANIFEST_CHECKSUM_FIELD = 'manifestSha256';

/** The fields of a format-1 manifest (all sizes in bytes, all times in milliseconds). */
export interface ManifestV2 {
  magic: typeof FORMAT_MAGIC;
  formatVersion: number;
  /** 16 hex characters; equals the `<id>` of its key. */
  id: string;
  /** 1 + the highest `seq` in the store when written; orders checkpoints oldest first. */
  seq: number;
  /** Wall-clock creation time, ms since the Unix epoch. */
  createdMs: number;
  name?: string;
  parent?: string;
  note?: string;
  /** sha256 (hex) of the whole CBOR-encoded graph (all chunks concatenated). */
  graphSha256: string;
  /** Length of the CBOR-encoded graph. */
  graphBytes: number;
  /** Number of `graph/<id>/<n>` records: ceil(graphBytes / GRAPH_CHUNK_BYTES). */
  graphChunks: number;
  /** sha256 (hex) of the `pagemap/<id>` value. */
  pagemapSha256: string;
  /** Length of the `pagemap/<id>` value. */
  pagemapBytes: number;
  /** Logical size of the memory file. */
  memorySizeBytes: number;
  /** Non-zero pages in the pagemap (its own and, in format 3, those in its layers' page files). */
  pages: number;
  /** Pages inside the populated ranges that were all zero and so not stored. */
  zeroPages: number;
  /** Pages this checkpoint added to the store: those in its own page file (= pages in format 2). */
  newPages: number;
  /** newPages × PAGE_SIZE: the data bytes of the page file. */
  storedPageBytes: number;
  /** Logical size of the page file `pages/<id>` (= memorySizeBytes rounded up to a page). */
  pageFileBytes: number;
  /** Time spent writing, up to the final batch. */
  durationMs: number;
  /** Where the checkpoint was taken: `os.release()` and `process.arch`. */
  host: { kernelRelease: string; arch: string };
  /**
   * Format 3 only: ids of the earlier checkpoints whose page files hold the pagemap runs
   * marked with a layer (run layer k → layers[k - 1]). Those page files are kept while any
   * checkpoint lists them, even after their own checkpoint is deleted.
   */
  layers?: string[];
  /** Format 4: bytes of the compressed page pack `pages/<id>.pack` on disk. */
  packBytes?: number;
  /** Format 4: of `newPages`, those named in host files (not stored). */
  filePages?: number;
  [extra: string]: unknown;
}

/** Manifest fields a caller may not set through checkpoint metadata. */
export const RESERVED_MANIFEST_FIELDS: ReadonlySet<string> = new Set([
  'magic', 'formatVersion', 'id', 'seq', 'createdMs', 'graphSha256', 'graphBytes', 'graphChunks',
  'pagemapSha256', 'pagemapBytes', 'memorySizeBytes', 'pages', 'zeroPages', 'newPages',
  'storedPageBytes', 'pageFileBytes', 'durationMs', 'host', 'layers', 'packBytes', 'filePages', MANIFEST_CHECKSUM_FIELD,
]);

/**
 * Encode a manifest and seal it: the object is encoded with a last field
 * `manifestSha256` holding 32 zero bytes, then those bytes — the last 32 bytes of the
 * encoding — are replaced by the sha256 of the whole encoding (with the zeros in place).
 * The result is still a single ordinary CBOR map. Any `manifestSha256` in `fields` is
 * replaced.
 */
export function sealManifest(fields: Record<string, unknown>): Buffer {
  const obj: Record<string, unknown> = {};
  for (const k of Object.keys(fields)) if (k !== MANIFEST_CHECKSUM_FIELD) obj[k] = fields[k];
  obj[MANIFEST_CHECKSUM_FIELD] = new Uint8Array(HASH_BYTES);
  const bytes = encodeCbor(obj);
  bytes.set(sha256(bytes), bytes.length - HASH_BYTES);
  return bytes;
}

/**
 * Project a sealed and decoded manifest to its user-visible form: everything but the
 * checksum field.
 */
export function stripManifestChecksum(m: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(m)) if (k !== MANIFEST_CHECKSUM_FIELD) out[k] = m[k];
  return out;
}

/**
 * Check the structure of a decoded format-1 manifest (after its seal and version were
 * checked). Returns a short reason if something is wrong, else undefined.
 */
export function manifestProblem(m: Record<string, unknown>, expectedId: string): string | undefined {
  if (m.id !== expectedId) return `manifest id ${String(m.id)} does not match its key`;
  const count = (k: string): boolean => Number.isSafeInteger(m[k]) && (m[k] as number) >= 0;
  for (const k of ['seq', 'graphBytes', 'graphChunks', 'pagemapBytes', 'memorySizeBytes', 'pages',
    'zeroPages', 'newPages', 'storedPageBytes', 'pageFileBytes']) {
    if (!count(k)) return `manifest field ${k} is not a non-negative integer`;
  }
  for (const k of ['createdMs', 'durationMs']) {
    if (typeof m[k] !== 'number' || !Number.isFinite(m[k])) return `manifest field ${k} is not a number`;
  }
  for (const k of ['graphSha256', 'pagemapSha256']) {
    if (typeof m[k] !== 'string' || !/^[0-9a-f]{64}$/.test(m[k] as string)) return `manifest field ${k} is not a sha256`;
  }
  for (const k of ['name', 'parent', 'note']) {
    if (m[k] !== undefined && typeof m[k] !== 'string') return `manifest field ${k} is not a string`;
  }
  if (m.layers !== undefined && (!Array.isArray(m.layers) || m.layers.some((l) => typeof l !== 'string' || !/^[0-9a-f]{16}$/.test(l)))) {
    return 'manifest field layers is not a list of checkpoint ids';
  }
  const full = m.formatVersion === FULL_FORMAT_VERSION || m.formatVersion === PACK_CHUNK_CHECKED_FORMAT_VERSION;
  if (m.formatVersion !== PACK_FORMAT_VERSION && full !== (m.layers === undefined)) return 'manifest format version and layers disagree';
  if (isPacked(m.formatVersion as number) && !(Number.isSafeInteger(m.packBytes) && Number.isSafeInteger(m.filePages))) return `manifest of format ${String(m.formatVersion)} lacks its pack size`;
  const graphBytes = m.graphBytes as number;
  if (graphBytes < 1 || m.graphChunks !== Math.ceil(graphBytes / GRAPH_CHUNK_BYTES)) {
    return 'manifest graph size and chunk count disagree';
  }
  if ((m.pages as number) > pageCount(m.memorySizeBytes as number)) return 'manifest page count exceeds memory size';
  if (m.pageFileBytes !== pageCount(m.memorySizeBytes as number) * PAGE_SIZE) return 'manifest page file size disagrees with the memory size';
  return undefined;
}

/** Number of pages covering `sizeBytes` (the last one may be partial). */
export function pageCount(sizeBytes: number): number {
  return Math.ceil(sizeBytes / PAGE_SIZE);
}

// ---------------------------------------------------------------------------
// Pagemap


/**
 * Encode a run list (runs in increasing offset order, non-overlapping). A run of layer k ≥ 1 for
 * which `elide(k)` is true is written `[memOffset, pageCount, k]`: its CRC-32s are those layer k's
 * pack lists (format 5).
 */
export function encodePagemap(runs: PagemapRun[], elide?: (layer: number) => boolean): Buffer {
  if (!elide) return encodeCbor(runs);
  return encodeCbor(runs.map((r) => (runLayer(r) && elide(runLayer(r)) ? [r[0], r[1].length / PAGE_CHECK_BYTES, r[2]] : r)));
}

/**
 * The CRC-32s of `n` pages from memory offset `memOffset` that layer `layer` (≥ 1) holds, for a
 * pagemap run that elides them (4 bytes little-endian per page), or one line saying why not.
 */
export type ElidedChecks = (layer: number, memOffset: number, n: number) => Uint8Array | string;

/**
 * Decode and validate a pagemap for a memory file of `memorySizeBytes`. Returns the runs
 * and the total page count, or a short reason string if the value is malformed.
 */
export function decodePagemap(
  bytes: Uint8Array,
  memorySizeBytes: number,
  layers = 0,
  elided?: ElidedChecks,
): { runs: PagemapRun[]; pages: number } | string {
  let value: unknown;
  try {
    value = decodeCbor(bytes);
  } catch {
    return 'pagemap cannot be decoded';
  }
  if (!Array.isArray(value)) return 'pagemap is not a run list';
  const limit = pageCount(memorySizeBytes) * PAGE_SIZE;
  let pages = 0;
  let end = 0;
  for (const run of value as unknown[]) {
    if (!Array.isArray(run) || (run.length !== 2 && run.length !== 3)) return 'pagemap run is malformed';
    if (run.length === 3 && !(Number.isSafeInteger(run[2]) && run[2] >= 1 && run[2] <= layers)) return 'pagemap run names a page file the manifest does not list';
    const [off, hashes] = run as [unknown, unknown];
    if (!Number.isSafeInteger(off) || (off as number) < end || (off as number) % PAGE_SIZE !== 0) {
      return 'pagemap run offset is invalid';
    }
    if (elided && run.length === 3 && Number.isSafeInteger(hashes) && (hashes as number) >= 1) {
      // Format 5: the count of pages whose CRC-32s layer run[2]'s pack holds.
      end = (off as number) + (hashes as number) * PAGE_SIZE;
      if (end > limit) return 'pagemap run extends past the memory size';
      const checks = elided(run[2] as number, off as number, hashes as number);
      if (typeof checks === 'string') return checks;
      (run as unknown[])[1] = checks;
      pages += hashes as number;
      continue;
    }
    if (!(hashes instanceof Uint8Array) || hashes.length === 0 || hashes.length % PAGE_CHECK_BYTES !== 0) {
      return 'pagemap run checksums are malformed';
    }
    const n = hashes.length / PAGE_CHECK_BYTES;
    end = (off as number) + n * PAGE_SIZE;
    if (end > limit) return 'pagemap run extends past the memory size';
    pages += n;
  }
  return { runs: value as PagemapRun[], pages };
}

// ---------------------------------------------------------------------------
// Restore record (meta/<id>)

/**
 * A restore record: everything a restore needs besides the pages, in one file that any
 * number of processes can read without LevelDB's lock. Layout: `SVMETA03`, the sealed
 * manifest's length (u32 little-endian), the quick check of the sealed manifest and the graph
 * (u32 little-endian, {@link recordQuickCheck} of those bytes, which follow it), the sealed
 * manifest (the same bytes as `manifest/<id>`), the CBOR graph (`graphBytes`), the pagemap
 * (`pagemapBytes`). (`SVMETA02` records, read too, have no quick check: 12 bytes of header.)
 */
export function encodeMeta(sealedManifest: Uint8Array, graph: Uint8Array, pagemap: Uint8Array): Buffer {
  const out = Buffer.alloc(16 + sealedManifest.length + graph.length + pagemap.length);
  META_MAGIC.copy(out, 0);
  out.writeUInt32LE(sealedManifest.length, 8);
  out.set(sealedManifest, 16);
  out.set(graph, 16 + sealedManifest.length);
  out.set(pagemap, 16 + sealedManifest.length + graph.length);
  out.writeUInt32LE(recordQuickCheck(out.subarray(16, 16 + sealedManifest.length + graph.length)), 12);
  return out;
}

/**
 * Split a restore record into its sealed manifest and the graph and pagemap bytes after it (no
 * checks beyond the framing), with the quick check its header gives (`SVMETA03`; undefined for
 * an `SVMETA02` record), or a short reason string.
 */
export function splitMeta(bytes: Uint8Array): { manifest: Uint8Array; rest: Uint8Array; quick?: number } | string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const v3 = b.length >= 16 && b.subarray(0, 8).equals(META_MAGIC);
  if (!v3 && (b.length < 12 || !b.subarray(0, 8).equals(META_MAGIC_V2))) return 'restore record has no SVMETA03 (or SVMETA02) header';
  const head = v3 ? 16 : 12;
  const len = b.readUInt32LE(8);
  if (head + len > b.length) return 'restore record is truncated';
  return { manifest: bytes.subarray(head, head + len), rest: bytes.subarray(head + len), quick: v3 ? b.readUInt32LE(12) : undefined };
}

/**
 * The quick check of a restore record's sealed manifest and graph (`bytes`: the two, contiguous):
 * a 32-bit FNV-1a-style hash of its little-endian 32-bit words (the last one zero-padded), seeded
 * with the length. It catches the damage a disk or a copy does (any change of one word changes it;
 * a change of several escapes it with odds of 2^-32) before a restore builds a kernel from the
 * graph; the sha256 checksums in the manifest, checked with the pages, are the full check.
 * Plain JavaScript over words: a restore checks it before node:crypto (~7-10 ms of CPU to load
 * in a fresh process here) or zlib is loaded; ~1 ms for the bench's 35 KB graph.
 */
export function recordQuickCheck(bytes: Uint8Array): number {
  const n = bytes.length >>> 2;
  // A word view needs 4-byte alignment: a record read whole from its file has it (16 + 0).
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : Uint8Array.from(bytes);
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, n);
  let h = (0x811c9dc5 ^ bytes.length) | 0;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ words[i], 0x01000193);
  let tail = 0;
  for (let i = bytes.length - 1; i >= n * 4; i--) tail = (tail << 8) | bytes[i];
  if (bytes.length % 4) h = Math.imul(h ^ tail, 0x01000193);
  return h >>> 0;
}
