/**
 * Property: whatever sequence of mmap/munmap/mprotect/brk/fork a guest makes, the kernel's
 * VMA bookkeeping (the state graph) and the host's real mappings of the stub (read from
 * /proc/<stub>/maps) agree, memory-file blocks are reference-counted exactly, and a
 * fork's copy-on-write child never sees the parent's later writes. Runs on the real
 * ptrace platform and memory file: nothing is mocked.
 */
import fs from 'node:fs';
import { describe, expect, it, afterAll } from 'vitest';
import fc from 'fast-check';
import { PtracePlatform } from '../platforms/ptrace/ptrace-platform.js';
import { HostMemfd } from '../platforms/host/host-services.js';
import { MemoryFile } from '../src/mm/memory-file.js';
import { AddressSpace } from '../src/mm/address-space.js';
import { PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED } from '../src/abi/linux.js';
import { SyscallError } from '../src/errno.js';
import type { MemoryFileState } from '../src/kernel/state.js';

const PAGE = 4096;
const BASE = 0x1000_0000;
const platform = new PtracePlatform();
const cleanups: Array<() => void> = [];
afterAll(() => { for (const c of cleanups) c(); });

type Op =
  | { op: 'map'; page: number; pages: number; prot: number }
  | { op: 'unmap'; page: number; pages: number }
  | { op: 'protect'; page: number; pages: number; prot: number }
  | { op: 'write'; page: number; byte: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('map' as const), page: fc.nat(63), pages: fc.integer({ min: 1, max: 16 }), prot: fc.constantFrom(1, 3, 5) }),
  fc.record({ op: fc.constant('unmap' as const), page: fc.nat(63), pages: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('protect' as const), page: fc.nat(63), pages: fc.integer({ min: 1, max: 16 }), prot: fc.constantFrom(0, 1, 3) }),
  fc.record({ op: fc.constant('write' as const), page: fc.nat(79), byte: fc.integer({ min: 1, max: 255 }) }),
);

/** The stub's mappings in our range as [start, end, "rwx"] runs, from the host kernel (queued changes sent first). */
function hostMaps(pid: number): Array<[number, number, string]> {
  stubs.get(pid)?.flushPending();
  const out: Array<[number, number, string]> = [];
  for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n')) {
    const [range, perms] = line.split(' ');
    const [lo, hi] = range.split('-').map((h) => parseInt(h, 16));
    if (lo < BASE || lo >= BASE + 0x1000_0000) continue;
    const p = perms.slice(0, 3);
    const last = out[out.length - 1];
    if (last && last[1] === lo && last[2] === p) last[1] = hi; else out.push([lo, hi, p]);
  }
  return out;
}

function vmaMaps(as: AddressSpace): Array<[number, number, string]> {
  const out: Array<[number, number, string]> = [];
  for (const v of as.state.vmas) {
    const prot = v.cow ? v.prot & ~PROT_WRITE : v.prot;
    const p = (prot & 1 ? 'r' : '-') + (prot & 2 ? 'w' : '-') + (prot & 4 ? 'x' : '-');
    const last = out[out.length - 1];
    if (last && last[1] === v.start && last[2] === p) last[1] = v.end; else out.push([v.start, v.end, p]);
  }
  return out;
}

/**
 * The host mappings agree with the VMAs. Since the memory limit, only charged memory-file units are
 * mapped (a guest's first touch faults them in: AddressSpace.handleMissing), so: every host mapping
 * lies inside VMAs of the same protection; then, with every accessible page faulted in as a guest's
 * touch would, the accessible host mappings are exactly the accessible VMAs.
 */
function expectHostMatchesVmas(pid: number, as: AddressSpace): void {
  const vmas = vmaMaps(as);
  const inside = (lo: number, hi: number, p: string) => {
    let cur = lo;
    for (const [vs, ve, vp] of vmas) if (vs <= cur && cur < ve && vp === p) cur = Math.min(hi, ve);
    return cur >= hi;
  };
  for (const [lo, hi, p] of hostMaps(pid)) expect(inside(lo, hi, p), `host mapping ${lo.toString(16)}-${hi.toString(16)} ${p} outside the VMAs ${JSON.stringify(vmas)}`).toBe(true);
  for (const v of as.state.vmas) for (let a = v.start; a < v.end; a += PAGE) if (v.prot) as.handleMissing(a, as.contexts[0]);
  const accessible = (m: Array<[number, number, string]>) => m.filter(([, , p]) => p !== '---');
  expect(accessible(hostMaps(pid))).toEqual(accessible(vmas));
}

/** The stubs of the spaces made so far, by pid. */
const stubs = new Map<number, { flushPending(): void }>();

function newSpace(mfState: MemoryFileState, mf: MemoryFile, id: number): { as: AddressSpace; pid: number } {
  const pt = platform.createTask(mf.fd) as ReturnType<PtracePlatform['createTask']> & { pid: number };
  cleanups.push(() => { pt.destroy(); stubs.delete(pt.pid); });
  stubs.set(pt.pid, pt);
  const as = new AddressSpace(AddressSpace.emptyState(id), mf, platform.addressRange, pt);
  void mfState;
  return { as, pid: pt.pid };
}

function apply(as: AddressSpace, o: Op): void {
  const addr = BASE + o.page * PAGE;
  try {
    if (o.op === 'map') as.map(addr, o.pages * PAGE, o.prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, '', 0);
    else if (o.op === 'unmap') as.unmap(addr, o.pages * PAGE);
    else if (o.op === 'protect') as.protect(addr, o.pages * PAGE, o.prot);
    else as.write(addr, new Uint8Array([o.byte]));
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e; // EFAULT/ENOMEM are legal outcomes
  }
}

function checkRefcounts(mfState: MemoryFileState, spaces: AddressSpace[]): void {
  const expected = new Map<number, Map<number, number>>();
  for (const as of spaces) for (const v of as.state.vmas) {
    const users = expected.get(v.block) ?? new Map<number, number>();
    users.set(as.id, (users.get(as.id) ?? 0) + 1);
    expected.set(v.block, users);
  }
  const actual = new Map(Object.entries(mfState.blocks).map(([k, b]) => [Number(k), new Map(Object.entries(b.users).map(([a, n]) => [Number(a), n]))]));
  expect(actual).toEqual(expected);
}

describe('address space bookkeeping vs the host', () => {
  it('VMAs match the stub\'s real mappings after any op sequence; blocks are refcounted exactly', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
      const mfState: MemoryFileState = { end: 0, free: [], blocks: {} };
      const mf = new MemoryFile(mfState, (name, size) => new HostMemfd(name, size));
      const { as, pid } = newSpace(mfState, mf, 1);
      try {
        for (const o of ops) apply(as, o);
        expectHostMatchesVmas(pid, as);
        checkRefcounts(mfState, [as]);
      } finally {
        as.contexts[0].destroy();
        mf.destroy();
      }
    }), { numRuns: 25 });
  });

  it('fork is copy-on-write: the child keeps what it saw, both match the host, refcounts stay exact', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), fc.array(opArb, { maxLength: 12 }), (before, after) => {
      const mfState: MemoryFileState = { end: 0, free: [], blocks: {} };
      const mf = new MemoryFile(mfState, (name, size) => new HostMemfd(name, size));
      const parent = newSpace(mfState, mf, 1);
      const child = newSpace(mfState, mf, 2);
      try {
        parent.as.map(BASE, 80 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, '', 0);
        for (const o of before) apply(parent.as, o);
        const snapshot = new Map<number, number>();
        for (let p = 0; p < 80; p++) { const v = parent.as.find(BASE + p * PAGE); if (v && v.prot & PROT_READ) snapshot.set(p, parent.as.read(BASE + p * PAGE, 1)[0]); }
        parent.as.forkInto(child.as);
        for (const o of after) apply(parent.as, o);
        for (const [p, byte] of snapshot) expect(child.as.read(BASE + p * PAGE, 1)[0]).toBe(byte);
        expectHostMatchesVmas(parent.pid, parent.as);
        expectHostMatchesVmas(child.pid, child.as);
        checkRefcounts(mfState, [parent.as, child.as]);
        child.as.release();
        checkRefcounts(mfState, [parent.as]);
      } finally {
        parent.as.contexts[0].destroy();
        child.as.contexts[0].destroy();
        mf.destroy();
      }
    }), { numRuns: 15 });
  });
});
