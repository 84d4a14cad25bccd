/** Child-process helpers for the benchmark: timed runs, medians, environment. */
import { spawn } from 'node:child_process';
import os from 'node:os';

export interface TimedRun {
  ms: number;
  /** Exit status as a shell shows it (128+N for signal N); -1 if it could not be spawned. */
  status: number;
  stderr: string;
  error?: string;
}

/** Spawn cmd and time it from just before spawn to its exit. stdout is discarded. */
export function timeRun(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<TimedRun> {
  return new Promise((resolve) => {
    let stderr = '';
    let ms = 0;
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 8192) stderr += d.toString(); });
    child.on('exit', () => { ms = Number(process.hrtime.bigint() - t0) / 1e6; });
    child.on('error', (e) => { clearTimeout(timer); resolve({ ms: 0, status: -1, stderr, error: e.message }); });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve({ ms, status: code ?? 128 + (sig ? os.constants.signals[sig] : 0), stderr });
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The caller's environment without the given variables. */
export function envWithout(...names: string[]): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const n of names) delete env[n];
  return env;
}

/** One line saying why a run failed. */
export function failure(r: TimedRun): string {
  if (r.error) return r.error;
  const last = r.stderr.trim().split('\n').filter(Boolean).pop() ?? '';
  return `exit status ${r.status}${last ? `: ${last.slice(0, 200)}` : ''}`;
}
