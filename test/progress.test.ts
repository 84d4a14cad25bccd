/**
 * Progress bars of checkpoint, export and import: drawn on a terminal (stderr a pty: python3's
 * pty module gives the command one and copies what it draws to our pipe), nothing when stderr
 * is a pipe. SNAPVISOR_PROGRESS_DELAY_MS=0 makes the bar appear at once, so a 64 MiB guest
 * shows one however fast the machine is.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/** Runs argv on a new pty (stdin, stdout and stderr), copies everything it writes to stdout, exits with its status. */
const PTY_RUN = `
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
while True:
    try:
        d = os.read(fd, 65536)
    except OSError:
        break
    if not d:
        break
    sys.stdout.buffer.write(d)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
`;

const env = { ...process.env, SNAPVISOR_PROGRESS_DELAY_MS: '0' };
/** `snapvisor ARGS…` with stderr a pty; its output (stdout and stderr together, as a terminal shows them). */
const onTerminal = (args: string[]) => native(['/usr/bin/python3', '-c', PTY_RUN, process.execPath, CLI, ...args], { env, timeoutMs: 60_000 });
/** `snapvisor ARGS…` with stdout and stderr pipes. */
const inPipes = (args: string[]) => snapvisor(args, { env, timeoutMs: 60_000 });
/** A drawn bar: label, bar, percentage, MiB done/total, rate, ETA. */
const bar = (label: string) => new RegExp(`${label} \\[[\\u2588\\u2591]+\\] \\d+% \\| \\d+\\.\\d/\\d+\\.\\d MiB \\| \\d+\\.\\d MiB/s \\| ETA (\\d+[smh]|\\?)`);

describe('progress bars', () => {
  it('checkpoint, export and import draw a bar on a terminal and nothing into a pipe', async () => {
    const root = freshDir('root'), store = path.join(freshDir('store'), 's'), store2 = path.join(freshDir('store2'), 's'), out = freshDir('export');
    const name = `bars-${process.pid}`;
    // 64 MiB of non-zero pages.
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', 'import time; b = bytearray(range(256)) * (256 << 10); print("ready", flush=True); time.sleep(120)'], { timeoutMs: 150_000 });
    try {
      await run.waitFor((l) => l === 'ready', 60_000);

      const piped = await inPipes(['--root', root, 'checkpoint', name, '--leave-running', '--store', store]);
      expect([piped.status, piped.stderr]).toEqual([0, '']);
      const tty = await onTerminal(['--root', root, 'checkpoint', name, '--leave-running', '--store', store]);
      const shown = tty.stdout.toString();
      expect(tty.status, shown).toBe(0);
      expect(shown).toMatch(bar('checkpoint'));
      // The bar is cleared and the summary is the last line.
      expect(shown).toMatch(/\x1b\[2Kcheckpointed .*: [0-9a-f]{16}\r\n$/);
      const id = /([0-9a-f]{16})\r\n$/.exec(shown)![1];

      const file = path.join(out, 'x.svx');
      const exPiped = await inPipes(['export', id, '--store', store, '-o', file]);
      expect([exPiped.status, exPiped.stderr]).toEqual([0, '']);
      const exTty = await onTerminal(['export', id, '--store', store, '-o', file]);
      expect(exTty.status).toBe(0);
      expect(exTty.stdout.toString()).toMatch(bar('export'));

      const imPiped = await inPipes(['import', file, '--store', store2]);
      expect([imPiped.status, imPiped.stderr]).toEqual([0, '']);
      const imTty = await onTerminal(['import', file, '--store', store2]);
      expect(imTty.status).toBe(0);
      expect(imTty.stdout.toString()).toMatch(bar('import'));
    } finally {
      await snapvisor(['--root', root, 'kill', name]);
    }
    expect(await run.done).toBe(137);
    expect(orphanStubs()).toEqual([]);
  }, 240_000);
});
