/** `snapvisor run`: create a sandbox, run it to the end, exit with its status. */
import fs from 'node:fs';
import { createSandbox } from '../src/kernel/sandbox.js';
import { ExecError } from '../src/loader/exec.js';
import { E } from '../src/errno.js';
import type { ExitInfo, Kernel } from '../src/kernel/kernel.js';

export interface RunOptions { rootfs: string; cwd: string; env?: string[]; clearEnv?: boolean; strace?: boolean; name?: string }

/** The shell's view of an exit: status, or 128+N for death by signal N. */
export function exitStatus(info: ExitInfo): number {
  return 'code' in info ? info.code : 128 + info.signal;
}

function fail(msg: string): void {
  fs.writeSync(2, `snapvisor: ${msg}\n`);
}

export async function runCommand(root: string | undefined, prog: string, args: string[], opts: RunOptions): Promise<number> {
  const env = [
    ...(opts.clearEnv ? [] : Object.entries(process.env).filter(([k]) => !(opts.env ?? []).some((e) => e.startsWith(k + '='))).map(([k, v]) => `${k}=${v}`)),
    ...(opts.env ?? []),
  ];
  let kernel: Kernel;
  try {
    kernel = createSandbox({ rootfs: opts.rootfs, cwd: opts.cwd, argv: [prog, ...args], env, strace: opts.strace });
  } catch (e) {
    if (e instanceof ExecError) {
      fail(e.message);
      return e.errno === E.ENOENT ? 127 : 126;
    }
    fail((e as Error).message);
    return 125;
  }
  const { serveControl } = await import('./control.js');
  const control = opts.name ? await serveControl(root, opts.name, kernel) : undefined;
  const info = await kernel.run();
  await control?.close();
  kernel.destroy();
  return exitStatus(info);
}
