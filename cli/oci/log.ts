/**
 * The runtime's log (`--log FILE`, `--log-format text|json`, `--debug`): what runc writes,
 * one line per entry. JSON lines have runc's shape, `{"level":"error","msg":…,"time":…}`,
 * which containerd's shim and Podman read back to report why a command failed.
 */
import fs from 'node:fs';

export interface LogConfig { file?: string; format?: string; debug?: boolean }

let config: LogConfig = {};

/** Set where log lines go (from the global options). Throws on an unknown --log-format. */
export function configureLog(c: LogConfig): void {
  if (c.format !== undefined && c.format !== 'text' && c.format !== 'json') throw new Error(`invalid log format '${c.format}' (text or json)`);
  config = c;
}

export function logConfig(): LogConfig { return config; }

/** One log line at `level` ('error', 'warning', 'info', 'debug'); debug lines only with --debug. Never throws. */
export function logLine(level: 'error' | 'warning' | 'info' | 'debug', msg: string): void {
  if (!config.file || (level === 'debug' && !config.debug)) return;
  const time = new Date().toISOString();
  const line = config.format === 'json'
    ? JSON.stringify({ level, msg, time })
    : `time="${time}" level=${level} msg=${JSON.stringify(msg)}`;
  try { fs.appendFileSync(config.file, line + '\n'); } catch { /* the log is best effort: the error is on stderr too */ }
}
