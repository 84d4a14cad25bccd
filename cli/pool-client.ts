/**
 * The client side of a pool's status request (docs/pools.md): one JSON line without fds, one JSON
 * answer. Shared by the pool's tests and bench/pool-bench.ts; `pool take` (fds passed) is in cli/pool.ts.
 */
import net from 'node:net';

/**
 * What `{"op":"status"}` answers: clone counts, hosting processes, takes served, the recorded
 * working set (write faults, and pages touched), each clone's hosting process (pid), its slot
 * there and its state.
 */
export interface PoolStatus {
  ok: boolean; checkpoint: string; size: number; ready: number; starting: number; running: number; processes: number;
  served: number; waiting: number; probe: 'pending' | 'running' | 'done'; workingSet: number; workingSetPages: number; clones: Array<{ pid: number; slot: number; state: string }>;
}

/** Ask the pool on unix socket `sock` for its status. Rejects on a connection error or an answer that is not JSON. */
export function poolStatus(sock: string): Promise<PoolStatus> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock, () => c.write('{"op":"status"}\n'));
    let buf = '';
    c.on('data', (d) => { buf += d; });
    c.on('end', () => { try { resolve(JSON.parse(buf)); } catch (e) { reject(e); } });
    c.on('error', reject);
  });
}
