/**
 * `npm run bench`: snapvisor against native execution and gVisor (runsc, ptrace
 * platform), side by side, in one run (docs/benchmarks.md explains every number).
 *
 *  1. Time per trapped syscall: a generated static guest makes N getppid calls, then
 *     exit_group(0); per-syscall = (time(N) − time(0)) / N, so start-up cancels out.
 *  2. Start-up: wall time of `run -- /bin/true`.
 *  3. The warmed-up python3 workload of issue 7 (bench/restore-bench.ts): cold start,
 *     checkpoint, stored bytes and restore to the next output line, under snapvisor and
 *     under runsc (an OCI bundle, runsc checkpoint/restore), side by side.
 *  4. A warm pool of that workload (bench/pool-bench.ts, docs/pools.md): take → first
 *     output byte, p50/p99 over 50 takes, and the `pool take` command's own start-up.
 *  5. Loopback TCP throughput (bench/tcp-bench.ts): 256 MiB through one connection, natively,
 *     with run --network=host and with run --network=sandbox.
 *
 * BENCH_SECTIONS=N[,N…] runs only those sections (e.g. BENCH_SECTIONS=5 npm run bench).
 *
 * Every node child runs with NODE_EXTRA_CA_CERTS unset (loading a CA bundle adds
 * start-up time to every node process). If runsc is missing or fails, its rows say
 * n/a with the reason, and the benchmark still exits 0.
 */
import { ctrRunBench, runscWrapper, type CtrRow } from './ctr-bench.js';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTempDir, writeGetppidLoop } from './getppid-elf.js';
import { envWithout, failure, median, timeRun, type TimedRun } from './proc.js';
import { type CheckpointFigures, cloneMemoryRound, incrementalRound, nativeColdStart, poolRestoreRound, runscRound, snapvisorRound, type PoolRestoreRound, type RunscRound, type SnapvisorRound } from './restore-bench.js';
import { anyPoolRound, pct, poolRound } from './pool-bench.js';
import { buildTcpBench, mibPerSecond, throughputRun, type ThroughputRun } from './tcp-bench.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(HERE, '..', 'bundle', 'main.js');
const NODE = process.execPath;
const RUNSC = 'runsc';
/** Timed `ctr run`s per runtime in section 6. */
const CTR_REPS = 5;
const RUNSC_ARGS = ['--platform=ptrace', '--network=none', 'do'];

const SYSCALL_REPS = 3;
const STARTUP_REPS = 5;
/** Restores timed per configuration (the checkpoint is taken once). */
const RESTORE_REPS = 3;
/** MiB through the throughput bench's connection, and runs per mechanism (the sandbox's own network is the slowest: one run). */
const TCP_MIB = 256;
const TCP_REPS = 3;
/** Objects of 1,000 bytes the workload allocates (~200 MB); BENCH_OBJECTS overrides (e.g. 2000000 for ~2 GB). */
const OBJECTS = Number(process.env.BENCH_OBJECTS ?? 200_000);

/** BENCH_SECTIONS=5 (or 1,2): only these sections; all when unset. */
const section = (n: number): boolean => !process.env.BENCH_SECTIONS || process.env.BENCH_SECTIONS.split(',').map(Number).includes(n);
const progress = (s: string) => { if (process.stderr.isTTY) process.stderr.write(`\x1b[2m… ${s}\x1b[0m\n`); };
const out = (s = '') => process.stdout.write(s + '\n');

const CA_VAR = 'NODE_EXTRA_CA_CERTS';
const caWasSet = process.env[CA_VAR] !== undefined;
const SV_ENV = envWithout(CA_VAR);
const SV_NOPIN_ENV = { ...SV_ENV, SNAPVISOR_NO_PIN: '1' };

interface Mechanism {
  label: string;
  /** Syscalls per measured run, chosen so one run takes ~1–2 s on the 2-vCPU VM. */
  n: number;
  cmd: (file: string) => [string, string[]];
  env?: NodeJS.ProcessEnv;
}

const NATIVE: Mechanism = { label: 'native', n: 15_000_000, cmd: (f) => [f, []] };
const SNAPVISOR: Mechanism = { label: 'snapvisor (ptrace, pinned)', n: 200_000, cmd: (f) => [NODE, [CLI, 'run', '--', f]], env: SV_ENV };
const SNAPVISOR_NOPIN: Mechanism = { label: 'snapvisor SNAPVISOR_NO_PIN=1', n: 20_000, cmd: (f) => [NODE, [CLI, 'run', '--', f]], env: SV_NOPIN_ENV };
const RUNSC_PTRACE: Mechanism = { label: 'gVisor runsc --platform=ptrace', n: 20_000, cmd: (f) => [RUNSC, [...RUNSC_ARGS, f]] };

// ---------------------------------------------------------------------------- formatting

function table(head: string[], rows: string[][], rightAlignFrom = 1): string[] {
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i >= rightAlignFrom ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(line)];
}

/** Bytes as MiB with one decimal ('n/a' when unknown). */
const mib = (b: number | undefined): string => (b === undefined ? 'n/a' : `${(b / 1048576).toFixed(1)} MiB`);
const ratio = (a: number | undefined, b: number | undefined): string => {
  if (a === undefined || b === undefined || !(b > 0)) return 'n/a';
  const r = a / b;
  return (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r >= 1 ? r.toFixed(2) : r.toFixed(3)) + '×';
};
const num = (x: number | undefined, digits: number) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(digits));
const thousands = (n: number) => n.toLocaleString('en-US');

function sh(cmd: string, args: string[]): string {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return 'unknown'; }
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  return m ? m[1].trim() : os.cpus()[0]?.model ?? 'unknown';
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// ---------------------------------------------------------------------------- measurements

interface Result { value?: number; note?: string; min?: number; max?: number }

async function runOk(m: Mechanism, file: string): Promise<TimedRun & { ok: boolean }> {
  const [cmd, args] = m.cmd(file);
  const r = await timeRun(cmd, args, m.env ?? process.env);
  return { ...r, ok: r.status === 0 && !r.error };
}

/** Median over reps of (time(N) − time(0)) / N, in µs. */
async function perSyscall(m: Mechanism, dir: string): Promise<Result> {
  const zero = writeGetppidLoop(dir, 0);
  const many = writeGetppidLoop(dir, m.n);
  const per: number[] = [];
  for (let i = 0; i < SYSCALL_REPS; i++) {
    progress(`${m.label}: round ${i + 1}/${SYSCALL_REPS} (N = ${thousands(m.n)})`);
    const a = await runOk(m, zero);
    if (!a.ok) return { note: failure(a) };
    const b = await runOk(m, many);
    if (!b.ok) return { note: failure(b) };
    per.push(((b.ms - a.ms) * 1000) / m.n);
  }
  return { value: median(per), min: Math.min(...per), max: Math.max(...per) };
}

/** Median wall time in ms of PROGRAM under a mechanism, after one untimed warm-up run. */
async function startup(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  const times: number[] = [];
  for (let i = 0; i <= STARTUP_REPS; i++) {
    progress(`start-up ${label}: ${i === 0 ? 'warm-up' : `run ${i}/${STARTUP_REPS}`}`);
    const r = await timeRun(cmd, args, env);
    if (r.status !== 0 || r.error) return { note: failure(r) };
    if (i > 0) times.push(r.ms);
  }
  return { value: median(times) };
}

/** Why runsc cannot be measured here, or undefined if it can. */
async function runscProblem(): Promise<string | undefined> {
  const r = await timeRun(RUNSC, [...RUNSC_ARGS, '/bin/true'], process.env, 30_000);
  if (r.error) return `runsc not usable: ${r.error}${/ENOENT/.test(r.error) ? ' (install the Debian package runsc)' : ''}`;
  if (r.status !== 0) return `runsc ${RUNSC_ARGS.join(' ')} /bin/true failed (${failure(r)})${process.getuid?.() !== 0 ? '; runsc needs root' : ''}`;
  return undefined;
}

// ---------------------------------------------------------------------------- main

async function main(): Promise<number> {
  const started = Date.now();
  const dir = benchTempDir();
  let failed = false;
  try {
    const command = process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench  (= npm run build && node ${path.relative(process.cwd(), process.argv[1])})`
      : [path.basename(process.argv[0]), ...process.argv.slice(1).map((a) => path.relative(process.cwd(), a) || a)].join(' ');
    out('snapvisor benchmark');
    out(`date:     ${new Date().toISOString()}`);
    out(`kernel:   ${sh('uname', ['-r'])}`);
    out(`cpu:      ${cpuModel()} (${os.cpus().length} CPUs visible)`);
    out(`node:     ${process.version}`);
    out(`runsc:    ${sh(RUNSC, ['--version']).split('\n')[0]}`);
    out(`command:  ${command}`);
    out(`load avg: ${loadavg()} at start (other work on the machine skews cross-CPU wake-ups; see docs/benchmarks.md)`);
    out(`${CA_VAR}: ${caWasSet ? `set in this environment; UNSET for every snapvisor (node) child, since it adds start-up time to each node process` : 'not set'}`);
    out();

    progress('checking runsc');
    const runscWhy = await runscProblem();
    if (runscWhy) out(`NOTE: gVisor rows are n/a: ${runscWhy}`), out();

    if (section(1)) {
      // 1. Per-syscall cost.
      const mechs = [NATIVE, SNAPVISOR, SNAPVISOR_NOPIN, RUNSC_PTRACE];
      const res = new Map<Mechanism, Result>();
      for (const m of mechs) res.set(m, m === RUNSC_PTRACE && runscWhy ? { note: 'runsc unavailable' } : await perSyscall(m, dir));
      const nat = res.get(NATIVE)!.value;
      const gv = res.get(RUNSC_PTRACE)!.value;
      out(`1. Time per trapped syscall: getppid loop, (time(N) − time(0)) / N, median of ${SYSCALL_REPS}`);
      out();
      const digits = (x: number) => (x < 1 ? 3 : x < 10 ? 2 : 1);
      for (const l of table(['mechanism', 'N', 'µs/syscall', 'vs native', 'vs runsc-ptrace', `range of ${SYSCALL_REPS} (µs)`],
        mechs.map((m) => {
          const r = res.get(m)!;
          const v = r.value;
          const range = r.min !== undefined && r.max !== undefined ? `${r.min.toFixed(digits(r.min))}–${r.max.toFixed(digits(r.max))}` : 'n/a';
          return [m.label, thousands(m.n), num(v, v !== undefined ? digits(v) : 0), ratio(v, nat), ratio(v, gv), range];
        }))) out('  ' + l);
      for (const m of mechs) { const r = res.get(m)!; if (r.note && !(m === RUNSC_PTRACE && runscWhy)) { out(`  ${m.label}: n/a: ${r.note}`); if (m !== RUNSC_PTRACE) failed = true; } }
      const sv = res.get(SNAPVISOR)!.value, np = res.get(SNAPVISOR_NOPIN)!.value;
      if (sv && gv) out(`  → a trapped syscall costs ${ratio(gv, sv)} less in snapvisor than in runsc-ptrace on this machine.`);
      if (sv && np) out(`  → pinning tracer and stub to one CPU (the default) makes it ${ratio(np, sv)} faster than SNAPVISOR_NO_PIN=1.`);
      out();
    }

    if (section(2)) {
      // 2. Start-up.
      const st: [string, Result][] = [];
      st.push(['native /bin/true', await startup('native', '/bin/true', [], process.env)]);
      st.push([`snapvisor run -- /bin/true (${CA_VAR} unset)`, await startup('snapvisor', NODE, [CLI, 'run', '--', '/bin/true'], SV_ENV)]);
      if (caWasSet) st.push([`snapvisor run -- /bin/true (${CA_VAR} set)`, await startup('snapvisor+CA', NODE, [CLI, 'run', '--', '/bin/true'], process.env)]);
      st.push([`snapvisor --help (CLI start-up only, no sandbox)`, await startup('snapvisor --help', NODE, [CLI, '--help'], SV_ENV)]);
      st.push([`node -e 0 (${CA_VAR} unset; node alone)`, await startup('node', NODE, ['-e', '0'], SV_ENV)]);
      st.push([`runsc ${RUNSC_ARGS.join(' ')} /bin/true`, runscWhy ? { note: 'runsc unavailable' } : await startup('runsc', RUNSC, [...RUNSC_ARGS, '/bin/true'], process.env)]);
      const stNat = st[0][1].value, stGv = st[st.length - 1][1].value;
      out(`2. Start-up: wall time of /bin/true, spawn to exit, median of ${STARTUP_REPS} (after one warm-up)`);
      out();
      for (const l of table(['mechanism', 'ms', 'vs native', 'vs runsc-ptrace'],
        st.map(([label, r]) => [label, num(r.value, 1), ratio(r.value, stNat), ratio(r.value, stGv)]))) out('  ' + l);
      for (const [label, r] of st) if (r.note && r.note !== 'runsc unavailable') { out(`  ${label}: n/a: ${r.note}`); if (!label.startsWith('runsc')) failed = true; }
      out();
    }

    if (section(3)) {
      // 3. The warmed-up workload, cold and restored.
      out(`3. Warmed-up python3 (imports json, decimal, asyncio, email, http.client, xml.dom.minidom, sqlite3,`);
      out(`   unittest, argparse, logging; allocates ${OBJECTS.toLocaleString('en-US')} objects of 1,000 bytes; prints ready, then counts every 10 ms)`);
      out(`   snapvisor: run --name; after "3": checkpoint NAME --store TMP --no-compress (a flat page file); restore ID --store TMP, ${RESTORE_REPS}× (median)`);
      out(`   runsc: run --bundle (OCI, root / read-only); after "3": runsc checkpoint --image-path; runsc restore --image-path`);
      out();
      const natives: number[] = [];
      for (let i = 0; i < 3; i++) { progress(`native cold start ${i + 1}/3`); natives.push(await nativeColdStart(OBJECTS)); }
      let svr: SnapvisorRound | undefined, gvr: RunscRound | undefined, svErr: string | undefined, gvErr: string | undefined;
      progress('snapvisor: run, checkpoint, restores');
      try { svr = await snapvisorRound(NODE, CLI, SV_ENV, caWasSet ? process.env : undefined, dir, OBJECTS, RESTORE_REPS, false, true, true); } catch (e) { svErr = (e as Error).message; failed = true; }
      if (runscWhy) gvErr = 'runsc unavailable';
      else {
        progress('runsc: run, checkpoint, restore');
        try { gvr = await runscRound(RUNSC, ['--platform=ptrace', '--network=none'], dir, OBJECTS); } catch (e) { gvErr = (e as Error).message; }
      }
      const natMs = median(natives);
      const svRestore = svr ? median(svr.restoreMs) : undefined;
      // The same restore command with a warm pool of that checkpoint serving: a ready clone taken (docs/pools.md).
      let pr: PoolRestoreRound | undefined, prErr: string | undefined;
      if (svr) {
        progress('snapvisor: restores with a pool serving');
        try { pr = await poolRestoreRound(NODE, CLI, SV_ENV, dir, svr.store, svr.id, svr.last, RESTORE_REPS); } catch (e) { prErr = (e as Error).message; failed = true; }
      }
      const prRestore = pr ? median(pr.restoreMs) : undefined;
      const rows: string[][] = [
        ["cold start to ready (ms)", num(natMs, 0), num(svr?.coldStartMs, 0), num(gvr?.coldStartMs, 0), ratio(svr?.coldStartMs, gvr?.coldStartMs)],
        ['checkpoint, ending the sandbox (ms, spawn to exit)', '—', num(svr?.checkpointMs, 0), num(gvr?.checkpointMs, 0), ratio(svr?.checkpointMs, gvr?.checkpointMs)],
        ['checkpoint on disk', '—', mib(svr?.storedBytes), mib(gvr?.imageBytes), ratio(svr?.storedBytes, gvr?.imageBytes)],
        [`restore to the next line (ms, spawn to line; ${CA_VAR} unset)`, '—', num(svRestore, 0), num(gvr?.restoreMs, 0), ratio(svRestore, gvr?.restoreMs)],
      ];
      rows.push(['restore with a pool of that checkpoint serving (ms, spawn → next line)', '—', num(prRestore, 0), num(gvr?.restoreMs, 0), ratio(prRestore, gvr?.restoreMs)]);
      if (svr?.restoreWithCaMs.length) rows.push([`restore to the next line (ms; ${CA_VAR} set)`, '—', num(median(svr.restoreWithCaMs), 0), '—', ratio(median(svr.restoreWithCaMs), gvr?.restoreMs)]);
      for (const l of table(['measure', 'native', 'snapvisor', 'runsc-ptrace', 'snapvisor / runsc'], rows)) out('  ' + l);
      if (svr) {
        out(`  snapvisor checkpoint: ${svr.pages} pages, guest paused ${svr.pausedMs} ms, written in ${svr.writtenMs} ms (its own report); continuity ${svr.continuity}`);
        out(`  before it, a checkpoint of another run of the workload (the first after a build writes the full bundle's run-time code cache at its run's exit, cli/launcher.ts): ${num(svr.checkpointWarmUpMs, 0)} ms`);
        out(`  snapvisor restores (ms): warm-up (the first after the build writes the run-time code cache) ${num(svr.warmUpMs, 0)}; then ${svr.restoreMs.map((x) => x.toFixed(0)).join(', ')}${svr.restoreWithCaMs.length ? `; with ${CA_VAR}: ${svr.restoreWithCaMs.map((x) => x.toFixed(0)).join(', ')}` : ''}`);
      }
      if (pr) {
        out(`  snapvisor restores with a pool serving (ms; restore ID --store by the bin, a ready clone of pool serve --size 1 taken): ${pr.restoreMs.map((x) => x.toFixed(0)).join(', ')}; by node main.js, alternated: ${pr.restoreNodeMs.map((x) => x.toFixed(0)).join(', ')} (median ${num(median(pr.restoreNodeMs), 0)}); continuity ${pr.continuity}`);
        out(`  with the pool's clone taken: restore ${num(pr.noneReadyRestoreMs, 0)} ms (in its own process, beside the refill), pool take ${num(pr.noneReadyTakeMs, 0)} ms (waits for the refill)`);
      }
      if (prErr) out(`  snapvisor restore with a pool: n/a: ${prErr}`);
      if (gvr) out(`  runsc continuity ${gvr.continuity}`);
      if (svr) {
        progress('snapvisor: clones at once');
        try {
          const mem = await cloneMemoryRound(NODE, CLI, SV_ENV, svr.store, svr.id, [1, 10, 20]);
          const one = mem[0]?.pssBytes;
          out('  Clones: N restores of that checkpoint at once; summed PSS of all their processes (node kernels and stubs) once all run');
          for (const l of table(['clones', 'PSS total', 'vs one clone', 'all restored (ms)'], mem.map((m) => [String(m.clones), mib(m.pssBytes), ratio(m.pssBytes, one), num(m.restoreAllMs, 0)]))) out('  ' + l);
        } catch (e) {
          out(`  snapvisor clones: n/a: ${(e as Error).message}`);
          failed = true;
        }
      }
      progress('snapvisor: compressed checkpoint, restores');
      try {
        const z = await snapvisorRound(NODE, CLI, SV_ENV, undefined, dir, OBJECTS, RESTORE_REPS, true, false, true);
        out('  Compressed (checkpoint\'s default, format 6): the same run and checkpoint; the checkpoint leaves the pieces costly');
        out('  to fill in the restore cache, the first restore on the host fills the other pieces its guest touches (lazily, from');
        out('  the pack), the others map them');
        for (const l of table(['measure', 'snapvisor --compress', 'runsc-ptrace', 'snapvisor / runsc'], [
          ['checkpoint, ending the sandbox (ms, spawn to exit)', num(z.checkpointMs, 0), num(gvr?.checkpointMs, 0), ratio(z.checkpointMs, gvr?.checkpointMs)],
          ['checkpoint on disk (its pack and records)', mib(z.storedBytes), mib(gvr?.imageBytes), ratio(z.storedBytes, gvr?.imageBytes)],
          ['restore cache it leaves on this host (pieces costly to fill)', mib(z.warmCacheBytes), '—', '—'],
          ['first restore to the next line (ms; fills the cache)', num(z.restoreMs[0], 0), num(gvr?.restoreMs, 0), ratio(z.restoreMs[0], gvr?.restoreMs)],
          ['later restores to the next line (ms, median)', num(median(z.restoreMs.slice(1)), 0), '—', ratio(median(z.restoreMs.slice(1)), gvr?.restoreMs)],
          ['store on disk with the restore cache', mib(z.storedWithCacheBytes), '—', '—'],
        ])) out('  ' + l);
        out(`  snapvisor --compress checkpoint: ${z.pages} pages, guest paused ${z.pausedMs} ms, written in ${z.writtenMs} ms; restores (ms): ${z.restoreMs.map((x) => x.toFixed(0)).join(', ')}; continuity ${z.continuity}`);
        out(`  before it, a compressed checkpoint of another run of the workload (at its run's exit the run-time code cache is written again if it compiled more): ${num(z.checkpointWarmUpMs, 0)} ms`);
      } catch (e) {
        out(`  snapvisor --compress: n/a: ${(e as Error).message}`);
        failed = true;
      }
      progress('snapvisor: incremental checkpoints');
      try {
        const inc = await incrementalRound(NODE, CLI, SV_ENV, dir, OBJECTS);
        const irow = (label: string, f: CheckpointFigures): string[] => [label, num(f.ms, 0), num(f.pausedMs, 1), `${f.newPages} of ${f.pages}`, mib(f.addedBytes)];
        out('  Incremental (compressed, the default): run --name; after "3": checkpoint --leave-running; 1 s later: checkpoint (ends it); restore of the second; its bytes: its pack and restore record, and the catalogue\'s copy of the record');
        for (const l of table(['checkpoint', 'ms (spawn to exit)', 'guest paused ms', 'pages stored', 'its bytes on disk'], [
          irow('first (full, --leave-running)', inc.first),
          irow('second, 1 s later (incremental)', inc.second),
        ])) out('  ' + l);
        out(`  second / first: time ${ratio(inc.second.ms, inc.first.ms)}, bytes ${ratio(inc.second.addedBytes, inc.first.addedBytes)}; restore of the second to the next line ${num(inc.restoreMs, 0)} ms, continuity ${inc.continuity}`);
      } catch (e) {
        out(`  snapvisor incremental: n/a: ${(e as Error).message}`);
        failed = true;
      }
      if (svErr) out(`  snapvisor: n/a: ${svErr}`);
      if (gvErr && gvErr !== 'runsc unavailable') out(`  runsc: n/a: ${gvErr}`);
      out(`  native cold starts (ms): ${natives.map((x) => x.toFixed(0)).join(', ')}. snapvisor's run and in-process restores include a node start-up and CLI load (table 2); checkpoints and restores through a pool are the bin's native front's, without node.`);
      out();
    }

    if (section(4)) {
      // 4. A warm pool of the same workload.
      const TAKES = 50;
      out(`4. Warm pool: the same workload asking for its own checkpoint once warm (/proc/snapvisor/checkpoint),`);
      out(`   then printing one line; pool serve --size 4; ${TAKES} takes through the socket protocol (no process`);
      out(`   per take), each once the pool is full again; then 10 \`snapvisor pool take\` commands (docs/pools.md); then 10`);
      out(`   \`snapvisor restore ID\` by the bin with an any-pool of 2 serving (pool serve --any), alternated with --no-pool`);
      out();
      progress('snapvisor: pool serve, takes');
      try {
        const pr = await poolRound(NODE, CLI, SV_ENV, dir, OBJECTS, TAKES);
        const prow = (label: string, xs: number[]): string[] => [label, num(pct(xs, 50), 1), num(pct(xs, 99), 1)];
        progress('snapvisor: pool serve --any, restores');
        const ar = await anyPoolRound(NODE, CLI, SV_ENV, pr.store, pr.id, 10).catch((e: Error) => e);
        for (const l of table(['measure', 'p50 ms', 'p99 ms'], [
          prow('take: request reaching the pool → first output byte', pr.fromPool),
          prow('take: client\'s send → first output byte', pr.fromClient),
          prow('  of which the pool\'s hand-off (request → guest resumed)', pr.handoff),
          prow('`snapvisor pool take` command: spawn → first output byte', pr.command),
          prow('  the same by `node main.js pool take`, alternated', pr.commandNode),
          ...(ar instanceof Error ? [] : [
            prow('`restore ID` by the bin, an any-pool serving: spawn → first output byte', ar.anyPool),
            prow('  the same with --no-pool (in its own process), alternated', ar.noPool),
          ]),
        ])) out('  ' + l);
        if (ar instanceof Error) { out(`  snapvisor any-pool: n/a: ${ar.message}`); failed = true; }
        out(`  pool of ${pr.size} ready (every clone restored, the probe run and its working set taken by every clone) in ${pr.fillMs.toFixed(0)} ms`);
        const one = pr.memory[0]?.pssBytes;
        out('  Pool memory: pool serve --size N, one take (the clones then hold the working set they prefetch), all N ready again;');
        out('  summed PSS of every process of the pool (pool serve, the hosting processes holding the clones\' kernels, their stubs)');
        for (const l of table(['clones', 'PSS total', 'vs one clone', 'filled (ms)'], pr.memory.map((m) => [String(m.size), mib(m.pssBytes), ratio(m.pssBytes, one), num(m.fillMs, 0)]))) out('  ' + l);
      } catch (e) {
        out(`  snapvisor pool: n/a: ${(e as Error).message}`);
        failed = true;
      }
      out();
    }

    if (section(5)) {
      // 5. Loopback TCP throughput.
      out(`5. Loopback TCP throughput: ${TCP_MIB} MiB through one connection (a forked sender's 256 KiB writes, the parent's`);
      out(`   256 KiB reads), timed by the program (fork to the sender's exit, start-up excluded); median of ${TCP_REPS}, one run for`);
      out(`   --network=sandbox`);
      out();
      const tcp = buildTcpBench(dir);
      if (tcp instanceof Error) out(`  n/a: ${tcp.message}`);
      else {
        const rows: Array<[string, ThroughputRun[]]> = [];
        const measure = async (label: string, reps: number, cmd: string, args: string[], env: NodeJS.ProcessEnv) => {
          const runs: ThroughputRun[] = [];
          for (let i = 0; i < reps; i++) { progress(`tcp throughput: ${label} ${i + 1}/${reps}`); runs.push(await throughputRun(cmd, [...args, String(TCP_MIB)], env)); }
          rows.push([label, runs]);
        };
        await measure('native', TCP_REPS, tcp, [], process.env);
        await measure('snapvisor run --network=host', TCP_REPS, NODE, [CLI, 'run', '--network=host', '--', tcp], SV_ENV);
        await measure('snapvisor run --network=sandbox', 1, NODE, [CLI, 'run', '--network=sandbox', '--', tcp], SV_ENV);
        const rate = (runs: ThroughputRun[]): number | undefined => {
          const ok = runs.map(mibPerSecond).filter((x): x is number => x !== undefined);
          return ok.length === runs.length ? median(ok) : undefined;
        };
        const tcpNat = rate(rows[0][1]);
        for (const l of table(['mechanism', 'MiB/s', 'vs native', 'seconds (each run)'],
          rows.map(([label, runs]) => [label, num(rate(runs), 0), ratio(rate(runs), tcpNat), runs.map((r) => (r.ns ? (r.ns / 1e9).toFixed(2) : 'failed')).join(', ')]))) out('  ' + l);
        for (const [label, runs] of rows) for (const r of runs) if (r.error) { out(`  ${label}: n/a: ${r.error}`); failed = true; }
      }
      out();
    }
    if (section(6)) {
      // 6. ctr run (containerd's runc shim) to first output, per runtime.
      out(`6. containerd: \`ctr run --rm --snapshotter native --runc-binary BINARY\` of a busybox image running \`echo hello\`,`);
      out(`   spawn to the first output byte; median of ${CTR_REPS} after one warm-up. runsc through a wrapper adding --platform=ptrace --network=none`);
      out();
      const runscPath = sh('sh', ['-c', `command -v ${RUNSC}`]);
      const runtimes: Array<[string, string]> = [['runc', sh('sh', ['-c', 'command -v runc']) || 'runc'], ['snapvisor', CLI]];
      if (runscPath && !runscWhy) runtimes.push(['runsc-ptrace', runscWrapper(dir, runscPath)]);
      const rows = await ctrRunBench(dir, runtimes, CTR_REPS, SV_ENV, progress);
      if (rows instanceof Error) out(`  n/a: ${rows.message}`);
      else {
        const med = (r: CtrRow) => (r.error ? undefined : median(r.firstOutputMs));
        const byName = (n: string) => rows.find((r) => r.runtime === n);
        const runcMs = byName('runc') && med(byName('runc')!), runscMs = byName('runsc-ptrace') && med(byName('runsc-ptrace')!);
        for (const l of table(['runtime', 'ms to first output', 'vs runc', 'vs runsc-ptrace', 'each run (ms)'],
          rows.map((r) => [r.runtime, num(med(r), 0), ratio(med(r), runcMs), ratio(med(r), runscMs), r.error ? `failed: ${r.error}` : r.firstOutputMs.map((x) => x.toFixed(0)).join(', ')]))) out('  ' + l);
        if (byName('snapvisor')?.error) failed = true;
      }
      out();
    }
    out(`load avg: ${loadavg()} at end`);
    out(`total bench time ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (e) => { process.stderr.write(`bench failed: ${(e as Error).stack}\n`); process.exitCode = 1; });
