/**
 * Running a batch of generated programs through the executor natively and under
 * snapvisor, and comparing the traces (used by the vitest property and by
 * `npm run property`, property-tests/difftest/campaign.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Program, programText } from './program.js';
import { compareProgram, parseTrace, type Difference, type ProgramTrace } from './trace.js';
import { KNOWN_DIFFERENCES, type KnownDifference } from './known-differences.js';

/** The repository root (the directory holding package.json above this file, in src or in dist). */
export const REPO_ROOT = (() => {
  let d = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(d, 'package.json'))) {
    const up = path.dirname(d);
    if (up === d) throw new Error('difftest: cannot find the repository root');
    d = up;
  }
  return d;
})();
const CLI = process.env.SNAPVISOR_CLI ? path.resolve(process.env.SNAPVISOR_CLI) : path.join(REPO_ROOT, 'dist', 'bundle', 'main.js');
const EXECUTOR_SOURCE = path.join(REPO_ROOT, 'property-tests', 'difftest', 'executor.c');

/** A scratch area for one test process: the compiled executor and the batches' directories. */
export class Workspace {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-difftest-'));
  readonly executor: string;
  private batches = 0;

  constructor() {
    fs.chmodSync(this.dir, 0o755); // programs that drop to uid 1000 must still reach their directories
    this.executor = path.join(this.dir, 'executor');
    const r = spawnSync('gcc', ['-static', '-O1', '-Wall', '-o', this.executor, EXECUTOR_SOURCE], { encoding: 'utf8' });
    if (r.error) throw new Error(`difftest: cannot run gcc (${r.error.message}); the differential tests need gcc and a static libc`);
    if (r.status !== 0) throw new Error(`difftest: gcc failed on executor.c:\n${r.stderr}`);
  }

  /** A fresh empty directory (mode 0755). */
  freshDir(name: string): string {
    const d = path.join(this.dir, `${name}-${++this.batches}`);
    fs.mkdirSync(d, { mode: 0o755 });
    fs.chmodSync(d, 0o755);
    return d;
  }

  dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Run { status: number; stdout: string; stderr: string; timedOut: boolean }

/** Run argv to its end (killed after timeoutMs). */
export function runProcess(argv: string[], cwd: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [], err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    // A leftover grandchild may hold the pipes open after the child is killed: stop reading them too.
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); setTimeout(() => { child.stdout.destroy(); child.stderr.destroy(); }, 1000).unref(); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}

/** The programs file of a batch: program k gets id k. */
export function batchText(programs: Program[]): string {
  return programs.map((p, k) => programText(p, k)).join('');
}

/** A difference between the two traces of one program, with the known difference that explains it (if any). */
export interface Finding { diff: Difference; known?: KnownDifference; program: Program }

export interface BatchResult {
  findings: Finding[];
  native: Map<number, ProgramTrace>;
  sandbox: Map<number, ProgramTrace>;
  sandboxStderr: string;
}

/** Classify a difference against the known-differences table. */
export function explain(d: Difference, program: Program): KnownDifference | undefined {
  const step = d.op === 'end' ? '' : stepLine(program, d.at);
  return KNOWN_DIFFERENCES.find((k) => k.matches(d, step));
}

/** Step `at` of a program in executor text form (`op arg…`, references as @k/#k). */
export function stepLine(program: Program, at: number): string {
  return programText(program, 0).split('\n')[at + 1] ?? '';
}

/**
 * Run `programs` natively (a child process in a scratch directory) and under snapvisor (in
 * another, empty scratch directory: the sandbox sees it through the host root and writes
 * to its own upper layer), both at once, and compare every program's traces.
 * Throws if either run fails as a whole (timeout, snapvisor internal error).
 */
export async function runBatch(ws: Workspace, programs: Program[], timeoutMs = 120_000): Promise<BatchResult> {
  const progFile = path.join(ws.freshDir('programs'), 'programs.txt');
  fs.writeFileSync(progFile, batchText(programs));
  const nativeDir = ws.freshDir('native');
  const sandboxDir = ws.freshDir('sandbox');
  const [nat, sbx] = await Promise.all([
    runProcess([ws.executor, progFile], nativeDir, timeoutMs),
    runProcess([process.execPath, CLI, 'run', '--cwd', sandboxDir, '--', ws.executor, progFile], REPO_ROOT, timeoutMs),
  ]);
  fs.rmSync(nativeDir, { recursive: true, force: true });
  fs.rmSync(sandboxDir, { recursive: true, force: true });
  if (nat.timedOut || nat.status !== 0) throw new Error(`difftest: the native executor failed (status ${nat.status}${nat.timedOut ? ', timed out' : ''}): ${nat.stderr.slice(-500)}`);
  if (sbx.timedOut) throw new Error(`difftest: snapvisor did not finish the batch within ${timeoutMs} ms; trace so far ends:\n${sbx.stdout.slice(-800)}\nstderr: ${sbx.stderr.slice(-800)}`);
  if (/internal error|^\s+at /m.test(sbx.stderr)) throw new Error(`difftest: snapvisor reported an internal error:\n${sbx.stderr.slice(-2000)}`);
  const native = parseTrace(nat.stdout), sandbox = parseTrace(sbx.stdout);
  const findings: Finding[] = [];
  for (const [id, t] of native) {
    const diff = compareProgram(t, sandbox.get(id));
    if (diff) findings.push({ diff, known: explain(diff, programs[id]), program: programs[id] });
  }
  return { findings, native, sandbox, sandboxStderr: sbx.stderr };
}

/** A readable account of one unexplained difference: the program, the step, both lines. */
export function describeFinding(f: Finding, native?: ProgramTrace, sandbox?: ProgramTrace): string {
  const lines = [
    `program ${f.diff.programId} differs at ${f.diff.op === 'end' ? 'its end' : `step ${f.diff.at} (${f.diff.op})`}:`,
    `  native:    ${f.diff.native}`,
    `  snapvisor: ${f.diff.sandbox}`,
    'program:',
    ...programText(f.program, f.diff.programId).trimEnd().split('\n').slice(1).map((l, k) => `  ${k}: ${l}`),
  ];
  if (native && sandbox) {
    lines.push('native trace:', ...native.steps.map((s) => '  ' + s.raw), `  E ${native.end}`);
    lines.push('snapvisor trace:', ...sandbox.steps.map((s) => '  ' + s.raw), `  E ${sandbox.end}`);
  }
  return lines.join('\n');
}
