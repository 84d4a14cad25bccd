/**
 * Save and restore, declared per object kind (compare Firecracker's persist.rs files): each
 * kind of object in the state graph says where its records live in the graph (their type is
 * the record's TypeScript type, declared beside its code) and how its runtime part is rebuilt
 * after a restore. The declarations live next to each object's code; this module lists them
 * in the order a restore runs them. Saving is the same for every kind: the graph is plain data,
 * deep-copied at a quiescent point and encoded with cbor-x (snapshots/).
 */
import type { Kernel } from './kernel.js';
import type { KernelState } from './state.js';

export interface PersistedKind<T = unknown> {
  /** Name of the kind ("task", "pipe", "file:pipe", …). */
  kind: string;
  /** Its records in a graph, by id (or one record for a singleton). */
  records(g: KernelState): Array<[string, T]>;
  /**
   * How the runtime part is rebuilt when a restored graph is brought to life, before any task
   * runs; returns why it cannot be, in one line. Absent: the records are plain data with no
   * runtime part (or one rebuilt lazily on first use, as `rebuilds` says).
   */
  restore?(k: Kernel): string | undefined;
  /** One line: what the runtime part is and how it comes back (for docs and reviewers). */
  rebuilds: string;
}

/** Records of a graph collection keyed by id. */
export const byId = <T>(c: Record<number | string, T> | undefined): Array<[string, T]> => Object.entries(c ?? {});

/** Declare a kind (identity: the type parameter ties `records` to the record type). */
export function persisted<T>(k: PersistedKind<T>): PersistedKind<T> {
  return k;
}
