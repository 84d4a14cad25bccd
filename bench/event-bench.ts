/**
 * The cost of the event stream (docs/benchmarks.md, "Event emission"): two snapvisor builds
 * side by side in one run, runs interleaved so both see the same machine.
 *
 *   node dist/bench/event-bench.js BASELINE_BUNDLE [CANDIDATE_BUNDLE]
 *
 * BASELINE_BUNDLE and CANDIDATE_BUNDLE are the `bundle/main.js` of two checkouts (the candidate
 * defaults to this one's). For each of two guests — N getppid calls (no graph change: no event)
 * and N fcntl(1, F_SETFD, 0) calls (one `fd.cloexec` event with one `set` op each) — the time per
 * trapped syscall is (time(N) − time(0)) / N, the median of REPS interleaved runs per build.
 * Then, in this process, the cost of one `Kernel.emit` of that `fd.cloexec` event on a real
 * kernel (no reader of the stream, as in the runs above), so its share of a syscall is known.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTempDir, loopElf, syscallLoopCode, getppidLoopCode } from './getppid-elf.js';
import { envWithout, failure, median, timeRun } from './proc.js';
import { createSandbox } from '../src/sandbox/create.js';
import { createPlatform } from '../platforms/registry.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPS = Number(process.env.BENCH_REPS ?? 5);
const N = Number(process.env.BENCH_N ?? 100_000);
const ENV = envWithout('NODE_EXTRA_CA_CERTS');

/** mov eax, 72 (fcntl); mov edi, 1; mov esi, 2 (F_SETFD); xor edx, edx */
const FCNTL_SETFD = [0xb8, 72, 0, 0, 0, 0xbf, 1, 0, 0, 0, 0xbe, 2, 0, 0, 0, 0x31, 0xd2];

const guests: Array<{ label: string; code: (n: number) => Uint8Array }> = [
  { label: 'getppid (no event)', code: (n) => getppidLoopCode(n) },
  { label: 'fcntl(F_SETFD) (1 event)', code: (n) => syscallLoopCode(FCNTL_SETFD, n) },
];

async function main(): Promise<number> {
  const base = process.argv[2];
  const cand = process.argv[3] ?? path.join(HERE, '..', 'bundle', 'main.js');
  if (!base || !fs.existsSync(base) || !fs.existsSync(cand)) {
    process.stderr.write('usage: event-bench BASELINE_BUNDLE [CANDIDATE_BUNDLE] (each a checkout\'s bundle/main.js)\n');
    return 2;
  }
  const dir = benchTempDir();
  const builds = [{ label: 'baseline', cli: base }, { label: 'candidate', cli: cand }];
  const out = (s = '') => process.stdout.write(s + '\n');
  out(`REPS=${REPS} N=${N}; baseline ${base}; candidate ${cand}`);
  const perSyscall: Record<string, Record<string, number>> = {};
  try {
    for (const g of guests) {
      const files = [0, N].map((n) => {
        const f = path.join(dir, `${g.label.split(' ')[0]}-${n}`);
        fs.writeFileSync(f, loopElf(g.code(n)), { mode: 0o755 });
        return f;
      });
      const times: Record<string, [number[], number[]]> = { baseline: [[], []], candidate: [[], []] };
      for (let r = 0; r < REPS; r++) {
        for (const b of r % 2 ? [...builds].reverse() : builds) {
          for (const [i, f] of files.entries()) {
            const t = await timeRun(process.execPath, [b.cli, 'run', '--', f], ENV, 120_000);
            if (t.status !== 0) { out(`${b.label} ${g.label}: ${failure(t)}`); return 1; }
            times[b.label][i].push(t.ms);
          }
        }
      }
      perSyscall[g.label] = {};
      for (const b of builds) {
        const us = ((median(times[b.label][1]) - median(times[b.label][0])) / N) * 1000;
        perSyscall[g.label][b.label] = us;
      }
      const [bu, cu] = [perSyscall[g.label].baseline, perSyscall[g.label].candidate];
      out(`${g.label.padEnd(26)} baseline ${bu.toFixed(2)} µs   candidate ${cu.toFixed(2)} µs   ratio ${(cu / bu).toFixed(3)}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // One Kernel.emit of the fcntl(F_SETFD) event, in this process, on a real kernel (not run).
  const elfDir = benchTempDir();
  const prog = path.join(elfDir, 'true');
  fs.writeFileSync(prog, loopElf(getppidLoopCode(0)), { mode: 0o755 });
  const k = createSandbox({ rootfs: '/', cwd: '/', argv: [prog], env: [], platform: createPlatform(undefined) });
  try {
    const table = k.state.tasks[1].fdTableId;
    const emitOnce = (v: boolean) => k.emit({ type: 'fd.cloexec', tid: 1, fd: 1, cloexec: v }, [['set', ['fdTables', table, 'fds', 1, 'cloexec'], v]]);
    for (let i = 0; i < 200_000; i++) emitOnce(i % 2 === 0);
    const M = 2_000_000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < M; i++) emitOnce(i % 2 === 0);
    const ns = Number(process.hrtime.bigint() - t0) / M;
    const cu = perSyscall['fcntl(F_SETFD) (1 event)'].candidate;
    out(`Kernel.emit of one fd.cloexec event: ${ns.toFixed(0)} ns = ${((ns / 1000 / cu) * 100).toFixed(2)}% of the candidate's fcntl(F_SETFD)`);
  } finally {
    k.destroy();
    fs.rmSync(elfDir, { recursive: true, force: true });
  }
  return 0;
}

main().then((c) => { process.exitCode = c; }, (e) => { process.stderr.write(`event-bench: ${(e as Error).stack}\n`); process.exitCode = 1; });
