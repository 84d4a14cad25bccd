/**
 * The sandbox's memory limit (`run --memory SIZE`; SandboxConfig.memoryLimit, bytes, kept in the
 * graph so a restored sandbox has it too), as a memory cgroup would apply it (compare Linux
 * mm/memcontrol.c try_charge_memcg, mm/oom_kill.c). What is counted:
 * - the memory file's charged space (MemoryFile.chargedBytes): guest memory a guest has touched
 *   or the kernel has written (in 64 KiB units), upper-layer and tmpfs file data, page-cache
 *   copies of host files, copy-on-write copies. Pages still in a restored checkpoint's page file
 *   are the host's page cache and are not counted until written;
 * - the kernel's own buffers: pipe and stream-socket buffers (their capacity), queued datagrams.
 * Not counted: the rest of the kernel's heap (the state graph, Node itself).
 *
 * Charging past the limit first reclaims (page-cache copies of host files no mapping uses; charged
 * units no block owns; charged units whose pages were all dropped, e.g. by MADV_DONTNEED); when
 * that does not leave RECLAIM_MARGIN (at most limit/16) free, it runs the OOM killer: the thread
 * group with the most charged memory mapped is killed with SIGKILL and a line on the kernel's
 * log (stderr), until the charge fits or the task asking was the one killed.
 */
import { SIGKILL, SI_KERNEL } from '../abi/linux.js';
import type { Kernel } from './kernel.js';
import { shrinkPageCache } from '../mm/page-cache.js';
import type { ThreadGroupState } from './state.js';
import type { Task } from './task.js';

/** How long a count of the kernel's buffers is reused (ms): charges are frequent, the count walks every pipe and socket. */
const BUFFER_COUNT_MS = 50;

/** Room (bytes, at most limit/16) a reclaim must leave under the limit, else the OOM killer runs. */
const RECLAIM_MARGIN = 4 * 1024 * 1024;

/** The default limit when `run --memory` is not given: this fraction of the host's memory. */
export const DEFAULT_MEMORY_FRACTION = 0.5;

const mib = (n: number): string => `${Math.round(n / 1048576)} MiB`;

export class MemoryLimit {
  private buffers = 0;
  private buffersAt = -Infinity;

  /** `limit` in bytes (Kernel.setMemoryLimit changes it). */
  constructor(private readonly k: Kernel, public limit: number) {}

  /** Bytes of the kernel's own buffers counted against the limit: pipe and stream-socket buffers (capacity), queued datagrams. */
  kernelBuffers(): number {
    const now = Date.now();
    if (now - this.buffersAt < BUFFER_COUNT_MS) return this.buffers;
    let n = 0;
    for (const p of Object.values(this.k.state.pipes)) n += p.buf.length;
    for (const f of Object.values(this.k.state.openFiles)) if (f.kind === 'socket') for (const d of f.socket.dgrams ?? []) n += d.data.length;
    this.buffers = n;
    this.buffersAt = now;
    return n;
  }

  /** Bytes counted against the limit now. */
  usage(): number { return this.k.mf.chargedBytes + this.kernelBuffers(); }

  /**
   * The memory a guest is told it has (/proc/meminfo, sysinfo), in bytes: the limit as total, what
   * is left under it as free, capped by the host's own (as gVisor shows a container's limit).
   */
  guestView(hostTotal: number, hostFree: number): { total: number; free: number } {
    const total = Math.min(this.limit, hostTotal);
    return { total, free: Math.max(0, Math.min(total - this.usage(), hostFree)) };
  }

  /**
   * May `bytes` more be charged? Reclaims, then OOM-kills, until they fit. False when they still
   * do not fit (the task asking, `requester`, was killed, or nothing is left to kill). `soft`:
   * only whether they fit now (fault-around asks so, and falls back to one unit).
   */
  admit(bytes: number, requester: Task | undefined, soft = false): boolean {
    const fits = () => this.k.mf.chargedBytes + this.kernelBuffers() + bytes <= this.limit;
    if (fits()) return true;
    if (soft) return false;
    this.buffersAt = -Infinity;
    if (fits()) return true;
    // Reclaim, and go on only if it leaves some room: near the limit a reclaim per page fault
    // (each a walk over the charged units) would crawl instead of ending (memcg's reclaim retries).
    this.reclaim();
    const margin = Math.min(RECLAIM_MARGIN, this.limit / 16);
    if (this.k.mf.chargedBytes + this.kernelBuffers() + bytes + margin <= this.limit) return true;
    const requesterAlive = requester && requester.state.runState !== 'exited';
    for (;;) {
      const victim = this.pickVictim();
      if (!victim) return false;
      this.kill(victim);
      this.buffersAt = -Infinity;
      if (requesterAlive && requester.state.runState === 'exited') return false;
      if (fits()) return true;
    }
  }

  /**
   * Give back charges that hold no memory: host-file pages no mapping uses (the page cache is
   * shrunk), units no block owns (freed space whose edge units
   * stayed charged), and units whose memfd pages are all holes, after unmapping them from every
   * guest (skipping units an address space with a thread running guest code maps: it could touch
   * them before its mapping change lands). Returns the bytes uncharged.
   */
  reclaim(): number {
    const mf = this.k.mf;
    const before = mf.chargedBytes;
    shrinkPageCache(this.k);
    for (const [off, len] of mf.unownedChargedRuns()) mf.uncharge(off, len);
    const runs = mf.emptyChargedRuns();
    if (runs.length) {
      const busy = new Set<number>();
      for (const as of this.k.addressSpaces.values()) if (as.isRunning()) for (const i of as.mappedRuns(runs)) busy.add(i);
      const free = runs.filter((_r, i) => !busy.has(i));
      for (const as of this.k.addressSpaces.values()) as.unmapFileRuns(free);
      for (const [off, len] of free) mf.uncharge(off, len);
    }
    return before - mf.chargedBytes;
  }

  /** Charged bytes a thread group maps (its "rss" for the OOM killer; shared memory counts for each mapper) and its mapped size. */
  footprint(tg: ThreadGroupState): { rss: number; vm: number } {
    const ts = this.k.state.tasks[tg.tids[0]];
    const as = ts && this.k.state.addressSpaces[ts.addressSpaceId];
    let rss = 0, vm = 0;
    for (const v of as?.vmas ?? []) {
      vm += v.end - v.start;
      rss += this.k.mf.chargedIn(v.fileOffset, v.end - v.start);
    }
    return { rss, vm };
  }

  /** The OOM killer's choice (oom_badness): the live thread group with the largest rss; ties go to the newest. */
  private pickVictim(): ThreadGroupState | undefined {
    let best: ThreadGroupState | undefined, bestRss = -1;
    for (const tg of Object.values(this.k.state.threadGroups)) {
      if (tg.zombie || tg.tids.length === 0) continue;
      const { rss } = this.footprint(tg);
      if (rss >= bestRss) { best = tg; bestRss = rss; }
    }
    return best;
  }

  private kill(tg: ThreadGroupState): void {
    const { rss, vm } = this.footprint(tg);
    const comm = this.k.state.tasks[tg.tids[0]]?.comm ?? '?';
    this.k.log(`snapvisor: out of memory (limit ${mib(this.limit)}): killed process ${tg.tgid} (${comm}), total-vm ${Math.round(vm / 1024)} kB, rss ${Math.round(rss / 1024)} kB`);
    // Processes sharing its address space (a vfork or CLONE_VM child, or its parent) die with it:
    // killing one alone frees nothing (mm/oom_kill.c __oom_kill_process).
    const s = this.k.state;
    const asId = s.tasks[tg.tids[0]]?.addressSpaceId;
    this.k.signals.send(tg.tgid, SIGKILL, { signo: SIGKILL, code: SI_KERNEL });
    for (const o of Object.values(s.threadGroups)) {
      if (o.tgid === tg.tgid || o.zombie || !o.tids.length || s.tasks[o.tids[0]]?.addressSpaceId !== asId) continue;
      this.k.signals.send(o.tgid, SIGKILL, { signo: SIGKILL, code: SI_KERNEL });
    }
  }
}
