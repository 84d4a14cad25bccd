/**
 * Progress bars for long checkpoint, export and import: bytes done of the total, rate and ETA,
 * drawn on stderr only when it is a terminal (nothing in pipes, files or logs). Drawn with
 * cli-progress (a well-kept library) rather than our own terminal code.
 */
import cliProgress from 'cli-progress';

/** What a long operation reports to. */
export interface Progress {
  /** `done` of `total` bytes so far (the total may change between calls). */
  update(done: number, total: number): void;
  /** Take the bar off the terminal (it leaves no line behind). */
  stop(): void;
}

const NONE: Progress = { update: () => undefined, stop: () => undefined };
const mib = (n: number) => (n / 1048576).toFixed(1);

/** Default of progressBar's delay (ms): $SNAPVISOR_PROGRESS_DELAY_MS, else 300. */
function defaultDelayMs(): number {
  const v = Number(process.env.SNAPVISOR_PROGRESS_DELAY_MS);
  return process.env.SNAPVISOR_PROGRESS_DELAY_MS !== undefined && v >= 0 ? v : 300;
}

/** Seconds as the bar's ETA shows them: 42s, 3m05s, 1h02m; '?' before there is a rate. */
function eta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  s = Math.ceil(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/**
 * A bar labelled `label` on stderr if stderr is a terminal, else a no-op. It appears only once
 * the operation has run `delayMs` (ms; default $SNAPVISOR_PROGRESS_DELAY_MS or 300) and is not
 * finished: short ones draw nothing.
 */
export function progressBar(label: string, delayMs = defaultDelayMs()): Progress {
  if (!process.stderr.isTTY) return NONE;
  const t0 = Date.now();
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(done, total) {
      total = Math.max(total, done, 1);
      if (!bar) {
        if (Date.now() - t0 < delayMs || done >= total) return;
        bar = new cliProgress.SingleBar({
          stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 10,
          format: `${label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {rate} MiB/s | ETA {etaText}`,
        }, cliProgress.Presets.shades_classic);
        bar.start(total, done, { doneMiB: mib(done), totalMiB: mib(total), rate: '0.0', etaText: '?' });
      }
      const rate = done / Math.max((Date.now() - t0) / 1000, 0.001); // bytes/s since the operation began
      bar.setTotal(total);
      bar.update(done, { doneMiB: mib(done), totalMiB: mib(total), rate: mib(rate), etaText: eta(rate > 0 ? (total - done) / rate : Infinity) });
    },
    stop() { bar?.stop(); },
  };
}
