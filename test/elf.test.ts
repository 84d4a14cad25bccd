import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ElfError,
  ElfPrefixTooShort,
  PF_X,
  PT_INTERP,
  PT_LOAD,
  PT_PHDR,
  isShebang,
  parseElf,
  parseShebang,
  type ElfImage,
} from '../src/loader/elf.js';
import { AT, buildInitialStack, type InitialStack, type InitialStackInput } from '../src/loader/stack.js';

const LD_SO = '/lib64/ld-linux-x86-64.so.2';

function read(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

/** Properties every parsed image must have, whatever the binary. */
function checkInvariants(img: ElfImage, file: Uint8Array): void {
  expect(img.phentsize).toBe(56);
  expect(img.phdrs).toHaveLength(img.phnum);
  const loads = img.phdrs.filter((p) => p.type === PT_LOAD);
  expect(loads.length).toBeGreaterThan(0);
  for (const p of loads) {
    expect(p.offset + p.filesz).toBeLessThanOrEqual(file.length);
    expect(p.filesz).toBeLessThanOrEqual(p.memsz);
    expect(p.vaddr).toBeGreaterThanOrEqual(img.minVaddr);
    expect(p.vaddr + p.memsz).toBeLessThanOrEqual(img.maxVaddr);
  }
  expect(img.minVaddr % 4096).toBe(0);
  expect(img.maxVaddr % 4096).toBe(0);
  expect(img.minVaddr).toBe(Math.floor(Math.min(...loads.map((p) => p.vaddr)) / 4096) * 4096);
  // The entry point lies in an executable PT_LOAD.
  expect(loads.some((p) => p.flags & PF_X && p.vaddr <= img.entry && img.entry < p.vaddr + p.memsz)).toBe(true);
  // phdrVaddr: PT_PHDR if present, else the PT_LOAD covering the table.
  const ptPhdr = img.phdrs.find((p) => p.type === PT_PHDR);
  if (ptPhdr) {
    expect(img.phdrVaddr).toBe(ptPhdr.vaddr);
  } else {
    const cover = loads.find((p) => p.offset <= img.phoff && img.phoff + 56 * img.phnum <= p.offset + p.filesz)!;
    expect(img.phdrVaddr).toBe(cover.vaddr + img.phoff - cover.offset);
  }
}

function expectElfError(file: Uint8Array, message: string | RegExp): void {
  let caught: unknown;
  try {
    parseElf(file);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ElfError);
  if (typeof message === 'string') expect((caught as Error).message).toBe(message);
  else expect((caught as Error).message).toMatch(message);
  expect((caught as Error).message).not.toContain('\n');
}

describe('parseElf on real binaries', () => {
  it('parses /bin/busybox (static, no interpreter)', () => {
    const file = read('/bin/busybox');
    const img = parseElf(file);
    checkInvariants(img, file);
    expect(img.interp).toBeUndefined();
    expect(img.phdrs.some((p) => p.type === PT_INTERP)).toBe(false);
    // Debian's busybox-static is a non-PIE static executable at fixed addresses.
    expect(img.type).toBe('exec');
    expect(img.minVaddr).toBeGreaterThan(0);
  });

  it('parses /bin/ls (PIE with an interpreter)', () => {
    const file = read('/bin/ls');
    const img = parseElf(file);
    checkInvariants(img, file);
    expect(img.type).toBe('dyn');
    expect(img.interp).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(img.minVaddr).toBe(0);
    expect(img.phoff).toBe(64);
  });

  it('parses /usr/bin/python3 after resolving the symlink', () => {
    const path = realpathSync('/usr/bin/python3');
    const file = read(path);
    const img = parseElf(file);
    checkInvariants(img, file);
    expect(['exec', 'dyn']).toContain(img.type);
    expect(img.interp).toBe('/lib64/ld-linux-x86-64.so.2');
  });

  it('parses the dynamic linker itself (dyn, no interpreter)', () => {
    const file = read(realpathSync(LD_SO));
    const img = parseElf(file);
    checkInvariants(img, file);
    expect(img.type).toBe('dyn');
    expect(img.interp).toBeUndefined();
    expect(img.minVaddr).toBe(0);
  });
});

describe('parseElf errors', () => {
  const ls = read('/bin/ls');
  const patched = (edit: (dv: DataView, b: Uint8Array) => void): Uint8Array => {
    const b = ls.slice();
    edit(new DataView(b.buffer), b);
    return b;
  };

  it('rejects an empty file', () => {
    expectElfError(new Uint8Array(0), 'not an ELF file');
  });

  it('rejects random bytes', () => {
    const b = new Uint8Array(4096);
    let x = 12345;
    for (let i = 0; i < b.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      b[i] = x >>> 24;
    }
    b[0] = 0x42;
    expectElfError(b, 'not an ELF file');
  });

  it('rejects a shell script as an ELF', () => {
    expectElfError(new TextEncoder().encode('#!/bin/sh\necho hi\n'), 'not an ELF file');
  });

  it('rejects /bin/ls truncated to 100 bytes', () => {
    expectElfError(ls.slice(0, 100), 'truncated ELF: program headers past end of file');
  });

  it('rejects /bin/ls truncated to 2000 bytes', () => {
    expectElfError(ls.slice(0, 2000), 'truncated ELF: segment past end of file');
  });

  it('rejects a header cut short', () => {
    expectElfError(ls.slice(0, 40), /^truncated ELF/);
  });

  it('rejects a 32-bit or big-endian ELF', () => {
    expectElfError(patched((_, b) => (b[4] = 1)), 'not a 64-bit little-endian ELF');
    expectElfError(patched((_, b) => (b[5] = 2)), 'not a 64-bit little-endian ELF');
  });

  it('rejects other machines', () => {
    expectElfError(patched((dv) => dv.setUint16(18, 183, true)), 'not an x86-64 ELF (machine 183)');
  });

  it('rejects non-executable ELF types', () => {
    expectElfError(patched((dv) => dv.setUint16(16, 1, true)), 'ELF type 1 (relocatable) is not executable');
    expectElfError(patched((dv) => dv.setUint16(16, 4, true)), 'ELF type 4 (core) is not executable');
  });

  it('rejects a bad program header size or count', () => {
    expectElfError(patched((dv) => dv.setUint16(54, 32, true)), /program header size/);
    expectElfError(patched((dv) => dv.setUint16(56, 0, true)), /program header count/);
  });

  it('rejects a PT_INTERP that is not NUL-terminated or lies outside the file', () => {
    const img = parseElf(ls);
    const idx = img.phdrs.findIndex((p) => p.type === PT_INTERP);
    const interp = img.phdrs[idx]!;
    expectElfError(
      patched((_, b) => (b[interp.offset + interp.filesz - 1] = 0x41)),
      'PT_INTERP is not NUL-terminated',
    );
    const phAt = img.phoff + idx * 56;
    expectElfError(
      patched((dv) => dv.setBigUint64(phAt + 8, BigInt(ls.length - 4), true)),
      'truncated ELF: segment past end of file',
    );
  });

  it('rejects a PT_LOAD with filesz > memsz', () => {
    const img = parseElf(ls);
    const idx = img.phdrs.findIndex((p) => p.type === PT_LOAD);
    const phAt = img.phoff + idx * 56;
    expectElfError(patched((dv) => dv.setBigUint64(phAt + 40, 1n, true)), /filesz larger than memsz/);
  });
});

describe('#! scripts (fs/binfmt_script.c)', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

  it('recognises scripts', () => {
    expect(isShebang(enc('#!/bin/sh\n'))).toBe(true);
    expect(isShebang(enc('#'))).toBe(false);
    expect(isShebang(new Uint8Array(0))).toBe(false);
    expect(isShebang(read('/bin/ls'))).toBe(false);
    if (existsSync('/usr/bin/ldd')) {
      const ldd = read('/usr/bin/ldd');
      if (isShebang(ldd)) expect(parseShebang(ldd).interpreter).toMatch(/^\//);
    }
  });

  it('splits interpreter and one optional argument', () => {
    expect(parseShebang(enc('#!/bin/sh -e\n'))).toEqual({ interpreter: '/bin/sh', arg: '-e' });
    expect(parseShebang(enc('#! /usr/bin/env  python3  -u \n'))).toEqual({
      interpreter: '/usr/bin/env',
      arg: 'python3  -u',
    });
    expect(parseShebang(enc('#!/bin/sh\necho hi\n'))).toEqual({ interpreter: '/bin/sh' });
    expect(parseShebang(enc('#!/bin/sh \t \n'))).toEqual({ interpreter: '/bin/sh' });
    expect(parseShebang(enc('#!\t/bin/bash\t-x\t\n'))).toEqual({ interpreter: '/bin/bash', arg: '-x' });
    expect(parseShebang(enc('#!/bin/sh'))).toEqual({ interpreter: '/bin/sh' });
    expect(parseShebang(enc('#!/bin/sh\0 -x\n'))).toEqual({ interpreter: '/bin/sh' });
  });

  it('rejects an empty interpreter line', () => {
    for (const s of ['#!\n', '#!   \n', '#!', '#!\t\n/bin/sh\n']) {
      expect(() => parseShebang(enc(s))).toThrow(new ElfError('bad interpreter line'));
    }
    expect(() => parseShebang(enc('echo hi\n'))).toThrow(ElfError);
  });

  it('looks only at the first 256 bytes', () => {
    // Argument cut at byte 255 is fine (the interpreter can re-read the file).
    const longArg = '#!/bin/sh ' + 'a'.repeat(400) + '\n';
    const r = parseShebang(enc(longArg));
    expect(r.interpreter).toBe('/bin/sh');
    expect(r.arg).toBe('a'.repeat(255 - 10));
    // An interpreter path that does not end inside the buffer is refused.
    expect(() => parseShebang(enc('#!/' + 'x'.repeat(300) + '\n'))).toThrow(ElfError);
    // A newline after byte 256 does not count.
    expect(() => parseShebang(enc('#!' + ' '.repeat(300) + '/bin/sh\n'))).toThrow(ElfError);
  });
});

/** Decode an initial stack the way a libc _start would. */
function decodeStack(st: InitialStack, stackTop: number) {
  const dv = new DataView(st.bytes.buffer, st.bytes.byteOffset, st.bytes.byteLength);
  const pointers: number[] = [];
  const word = (addr: number): number => {
    expect(addr).toBeGreaterThanOrEqual(st.sp);
    expect(addr + 8).toBeLessThanOrEqual(stackTop);
    return Number(dv.getBigUint64(addr - st.sp, true));
  };
  const cstr = (addr: number): string => {
    pointers.push(addr);
    expect(addr).toBeGreaterThanOrEqual(st.sp);
    expect(addr).toBeLessThan(stackTop);
    const off = addr - st.sp;
    const end = st.bytes.indexOf(0, off);
    expect(end).toBeGreaterThanOrEqual(0);
    return new TextDecoder().decode(st.bytes.subarray(off, end));
  };
  let a = st.sp;
  const argc = word(a);
  a += 8;
  const argv: string[] = [];
  for (let i = 0; i < argc; i++, a += 8) argv.push(cstr(word(a)));
  expect(word(a)).toBe(0);
  a += 8;
  const envp: string[] = [];
  for (; word(a) !== 0; a += 8) envp.push(cstr(word(a)));
  a += 8;
  const auxv: Array<[number, number]> = [];
  for (;;) {
    const t = word(a);
    const v = word(a + 8);
    a += 16;
    auxv.push([t, v]);
    if (t === AT.NULL) break;
  }
  return { argc, argv, envp, auxv, pointers, auxvEnd: a, cstr };
}

describe('buildInitialStack (fs/binfmt_elf.c: create_elf_tables)', () => {
  const stackTop = 0x7fff_f000_0000;
  const random = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
  const base: InitialStackInput = {
    stackTop,
    argv: ['/bin/prog', 'one', 'two words', ''],
    envp: ['HOME=/root', 'PATH=/usr/bin:/bin', 'EMPTY='],
    execfn: '/bin/prog',
    platform: 'x86_64',
    random,
    auxv: [
      [AT.MINSIGSTKSZ, 0x2eb0],
      [AT.HWCAP, 0x178bfbff],
      [AT.PAGESZ, 4096],
      [AT.CLKTCK, 100],
      [AT.PHDR, 0x400040],
      [AT.PHENT, 56],
      [AT.PHNUM, 10],
      [AT.BASE, 0],
      [AT.FLAGS, 0],
      [AT.ENTRY, 0x401000],
      [AT.UID, 1000],
      [AT.EUID, 1000],
      [AT.GID, 100],
      [AT.EGID, 100],
      [AT.SECURE, 0],
      [AT.HWCAP2, 2],
    ],
  };

  it('builds a stack that decodes back to its inputs', () => {
    const st = buildInitialStack(base);
    expect(st.sp % 16).toBe(0);
    expect(st.bytes.length).toBe(stackTop - st.sp);
    const d = decodeStack(st, stackTop);
    expect(d.argc).toBe(4);
    expect(d.argv).toEqual(base.argv);
    expect(d.envp).toEqual(base.envp);

    const aux = new Map(d.auxv);
    for (const [t, v] of base.auxv) expect(aux.get(t)).toBe(v);
    // Linux order: ..., SECURE, RANDOM, HWCAP2, EXECFN, PLATFORM, NULL.
    expect(d.auxv.slice(-6).map(([t]) => t)).toEqual([
      AT.SECURE,
      AT.RANDOM,
      AT.HWCAP2,
      AT.EXECFN,
      AT.PLATFORM,
      AT.NULL,
    ]);
    expect(d.auxv.slice(0, 15)).toEqual(base.auxv.slice(0, 15));

    const randomAddr = aux.get(AT.RANDOM)!;
    expect(randomAddr).toBeGreaterThanOrEqual(d.auxvEnd);
    expect(randomAddr + 16).toBeLessThanOrEqual(stackTop);
    expect(st.bytes.subarray(randomAddr - st.sp, randomAddr - st.sp + 16)).toEqual(random);
    expect(d.cstr(aux.get(AT.EXECFN)!)).toBe('/bin/prog');
    expect(d.cstr(aux.get(AT.PLATFORM)!)).toBe('x86_64');
    // Platform string directly above the random bytes, as in Linux.
    expect(aux.get(AT.PLATFORM)).toBe(randomAddr + 16);

    // Top: 8 zero bytes, execfn just below.
    expect(st.bytes.subarray(st.bytes.length - 8)).toEqual(new Uint8Array(8));
    expect(aux.get(AT.EXECFN)).toBe(stackTop - 8 - '/bin/prog\0'.length);

    // String areas: argv then envp, contiguous, ending at execfn.
    const enc = new TextEncoder();
    const cmdline = st.bytes.subarray(st.argvStart - st.sp, st.envStart - st.sp);
    expect(cmdline).toEqual(enc.encode('/bin/prog\0one\0two words\0\0'));
    const environ = st.bytes.subarray(st.envStart - st.sp, st.envEnd - st.sp);
    expect(environ).toEqual(enc.encode('HOME=/root\0PATH=/usr/bin:/bin\0EMPTY=\0'));
    expect(st.envEnd).toBe(aux.get(AT.EXECFN));

    for (const p of d.pointers) {
      expect(p).toBeGreaterThanOrEqual(st.sp);
      expect(p).toBeLessThan(stackTop);
    }
  });

  it('keeps sp 16-byte aligned for every argc/envc parity and string length', () => {
    for (let argc = 0; argc < 4; argc++) {
      for (let envc = 0; envc < 4; envc++) {
        for (let extra = 0; extra < 17; extra += 5) {
          const input: InitialStackInput = {
            ...base,
            argv: Array.from({ length: argc }, (_, i) => 'a'.repeat(i + extra)),
            envp: Array.from({ length: envc }, (_, i) => `V${i}=${'x'.repeat(extra)}`),
            auxv: base.auxv.slice(0, argc + envc + 3),
          };
          const st = buildInitialStack(input);
          expect(st.sp % 16).toBe(0);
          const d = decodeStack(st, stackTop);
          expect(d.argv).toEqual(input.argv);
          expect(d.envp).toEqual(input.envp);
          expect(new Map(d.auxv).get(AT.RANDOM)).toBeGreaterThanOrEqual(d.auxvEnd);
        }
      }
    }
  });

  it('accepts byte strings and places RSEQ entries after PLATFORM', () => {
    const st = buildInitialStack({
      ...base,
      argv: [Uint8Array.of(0xff, 0x41)],
      envp: [],
      auxv: [
        [AT.PAGESZ, 4096],
        [AT.RSEQ_FEATURE_SIZE, 28],
        [AT.RSEQ_ALIGN, 32],
      ],
    });
    const d = decodeStack(st, stackTop);
    expect(d.auxv.map(([t]) => t)).toEqual([
      AT.PAGESZ,
      AT.RANDOM,
      AT.EXECFN,
      AT.PLATFORM,
      AT.RSEQ_FEATURE_SIZE,
      AT.RSEQ_ALIGN,
      AT.NULL,
    ]);
    expect(st.bytes.subarray(st.argvStart - st.sp, st.envStart - st.sp)).toEqual(Uint8Array.of(0xff, 0x41, 0));
    expect(st.envStart).toBe(st.envEnd);
  });

  it('rejects bad input', () => {
    expect(() => buildInitialStack({ ...base, random: new Uint8Array(15) })).toThrow(RangeError);
    expect(() => buildInitialStack({ ...base, stackTop: stackTop + 8 })).toThrow(RangeError);
    expect(() => buildInitialStack({ ...base, argv: ['a\0b'] })).toThrow(RangeError);
    expect(() => buildInitialStack({ ...base, auxv: [[AT.RANDOM, 0]] })).toThrow(RangeError);
    expect(() => buildInitialStack({ ...base, auxv: [[AT.PAGESZ, -1]] })).toThrow(RangeError);
  });

  // Cross-check against the real kernel: a process started without address
  // randomisation (setarch -R disables arch_align_stack's random offset) dumps
  // its own stack from /proc/self; we rebuild it from the same inputs.
  const python = '/usr/bin/python3.11';
  const canCompare = existsSync(python) && existsSync('/usr/bin/setarch');
  it.skipIf(!canCompare)('matches the stack Linux builds, byte for byte', () => {
    const script = [
      'import json',
      "st=open('/proc/self/stat').read(); f=st[st.rindex(')')+2:].split()",
      'sp=int(f[25]); mm=[int(x) for x in f[45:49]]',
      "top=[int(l.split()[0].split('-')[1],16) for l in open('/proc/self/maps') if l.rstrip().endswith('[stack]')][0]",
      "m=open('/proc/self/mem','rb'); m.seek(sp); mem=m.read(top-sp)",
      "print(json.dumps({'sp':sp,'top':top,'mm':mm,'mem':mem.hex(),'auxv':open('/proc/self/auxv','rb').read().hex()}))",
    ].join('\n');
    const env = { SNAPVISOR_TEST: 'stack layout', LANG: 'C', Z: '' };
    const r = spawnSync('/usr/bin/setarch', ['x86_64', '-R', python, '-c', script, 'arg one', ''], {
      env,
      encoding: 'utf8',
    });
    if (r.status !== 0) {
      // setarch may be refused (e.g. seccomp on personality()); nothing to compare then.
      console.warn(`skipping kernel comparison: ${r.stderr || r.error}`);
      return;
    }
    const out = JSON.parse(r.stdout) as { sp: number; top: number; mm: number[]; mem: string; auxv: string };
    const mem = Uint8Array.from(Buffer.from(out.mem, 'hex'));
    const rawAuxv = Buffer.from(out.auxv, 'hex');
    const realAuxv: Array<[number, number]> = [];
    for (let i = 0; i + 16 <= rawAuxv.length; i += 16) {
      const t = Number(rawAuxv.readBigUInt64LE(i));
      realAuxv.push([t, Number(rawAuxv.readBigUInt64LE(i + 8))]);
      if (t === AT.NULL) break;
    }
    const randomAddr = new Map(realAuxv).get(AT.RANDOM)!;
    const dropped: ReadonlySet<number> = new Set([AT.RANDOM, AT.EXECFN, AT.PLATFORM, AT.NULL]);
    const st = buildInitialStack({
      stackTop: out.top,
      argv: [python, '-c', script, 'arg one', ''],
      envp: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      execfn: python,
      platform: 'x86_64',
      random: mem.slice(randomAddr - out.sp, randomAddr - out.sp + 16),
      auxv: realAuxv.filter(([t]) => !dropped.has(t)),
    });
    expect(st.sp).toBe(out.sp);
    expect([st.argvStart, st.envStart, st.envStart, st.envEnd]).toEqual(out.mm);
    expect(Buffer.from(st.bytes).toString('hex')).toBe(out.mem);
  });
});

describe('/proc/self/maps of a loaded program', () => {
  it('shows each of python3\'s segments as one line, as natively (neighbouring VMAs Linux would merge are merged)', async () => {
    const { native, snapvisor } = await import('./helpers.js');
    const prog = "import re; l = open('/proc/self/maps').read().splitlines(); print(sorted(set(re.split(' +', x)[1] for x in l if x.endswith('python3.11'))), sum(x.endswith('python3.11') for x in l))";
    const n = await native(['/usr/bin/python3', '-c', prog]);
    const s = await snapvisor(['run', '--', '/usr/bin/python3', '-c', prog], { timeoutMs: 30_000 });
    expect(s.stderr).toBe('');
    expect(s.stdout.toString()).toBe(n.stdout.toString());
  }, 60_000);
});

describe('exec reads a host executable\'s headers, not the whole file', () => {
  it('runs a program whose PT_INTERP string lies past its first 4 KiB, as natively (exec reads on for it)', async () => {
    const { native, freshDir, expectSandboxOutput } = await import('./helpers.js');
    // /usr/bin/echo with its PT_INTERP pointing at a copy of the interpreter's name appended at the end of the file.
    const b = Buffer.from(readFileSync('/usr/bin/echo'));
    const img = parseElf(b);
    const idx = img.phdrs.findIndex((p) => p.type === PT_INTERP);
    const name = Buffer.from(`${img.interp}\0`, 'latin1');
    const at = b.length + 4096;
    const out = Buffer.concat([b, Buffer.alloc(4096), name]);
    out.writeBigUInt64LE(BigInt(at), img.phoff + idx * 56 + 8); // p_offset
    expect(at).toBeGreaterThan(4096);
    const file = `${freshDir('elf-far-interp')}/echo`;
    writeFileSync(file, out, { mode: 0o755 });
    expect(parseElf(out).interp).toBe(img.interp);
    expect(() => parseElf(out.subarray(0, 4096), out.length)).toThrow(ElfPrefixTooShort);
    const n = await native([file, 'far', 'interpreter']);
    expect(n.stdout.toString()).toBe('far interpreter\n');
    await expectSandboxOutput([file, 'far', 'interpreter'], 'far interpreter\n');
  }, 60_000);
});
