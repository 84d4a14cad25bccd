/**
 * Entry of the CLI's bundle, dist/bundle/snapvisor.cjs (scripts/bundle.mjs): the whole CLI as one
 * CommonJS script, which the bin (dist/bundle/main.js, cli/launcher.ts) compiles with a V8 code
 * cache and evaluates. Native packages (koffi, cbor-extract) are loaded on first use, not when the
 * bundle is evaluated, through the `require` that `start` installs (globalThis.__snapvisorRequire,
 * used by the stand-ins scripts/bundle.mjs puts in their place): commands that need no FFI
 * (--help, checkpoint, state, kill…) never load koffi.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { main } from './main.js';

interface BundleGlobals {
  __snapvisorRequire?: NodeJS.Require;
  __snapvisorBundleUrl?: string;
}
const g = globalThis as typeof globalThis & BundleGlobals;

/**
 * Run the CLI: `bundleFile` is the absolute path of dist/bundle/snapvisor.cjs (native packages
 * resolve from it, and import.meta.url of bundled modules is its URL), `argv` is process.argv
 * (node, dist/bundle/main.js, arguments…).
 */
export function start(bundleFile: string, argv: string[]): Promise<void> {
  g.__snapvisorRequire = createRequire(bundleFile);
  g.__snapvisorBundleUrl = pathToFileURL(bundleFile).href;
  return main(argv);
}

/**
 * Evaluate the modules that commands import on demand (each is evaluated on its first import):
 * the build does, before it writes the bundle's code cache, so that their code is in it.
 */
export async function loadOnDemandModules(): Promise<void> {
  await Promise.all([
    import('./run.js'), import('./pool.js'), import('./oci/init.js'), import('./demo.js'), import('./inspect.js'),
    import('./progress.js'), import('./syscalls.js'), import('../snapshots/checkpoint.js'), import('../snapshots/store.js'),
    import('../snapshots/export.js'), import('../snapshots/inspect.js'), import('../snapshots/pages.js'),
  ]);
}
