/**
 * The upper layer's file data (issue 9, disk): copy-up reads a host file range by range and
 * keeps its holes, so a 1-byte write into a 4 GiB sparse rootfs file costs one chunk, not
 * 4 GiB; the host file is never touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, checkpointGate, compileStatic, freshDir, native, orphanStubs, PY_WAIT_FOR_GATE, restoreChecked, snapvisor, snapvisorStreaming } from './helpers.js';

const GUEST = String.raw`
import os, sys, time
p = sys.argv[1]
t0 = time.monotonic()
fd = os.open(p, os.O_WRONLY)
os.pwrite(fd, b'x', 1000)
os.close(fd)
dt = time.monotonic() - t0
with open(p, 'rb') as f:
    f.seek(999); a = f.read(3)
    f.seek(2**31); b = f.read(5)
    f.seek(4 * 2**30 - 1); c = f.read(2)
print(os.stat(p).st_size, a, b, c)
print('copy-up seconds', round(dt, 3))
`;

describe('copy-up of sparse host files', () => {
  it('a 1-byte write into a 4 GiB sparse rootfs file copies up in under a second, holes kept, host untouched', async () => {
    const dir = freshDir('sparse');
    const p = path.join(dir, 'big');
    const fd = fs.openSync(p, 'w');
    fs.ftruncateSync(fd, 4 * 2 ** 30);
    fs.writeSync(fd, 'hello', 0, 'latin1');
    fs.writeSync(fd, 'hello', 2 ** 31, 'latin1');
    fs.closeSync(fd);
    const before = fs.statSync(p);
    const r = await snapvisor(['run', '--', '/usr/bin/python3', '-c', GUEST, p], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    const [first, second] = r.stdout.toString().split('\n');
    expect(first).toBe(`${4 * 2 ** 30} b'\\x00x\\x00' b'hello' b'\\x00'`);
    const secs = Number(second.split(' ').pop());
    console.log(`copy-up of a 4 GiB sparse file: ${secs} s`);
    expect(secs).toBeLessThan(1);
    const after = fs.statSync(p);
    expect(after.size).toBe(before.size);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    const b = Buffer.alloc(1);
    const rfd = fs.openSync(p, 'r');
    fs.readSync(rfd, b, 0, 1, 1000);
    fs.closeSync(rfd);
    expect(b[0]).toBe(0);
  }, 90_000);
});

const MAP_HOST = String.raw`
import mmap, sys, time
t0 = time.monotonic()
f = open(sys.argv[1], 'rb')
shared = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
private = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
private[10] = 7
print(len(shared), shared[4 * 2**30:4 * 2**30 + 3], shared[2**31:2**31 + 5], private[8:12], shared[8:12])
print('seconds', round(time.monotonic() - t0, 2))
`;

describe('mappings of sparse host files', () => {
  it('a 4 GiB sparse rootfs file maps whole (shared and private) in under two seconds: only its data is read', async () => {
    const p = path.join(freshDir('map-sparse'), 'big');
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, 'hello', 2 ** 31, 'latin1');
    fs.writeSync(fd, 'end', 4 * 2 ** 30, 'latin1');
    fs.closeSync(fd);
    const r = await snapvisor(['run', '--', '/usr/bin/python3', '-c', MAP_HOST, p], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    const [first, second] = r.stdout.toString().split('\n');
    expect(first).toBe(`${4 * 2 ** 30 + 3} b'end' b'hello' b'\\x00\\x00\\x07\\x00' b'\\x00\\x00\\x00\\x00'`);
    const secs = Number(second.split(' ').pop());
    console.log(`mapping a 4 GiB sparse host file twice and reading it: ${secs} s`);
    expect(secs).toBeLessThan(2);
  }, 90_000);
});

/** A static program whose 64 MiB initialized data segment is zeros but for its first and last bytes. */
const BIG_DATA = String.raw`
#include <stdio.h>
static char big[64 << 20] = { 1 };
static char tail = 3; /* after big: on the segment's last page */
int main(void) {
  long s = 0;
  for (long i = 0; i < (long)sizeof big; i += 4096 * 97) s += big[i];
  big[sizeof big - 1] = 2;
  printf("sum %ld last %d tail %d\n", s, big[sizeof big - 1], tail);
  return 0;
}
`;

describe('exec of sparse host executables', () => {
  it('a 64 MiB executable whose data segment is holes runs under --memory 48m: exec reads and charges only its data, as mmap', async () => {
    const dense = compileStatic('bigdata', BIG_DATA);
    // A copy with holes wherever a 4 KiB block is zeros (cp --sparse=always).
    const bytes = fs.readFileSync(dense);
    const p = path.join(freshDir('exec-sparse'), 'bigdata');
    const fd = fs.openSync(p, 'w', 0o755);
    for (let off = 0; off < bytes.length; off += 4096) {
      const blk = bytes.subarray(off, off + 4096);
      if (blk.some((b) => b !== 0)) fs.writeSync(fd, blk, 0, blk.length, off);
    }
    fs.ftruncateSync(fd, bytes.length);
    fs.closeSync(fd);
    expect(fs.statSync(p).blocks * 512).toBeLessThan(8 * 2 ** 20);
    const want = await native([p]);
    expect(want.stdout.toString()).toBe('sum 1 last 2 tail 3\n');
    const r = await snapvisor(['run', '--memory', '48m', '--', p], { timeoutMs: 60_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe(want.stdout.toString());
  }, 90_000);
});

describe('upper-layer file data lives off the kernel heap, within --disk', () => {
  it('a 1 GiB file written to /tmp adds less than 100 MB to the kernel\'s RSS', async () => {
    // The guest waits at each step until the test has read the RSS and made that step's file.
    const measured = checkpointGate('rss-before'), written = checkpointGate('rss-after');
    const script = 'import os, sys, time\n' +
      'def gate(p):\n' +
      '  while not os.path.exists(p): time.sleep(0.02)\n' +
      'print("start", flush=True); gate(sys.argv[1])\n' +
      'fd = os.open("/tmp/big", os.O_WRONLY | os.O_CREAT, 0o644); blk = bytes(range(256)) * 4096\n' +
      'for i in range(1024): os.write(fd, blk)\n' +
      'os.close(fd); print("written", os.stat("/tmp/big").st_size, flush=True); gate(sys.argv[2])\n' +
      'f = open("/tmp/big", "rb"); f.seek(512 * 2**20 + 300); print(f.read(2).hex(), flush=True)\n';
    const run = snapvisorStreaming(['run', '--', '/usr/bin/python3', '-c', script, measured.sandbox, written.sandbox], { timeoutMs: 120_000 });
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${run.child.pid}/status`, 'utf8'))![1]) * 1024;
    await run.waitFor((l) => l === 'start', 40_000);
    const before = rss();
    measured.open();
    await run.waitFor((l) => l.startsWith('written'), 90_000);
    const after = rss();
    written.open();
    expect(await run.done).toBe(0);
    expect(run.lines).toEqual(['start', `written ${2 ** 30}`, '2c2d']);
    console.log(`kernel RSS: ${(before / 2 ** 20).toFixed(0)} MiB before, ${(after / 2 ** 20).toFixed(0)} MiB after writing 1 GiB to /tmp`);
    expect(after - before).toBeLessThan(100 * 2 ** 20);
  }, 150_000);

  it('--disk 4M: writes past it fail with ENOSPC, deleting frees the space, statfs shows the size', async () => {
    const script = 'import os, errno\n' +
      'st = os.statvfs("/tmp"); print("statfs", st.f_blocks * st.f_frsize)\n' +
      'def fill(name):\n' +
      '  fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644); n = 0\n' +
      '  try:\n' +
      '    while True: os.write(fd, b"x" * 65536); n += 1\n' +
      '  except OSError as e: print(name, n, errno.errorcode[e.errno])\n' +
      '  os.close(fd)\n' +
      'fill("/tmp/a"); os.unlink("/tmp/a"); fill("/tmp/b")\n' +
      'os.truncate("/tmp/b", 0); fill("/tmp/c")\n';
    const r = await snapvisor(['run', '--disk', '4M', '--', '/usr/bin/python3', '-c', script], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines[0]).toBe(`statfs ${4 * 2 ** 20}`);
    // Python's own files (.pyc caches are not written: the rootfs's are read) leave the whole 4 MiB to the guest.
    expect(lines.slice(1)).toEqual(['/tmp/a 64 ENOSPC', '/tmp/b 64 ENOSPC', '/tmp/c 64 ENOSPC']);
  }, 90_000);

  it('--disk with a bad size is a one-line usage error', async () => {
    const r = await snapvisor(['run', '--disk', 'lots', '--', '/bin/true']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^snapvisor: [^\n]*--disk[^\n]*\n$/);
  });
});

/** Sum of the allocated bytes (st_blocks) of the files under `dir`. */
function allocatedBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).blocks * 512;
  }
  return n;
}

const LARGE_SHARED = String.raw`
import os, sys, mmap, time
p = os.path.join(sys.argv[1], 'big')
G = 4 * 2**30
f = open(p, 'w+b'); f.seek(G + 10); f.write(b'tail'); f.flush(); f.truncate(G + 4096)
m = mmap.mmap(f.fileno(), 4096, offset=G)
print('at 4G', m[10:14], len(m))
m[20:24] = b'MAPD'; f.seek(G + 20); print('read(2) sees a store', f.read(4))
os.pwrite(f.fileno(), b'PWRT', G + 30); print('mapping sees pwrite', m[30:34])
whole = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
print('whole', len(whole), whole[G + 10:G + 14], whole[2**31:2**31 + 3], whole[G + 20:G + 24])
print('ready', flush=True)
${PY_WAIT_FOR_GATE}
print('after', m[10:14], m[20:24], whole[G + 30:G + 34], whole[12345:12347])
m[40:44] = b'NEW!'; os.pwrite(f.fileno(), b'grow', G + 8192)
print('size', os.fstat(f.fileno()).st_size, os.pread(f.fileno(), 4, G + 40), m[40:44])
os.ftruncate(f.fileno(), G + 22); os.ftruncate(f.fileno(), G + 100)
print('truncated', os.pread(f.fileno(), 10, G + 18), whole[G + 18:G + 24])
`;

describe('MAP_SHARED of large sparse upper files', () => {
  it('a 4 GiB + 4 KiB sparse file mapped at 4 GiB and whole: same as native, across checkpoint/restore, holes not saved', async () => {
    const scratch = freshDir('large-shared-native');
    const gate = checkpointGate('large-shared'), lrGate = checkpointGate('large-shared-lr');
    const expected = await native(['/usr/bin/python3', '-c', LARGE_SHARED, scratch, gate.native], { timeoutMs: 30_000 });
    fs.rmSync(scratch, { recursive: true, force: true });
    expect(expected.stderr.toString()).toBe('');
    expect(expected.status).toBe(0);
    const lines = expected.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain(`whole ${4 * 2 ** 30 + 4096} b'tail' b'\\x00\\x00\\x00' b'MAPD'`);
    const c = await checkpointAtReady('large-shared', ['/usr/bin/python3', '-c', LARGE_SHARED, freshDir('large-shared-sandbox'), gate.sandbox]);
    expect(c.before).toEqual(lines.slice(0, lines.indexOf('ready') + 1));
    const stored = allocatedBytes(c.store);
    console.log(`checkpoint store of a sandbox with a 4 GiB sparse file mapped MAP_SHARED: ${(stored / 2 ** 20).toFixed(1)} MiB`);
    expect(stored).toBeLessThan(256 * 2 ** 20);
    gate.open();
    const t0 = performance.now();
    const r = await restoreChecked(c);
    console.log(`restore and the rest of the guest: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(lines.slice(lines.indexOf('ready') + 1));
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);

    // --leave-running: the shared block's data runs are copied at capture (not its 4 GiB).
    const root = freshDir('large-shared-root'), store = freshDir('large-shared-store');
    const name = `large-shared-lr-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', LARGE_SHARED, freshDir('large-shared-lr'), lrGate.sandbox], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 20_000 });
    expect(cp.stderr.toString()).toBe('');
    expect(cp.status).toBe(0);
    lrGate.open(); // the original goes on, and so will its restore
    expect(await run.done).toBe(0);
    expect(run.lines).toEqual(lines);
    const again = await snapvisor(['--root', root, 'restore', cp.stdout.toString().trim().split(/\s+/).pop()!, '--store', store], { timeoutMs: 30_000 });
    expect(again.stderr.toString()).toBe('');
    expect(again.stdout.toString().split('\n').filter(Boolean)).toEqual(lines.slice(lines.indexOf('ready') + 1));
    expect(orphanStubs()).toEqual([]);
  }, 240_000);
});
