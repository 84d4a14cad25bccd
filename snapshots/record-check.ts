/**
 * The checksums of a restore record (docs/snapshot-format.md, "Restore record"): the manifest's
 * seal and the sha256 of its graph and of its pagemap. A module of its own that loads no native
 * addon, so the restore's page verifier (./verify-worker.ts) can check a record too: a restore of
 * a large checkpoint checks its record there, in the background with its pages, and node:crypto
 * (with node:stream, which it loads: ~5 ms) is then never loaded on the way to the guest.
 */
import { createHash } from 'node:crypto';

/** Size of a sha256 digest, in bytes. */
export const HASH_BYTES = 32;

/** sha256 of `data` as 32 raw bytes. */
export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}
/** sha256 of `data` as 64 lowercase hex characters. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * True if `bytes` carries a valid seal (format.ts sealManifest): its last 32 bytes are the
 * sha256 of `bytes` with those 32 bytes zeroed. Checks raw bytes only; does not decode.
 */
export function manifestSealIsValid(bytes: Uint8Array): boolean {
  if (bytes.length <= HASH_BYTES) return false;
  const copy = Buffer.from(bytes);
  const stored = Buffer.from(copy.subarray(copy.length - HASH_BYTES));
  copy.fill(0, copy.length - HASH_BYTES);
  return sha256(copy).equals(stored);
}

/** The parts of a restore record its checksums cover, and the graph's and pagemap's sha256 (hex) its manifest gives. */
export interface RecordChecksums {
  manifest: Uint8Array;
  graph: Uint8Array;
  pagemap: Uint8Array;
  graphSha256: string;
  pagemapSha256: string;
}

/**
 * Which checksum of a restore record fails, first: 'manifest' (its seal), 'graph' or
 * 'pagemap'; undefined when all hold.
 */
export function recordChecksumFailure(r: RecordChecksums): 'manifest' | 'graph' | 'pagemap' | undefined {
  if (!manifestSealIsValid(r.manifest)) return 'manifest';
  if (sha256Hex(r.graph) !== r.graphSha256) return 'graph';
  if (sha256Hex(r.pagemap) !== r.pagemapSha256) return 'pagemap';
  return undefined;
}

/** The reason a record whose `failure` is given is corrupt, as `checkpoint ID is corrupt: REASON` says it. */
export function recordChecksumReason(failure: 'manifest' | 'graph' | 'pagemap'): string {
  return failure === 'manifest' ? 'its manifest fails its checksum (seal)' : `${failure} checksum mismatch in its restore record`;
}
