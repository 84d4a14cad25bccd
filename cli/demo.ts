/**
 * `snapvisor demo`: the product in one minute. A python3 counter runs in a named
 * sandbox; mid-way it is checkpointed (which kills it), then restored from the store,
 * and the counter goes on from the next number: nothing lost, nothing repeated.
 * It drives the real CLI (`run --name`, `checkpoint`, `restore`) as separate processes.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { launcherEnv } from './node-env.js';

/** The bin beside this module (found when used: the CLI's startup snapshot is built elsewhere). */
const cliPath = () => path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');
const COUNTER = [
  'import os, time',
  'log = open("/tmp/demo-counter.log", "a")',
  'for i in range(1, 61):',
  '    print(f"count {i:2}  pid {os.getpid()}  cwd {os.getcwd()}  DEMO_COLOR={os.environ[\'DEMO_COLOR\']}", flush=True)',
  '    log.write(f"{i}\\n"); log.flush()',
  '    time.sleep(0.05)',
  'log.seek(0)',
  'print("log lines written across both runs:", len(open("/tmp/demo-counter.log").read().split()))',
].join('\n');

// Bold only on a terminal: piped or logged output stays plain text.
const say = (s: string) => process.stdout.write(process.stdout.isTTY ? `\x1b[1mdemo:\x1b[0m ${s}\n` : `demo: ${s}\n`);

function cli(args: string[], onLine?: (l: string) => void): { done: Promise<number>; out: string[] } {
  const child = spawn(process.execPath, [cliPath(), ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: launcherEnv() });
  const out: string[] = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => { out.push(l); onLine?.(l); });
  const done = new Promise<number>((resolve) => child.on('close', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0))));
  return { done, out };
}

export async function demoCommand(opts: { store?: string }): Promise<number> {
  const store = opts.store ?? fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-demo-'));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-demo-root-'));
  const name = `demo-${process.pid}`;
  const counters: number[] = [];
  const show = (prefix: string) => (l: string) => {
    process.stdout.write(`  ${prefix} | ${l}\n`);
    const m = /^count\s+(\d+)/.exec(l);
    if (m) counters.push(Number(m[1]));
  };
  say(`running a python3 counter in sandbox '${name}' (every syscall served by snapvisor's kernel)`);
  let requested = false;
  let checkpointDone: Promise<number> | undefined;
  let checkpointOut: string[] = [];
  const run = cli(['--root', root, 'run', '--name', name, '--cwd', '/tmp', '--env', 'DEMO_COLOR=teal', '--', '/usr/bin/python3', '-c', COUNTER], (l) => {
    show('original')(l);
    if (!requested && counters.length >= 12) {
      requested = true;
      say(`checkpointing '${name}' into ${store} …`);
      const c = cli(['--root', root, 'checkpoint', name, '--store', store]);
      checkpointDone = c.done;
      checkpointOut = c.out;
    }
  });
  const runStatus = await run.done;
  if (!checkpointDone) { say(`the counter ended (status ${runStatus}) before it was checkpointed`); return 1; }
  const cpStatus = await checkpointDone;
  if (cpStatus !== 0) { say('checkpoint failed'); return 1; }
  const line = checkpointOut.join(' ');
  const id = line.trim().split(/\s+/).pop()!;
  say(line);
  say(`the original sandbox is gone (exit status ${runStatus}: killed after the checkpoint). Last number it printed: ${counters[counters.length - 1]}`);
  const lastBefore = counters[counters.length - 1];
  say(`restoring checkpoint ${id} …`);
  const before = counters.length;
  const restore = cli(['--root', root, 'restore', id, '--store', store], show('restored'));
  const restoreStatus = await restore.done;
  const firstAfter = counters[before];
  fs.rmSync(root, { recursive: true, force: true });
  if (restoreStatus !== 0 || firstAfter !== lastBefore + 1 || counters[counters.length - 1] !== 60) {
    say(`FAILED: restore exited ${restoreStatus}; first number after restore ${firstAfter}, expected ${lastBefore + 1}`);
    return 1;
  }
  say(`the restored counter went on from ${firstAfter} to 60: nothing lost, nothing repeated; pid, cwd, environment and its open log file came back with it.`);
  if (!opts.store) { fs.rmSync(store, { recursive: true, force: true }); say(`removed the demo's store ${store} (demo --store DIR keeps it, to restore or inspect ${id} again)`); }
  return 0;
}
