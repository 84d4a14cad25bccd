/**
 * `run --publish` specs, parsed without loading the forwarding code (cli/publish.ts) or the
 * kernel: the command line checks them at start-up.
 */

/** One published port; `protocol` absent means TCP. */
export interface PublishSpec { hostIp: string; hostPort: number; guestPort: number; protocol?: 'udp' }

/** Parse `HOSTPORT:GUESTPORT[/tcp|/udp]` (ports 1–65535). Throws Error with a one-line reason. */
export function parsePublish(v: string): PublishSpec {
  const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(v);
  if (!m) throw new Error(`--publish ${v}: expected HOSTPORT:GUESTPORT, HOSTPORT:GUESTPORT/tcp or HOSTPORT:GUESTPORT/udp`);
  const hostPort = Number(m[1]), guestPort = Number(m[2]);
  if (!(hostPort >= 1 && hostPort <= 65535 && guestPort >= 1 && guestPort <= 65535)) throw new Error(`--publish ${v}: ports are 1 to 65535`);
  return { hostIp: '127.0.0.1', hostPort, guestPort, ...(m[3] === 'udp' ? { protocol: 'udp' as const } : {}) };
}
