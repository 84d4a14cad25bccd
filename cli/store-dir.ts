/**
 * Where the default checkpoint store is, in a module of its own (node:fs, os and path only), so
 * that the bin's launcher can find a restore's store without loading node:net
 * (cli/pool-registry.ts); cli/control-client.ts re-exports it.
 */
import os from 'node:os';
import path from 'node:path';

/** Default checkpoint store: $SNAPVISOR_STORE, else $XDG_DATA_HOME/snapvisor/checkpoints (~/.local/share/…). */
export function defaultStore(): string {
  if (process.env.SNAPVISOR_STORE) return path.resolve(process.env.SNAPVISOR_STORE);
  const data = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'snapvisor', 'checkpoints');
}
