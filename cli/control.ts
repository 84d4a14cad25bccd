/** Placeholder replaced below. */
import type { Kernel } from '../src/kernel/kernel.js';
export async function serveControl(_root: string | undefined, _name: string, _k: Kernel): Promise<{ close(): Promise<void> }> {
  return { close: async () => undefined };
}
