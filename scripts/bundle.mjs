// Bundle the CLI into dist/bundle/ with esbuild: one parse instead of ~300 module files
// (rxjs alone costs ~90 ms to load as separate CommonJS files), and the snapshot store
// (LevelDB, cbor-x) split into a chunk loaded only by checkpoint/restore. Native packages
// stay external. Measured here: `run -- /bin/true` 229 ms unbundled → see docs/benchmarks.md.
import { build } from 'esbuild';
import { chmodSync, rmSync } from 'node:fs';

// Chunk names carry content hashes: clear the old ones, or dist/bundle/ fills with stale chunks.
rmSync('dist/bundle', { recursive: true, force: true });

await build({
  // The restore's page verifier runs in a worker thread: its own entry, loaded by URL.
  entryPoints: { main: 'cli/main.ts', 'verify-worker': 'snapshots/verify-worker.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: 'dist/bundle',
  sourcemap: true,
  external: ['koffi', 'level', 'classic-level', 'cbor-x'],
  // Bundled CommonJS (commander, rxjs) may require() Node built-ins.
  banner: { js: "import { createRequire as __svCreateRequire } from 'module'; const require = __svCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
// The `bin` entry is run directly by container engines (ctr --runc-binary, podman --runtime).
chmodSync('dist/bundle/main.js', 0o755);
