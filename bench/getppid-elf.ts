/**
 * The benchmark guest: a tiny static x86-64 ELF, generated here so the benchmark does
 * not need a compiler. It makes N getppid syscalls in a loop, then exit_group(0):
 *
 *   mov   ecx, N            b9 NN NN NN NN
 *   test  ecx, ecx          85 c9
 *   jz    done              74 0d           (N = 0: skip the loop, else dec would wrap)
 * loop:
 *   mov   eax, 110          b8 6e 00 00 00  (getppid)
 *   push  rcx               51              (syscall clobbers rcx and r11)
 *   syscall                 0f 05
 *   pop   rcx               59
 *   dec   ecx               ff c9
 *   jnz   loop              75 f3           (-13: back over the 11-byte body and itself)
 * done:
 *   mov   eax, 231          b8 e7 00 00 00  (exit_group)
 *   xor   edi, edi          31 ff
 *   syscall                 0f 05
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = 0x400000;
const EHDR = 64;
const PHDR = 56;

export function getppidLoopCode(n: number): Uint8Array {
  return syscallLoopCode([0xb8, 0x6e, 0, 0, 0], n); // mov eax, 110 (getppid)
}

/**
 * The same loop around another syscall: `setup` is the bytes that load its registers (eax = the
 * number, edi/esi/edx = arguments; at most 111 bytes, rcx is saved around the syscall).
 */
export function syscallLoopCode(setup: number[], n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`bad syscall count ${n}`);
  const imm = [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  const body = [...setup, 0x51, 0x0f, 0x05, 0x59, 0xff, 0xc9];
  const jnz = [0x75, (-(body.length + 2)) & 0xff];
  const done = [0xb8, 0xe7, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
  const skip = [0x85, 0xc9, 0x74, body.length + jnz.length];
  return Uint8Array.from([0xb9, ...imm, ...skip, ...body, ...jnz, ...done]);
}

/** ELF64 ET_EXEC with one R+X PT_LOAD of the whole file at 0x400000. */
export function getppidLoopElf(n: number): Uint8Array {
  return loopElf(getppidLoopCode(n));
}

/** ELF64 ET_EXEC with one R+X PT_LOAD of the whole file at 0x400000, entry at the start of `code`. */
export function loopElf(code: Uint8Array): Uint8Array {
  const size = EHDR + PHDR + code.length;
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]); // \x7fELF, 64-bit, little-endian, version 1, SysV
  v.setUint16(16, 2, true); // e_type ET_EXEC
  v.setUint16(18, 62, true); // e_machine EM_X86_64
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(24, BigInt(BASE + EHDR + PHDR), true); // e_entry
  v.setBigUint64(32, BigInt(EHDR), true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff
  v.setUint32(48, 0, true); // e_flags
  v.setUint16(52, EHDR, true); // e_ehsize
  v.setUint16(54, PHDR, true); // e_phentsize
  v.setUint16(56, 1, true); // e_phnum
  v.setUint16(58, 64, true); // e_shentsize
  v.setUint16(60, 0, true); // e_shnum
  v.setUint16(62, 0, true); // e_shstrndx
  const p = EHDR;
  v.setUint32(p + 0, 1, true); // p_type PT_LOAD
  v.setUint32(p + 4, 5, true); // p_flags R+X
  v.setBigUint64(p + 8, 0n, true); // p_offset
  v.setBigUint64(p + 16, BigInt(BASE), true); // p_vaddr
  v.setBigUint64(p + 24, BigInt(BASE), true); // p_paddr
  v.setBigUint64(p + 32, BigInt(size), true); // p_filesz
  v.setBigUint64(p + 40, BigInt(size), true); // p_memsz
  v.setBigUint64(p + 48, 0x1000n, true); // p_align
  b.set(code, EHDR + PHDR);
  return b;
}

/** Write the guest for N syscalls into dir (mode 0755) and return its path. */
export function writeGetppidLoop(dir: string, n: number): string {
  const file = path.join(dir, `getppid-${n}`);
  fs.writeFileSync(file, getppidLoopElf(n), { mode: 0o755 });
  fs.chmodSync(file, 0o755);
  return file;
}

export function benchTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-bench-'));
}
