/**
 * Every module under src/, platforms/ and snapshots/ imports on its own, first, in a fresh
 * module graph (one `node` process per module, on the built dist/): no import cycle leaves
 * a binding uninitialised (a ReferenceError at import), no module depends on another
 * having been loaded before it. The layering rules themselves are checked by
 * dependency-cruiser (`npm run lint:layers`, .dependency-cruiser.cjs).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

/** Source modules (.ts, not .d.ts) under the given top-level folders, as repo-relative paths. */
function sourceModules(dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(path.join(REPO_ROOT, d), { withFileTypes: true })) {
      const rel = path.join(d, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}

/** Import one module in a new node process; resolves to '' or the error it printed. */
function importAlone(jsPath: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e',
      'import(process.argv[1]).then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e).split("\\n").slice(0, 3).join(" | ")); process.exit(1); })',
      new URL('file://' + jsPath).href], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? '' : (err.trim() || `exit ${code ?? signal}`));
    });
  });
}

describe('module graph', () => {
  it('every module of src/, platforms/, snapshots/ imports first, on its own', async () => {
    const modules = sourceModules(['src', 'platforms', 'snapshots']);
    expect(modules.length).toBeGreaterThan(50);
    const failures: string[] = [];
    const queue = [...modules];
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
        const js = path.join(REPO_ROOT, 'dist', m.replace(/\.ts$/, '.js'));
        if (!fs.existsSync(js)) { failures.push(`${m}: not built (${js} missing; run npm run build)`); continue; }
        const err = await importAlone(js);
        if (err) failures.push(`${m}: ${err}`);
      }
    }));
    expect(failures).toEqual([]);
  }, 600_000);
});
