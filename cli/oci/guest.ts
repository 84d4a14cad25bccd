/**
 * The sandbox of an OCI container: made by the composition root (createSandbox), then given the
 * bundle's user, umask, rlimits and hostname. Processes `exec` adds come from src/sandbox/spawn.ts.
 */
import { createSandbox } from '../../src/sandbox/create.js';
import { applyIdentity } from '../../src/sandbox/spawn.js';
import type { Kernel } from '../../src/kernel/kernel.js';
import type { BundleSpec } from './bundle.js';

export { spawnProcess } from '../../src/sandbox/spawn.js';

/**
 * The container's sandbox, ready to run: init is the bundle's process, with stdio on the
 * caller's fds 0–2. Throws ExecError (program cannot start) or Error (bad cwd/rootfs).
 */
export function createContainerSandbox(spec: BundleSpec, logFd?: number): Kernel {
  const p = spec.process;
  const kernel = createSandbox({ rootfs: spec.rootfs, cwd: p.cwd, argv: p.args, env: p.env, maxTasks: spec.pidsLimit && spec.pidsLimit > 0 ? spec.pidsLimit : undefined, memoryLimit: spec.memoryLimit && spec.memoryLimit > 0 ? spec.memoryLimit : undefined, logFd });
  kernel.state.config.hostname = spec.hostname ?? kernel.state.config.hostname;
  applyIdentity(kernel.state.threadGroups[1], p);
  return kernel;
}

