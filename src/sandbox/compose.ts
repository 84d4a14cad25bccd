/**
 * The composition root: the one place that chooses implementations and wires a sandbox
 * together — kernel + platform (by name, from platforms/registry.ts) + syscall table
 * (src/syscalls/table.ts, as gVisor's RegisterSyscallTable) + host runtime services
 * (platforms/host/host-services.ts). `createSandbox` (./create.ts) and the snapshot restore
 * (snapshots/checkpoint.ts) build their kernels here; nothing else constructs a Kernel.
 */
import type { Platform } from '../../platforms/platform.js';
import type { HostServices } from '../../platforms/host-services.js';
import { createPlatform } from '../../platforms/registry.js';
import { LinuxHostServices } from '../../platforms/host/host-services.js';
import { Kernel, KernelOptions } from '../kernel/kernel.js';
import type { KernelState } from '../kernel/state.js';
import { SYSCALL_TABLE, SYSCALL_TABLE_I386 } from '../syscalls/table.js';

export { PLATFORMS, DEFAULT_PLATFORM, UnknownPlatformError } from '../../platforms/registry.js';

export interface AssembleOptions extends KernelOptions {
  /** Platform name from platforms/registry.ts (default 'ptrace'), or a platform already made. */
  platform?: string | Platform;
  /** Host runtime services (default: the Linux host's). */
  host?: HostServices;
}

let defaultHost: HostServices | undefined;

/** Build a kernel over `state` (fresh or restored). Throws UnknownPlatformError for an unknown platform name. */
export function assembleKernel(state: KernelState, opts: AssembleOptions = {}): Kernel {
  const platform = typeof opts.platform === 'object' ? opts.platform : createPlatform(opts.platform);
  const host = opts.host ?? (defaultHost ??= new LinuxHostServices());
  return new Kernel(state, { platform, syscalls: SYSCALL_TABLE, syscalls32: SYSCALL_TABLE_I386, host }, opts);
}
