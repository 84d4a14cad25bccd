// The graph's one door (docs/architecture.md, "The event stream"): the graph's types are readonly,
// and `Writable<T>` (src/kernel/events.ts) lifts that only where a direct write is allowed. This
// check fails when a file not listed here uses it, naming the file and line, so that every such
// place is a reviewed decision. Usage: node scripts/check-door.mjs (exit 1 on a violation).
import fs from 'node:fs';
import path from 'node:path';

/** Files allowed to write the graph directly, and why. */
const ALLOWED = {
  'src/kernel/events.ts': 'the door itself: applyOps, and the legacy chunk helpers it calls',
  'src/kernel/kernel.ts': "a checkpoint's copy of the graph being prepared (capture); a task's saved mask in a draft",
  'src/kernel/task.ts': 'CPU state the platform owns (Task.cpu): registers, FP state, run state at a trap, syscall ABI',
  'src/kernel/creds.ts': 'credential drafts (fixCapsAfterSetuid, credsOnExec) that become one event',
  'src/syscalls/creds.ts': 'credential drafts that become one creds.change event',
  'src/ipc/pty.ts': "a pty's fields edited as a draft that becomes one pty.update event",
  'src/vfs/vfs.ts': 'a new inode\'s fields assembled before its event',
  'src/sandbox/create.ts': 'a graph no kernel runs yet (Kernel.emptyState)',
  'snapshots/checkpoint.ts': 'a restored graph before any kernel runs it (new boot id, generation)',
};

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const bad = [];
for (const dir of ['src', 'cli', 'snapshots', 'platforms', 'bench']) {
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) {
        const rel = path.relative(root, p);
        fs.readFileSync(p, 'utf8').split('\n').forEach((line, i) => {
          if (/Writable</.test(line) && !ALLOWED[rel]) bad.push(`${rel}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  if (fs.existsSync(path.join(root, dir))) walk(path.join(root, dir));
}
if (bad.length) {
  console.error('check-door: Writable<> outside the files allowed to write the graph directly (scripts/check-door.mjs):');
  for (const b of bad) console.error('  ' + b);
  process.exit(1);
}
console.log(`check-door: ok (${Object.keys(ALLOWED).length} files may write the graph directly)`);
