/**
 * The host's CPU count, as the sandbox shows it (/proc/PID/status's Cpus_allowed, /sys's CPU
 * lists, sched_getaffinity's mask, the fair scheduler's base slice). Read once per kernel process,
 * as gVisor's sentry fixes its CPU count at boot: `os.cpus()` reads /proc/cpuinfo and /proc/stat
 * (~0.13 ms here), and /proc/PID/stat and /proc/PID/status asked it on every open.
 */
import os from 'node:os';

let count: number | undefined;

/** Number of CPUs of the host (at least 1). */
export function hostCpuCount(): number {
  return count ??= Math.max(1, os.cpus().length);
}
