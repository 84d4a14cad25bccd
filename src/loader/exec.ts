/**
 * execve's image loading (fs/exec.c, fs/binfmt_elf.c load_elf_binary, fs/binfmt_script.c):
 * resolve the program in the sandbox filesystem, follow `#!` lines, load PT_LOAD
 * segments of the executable and of its PT_INTERP into a cleared address space, build
 * the initial stack, and point the registers at the entry. No vDSO is given to the
 * guest (no AT_SYSINFO_EHDR), so libc makes real clock syscalls, which we trap.
 *
 * Errors before the point of no return are ExecError with the errno execve returns
 * (ENOENT, EACCES, ENOEXEC, ELOOP, E2BIG) and a one-line message.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { HostError, type HostTree } from '../../platforms/host-services.js';
import { hostIdentity } from '../vfs/host-files.js';
import { keyOf } from '../vfs/vfs.js';
import { MAY_EXEC, credsOf, credsOnExec } from '../kernel/creds.js';
import { E, SyscallError, strerror } from '../errno.js';
import { REG } from '../../platforms/platform.js';
import type { Task } from '../kernel/task.js';
import { ElfError, ElfImage, ElfPrefixTooShort, PF_R, PF_W, PF_X, PT_LOAD, isShebang, parseElf, parseShebang } from './elf.js';
import { AT, buildInitialStack } from './stack.js';
import { STACK_SIZE, STACK_TOP, MMAP_BASE } from '../mm/address-space.js';
import { pageRoundDown, pageRoundUp } from '../mm/memory-file.js';
import { modeOf } from '../vfs/vfs.js';
import { isDir, isReg } from '../vfs/stat.js';
import { inodeRead } from '../vfs/inode-data.js';
import { fillFromHostFile, pageCacheBlock } from '../mm/page-cache.js';
import { fsnotifyExec } from '../files/inotify.js';
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE, MS_NOEXEC, MS_NOSUID } from '../abi/linux.js';

export class ExecError extends Error {
  constructor(readonly errno: number, message: string) { super(message); }
}

/** Where ET_DYN executables are loaded (Linux ELF_ET_DYN_BASE without ASLR). */
const ET_DYN_BASE = 0x5555_5555_4000;
const MAX_INTERPRETER_DEPTH = 4;
const MAX_ARG_BYTES = 2 * 1024 * 1024;

/** Bytes of a host executable read up front: its headers, program headers and PT_INTERP string in nearly every ELF (more are read if not). */
const HEADER_BYTES = 4096;

interface Owner { mode: number; uid: number; gid: number }
/**
 * An executable's file: `bytes` holds its first bytes (a host file: HEADER_BYTES or what parseElf
 * asked for; the rest is read from `host` when a segment is not in the page cache) or all of it
 * (an upper-layer file, already in the memory file); `size` its length in bytes.
 */
interface ProgramFile { path: string; bytes: Uint8Array; size: number; host?: { tree: HostTree; fd: number }; identity?: { size: number; mtimeMs: number }; owner: Owner }
interface Program extends ProgramFile { elf: ElfImage }

/**
 * Open an executable file of the sandbox, with the task's credentials: search permission
 * on the way, execute permission on the file (EACCES for non-regular files, and for
 * root when no execute bit is set at all). A host file's fd is pushed on `opened` (the caller
 * closes them); only its first HEADER_BYTES are read.
 */
function readProgram(t: Task, path: string, cwd: string, opened: Array<{ tree: HostTree; fd: number }>): ProgramFile {
  let n;
  const vfs = t.kernel.vfs;
  const c = credsOf(t.tg);
  try {
    const r = vfs.withCreds(c, () => vfs.walk(path, cwd, true));
    if (!r.node) throw new ExecError(E.ENOENT, `${path}: No such file or directory`);
    n = r.node;
    path = r.path;
  } catch (e) {
    if (e instanceof SyscallError) throw new ExecError(e.errno, `${path}: ${strerror(e.errno)}`);
    throw e;
  }
  const mode = modeOf(n);
  if (isDir(mode)) throw new ExecError(E.EACCES, `${path}: Is a directory`);
  if (!isReg(mode) || !vfs.permits(c, n, MAY_EXEC)) throw new ExecError(E.EACCES, `${path}: Permission denied`);
  // A noexec mount runs nothing (path_noexec: EACCES); on a nosuid mount set-user-ID and set-group-ID bits do nothing (mnt_may_suid).
  const mountFlags = vfs.locate(path).m?.flags ?? 0;
  if (mountFlags & MS_NOEXEC) throw new ExecError(E.EACCES, `${path}: Permission denied`);
  const owner = { ...vfs.owner(n) };
  if (mountFlags & MS_NOSUID) owner.mode &= ~0o6000;
  const ownerOf = { mode: owner.mode, uid: owner.uid, gid: owner.gid };
  if (n.kind === 'upper') return { path, bytes: inodeRead(t.kernel, n.inode, 0, n.inode.size), size: n.inode.size, owner: ownerOf };
  if (n.kind !== 'host') throw new ExecError(E.EACCES, `${path}: Permission denied`);
  const tree = t.kernel.vfs.treeOf(n);
  let fd, st;
  try { ({ fd, st } = tree.openFile(keyOf(n))); } catch (e) { throw hostExecError(path, e); }
  const file: ProgramFile = { path, bytes: new Uint8Array(0), size: st.size, host: { tree, fd }, identity: hostIdentity(st), owner: ownerOf };
  opened.push({ tree, fd });
  file.bytes = readAt(file, 0, Math.min(st.size, HEADER_BYTES));
  return file;
}

/** An error of the host file behind an executable as execve's errno (EIO for anything but a HostError). */
function hostExecError(path: string, e: unknown): ExecError {
  const errno = e instanceof HostError ? e.errno : E.EIO;
  return new ExecError(errno, `${path}: ${strerror(errno)}`);
}

/**
 * Bytes [off, off+len) of an executable: from its bytes in memory when they cover them, else
 * read from its host file (pread; a file shorter than that leaves zeros, as a page past EOF).
 * Throws ExecError (the host's errno) if the read fails.
 */
function readAt(f: ProgramFile, off: number, len: number): Uint8Array {
  if (off + len <= f.bytes.length || !f.host) return f.bytes.subarray(off, off + len);
  const buf = new Uint8Array(len);
  try {
    for (let done = 0; done < len;) {
      const got = f.host.tree.pread(f.host.fd, buf.subarray(done), off + done);
      if (got <= 0) break;
      done += got;
    }
  } catch (e) { throw hostExecError(f.path, e); }
  return buf;
}

/** Parse an executable's ELF headers, reading more of a host file if its first bytes do not hold them (ENOEXEC with parseElf's message). */
function parse(f: ProgramFile): Program {
  for (;;) {
    try {
      return { ...f, elf: parseElf(f.bytes, f.size) };
    } catch (e) {
      if (e instanceof ElfPrefixTooShort && e.bytes > f.bytes.length && e.bytes <= f.size) { f.bytes = readAt(f, 0, e.bytes); continue; }
      if (e instanceof ElfError) throw new ExecError(E.ENOEXEC, `${f.path}: ${e.message}`);
      throw e;
    }
  }
}

/** Host AT_HWCAP/AT_HWCAP2/AT_MINSIGSTKSZ, read once from our own auxv. */
let hostAux: Map<number, number> | undefined;
function hostAuxv(): Map<number, number> {
  if (!hostAux) {
    hostAux = new Map();
    try {
      const b = fs.readFileSync('/proc/self/auxv');
      const v = new DataView(b.buffer, b.byteOffset, b.length);
      for (let i = 0; i + 16 <= b.length; i += 16) hostAux.set(Number(v.getBigUint64(i, true)), Number(v.getBigUint64(i + 8, true)));
    } catch { /* no auxv: leave the entries out */ }
  }
  return hostAux;
}

const protOf = (flags: number) => (flags & PF_R ? PROT_READ : 0) | (flags & PF_W ? PROT_WRITE : 0) | (flags & PF_X ? 4 : 0);

/**
 * The memory-file user under which an exec holds its segments' page-cache blocks from
 * segmentBlocks until loadSegments has mapped them: a memory-limit reclaim in between (the
 * interpreter's fill, the new image's first charges) would otherwise free the blocks only the
 * cache holds (shrinkPageCache), and the new image would map freed or reused memory. Exec is
 * synchronous, so the pin never reaches a checkpoint.
 */
const EXEC_PIN = -0x7fff_fffe;

/** Drop exec's pins of `blocks` (segmentBlocks' result). */
function unpinSegments(t: Task, blocks: Map<number, number>): void {
  for (const b of blocks.values()) t.kernel.mf.ref(b, EXEC_PIN, -1);
}

/**
 * The page-cache block of each PT_LOAD segment's file part of a host executable (index in
 * elf.phdrs → memory-file offset), filled in place from the file on a cache miss
 * (fillFromHostFile: its data ranges only, zeros after the segment's file bytes), each pinned
 * (EXEC_PIN) until the caller unpins them with unpinSegments. Done before execve's point of no
 * return, so a failed read is an ExecError and the old image stays.
 */
function segmentBlocks(t: Task, prog: Program): Map<number, number> {
  const blocks = new Map<number, number>();
  const host = prog.host;
  if (!prog.identity || !host) return blocks;
  const k = t.kernel, id = prog.identity;
  let ranges: Array<[number, number]> | undefined; // asked of the host once, at the first miss
  try {
    prog.elf.phdrs.forEach((ph, i) => {
      if (ph.type !== PT_LOAD || ph.memsz === 0 || ph.filesz === 0) return;
      const fileStart = ph.offset - (ph.vaddr % PAGE_SIZE);
      const len = ph.offset + ph.filesz - fileStart;
      const block = pageCacheBlock(k, prog.path, id.size, id.mtimeMs, fileStart, len, (b) => {
        try {
          ranges ??= host.tree.dataRanges(host.fd, prog.size);
          fillFromHostFile(k, b, fileStart, len, ranges, (buf, off) => host.tree.pread(host.fd, buf, off));
        } catch (e) {
          if (e instanceof SyscallError) throw e; // ENOMEM from the memory limit
          throw hostExecError(prog.path, e);
        }
      });
      k.mf.ref(block, EXEC_PIN, 1);
      blocks.set(i, block);
    });
  } catch (e) {
    unpinSegments(t, blocks);
    throw e;
  }
  return blocks;
}

/** Map an ELF image's PT_LOAD segments at `bias` (host files' from `blocks`, segmentBlocks); returns [lowest, highest) mapped addresses. */
function loadSegments(t: Task, prog: Program, bias: number, blocks: Map<number, number>): { end: number } {
  let end = 0;
  prog.elf.phdrs.forEach((ph, i) => {
    if (ph.type !== PT_LOAD || ph.memsz === 0) return;
    const start = pageRoundDown(ph.vaddr + bias);
    const segEnd = pageRoundUp(ph.vaddr + bias + ph.memsz);
    const inPage = (ph.vaddr + bias) - start;
    const fileStart = ph.offset - inPage;
    const block = blocks.get(i);
    if (block !== undefined) {
      // Host executables: the file part comes from the page cache (copy-on-write), bss is anonymous.
      const fileLen = pageRoundUp(ph.offset + ph.filesz - fileStart);
      t.mm.mapBlock(start, fileLen, protOf(ph.flags), MAP_PRIVATE | MAP_FIXED, prog.path, fileStart, block, 0, true);
      if (segEnd > start + fileLen) t.mm.map(start + fileLen, segEnd - start - fileLen, protOf(ph.flags), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, '', 0);
    } else {
      t.mm.map(start, segEnd - start, protOf(ph.flags), MAP_PRIVATE | MAP_FIXED, prog.path, fileStart, ph.filesz ? prog.bytes.subarray(fileStart, ph.offset + ph.filesz) : new Uint8Array(0));
    }
    end = Math.max(end, segEnd);
  });
  return { end };
}

/**
 * Replace the task's image with the program at `path` (execve(2)). Throws ExecError
 * before anything of the old image is touched; afterwards the task runs the new image.
 */
export function execProgram(t: Task, path: string, argv: Uint8Array[], envp: Uint8Array[]): void {
  const opened: Array<{ tree: HostTree; fd: number }> = [];
  try {
    execOpened(t, path, argv, envp, opened);
  } finally {
    for (const { tree, fd } of opened) tree.closeFile(fd);
  }
}

/** execProgram with the host fds of the files it opens pushed on `opened`. */
function execOpened(t: Task, path: string, argv: Uint8Array[], envp: Uint8Array[], opened: Array<{ tree: HostTree; fd: number }>): void {
  let file = readProgram(t, path, t.tg.cwd, opened);
  const execfn = path;
  // #! scripts (binfmt_script): interpreter [arg] script args...
  for (let depth = 0; isShebang(file.bytes); depth++) {
    if (depth >= MAX_INTERPRETER_DEPTH) throw new ExecError(E.ELOOP, `${path}: too many levels of #! interpreters`);
    let sb;
    try { sb = parseShebang(file.bytes); } catch (e) { throw new ExecError(E.ENOEXEC, `${file.path}: ${(e as Error).message}`); }
    const raw = (s: string) => Buffer.from(s, 'latin1');
    argv = [raw(sb.interpreter), ...(sb.arg !== undefined ? [raw(sb.arg)] : []), raw(depth === 0 ? path : file.path), ...argv.slice(1)];
    file = readProgram(t, sb.interpreter, t.tg.cwd, opened);
  }
  const realPath = file.path;
  const main = parse(file);
  let interp: Program | undefined;
  if (main.elf.interp) {
    let r;
    try { r = readProgram(t, main.elf.interp, '/', opened); } catch (e) {
      if (e instanceof ExecError && e.errno === E.ENOENT) throw new ExecError(E.ENOENT, `${realPath}: interpreter ${main.elf.interp} not found`);
      throw e;
    }
    interp = parse(r);
  }
  const argBytes = [...argv, ...envp].reduce((n, a) => n + a.length + 1, 0);
  if (argBytes > MAX_ARG_BYTES) throw new ExecError(E.E2BIG, `${path}: argument list too long`);
  const mainBlocks = segmentBlocks(t, main);
  let interpBlocks = new Map<number, number>();
  try {
    if (interp) interpBlocks = segmentBlocks(t, interp);
    loadImage(t, { execfn, argv, envp, realPath, main, interp, mainBlocks, interpBlocks });
  } finally {
    unpinSegments(t, mainBlocks);
    unpinSegments(t, interpBlocks);
  }
}

/** What execOpened has read and checked: the point of no return and the new image are loadImage's. */
interface ExecImage {
  execfn: string; argv: Uint8Array[]; envp: Uint8Array[]; realPath: string;
  main: Program; interp?: Program; mainBlocks: Map<number, number>; interpBlocks: Map<number, number>;
}

/** execve past its checks: the inotify events, the point of no return, the new image, registers, credentials and close-on-exec. */
function loadImage(t: Task, { execfn, argv, envp, realPath, main, interp, mainBlocks, interpBlocks }: ExecImage): void {
  // inotify: the program opened and read (its header, program headers, interpreter name), then the interpreter's.
  const k = t.kernel;
  fsnotifyExec(k, realPath, { open: true, reads: interp ? 3 : 2 });
  if (interp) fsnotifyExec(k, interp.path, { open: true, reads: 2, close: true });
  fsnotifyExec(k, realPath, { close: true });

  // Point of no return: other threads die, then the old image goes.
  if (t.tg.tids.length > 1) t.kernel.processes.deThread(t);
  t.kernel.processes.unshareAddressSpace(t);
  const mm = t.mm;
  mm.clear();
  // The name the program was run by (kbasename(bprm->filename)): python3, not the python3.11 it
  // links to. Set here, before the segments are loaded, as begin_new_exec does: an OOM kill while
  // they load names the new program.
  const base = execfn.slice(execfn.lastIndexOf('/') + 1);
  t.kernel.emit({ type: 'task.update', tid: t.tid, what: 'comm' }, t.kernel.taskOps(t.tid, { comm: base.slice(0, 15) }));
  mm.setFields({ mmapBase: MMAP_BASE });
  const bias = main.elf.type === 'dyn' ? ET_DYN_BASE - main.elf.minVaddr : 0;
  const { end } = loadSegments(t, main, bias, mainBlocks);
  mm.setFields({ brkStart: end, brk: end });
  let interpBias = 0;
  if (interp) {
    const span = interp.elf.maxVaddr - interp.elf.minVaddr;
    const at = mm.findGap(span);
    interpBias = at - interp.elf.minVaddr;
    loadSegments(t, interp, interpBias, interpBlocks);
  }
  mm.map(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, '[stack]', 0);

  const h = hostAuxv();
  const tg = t.tg;
  // New credentials: set-user-ID/set-group-ID of the program (of the interpreter of a #! script, as Linux), capabilities.
  const cred = { ...credsOf(tg) };
  const secure = credsOnExec(cred, main.owner.mode, main.owner.uid, main.owner.gid);
  const auxv: Array<[number, number]> = [
    [AT.HWCAP, h.get(AT.HWCAP) ?? 0],
    [AT.PAGESZ, PAGE_SIZE],
    [AT.CLKTCK, 100],
    [AT.PHDR, main.elf.phdrVaddr + bias],
    [AT.PHENT, 56],
    [AT.PHNUM, main.elf.phnum],
    [AT.BASE, interp ? interp.elf.minVaddr + interpBias : 0],
    [AT.FLAGS, 0],
    [AT.ENTRY, main.elf.entry + bias],
    [AT.UID, cred.ruid], [AT.EUID, cred.euid], [AT.GID, cred.rgid], [AT.EGID, cred.egid],
    [AT.SECURE, secure ? 1 : 0],
  ];
  if (h.has(AT.HWCAP2)) auxv.push([AT.HWCAP2, h.get(AT.HWCAP2)!]);
  if (h.has(AT.MINSIGSTKSZ)) auxv.push([AT.MINSIGSTKSZ, h.get(AT.MINSIGSTKSZ)!]);
  const stack = buildInitialStack({ stackTop: STACK_TOP, argv, envp, execfn: Buffer.from(execfn, 'latin1'), platform: 'x86_64', random: crypto.randomBytes(16), auxv });
  mm.writeForce(stack.sp, stack.bytes);
  mm.setFields({ argStart: stack.argvStart, argEnd: stack.envStart, envStart: stack.envStart, envEnd: stack.envEnd, auxv, exe: realPath });

  const r = t.platform.regs;
  for (let i = 0; i < r.length; i++) {
    if (i === REG.cs || i === REG.ss || i === REG.ds || i === REG.es || i === REG.fs || i === REG.gs) continue;
    r[i] = 0n;
  }
  r[REG.eflags] = 0x202n;
  r[REG.rsp] = BigInt(stack.sp);
  r[REG.rip] = BigInt(interp ? interp.elf.entry + interpBias : main.elf.entry + bias);
  r[REG.orig_rax] = 0xffffffffffffffffn;
  if (t.kernel.initialFpState) t.platform.setFpState(t.kernel.initialFpState);
  // Handlers reset to default (ignored ones stay); the new image has no alternate signal stack (fs/exec.c).
  const kept = Object.fromEntries(Object.entries(tg.sigactions).filter(([, act]) => act.handler === 1 /* SIG_IGN */));
  t.kernel.emit({ type: 'task.exec', tid: t.tid, path: realPath }, [
    ['del', ['tasks', t.tid, 'altStack']],
    ['set', ['threadGroups', tg.tgid, 'sigactions'], kept],
    ['set', ['threadGroups', tg.tgid, 'cred'], cred],
  ]);
  // close-on-exec fds (fs/exec.c do_close_on_exec).
  for (const [fd, e] of Object.entries(t.fdTable.fds)) if (e.cloexec) t.kernel.closeFd(t, Number(fd));
  t.kernel.processes.releaseVforkParent(t);
}
