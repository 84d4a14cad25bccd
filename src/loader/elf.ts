/**
 * ELF64 (x86-64) executable parsing and `#!` script-line parsing.
 *
 * Pure functions over an in-memory copy of the file: no I/O, no mapping.
 * The checks follow what Linux does before it commits to an exec
 * (fs/binfmt_elf.c: load_elf_binary(), fs/binfmt_script.c: load_script());
 * the on-disk layout follows `man 5 elf`.
 *
 * Units: every offset and size is in bytes; every address is a guest
 * virtual address as written in the file (for ET_DYN they are relative to the
 * load bias the loader picks later).
 */

/**
 * Raised for a file the kernel would refuse to exec (execve() → ENOEXEC in Linux).
 * The message is one line, e.g. "not an ELF file" or
 * "truncated ELF: program headers past end of file".
 */
export class ElfError extends Error {
  override name = 'ElfError';
}

/**
 * One Elf64_Phdr entry (`man 5 elf`, "Program header").
 * `offset`, `filesz`, `memsz`, `align` are bytes; `vaddr` is a guest address
 * (relative to the load bias for ET_DYN). `type` is a PT_* value, `flags` a
 * PF_* bit set.
 */
export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

/**
 * The parts of an ELF64 executable the loader needs (`man 5 elf`, "ELF header").
 * Addresses are guest addresses as written in the file (ET_DYN: relative to the
 * load bias); offsets and sizes are bytes.
 */
export interface ElfImage {
  /** ET_EXEC ('exec', fixed addresses) or ET_DYN ('dyn', PIE or shared object / ld.so). */
  type: 'exec' | 'dyn';
  /** e_entry: guest address of the entry point. */
  entry: number;
  /** e_phoff: file offset of the program header table, bytes. */
  phoff: number;
  /** e_phentsize: size of one program header, bytes (always 56 here). */
  phentsize: number;
  /** e_phnum: number of program headers. */
  phnum: number;
  /** All program headers, in file order. */
  phdrs: ProgramHeader[];
  /** PT_INTERP path (without the NUL), decoded as UTF-8, if the file names an interpreter. */
  interp?: string;
  /**
   * Guest address of the program headers in memory (becomes AT_PHDR once the
   * load bias is added): from PT_PHDR, else computed from the PT_LOAD whose file
   * range covers phoff (as fs/binfmt_elf.c: load_elf_binary() does); 0 if
   * neither exists.
   */
  phdrVaddr: number;
  /** Lowest PT_LOAD vaddr rounded down to 4096 (guest address). */
  minVaddr: number;
  /** End of the highest PT_LOAD (vaddr + memsz) rounded up to 4096 (guest address). */
  maxVaddr: number;
}

/** p_type: loadable segment (`man 5 elf`). */
export const PT_LOAD = 1;
/** p_type: path of the program interpreter, NUL-terminated (`man 5 elf`). */
export const PT_INTERP = 3;
/** p_type: location of the program header table itself (`man 5 elf`). */
export const PT_PHDR = 6;
/** p_type: GNU extension, p_flags says whether the stack should be executable. */
export const PT_GNU_STACK = 0x6474e551;
/** p_flags bit: segment is executable (`man 5 elf`). */
export const PF_X = 1;
/** p_flags bit: segment is writable (`man 5 elf`). */
export const PF_W = 2;
/** p_flags bit: segment is readable (`man 5 elf`). */
export const PF_R = 4;

const EHDR_SIZE = 64; // sizeof(Elf64_Ehdr), bytes
const PHDR_SIZE = 56; // sizeof(Elf64_Phdr), bytes
const PAGE = 4096;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const ET_DYN = 3;
/** x86-64 TASK_SIZE_MAX with 4-level paging: the end of user address space (bytes). */
const USER_ADDR_LIMIT = (1n << 47n) - BigInt(PAGE);
/** Linux's PATH_MAX, the largest PT_INTERP it accepts (bytes, including the NUL). */
const PATH_MAX = 4096;

const ET_NAMES: Record<number, string> = { 0: 'none', 1: 'relocatable', 4: 'core' };

/** Paths are bytes: decode one char per byte (latin1), as the rest of the kernel keeps them. */
const bytesToString = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');

function pageDown(x: number): number {
  return x - (x % PAGE);
}

function pageUp(x: number): number {
  const r = x % PAGE;
  return r === 0 ? x : x + (PAGE - r);
}

/** parseElf was given the first bytes of a file, and needs its first `bytes` bytes. */
export class ElfPrefixTooShort extends Error {
  constructor(readonly bytes: number) { super(`the first ${bytes} bytes are needed`); }
}

/**
 * Parse and validate an x86-64 ELF64 executable image held in memory.
 *
 * Follows the checks of fs/binfmt_elf.c: load_elf_binary() (magic, e_type
 * ET_EXEC/ET_DYN, e_machine EM_X86_64, e_phentsize == 56, 1 ≤ e_phnum ≤
 * 65536/56, PT_INTERP size and NUL, PT_LOAD filesz ≤ memsz and inside the user
 * address space) plus bounds checks of every table and loaded segment against
 * the file length in bytes; layout per `man 5 elf`.
 *
 * @param file the file's bytes: the whole file, or its first bytes when `fileLength` says more
 * @param fileLength the file's length in bytes (segments are checked against it)
 * @throws ElfError with a one-line message when the kernel would refuse to exec it;
 *   ElfPrefixTooShort when `file` is a prefix that ends before the program headers or the
 *   PT_INTERP string (read that many bytes and parse again)
 */
export function parseElf(file: Uint8Array, fileLength = file.length): ElfImage {
  if (file.length < 4 || file[0] !== 0x7f || file[1] !== 0x45 || file[2] !== 0x4c || file[3] !== 0x46) {
    throw new ElfError('not an ELF file');
  }
  if (file.length < 6 || file[4] !== 2 || file[5] !== 1) {
    throw new ElfError('not a 64-bit little-endian ELF');
  }
  if (file.length < EHDR_SIZE) {
    throw new ElfError('truncated ELF: file header past end of file');
  }
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const eType = dv.getUint16(16, true);
  const eMachine = dv.getUint16(18, true);
  if (eMachine !== EM_X86_64) {
    throw new ElfError(`not an x86-64 ELF (machine ${eMachine})`);
  }
  if (eType !== ET_EXEC && eType !== ET_DYN) {
    throw new ElfError(`ELF type ${eType} (${ET_NAMES[eType] ?? 'unknown'}) is not executable`);
  }
  const entryBig = dv.getBigUint64(24, true);
  const phoffBig = dv.getBigUint64(32, true);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (entryBig >= USER_ADDR_LIMIT) {
    throw new ElfError(`entry point 0x${entryBig.toString(16)} is outside user space`);
  }
  if (phentsize !== PHDR_SIZE) {
    throw new ElfError(`bad program header size ${phentsize} (expected ${PHDR_SIZE})`);
  }
  if (phnum < 1 || phnum > Math.floor(65536 / PHDR_SIZE)) {
    throw new ElfError(`bad program header count ${phnum}`);
  }
  const fileLen = BigInt(fileLength);
  if (phoffBig + BigInt(phnum * phentsize) > fileLen) {
    throw new ElfError('truncated ELF: program headers past end of file');
  }
  if (phoffBig + BigInt(phnum * phentsize) > BigInt(file.length)) throw new ElfPrefixTooShort(Number(phoffBig) + phnum * phentsize);
  const phoff = Number(phoffBig);
  const entry = Number(entryBig);

  const phdrs: ProgramHeader[] = [];
  let interp: string | undefined;
  let ptPhdrVaddr: number | undefined;
  let minVaddr = Infinity;
  let maxEnd = -Infinity;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = dv.getUint32(at, true);
    const flags = dv.getUint32(at + 4, true);
    const offset = dv.getBigUint64(at + 8, true);
    const vaddr = dv.getBigUint64(at + 16, true);
    const filesz = dv.getBigUint64(at + 32, true);
    const memsz = dv.getBigUint64(at + 40, true);
    const align = dv.getBigUint64(at + 48, true);

    if (type === PT_LOAD || type === PT_INTERP) {
      if (offset + filesz > fileLen) {
        throw new ElfError('truncated ELF: segment past end of file');
      }
    }
    if (type === PT_LOAD) {
      if (filesz > memsz) {
        throw new ElfError(`PT_LOAD segment ${i} has filesz larger than memsz`);
      }
      if (vaddr + memsz > USER_ADDR_LIMIT) {
        throw new ElfError(`PT_LOAD segment ${i} is outside user space`);
      }
      // mmap needs file offset and address to agree within a page (fs/binfmt_elf.c: elf_map()).
      if (filesz > 0n && vaddr % BigInt(PAGE) !== offset % BigInt(PAGE)) {
        throw new ElfError(`PT_LOAD segment ${i} offset and address differ modulo the page size`);
      }
    }

    const ph: ProgramHeader = {
      type,
      flags,
      offset: Number(offset),
      vaddr: Number(vaddr),
      filesz: Number(filesz),
      memsz: Number(memsz),
      align: Number(align),
    };
    phdrs.push(ph);

    if (type === PT_LOAD) {
      minVaddr = Math.min(minVaddr, ph.vaddr);
      maxEnd = Math.max(maxEnd, ph.vaddr + ph.memsz);
    } else if (type === PT_INTERP && interp === undefined) {
      // Linux uses the first PT_INTERP: 2 ≤ p_filesz ≤ PATH_MAX, last byte NUL.
      if (ph.filesz < 2 || ph.filesz > PATH_MAX) {
        throw new ElfError(`bad PT_INTERP size ${ph.filesz}`);
      }
      if (ph.offset + ph.filesz > file.length) throw new ElfPrefixTooShort(ph.offset + ph.filesz);
      const raw = file.subarray(ph.offset, ph.offset + ph.filesz);
      if (raw[raw.length - 1] !== 0) {
        throw new ElfError('PT_INTERP is not NUL-terminated');
      }
      const nul = raw.indexOf(0);
      interp = bytesToString(raw.subarray(0, nul));
      if (interp === '') {
        throw new ElfError('PT_INTERP is empty');
      }
    } else if (type === PT_PHDR && ptPhdrVaddr === undefined) {
      ptPhdrVaddr = ph.vaddr;
    }
  }

  const loads = phdrs.filter((p) => p.type === PT_LOAD);
  if (loads.length === 0) {
    throw new ElfError('ELF has no PT_LOAD segments');
  }

  let phdrVaddr = ptPhdrVaddr;
  if (phdrVaddr === undefined) {
    const tableEnd = phoff + phnum * phentsize;
    const cover = loads.find((p) => p.offset <= phoff && tableEnd <= p.offset + p.filesz);
    phdrVaddr = cover ? cover.vaddr + (phoff - cover.offset) : 0;
  }

  const image: ElfImage = {
    type: eType === ET_EXEC ? 'exec' : 'dyn',
    entry,
    phoff,
    phentsize,
    phnum,
    phdrs,
    phdrVaddr,
    minVaddr: pageDown(minVaddr),
    maxVaddr: pageUp(maxEnd),
  };
  if (interp !== undefined) image.interp = interp;
  return image;
}

/**
 * True when the file starts with "#!", i.e. fs/binfmt_script.c: load_script()
 * would claim it. Looks at the first 2 bytes only.
 */
export function isShebang(file: Uint8Array): boolean {
  return file.length >= 2 && file[0] === 0x23 && file[1] === 0x21;
}

/** BINPRM_BUF_SIZE: how many bytes of the file Linux looks at for "#!" (bytes). */
const BINPRM_BUF_SIZE = 256;

function spacetab(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * Parse a "#!" line the way fs/binfmt_script.c: load_script() does (Linux ≥ 5.1).
 *
 * Only the first 256 bytes (BINPRM_BUF_SIZE) are considered, NUL-padded when
 * the file is shorter. The line ends at the first '\n'; trailing spaces/tabs are
 * dropped. The interpreter is the first word (ends at space, tab or NUL); the
 * optional single argument is the rest of the line after the following
 * spaces/tabs (inner spaces kept, cut at a NUL). With no '\n' in 256 bytes the
 * line is accepted only if the interpreter path itself ends inside the buffer
 * (the argument may then be truncated). Strings are decoded as UTF-8.
 *
 * @param file the file's bytes (at least the first 256)
 * @throws ElfError "not a #! script" without "#!", "bad interpreter line" when
 *   no interpreter is named, "bad interpreter line: interpreter path truncated"
 *   when the path does not fit in the 256 bytes
 */
export function parseShebang(file: Uint8Array): { interpreter: string; arg?: string } {
  if (!isShebang(file)) {
    throw new ElfError('not a #! script');
  }
  const buf = new Uint8Array(BINPRM_BUF_SIZE);
  buf.set(file.subarray(0, BINPRM_BUF_SIZE));
  const bufEnd = BINPRM_BUF_SIZE - 1; // index of the last byte

  // Index helpers mirror next_non_spacetab()/next_terminator(): search [first, last], -1 if none.
  const nextNonSpacetab = (first: number, last: number): number => {
    for (; first <= last; first++) if (!spacetab(buf[first]!)) return first;
    return -1;
  };
  const nextTerminator = (first: number, last: number): number => {
    for (; first <= last; first++) if (spacetab(buf[first]!) || buf[first] === 0) return first;
    return -1;
  };

  let iEnd = buf.indexOf(0x0a);
  if (iEnd < 0) {
    const start = nextNonSpacetab(2, bufEnd);
    if (start < 0) throw new ElfError('bad interpreter line');
    if (nextTerminator(start, bufEnd) < 0) {
      throw new ElfError('bad interpreter line: interpreter path truncated');
    }
    iEnd = bufEnd;
  }
  while (iEnd > 2 && spacetab(buf[iEnd - 1]!)) iEnd--;

  const iName = nextNonSpacetab(2, iEnd);
  if (iName < 0 || iName === iEnd) throw new ElfError('bad interpreter line');

  let iArg = -1;
  const iSep = nextTerminator(iName, iEnd);
  if (iSep >= 0 && buf[iSep] !== 0) iArg = nextNonSpacetab(iSep, iEnd);

  // The kernel writes NULs at i_end (and i_sep when there is an argument), then
  // copies each piece as a C string: it also stops at any earlier NUL.
  const cstr = (from: number, to: number): string => {
    const piece = buf.subarray(from, to);
    const nul = piece.indexOf(0);
    return bytesToString(nul < 0 ? piece : piece.subarray(0, nul));
  };
  const interpreter = cstr(iName, iArg < 0 ? iEnd : iSep);
  // e.g. "#!" followed by NUL: Linux would go on to fail opening "" (ENOENT).
  if (interpreter === '') throw new ElfError('bad interpreter line');
  return iArg < 0 ? { interpreter } : { interpreter, arg: cstr(iArg, iEnd) };
}
