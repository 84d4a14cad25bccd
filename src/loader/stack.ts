/**
 * The initial process stack (argc, argv, envp, auxv and the strings they point
 * to), laid out byte for byte as Linux does it for an x86-64 ELF exec:
 * fs/exec.c: __bprm_mm_init() / do_execveat_common() / copy_strings() place
 * the strings, fs/binfmt_elf.c: create_elf_tables() the rest.
 *
 * Units: addresses are guest virtual addresses, sizes are bytes, every word is
 * a little-endian u64.
 */

/**
 * Auxiliary vector entry types (a_type values), from include/uapi/linux/auxvec.h
 * and arch/x86/include/uapi/asm/auxvec.h. Documented in `man 3 getauxval`.
 */
export const AT = {
  NULL: 0,
  EXECFD: 2,
  PHDR: 3,
  PHENT: 4,
  PHNUM: 5,
  PAGESZ: 6,
  BASE: 7,
  FLAGS: 8,
  ENTRY: 9,
  UID: 11,
  EUID: 12,
  GID: 13,
  EGID: 14,
  PLATFORM: 15,
  HWCAP: 16,
  CLKTCK: 17,
  SECURE: 23,
  BASE_PLATFORM: 24,
  RANDOM: 25,
  HWCAP2: 26,
  RSEQ_FEATURE_SIZE: 27,
  RSEQ_ALIGN: 28,
  HWCAP3: 29,
  HWCAP4: 30,
  EXECFN: 31,
  SYSINFO_EHDR: 33,
  MINSIGSTKSZ: 51,
} as const;

/**
 * What buildInitialStack() needs. Strings given as JS strings are encoded as
 * UTF-8; byte arrays are used as is. None may contain a NUL byte (they are C
 * strings). Size limits (MAX_ARG_STRLEN, ARG_MAX → E2BIG) and Linux's
 * "empty argv becomes [""]" rule belong to execve(), not to this function.
 */
export interface InitialStackInput {
  /** Guest address one past the highest stack byte; page aligned (4096). */
  stackTop: number;
  /** Argument strings, argv[0] first. */
  argv: Uint8Array[] | string[];
  /** Environment strings ("NAME=value"), in order. */
  envp: Uint8Array[] | string[];
  /** The path given to execve() (bprm->filename); AT_EXECFN points at it. */
  execfn: string | Uint8Array;
  /** AT_PLATFORM string, "x86_64" on x86-64 (ELF_PLATFORM); '' means no AT_PLATFORM. */
  platform: string;
  /** Exactly 16 bytes for AT_RANDOM. */
  random: Uint8Array;
  /**
   * [a_type, a_val] pairs in Linux order, without RANDOM, EXECFN, PLATFORM and
   * NULL (added here). Values are u64 as non-negative integers ≤ 2^53.
   */
  auxv: Array<[number, number]>;
}

/** The built stack image and the addresses the kernel remembers about it. */
export interface InitialStack {
  /** Guest address of argc: the initial %rsp, 16-byte aligned. */
  sp: number;
  /** Memory contents from sp (index 0) up to stackTop (exclusive); length stackTop - sp bytes. */
  bytes: Uint8Array;
  /** Guest address of the first argv string (mm->arg_start; /proc/self/cmdline starts here). */
  argvStart: number;
  /** Guest address of the first envp string (mm->arg_end == mm->env_start). */
  envStart: number;
  /** Guest address one past the last envp string's NUL (mm->env_end). */
  envEnd: number;
}

const PAGE = 4096;
const WORD = 8;

/** Auxv types Linux emits between AT_RANDOM and AT_EXECFN (fs/binfmt_elf.c: create_elf_tables()). */
const BETWEEN_RANDOM_AND_EXECFN: ReadonlySet<number> = new Set([AT.HWCAP2, AT.HWCAP3, AT.HWCAP4]);
/** Auxv types Linux emits after AT_PLATFORM (fs/binfmt_elf.c: create_elf_tables()). */
const AFTER_PLATFORM: ReadonlySet<number> = new Set([
  AT.BASE_PLATFORM,
  AT.EXECFD,
  AT.RSEQ_FEATURE_SIZE,
  AT.RSEQ_ALIGN,
]);
/** Types the caller must not pass: buildInitialStack() supplies them. */
const SUPPLIED: ReadonlySet<number> = new Set([AT.NULL, AT.RANDOM, AT.EXECFN, AT.PLATFORM]);

const utf8 = new TextEncoder();

/** A C string's bytes including the terminating NUL. */
function cString(s: Uint8Array | string, what: string): Uint8Array {
  const raw = typeof s === 'string' ? utf8.encode(s) : s;
  if (raw.includes(0)) throw new RangeError(`${what} contains a NUL byte`);
  const out = new Uint8Array(raw.length + 1);
  out.set(raw);
  return out;
}

function alignDown16(x: number): number {
  return x - (x % 16);
}

/**
 * Build the initial user stack for a new process image exactly as Linux does
 * for x86-64 (fs/exec.c string copying, then fs/binfmt_elf.c:
 * create_elf_tables()), with the stack randomisation of arch_align_stack()
 * left out so the result is deterministic.
 *
 * From stackTop downwards (guest addresses):
 * - 8 zero bytes (end marker: bprm->p starts at vm_end - sizeof(void *));
 * - execfn string (AT_EXECFN), then the envp strings, then the argv strings,
 *   each NUL-terminated and in order (argv[0] lowest);
 * - alignment down to 16, the platform string (AT_PLATFORM), then the 16
 *   AT_RANDOM bytes, with no padding between them;
 * - a gap so that the final sp is 16-byte aligned (STACK_ROUND);
 * - auxv pairs ending with AT_NULL, a NULL-ended envp pointer array, a
 *   NULL-ended argv pointer array, and argc at sp.
 *
 * Auxv order: the caller's entries (in the given order) except HWCAP2/3/4 and
 * BASE_PLATFORM/EXECFD/RSEQ_*, then AT_RANDOM, then HWCAP2/3/4, AT_EXECFN,
 * AT_PLATFORM, then BASE_PLATFORM/EXECFD/RSEQ_*, then AT_NULL — Linux's order
 * when the caller's entries follow create_elf_tables().
 *
 * @throws RangeError on a misaligned stackTop, random not 16 bytes, a NUL
 *   inside a string, an auxv type this function supplies itself, or an auxv
 *   value that is not an integer in [0, 2^53]
 */
export function buildInitialStack(input: InitialStackInput): InitialStack {
  const { stackTop } = input;
  if (!Number.isSafeInteger(stackTop) || stackTop <= 0 || stackTop % PAGE !== 0) {
    throw new RangeError(`stackTop 0x${stackTop.toString(16)} is not a page-aligned address`);
  }
  if (input.random.length !== 16) {
    throw new RangeError(`random must be 16 bytes, got ${input.random.length}`);
  }
  for (const [type, val] of input.auxv) {
    if (SUPPLIED.has(type)) throw new RangeError(`auxv type ${type} is supplied by buildInitialStack`);
    if (!Number.isSafeInteger(type) || type < 0) throw new RangeError(`bad auxv type ${type}`);
    if (!Number.isSafeInteger(val) || val < 0) throw new RangeError(`bad auxv value ${val} for type ${type}`);
  }

  const argv = (input.argv as Array<Uint8Array | string>).map((s, i) => cString(s, `argv[${i}]`));
  const envp = (input.envp as Array<Uint8Array | string>).map((s, i) => cString(s, `envp[${i}]`));
  const execfn = cString(input.execfn, 'execfn');
  const platform = input.platform === '' ? undefined : cString(input.platform, 'platform');

  // Strings area, fs/exec.c: copy_string_kernel(filename), copy_strings(envp), copy_strings(argv).
  const writes: Array<[number, Uint8Array]> = [];
  let p = stackTop - WORD;
  p -= execfn.length;
  const execfnAddr = p;
  writes.push([execfnAddr, execfn]);
  const envEnd = p;
  const envAddrs: number[] = new Array(envp.length);
  for (let i = envp.length - 1; i >= 0; i--) {
    p -= envp[i]!.length;
    envAddrs[i] = p;
    writes.push([p, envp[i]!]);
  }
  const envStart = p;
  const argvAddrs: number[] = new Array(argv.length);
  for (let i = argv.length - 1; i >= 0; i--) {
    p -= argv[i]!.length;
    argvAddrs[i] = p;
    writes.push([p, argv[i]!]);
  }
  const argvStart = p;

  // create_elf_tables(): p = arch_align_stack(p) (no randomisation), platform, random bytes.
  p = alignDown16(p);
  let platformAddr = 0;
  if (platform) {
    p -= platform.length;
    platformAddr = p;
    writes.push([p, platform]);
  }
  p -= 16;
  const randomAddr = p;
  writes.push([randomAddr, input.random]);

  const early: Array<[number, number]> = [];
  const mid: Array<[number, number]> = [];
  const late: Array<[number, number]> = [];
  for (const e of input.auxv) {
    if (BETWEEN_RANDOM_AND_EXECFN.has(e[0])) mid.push(e);
    else if (AFTER_PLATFORM.has(e[0])) late.push(e);
    else early.push(e);
  }
  const auxv: Array<[number, number]> = [
    ...early,
    [AT.RANDOM, randomAddr],
    ...mid,
    [AT.EXECFN, execfnAddr],
    ...(platform ? ([[AT.PLATFORM, platformAddr]] as Array<[number, number]>) : []),
    ...late,
    [AT.NULL, 0],
  ];

  // sp = STACK_ADD(p, ei_index); sp = STACK_ROUND(sp, items).
  const items = argv.length + 1 + (envp.length + 1) + 1;
  const sp = alignDown16(p - auxv.length * 2 * WORD - items * WORD);
  if (sp < 0) throw new RangeError('initial stack does not fit below stackTop');

  const bytes = new Uint8Array(stackTop - sp);
  const dv = new DataView(bytes.buffer);
  for (const [addr, data] of writes) bytes.set(data, addr - sp);
  let w = 0;
  const put = (v: number): void => {
    dv.setBigUint64(w, BigInt(v), true);
    w += WORD;
  };
  put(argv.length);
  for (const a of argvAddrs) put(a);
  put(0);
  for (const a of envAddrs) put(a);
  put(0);
  for (const [type, val] of auxv) {
    put(type);
    put(val);
  }

  return { sp, bytes, argvStart, envStart, envEnd };
}
