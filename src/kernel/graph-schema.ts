/**
 * The state graph's schema version and the migrations between versions. A checkpoint
 * records the version of the graph it holds (`KernelState.graphVersion`); a restore brings
 * an older graph up to GRAPH_VERSION one step at a time, or refuses it — newer than this
 * build, or older than any migration reaches — with one line naming both versions.
 *
 * Changing the graph's shape: bump GRAPH_VERSION (src/kernel/state.ts) and add a migration
 * from the previous version here, with a test in test/persist.test.ts.
 */
import { GRAPH_VERSION } from './state.js';

/** One step: turns a graph of version `from` into one of version `from + 1`, in place. */
interface Migration {
  /** What changed, one line. */
  what: string;
  migrate(g: Record<string, unknown>): void;
}

/** Migrations by the version they start from. */
const MIGRATIONS: Record<number, Migration> = {
  1: {
    what: 'open files are a union by kind: directory records lose the unused `content` of O_PATH opens and the stray `pidfdTgid` pidfd_send_signal wrote',
    migrate(g) {
      for (const f of Object.values((g.openFiles ?? {}) as Record<string, Record<string, unknown>>)) {
        if (f.kind === 'dir') { delete f.content; delete f.pidfdTgid; }
      }
    },
  },
};

/** The oldest graph version this build can migrate from. */
export const OLDEST_MIGRATABLE = Math.min(GRAPH_VERSION, ...Object.keys(MIGRATIONS).map(Number));

/** A graph this build cannot bring to its version; the message is one line naming both versions. */
export class GraphVersionError extends Error {}

/**
 * Bring a decoded graph to GRAPH_VERSION in place. Returns the versions it was migrated
 * from (empty when it was current). Throws GraphVersionError for a newer graph, a version
 * no migration starts from, or a graph without a version.
 */
export function migrateGraph(g: Record<string, unknown>): number[] {
  const v = g.graphVersion;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new GraphVersionError(`checkpoint graph has no version (this snapvisor reads graph version ${GRAPH_VERSION})`);
  if (v > GRAPH_VERSION) throw new GraphVersionError(`checkpoint graph version ${v} is newer than this snapvisor's graph version ${GRAPH_VERSION}: restore it with a newer snapvisor`);
  const steps: number[] = [];
  for (let at = v; at < GRAPH_VERSION; at++) {
    const m = MIGRATIONS[at];
    if (!m) throw new GraphVersionError(`checkpoint graph version ${v} is too old for this snapvisor's graph version ${GRAPH_VERSION} (migrations start at version ${OLDEST_MIGRATABLE})`);
    m.migrate(g);
    g.graphVersion = at + 1;
    steps.push(at);
  }
  return steps;
}
