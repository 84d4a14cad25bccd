/**
 * One checkpoint/restore round of the python3 counter, driven through the real CLI
 * (`run --name`, `checkpoint`, `restore`) as separate processes, like cli/demo.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import readline from 'node:readline';

/** Prints 1, 2, 3, … every 50 ms; far more lines than a round needs (the restore is stopped after its first). */
export const COUNTER = ['import time', 'for i in range(1, 2001):', '    print(i, flush=True)', '    time.sleep(0.05)'].join('\n');

export interface CheckpointRound {
  /** Wall time of the `checkpoint` command, spawn to exit. */
  checkpointMs: number;
  /** The "guest paused N ms" figure the checkpoint command printed. */
  pausedMs: number;
  /** The "written in N ms" figure it printed. */
  writtenMs: number;
  /** The page count it printed. */
  pages: number;
  /** From spawning `restore` to its first stdout line (the guest's next output). */
  restoreFirstOutputMs: number;
  lastBefore: number;
  firstAfter: number;
  id: string;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

function exited(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(child.exitCode ?? 128 + os.constants.signals[child.signalCode!]);
      return;
    }
    child.on('close', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0)));
  });
}

/** Run one round; throws with a one-line reason on failure. */
export async function checkpointRound(node: string, cli: string, env: NodeJS.ProcessEnv, root: string, store: string, name: string, linesBefore = 10): Promise<CheckpointRound> {
  const sv = (args: string[]) => spawn(node, [cli, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const errors: string[] = [];
  const keepErr = (c: ChildProcess, who: string) => c.stderr!.on('data', (d: Buffer) => errors.push(`${who}: ${d.toString().trim()}`));

  // 1. The original sandbox.
  const run = sv(['run', '--name', name, '--cwd', '/tmp', '--', '/usr/bin/python3', '-c', COUNTER]);
  keepErr(run, 'run');
  const runDone = exited(run);
  const before: number[] = [];
  let checkpointStarted: Promise<{ ms: number; out: string; status: number }> | undefined;
  const watchdog = setTimeout(() => run.kill('SIGKILL'), 60_000);
  readline.createInterface({ input: run.stdout! }).on('line', (l) => {
    before.push(Number(l));
    if (before.length === linesBefore && !checkpointStarted) {
      // 2. The checkpoint, timed from spawn to exit.
      checkpointStarted = new Promise((resolve) => {
        const t0 = now();
        const c = sv(['checkpoint', name, '--store', store]);
        keepErr(c, 'checkpoint');
        let out = '';
        c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
        c.on('exit', () => { const ms = now() - t0; exited(c).then((status) => resolve({ ms, out, status })); });
      });
    }
  });
  const runStatus = await runDone;
  clearTimeout(watchdog);
  if (!checkpointStarted) throw new Error(`the counter ended (status ${runStatus}) after ${before.length} lines, before the checkpoint: ${errors.join('; ')}`);
  const cp = await checkpointStarted;
  if (cp.status !== 0) throw new Error(`checkpoint exited ${cp.status}: ${errors.join('; ')}`);
  const paused = /guest paused (\d+(?:\.\d+)?) ms/.exec(cp.out);
  const written = /written in (\d+(?:\.\d+)?) ms/.exec(cp.out);
  const pages = /(\d+) pages/.exec(cp.out);
  const id = cp.out.trim().split(/\s+/).pop() ?? '';
  if (!paused || !id) throw new Error(`could not parse the checkpoint output: ${JSON.stringify(cp.out)}`);
  const lastBefore = before[before.length - 1];

  // 3. The restore, timed from spawn to its first line; then stopped (SIGTERM kills its guest).
  const t0 = now();
  const restore = sv(['restore', id, '--store', store]);
  keepErr(restore, 'restore');
  const restoreDone = exited(restore);
  const guard = setTimeout(() => restore.kill('SIGKILL'), 60_000);
  const first = await new Promise<{ ms: number; line: string } | undefined>((resolve) => {
    const rl = readline.createInterface({ input: restore.stdout! });
    rl.once('line', (line) => { resolve({ ms: now() - t0, line }); rl.close(); restore.kill('SIGTERM'); });
    restoreDone.then(() => resolve(undefined));
  });
  await restoreDone;
  clearTimeout(guard);
  if (!first) throw new Error(`restore printed nothing: ${errors.join('; ')}`);
  const firstAfter = Number(first.line);
  if (firstAfter !== lastBefore + 1) throw new Error(`restore went on from ${first.line}, expected ${lastBefore + 1}`);
  return { checkpointMs: cp.ms, pausedMs: Number(paused[1]), writtenMs: written ? Number(written[1]) : NaN, pages: pages ? Number(pages[1]) : NaN, restoreFirstOutputMs: first.ms, lastBefore, firstAfter, id };
}
