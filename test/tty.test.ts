/**
 * Job control in an interactive shell on a real terminal (tmux provides the pty): ^Z stops
 * the foreground job, `jobs` lists it as stopped, `fg` resumes it, ^C interrupts it.
 * Needs tmux (CI installs it); skips with a printed reason without it.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from './helpers.js';

const hasTmux = (() => { try { execFileSync('tmux', ['-V']); return true; } catch { return false; } })();
if (!hasTmux) console.log('tty.test.ts: skipped: tmux is not installed (apt-get install tmux)');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!hasTmux)('interactive bash under snapvisor on a terminal', () => {
  it('^Z stops the foreground job, jobs shows it, fg resumes it, ^C interrupts it', async () => {
    const session = `sv-tty-${process.pid}`;
    const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
    const screen = () => tmux('capture-pane', '-t', session, '-p');
    const waitFor = async (re: RegExp, ms = 10_000) => {
      const end = Date.now() + ms;
      while (Date.now() < end) { if (re.test(screen())) return; await sleep(100); }
      throw new Error(`terminal never showed ${re}; it shows:\n${screen()}`);
    };
    tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40',
      `${process.execPath} ${CLI} run --env PS1='sv$ ' --env TERM=dumb /bin/bash --norc --noprofile -i; echo "bash-exit=$?"; sleep 60`);
    try {
      await waitFor(/^sv\$\s*$/m);
      tmux('send-keys', '-t', session, 'sleep 30', 'Enter');
      await sleep(800);
      tmux('send-keys', '-t', session, 'C-z');
      await waitFor(/Stopped\s+sleep 30/);
      tmux('send-keys', '-t', session, 'jobs -l | grep -c Stopped', 'Enter');
      await waitFor(/^1$/m);
      tmux('send-keys', '-t', session, 'fg', 'Enter');
      await sleep(800);
      tmux('send-keys', '-t', session, 'C-c');
      await waitFor(/^sv\$\s*$/m, 5_000); // long before the 30 s sleep would end
      tmux('send-keys', '-t', session, 'echo "status=$?"', 'Enter');
      await waitFor(/^status=130$/m); // killed by SIGINT
      tmux('send-keys', '-t', session, 'exit 7', 'Enter');
      await waitFor(/bash-exit=7/);
    } finally {
      try { tmux('kill-session', '-t', session); } catch { /* already gone */ }
    }
  });
});
