/**
 * The stub: a tiny static x86-64 ELF generated here (no compiler, nothing shipped
 * prebuilt) that the ptrace platform spawns as the host process behind a guest
 * address space. It prepares itself (see SETUP below: every host mapping but its own page
 * and [vsyscall] gone, its seccomp filter, its batch table mapped), stops itself with
 * SIGSTOP, then loops on `syscall; int3`: the
 * kernel points registers at that `syscall` to run host syscalls inside the stub
 * (mmap/munmap/mprotect of memory-file windows). Guest syscalls never reach it:
 * they are caught with PTRACE_SYSEMU.
 */

/** Guest address where the stub's single page is loaded (kept out of guest ranges by the mm). */
export const STUB_BASE = 0x7fff_f000_0000;
const CODE_OFFSET = 64 + 56; // ELF header + one program header

// mov eax,39 (getpid); syscall; mov edi,eax; mov esi,19 (SIGSTOP); mov eax,62 (kill); syscall;
// loop: syscall; int3; jmp loop
// batch: the syscalls of a table of BATCH_ENTRY_BYTES entries {nr, a0..a5} at r12, r13 of them,
// stopping at the first that fails (rax in [-4095, -1]); then int3. Assembled with GNU as:
//   batch: mov rax,[r12]; mov rdi,[r12+8]; mov rsi,[r12+16]; mov rdx,[r12+24]; mov r10,[r12+32]
//          mov r8,[r12+40]; mov r9,[r12+48]; syscall; cmp rax,-4095; jae done
//          add r12,56; dec r13; jnz batch
//   done:  int3; jmp done
// touch: read one byte of every page of a table of {start, pages} entries (16 bytes each) at r12,
// r13 of them (pages ≥ 1), in the stub's own user mode; then int3:
//   touch: mov rdi,[r12]; mov rsi,[r12+8]
//   t1:    mov al,[rdi]; add rdi,4096; dec rsi; jnz t1
//          add r12,16; dec r13; jnz touch
//   tdone: int3; jmp tdone
const CODE = [
  0xb8, 39, 0, 0, 0, 0x0f, 0x05,
  0x89, 0xc7, 0xbe, 19, 0, 0, 0, 0xb8, 62, 0, 0, 0, 0x0f, 0x05,
  0x0f, 0x05, 0xcc, 0xeb, 0xfb,
  0x49, 0x8b, 0x04, 0x24, 0x49, 0x8b, 0x7c, 0x24, 0x08, 0x49, 0x8b, 0x74, 0x24, 0x10,
  0x49, 0x8b, 0x54, 0x24, 0x18, 0x4d, 0x8b, 0x54, 0x24, 0x20, 0x4d, 0x8b, 0x44, 0x24, 0x28,
  0x4d, 0x8b, 0x4c, 0x24, 0x30, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x73, 0x09,
  0x49, 0x83, 0xc4, 0x38, 0x49, 0xff, 0xcd, 0x75, 0xcb,
  0xcc, 0xeb, 0xfd,
  // touch (offset TOUCH_OFFSET)
  0x49, 0x8b, 0x3c, 0x24, 0x49, 0x8b, 0x74, 0x24, 0x08,
  0x8a, 0x07, 0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, 0x48, 0xff, 0xce, 0x75, 0xf2,
  0x49, 0x83, 0xc4, 0x10, 0x49, 0xff, 0xcd, 0x75, 0xe0,
  0xcc, 0xeb, 0xfd,
];
/**
 * The stub's entry point: it prepares itself before it first stops, so starting one costs the
 * tracer no injected syscall (eight round trips and a read of /proc/PID/maps before). Assembled
 * with GNU as; `imm64` fields are filled in by stubElf:
 *   prctl(PR_SET_NAME, "snapvisor-stub")              ; its name in ps (exec'd as /proc/PID/fd/N, it
 *                                                     ; would be "N", and its argv goes with the stack)
 *   prctl(PR_SET_PDEATHSIG, SIGKILL)                  ; a tracer that dies before it seizes the stub
 *                                                     ; (PTRACE_O_EXITKILL covers after) leaves none
 *   munmap(0, STUB_BASE)                              ; the host's stack, [vdso], [vvar] below us
 *   munmap(STUB_BASE + 4096, HOST_MAP_TOP - that)     ; and anything above our page
 *   if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
 *     seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog)     ; FILTER below; best effort, as on hosts without seccomp
 *   if (mmap(STUB_BATCH_TABLE_ADDR, STUB_BATCH_TABLE_BYTES, PROT_READ, MAP_SHARED | MAP_FIXED,
 *            STUB_BATCH_TABLE_FD, 0) != STUB_BATCH_TABLE_ADDR) exit_group(STUB_SETUP_FAILED)
 *   close(STUB_BATCH_TABLE_FD)
 *   jmp CODE[0]                                       ; getpid; kill(SIGSTOP); loop
 * No instruction uses the stack (the host's one is unmapped by then).
 */
const SETUP = [
  0xbf, 15, 0, 0, 0, 0x48, 0xbe, ...imm64(), 0xb8, 157, 0, 0, 0, 0x0f, 0x05,
  0xbf, 1, 0, 0, 0, 0xbe, 9, 0, 0, 0, 0xb8, 157, 0, 0, 0, 0x0f, 0x05,
  0x31, 0xff, 0x48, 0xbe, ...imm64(), 0xb8, 11, 0, 0, 0, 0x0f, 0x05,
  0x48, 0xbf, ...imm64(), 0x48, 0xbe, ...imm64(), 0xb8, 11, 0, 0, 0, 0x0f, 0x05,
  0xbf, 38, 0, 0, 0, 0xbe, 1, 0, 0, 0, 0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0xb8, 157, 0, 0, 0, 0x0f, 0x05,
  0x48, 0x85, 0xc0, 0x75, 0x18,
  0xbf, 1, 0, 0, 0, 0x31, 0xf6, 0x48, 0xba, ...imm64(), 0xb8, 0x3d, 0x01, 0, 0, 0x0f, 0x05,
  0x48, 0xbf, ...imm64(), 0xbe, 0, 0, 1, 0, 0xba, 1, 0, 0, 0, 0x41, 0xba, 0x11, 0, 0, 0, 0x41, 0xb8, 20, 0, 0, 0, 0x45, 0x31, 0xc9, 0xb8, 9, 0, 0, 0, 0x0f, 0x05,
  0x48, 0x39, 0xf8, 0x75, 0x11,
  0xbf, 20, 0, 0, 0, 0xb8, 3, 0, 0, 0, 0x0f, 0x05,
  0xe9, 0, 0, 0, 0, // jmp rel32 to CODE[0], filled in by stubElf
  0xbf, 0x7e, 0, 0, 0, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05,
];
function imm64(): number[] { return [0, 0, 0, 0, 0, 0, 0, 0]; }
/** Bytes of the two prctl calls that open SETUP (the offsets below were measured without them). */
const SETUP_PRCTL_BYTES = 39;
/** Offsets in SETUP of its imm64 fields, in order, and of the jmp's rel32. */
const SETUP_IMM64 = [7, ...[4, 21, 31, 85, 102].map((o) => o + SETUP_PRCTL_BYTES)];
const SETUP_JMP_REL32 = 160 + SETUP_PRCTL_BYTES;
/** The stub's process name (comm, at most 15 bytes), what `ps` and tests look for. */
export const STUB_NAME = 'snapvisor-stub';
/** Exit status of a stub that could not map its batch table (so it never stopped). */
export const STUB_SETUP_FAILED = 126;
/** Top of the host's default mmap and stack area (47-bit user space; LA57 hosts keep them below it too). */
const HOST_MAP_TOP = 0x7fff_ffff_f000;

/** Offset of the touch loop in CODE (its last 3 bytes are `tdone: int3; jmp tdone`). */
const TOUCH_OFFSET = CODE.length - 35;
/** Guest address of the injection site (`syscall` followed by `int3`). */
export const STUB_SYSCALL_ADDR = STUB_BASE + CODE_OFFSET + 21;
/** Guest address of the batch loop (r12: table address, r13: entry count ≥ 1). */
export const STUB_BATCH_ADDR = STUB_BASE + CODE_OFFSET + 26;
/**
 * Guest address of the touch loop (r12: table address, r13: entry count ≥ 1; entries are
 * {start address, page count ≥ 1}, TOUCH_ENTRY_BYTES each): it reads a byte of every page, so the
 * host fills the stub's page tables for them (a guest's first touch of a page it maps then costs
 * no host fault). Ends at its int3, at STUB_TOUCH_DONE_ADDR.
 */
export const STUB_TOUCH_ADDR = STUB_BASE + CODE_OFFSET + TOUCH_OFFSET;
/** Guest address of the touch loop's final int3 (a fault inside the loop resumes there: the touch is abandoned). */
export const STUB_TOUCH_DONE_ADDR = STUB_TOUCH_ADDR + 32;
/** Bytes of one touch table entry: start address and page count, 8 bytes each. */
export const TOUCH_ENTRY_BYTES = 16;
/** Bytes of one batch table entry: the syscall number and six arguments, 8 bytes each. */
export const BATCH_ENTRY_BYTES = 56;
/**
 * Guest address of the stub's batch table: a read-only MAP_SHARED view of a memfd the platform
 * writes (inside the stub's reserved megabyte, so no guest mapping can take its place, and
 * read-only so guest code running in the stub's process cannot change what the platform runs).
 */
export const STUB_BATCH_TABLE_ADDR = STUB_BASE + 0x1_0000;
/** Bytes of the batch table (a multiple of the page size). */
export const STUB_BATCH_TABLE_BYTES = 64 * 1024;
/** Host fd number at which the stub receives the batch table's memfd (mapped, then closed, at start). */
export const STUB_BATCH_TABLE_FD = 20;
/** Host fd number at which the stub receives the kernel's memory file. */
export const STUB_MEMFD = 3;
/** Host fd number at which the stub receives a restored checkpoint's first page-file layer (read-only), if any; layer k is at STUB_BACKING_FD + k - 1. */
export const STUB_BACKING_FD = 4;

/**
 * A seccomp filter (classic BPF, struct sock_filter[]) that the platform installs in the stub:
 * SECCOMP_RET_TRAP for a syscall whose instruction pointer is in the [vsyscall] page — the host
 * kernel's vsyscall emulation consults seccomp, never ptrace, so without it a guest's call of
 * time()/gettimeofday()/getcpu() at their fixed vsyscall addresses would run on the host,
 * untrapped — and SECCOMP_RET_ALLOW for everything else (only the injected syscalls reach seccomp:
 * PTRACE_SYSEMU stops guest syscalls before it).
 */
const FILTER: Array<[number, number, number, number]> = [
  [0x20, 0, 0, 12],          // ld [instruction_pointer + 4] (high half)
  [0x15, 0, 3, 0xffffffff],  // jeq 0xffffffff ? next : allow
  [0x20, 0, 0, 8],           // ld [instruction_pointer] (low half)
  [0x35, 0, 1, 0xff600000],  // jge 0xff600000 ? trap : allow
  [0x06, 0, 0, 0x00030000],  // ret SECCOMP_RET_TRAP
  [0x06, 0, 0, 0x7fff0000],  // ret SECCOMP_RET_ALLOW
];
const SETUP_OFFSET = CODE_OFFSET + CODE.length;
const FILTER_OFFSET = Math.ceil((SETUP_OFFSET + SETUP.length) / 8) * 8;
const FPROG_OFFSET = FILTER_OFFSET + FILTER.length * 8;
/** Offset of STUB_NAME, NUL-terminated, after the sock_fprog (16 bytes). */
const NAME_OFFSET = FPROG_OFFSET + 16;
/** Guest address of the filter's struct sock_fprog in the stub's page (for seccomp(SECCOMP_SET_MODE_FILTER)). */
export const STUB_SECCOMP_FPROG_ADDR = STUB_BASE + FPROG_OFFSET;

/** The stub executable's bytes (ELF64, ET_EXEC, one R+X PT_LOAD at STUB_BASE). */
export function stubElf(): Uint8Array {
  const size = NAME_OFFSET + 16;
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  v.setUint16(16, 2, true);            // e_type ET_EXEC
  v.setUint16(18, 62, true);           // e_machine EM_X86_64
  v.setUint32(20, 1, true);            // e_version
  v.setBigUint64(24, BigInt(STUB_BASE + SETUP_OFFSET), true); // e_entry: SETUP
  v.setBigUint64(32, 64n, true);       // e_phoff
  v.setUint16(52, 64, true);           // e_ehsize
  v.setUint16(54, 56, true);           // e_phentsize
  v.setUint16(56, 1, true);            // e_phnum
  v.setUint32(64, 1, true);            // p_type PT_LOAD
  v.setUint32(68, 5, true);            // p_flags R|X
  v.setBigUint64(72, 0n, true);        // p_offset
  v.setBigUint64(80, BigInt(STUB_BASE), true);
  v.setBigUint64(88, BigInt(STUB_BASE), true);
  v.setBigUint64(96, BigInt(size), true);
  v.setBigUint64(104, BigInt(size), true);
  v.setBigUint64(112, 0x1000n, true);
  b.set(CODE, CODE_OFFSET);
  b.set(SETUP, SETUP_OFFSET);
  const stubTop = STUB_BASE + 0x1000;
  [STUB_BASE + NAME_OFFSET, STUB_BASE, stubTop, HOST_MAP_TOP - stubTop, STUB_SECCOMP_FPROG_ADDR, STUB_BATCH_TABLE_ADDR]
    .forEach((value, i) => v.setBigUint64(SETUP_OFFSET + SETUP_IMM64[i], BigInt(value), true));
  v.setInt32(SETUP_OFFSET + SETUP_JMP_REL32, CODE_OFFSET - (SETUP_OFFSET + SETUP_JMP_REL32 + 4), true);
  FILTER.forEach(([code, jt, jf, k], i) => {
    v.setUint16(FILTER_OFFSET + i * 8, code, true);
    b[FILTER_OFFSET + i * 8 + 2] = jt;
    b[FILTER_OFFSET + i * 8 + 3] = jf;
    v.setUint32(FILTER_OFFSET + i * 8 + 4, k, true);
  });
  v.setUint16(FPROG_OFFSET, FILTER.length, true);                                  // sock_fprog.len
  v.setBigUint64(FPROG_OFFSET + 8, BigInt(STUB_BASE + FILTER_OFFSET), true);       // sock_fprog.filter
  b.set(new TextEncoder().encode(STUB_NAME), NAME_OFFSET);                         // NUL: the array's zeros
  return b;
}
