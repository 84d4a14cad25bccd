/**
 * Entry of the restore bundle, dist/bundle/restore.cjs (scripts/bundle.mjs): `restore` in the
 * shapes cli/pool-registry.ts parseLightRestore takes (`[--root DIR] restore ID [--store DIR]
 * [--no-pool]`) without the CLI's argument parser, OCI runtime, pools, inspect or export: the
 * kernel, the store's restore path and cli/run.ts's restoreCommand only. The bin's launcher
 * (cli/launcher.ts) compiles it with its own V8 code cache (restore.cjs.cache) when no warm pool
 * takes the restore; any other shape goes through the CLI's bundle (cli/bundle-entry.ts), which
 * restores the same way. Native packages load on first use, as in the CLI's bundle.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { fail } from './control.js';
import { restoreCommand } from './run.js';

interface BundleGlobals {
  __snapvisorRequire?: NodeJS.Require;
  __snapvisorBundleUrl?: string;
  /** Set by the launcher when this restore should write the run-time code cache (cli/launcher.ts). */
  __snapvisorSaveRestoreCache?: () => void;
}
const g = globalThis as typeof globalThis & BundleGlobals;

/**
 * Restore checkpoint `id` (a full id or a unique prefix) of store `store` (default: the default
 * store) as `snapvisor [--root ROOT] restore ID [--store STORE]` does, and set process.exitCode
 * to its status (the guest's, 125 when it cannot be restored, 1 for an unexpected error, after
 * one line). `bundleFile` is the absolute path of dist/bundle/restore.cjs.
 */
export async function restore(bundleFile: string, root: string | undefined, id: string, store: string | undefined): Promise<void> {
  g.__snapvisorRequire = createRequire(bundleFile);
  // Made when first read (a worker's URL, after the guest runs): pathToFileURL, the first URL this
  // process makes, cost 0.7 ms of the restore's main thread before its guest ran (cpu profile).
  let url: string | undefined;
  Object.defineProperty(g, '__snapvisorBundleUrl', { configurable: true, enumerable: false, get: () => url ??= pathToFileURL(bundleFile).href });
  try {
    // Once the guest has answered, the code cache of everything this restore compiled, for the next
    // restores (the launcher says whether one is wanted: the build's cache was used, or none).
    process.exitCode = await restoreCommand(root, id, { store, onFirstOutput: g.__snapvisorSaveRestoreCache });
  } catch (e) {
    // As cli/main.ts reports what escapes a command.
    fail((e as Error).message);
    process.exitCode = 1;
  }
}

/** Evaluate the modules a restore imports on demand (the build does, before it writes this bundle's code cache). */
export async function loadOnDemandModules(): Promise<void> {
  await Promise.all([import('../snapshots/checkpoint.js'), import('../snapshots/store.js')]);
}
