/**
 * Checkpoint and restore of a whole sandbox: the kernel's state graph and its memory
 * file, through the store (snapshots/store.ts). The guest is stopped only while the
 * graph and the populated memory ranges are copied (`Kernel.capture`); the store write
 * happens after, with the guest running again if it is to go on.
 */
import type { Kernel } from '../src/kernel/kernel.js';
import { AssembleOptions, assembleKernel } from '../src/sandbox/compose.js';
import { GRAPH_VERSION, KernelState } from '../src/kernel/state.js';
import { CheckpointSummary, SnapshotError, loadCheckpoint, restoreMemory, writeCheckpoint } from './store.js';

export interface CheckpointResult extends CheckpointSummary {
  /** Time the guest was stopped (quiesce + capture), ms. */
  pauseMs: number;
}

/**
 * Checkpoint a running kernel into `storeDir`. With `leaveRunning` the guest continues;
 * otherwise it is killed once the checkpoint is safely written. If the write fails the
 * guest is never killed (a failed checkpoint loses nothing). Throws SnapshotError.
 */
export async function checkpointKernel(kernel: Kernel, storeDir: string, opts: { leaveRunning: boolean; name?: string; parent?: string }): Promise<CheckpointResult> {
  const t0 = performance.now();
  await kernel.quiesce();
  if (kernel.exitInfo) throw new SnapshotError('the sandbox exited before it could be checkpointed');
  let captured;
  try {
    // Ending the sandbox: it stays frozen until written. Running on: copy-on-write, held until written.
    captured = kernel.capture(opts.leaveRunning);
  } catch (e) {
    kernel.thaw();
    throw e;
  }
  const pauseMs = performance.now() - t0;
  if (opts.leaveRunning) kernel.thaw();
  let summary: CheckpointSummary;
  try {
    summary = await writeCheckpoint(storeDir, captured.graph, captured.memory, { name: opts.name, parent: opts.parent });
  } catch (e) {
    if (!opts.leaveRunning) kernel.thaw();
    throw e;
  } finally {
    captured.release();
  }
  if (!opts.leaveRunning) kernel.kill();
  return { ...summary, pauseMs };
}

/** Check that a decoded graph has the shape this kernel writes (refuse anything else before starting a guest). */
function validateGraph(g: unknown): asserts g is KernelState {
  const s = g as KernelState;
  if (!s || typeof s !== 'object' || s.graphVersion !== GRAPH_VERSION || typeof s.tasks !== 'object' || typeof s.memoryFile !== 'object' || typeof s.config?.rootfs !== 'string') {
    throw new SnapshotError(`checkpoint graph is not a snapvisor state graph of version ${GRAPH_VERSION}`);
  }
}

/**
 * Rebuild a kernel from checkpoint `id`: decode and check the graph, refill a fresh
 * memory file (page hashes verified), start new stubs, replay mappings and registers.
 * The returned kernel is ready to `run()`. Throws SnapshotError before any guest starts.
 */
export async function restoreKernel(storeDir: string, id: string, opts: AssembleOptions = {}): Promise<{ kernel: Kernel; id: string; restoreMs: number }> {
  const t0 = performance.now();
  const loaded = await loadCheckpoint(storeDir, id);
  validateGraph(loaded.graph);
  const kernel = assembleKernel(loaded.graph, opts);
  try {
    kernel.hostFiles.verifyAll();
    await restoreMemory(storeDir, loaded.id, (off, data) => kernel.mf.write(off, data));
    kernel.resumeRestored();
  } catch (e) {
    kernel.destroy();
    throw e;
  }
  return { kernel, id: loaded.id, restoreMs: performance.now() - t0 };
}
