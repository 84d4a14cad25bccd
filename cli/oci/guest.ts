/**
 * The sandbox of an OCI container: made by the composition root (createSandbox), then given the
 * bundle's user, umask, rlimits and hostname. Processes `exec` adds come from src/sandbox/spawn.ts.
 */
import { createSandbox } from '../../src/sandbox/create.js';
import { withIdentity } from '../../src/sandbox/spawn.js';
import type { Kernel } from '../../src/kernel/kernel.js';
import { type BundleSpec, ociMountSpecs } from './bundle.js';

export { spawnProcess } from '../../src/sandbox/spawn.js';

/**
 * The container's sandbox, ready to run: init is the bundle's process, with stdio on the
 * caller's fds 0–2. Throws ExecError (program cannot start) or Error (bad cwd/rootfs).
 */
export function createContainerSandbox(spec: BundleSpec, logFd?: number): Kernel {
  const p = spec.process;
  const kernel = createSandbox({ rootfs: spec.rootfs, cwd: p.cwd, argv: p.args, env: p.env, maxTasks: spec.pidsLimit && spec.pidsLimit > 0 ? spec.pidsLimit : undefined, memoryLimit: spec.memoryLimit && spec.memoryLimit > 0 ? spec.memoryLimit : undefined, logFd, mounts: ociMountSpecs(spec), readonlyRoot: spec.readonlyRoot });
  if (spec.hostname !== undefined) kernel.emit({ type: 'config.set', what: 'hostname' }, [['set', ['config', 'hostname'], spec.hostname]]);
  const tg = withIdentity(kernel.state.threadGroups[1], p);
  kernel.emit({ type: 'proc.update', tgid: 1, what: 'identity' }, (['uid', 'gid', 'cred', 'umask', 'rlimits'] as const).map((k) => ['set', ['threadGroups', 1, k], tg[k]]));
  return kernel;
}

