/**
 * NODE_EXTRA_CA_CERTS and the node processes snapvisor starts. Node reads and parses that CA
 * bundle while it starts (~35 ms on the bench's machine), for TLS that snapvisor never does; so
 * the bin's native front (cli/front/front.c) and snapvisor's own node children get it under
 * another name, and cli/launcher.ts puts it back into the environment before anything runs (a
 * guest that `run` starts inherits it as it inherits the rest).
 */

/** The name NODE_EXTRA_CA_CERTS travels under to a node that runs the launcher. */
export const HELD_CA_CERTS = 'SNAPVISOR_NODE_EXTRA_CA_CERTS';

/** `env` for a node child that runs the launcher (main.js): NODE_EXTRA_CA_CERTS held under HELD_CA_CERTS. */
export function launcherEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.NODE_EXTRA_CA_CERTS === undefined) return env;
  const out: NodeJS.ProcessEnv = { ...env, [HELD_CA_CERTS]: env.NODE_EXTRA_CA_CERTS };
  delete out.NODE_EXTRA_CA_CERTS;
  return out;
}

/** In the launcher: NODE_EXTRA_CA_CERTS back from HELD_CA_CERTS (a value of its own, if any, wins). */
export function restoreHeldCaCerts(env: NodeJS.ProcessEnv = process.env): void {
  const held = env[HELD_CA_CERTS];
  if (held === undefined) return;
  delete env[HELD_CA_CERTS];
  env.NODE_EXTRA_CA_CERTS ??= held;
}
