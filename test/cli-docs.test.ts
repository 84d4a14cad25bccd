/**
 * docs/cli.md against the real help text: every command `snapvisor --help` lists is documented,
 * with every option its own `--help` lists (except those only accepted for runc compatibility),
 * and every command's help has an example.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, snapvisor } from './helpers.js';

describe('docs/cli.md matches the help text', () => {
  it('every command and option is documented', async () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'cli.md'), 'utf8');
    const top = (await snapvisor(['--help'])).stdout.toString();
    const commands = [...top.slice(top.indexOf('Commands:'), top.indexOf('Examples:')).matchAll(/^ {2}(\w[\w-]*)/gm)].map((m) => m[1]).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['run', 'create', 'start', 'state', 'kill', 'delete', 'list', 'ps', 'exec', 'pause', 'resume', 'update', 'events', 'spec', 'features', 'checkpoint', 'restore']));
    for (const opt of [...top.slice(0, top.indexOf('Commands:')).matchAll(/ (--[\w-]+)/g)].map((m) => m[1])) {
      if (opt !== '--help') expect(doc, `global option ${opt}`).toContain(opt);
    }
    const helps = await Promise.all(commands.map((c) => snapvisor([c, '--help'], { timeoutMs: 150_000 })));
    commands.forEach((c, i) => {
      expect(doc, `command ${c}`).toMatch(new RegExp('`' + c + '[ `]'));
      const help = helps[i].stdout.toString();
      if (!['demo', 'syscalls', 'checkpoints', 'export', 'import', 'store'].includes(c)) expect(help, `example in ${c} --help`).toMatch(/Examples?:\n {2}snapvisor /);
      for (const line of help.split('\n').filter((l) => /^ {2}-/.test(l))) {
        const opt = /(--[\w-]+)/.exec(line)?.[1];
        if (!opt || opt === '--help' || line.includes('accepted for runc compatibility')) continue;
        expect(doc, `${c} ${opt}`).toContain(opt);
      }
    });
  }, 200_000);
});
