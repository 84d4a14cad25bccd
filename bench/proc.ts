/** Child-process helpers for the benchmark: timed runs, medians, environment. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
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

/** Pids of `root` and all its descendants (from /proc/PID/stat's ppid field). */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* exited meanwhile */ }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  return out;
}

/** Summed PSS and PSS of shared memory (Pss_Shmem) of processes, bytes, from /proc/PID/smaps_rollup (gone processes count 0). */
export function pssOf(pids: number[]): { pss: number; shmem: number } {
  let pss = 0, shmem = 0;
  for (const p of pids) {
    let text: string;
    try { text = fs.readFileSync(`/proc/${p}/smaps_rollup`, 'latin1'); } catch { continue; }
    pss += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0) * 1024;
    shmem += Number(/^Pss_Shmem:\s+(\d+)/m.exec(text)?.[1] ?? 0) * 1024;
  }
  return { pss, shmem };
}
