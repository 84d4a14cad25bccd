/**
 * Credentials and capabilities of a thread group (man 7 credentials, man 7 capabilities),
 * and discretionary access control as Linux's generic_permission (fs/namei.c) does it.
 * Credentials live in the graph (ThreadGroupState.cred) and are checkpointed with it;
 * capability sets are 64-bit masks (bigint) with bit n = capability n.
 */
import type { Credentials, ThreadGroupState } from './state.js';
import type { Writable } from './events.js';
import { CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_LAST_CAP, CAP_LINUX_IMMUTABLE, CAP_MAC_OVERRIDE, CAP_MKNOD, CAP_SYS_PTRACE, MAY_EXEC, MAY_READ, MAY_WRITE } from '../abi/linux.js';

export { CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_LAST_CAP, CAP_SETGID, CAP_SETPCAP, CAP_SETUID, MAY_EXEC, MAY_READ, MAY_WRITE } from '../abi/linux.js';
/** Every capability. */
export const CAP_FULL = (1n << BigInt(CAP_LAST_CAP + 1)) - 1n;
const bit = (c: number) => 1n << BigInt(c);
/** Capabilities that follow the filesystem uid (security/commoncap.c CAP_FS_MASK). */
export const CAP_FS_MASK = bit(CAP_CHOWN) | bit(CAP_DAC_OVERRIDE) | bit(CAP_DAC_READ_SEARCH) | bit(CAP_FOWNER) | bit(CAP_FSETID) | bit(CAP_LINUX_IMMUTABLE) | bit(CAP_MKNOD) | bit(CAP_MAC_OVERRIDE);


/** Fresh credentials for uid/gid: root holds every capability, others none (the bounding set is full for both). */
export function newCredentials(uid: number, gid: number, groups: number[] = []): Credentials {
  const caps = uid === 0 ? CAP_FULL : 0n;
  return {
    ruid: uid, euid: uid, suid: uid, fsuid: uid, rgid: gid, egid: gid, sgid: gid, fsgid: gid, groups,
    capInh: 0n, capPrm: caps, capEff: caps, capBnd: CAP_FULL, capAmb: 0n,
  };
}

/**
 * The credentials of a thread group (read only: changes go through the kernel's door as a new
 * record, see src/syscalls/creds.ts). Graphs written before credentials (or capabilities)
 * existed get them made from the uid/gid, as a new object that the first change stores.
 */
export function credsOf(tg: ThreadGroupState): Credentials {
  const c = tg.cred ?? newCredentials(tg.uid, tg.gid);
  if (c.capEff === undefined) {
    const caps = c.euid === 0 ? CAP_FULL : 0n;
    return { ...c, capInh: 0n, capPrm: caps, capEff: caps, capBnd: CAP_FULL, capAmb: 0n };
  }
  return c;
}

/** A copy for a child (fork/clone without CLONE_THREAD shares nothing with the parent's). */
export function copyCredentials(c: Credentials): Credentials {
  return { ...c, groups: [...c.groups] };
}

/** Whether the credentials hold capability `cap` in their effective set (ns_capable in the sandbox's one user namespace). */
export function capable(c: Credentials, cap: number): boolean {
  return (c.capEff & bit(cap)) !== 0n;
}

/** in_group_p: the filesystem gid or a supplementary group. */
export function inGroup(c: Credentials, gid: number): boolean {
  return c.fsgid === gid || c.groups.includes(gid);
}

/**
 * generic_permission (fs/namei.c): may `c` access a file of `mode`/`uid`/`gid` for `mask`
 * (MAY_READ | MAY_WRITE | MAY_EXEC)? Owner, group and other bits, then CAP_DAC_OVERRIDE
 * (any access to directories; read/write to files; execute only if some x bit is set) and
 * CAP_DAC_READ_SEARCH (read of files, read and search of directories). true = allowed;
 * the caller returns EACCES otherwise.
 */
export function permits(c: Credentials, mode: number, uid: number, gid: number, mask: number, isDir: boolean): boolean {
  let bits: number;
  if (c.fsuid === uid) bits = mode >> 6;
  else if (inGroup(c, gid)) bits = mode >> 3;
  else bits = mode;
  if ((mask & ~bits & 7) === 0) return true;
  if (isDir) {
    if (!(mask & MAY_WRITE) && capable(c, CAP_DAC_READ_SEARCH)) return true;
    return capable(c, CAP_DAC_OVERRIDE);
  }
  if (mask === MAY_READ && capable(c, CAP_DAC_READ_SEARCH)) return true;
  if (capable(c, CAP_DAC_OVERRIDE) && (!(mask & MAY_EXEC) || (mode & 0o111))) return true;
  return false;
}

/** Whether `c` owns a file of `uid` or may act as its owner (inode_owner_or_capable: CAP_FOWNER). */
export function ownerOrCapable(c: Credentials, uid: number): boolean {
  return c.fsuid === uid || capable(c, CAP_FOWNER);
}

/**
 * The capability changes that follow a uid change (security/commoncap.c cap_emulate_setxuid
 * and cap_task_fix_setuid): dropping every root uid clears permitted, effective and
 * ambient (unless keep-caps); an effective uid leaving 0 clears effective; one becoming 0
 * restores effective from permitted; the filesystem uid moves CAP_FS_MASK the same way.
 */
export function fixCapsAfterSetuid(c: Writable<Credentials>, old: { ruid: number; euid: number; suid: number; fsuid: number }): void {
  const hadRoot = old.ruid === 0 || old.euid === 0 || old.suid === 0;
  const hasRoot = c.ruid === 0 || c.euid === 0 || c.suid === 0;
  if (hadRoot && !hasRoot) {
    if (!c.keepCaps) c.capPrm = 0n;
    c.capEff = 0n;
    c.capAmb = 0n;
  }
  if (old.euid === 0 && c.euid !== 0) c.capEff = 0n;
  if (old.euid !== 0 && c.euid === 0) c.capEff = c.capPrm;
  if (old.fsuid === 0 && c.fsuid !== 0) c.capEff &= ~CAP_FS_MASK;
  if (old.fsuid !== 0 && c.fsuid === 0) c.capEff |= c.capPrm & CAP_FS_MASK;
}

/**
 * Credentials after execve of a file with `mode`/`uid`/`gid` (fs/exec.c, commoncap.c
 * cap_bprm_creds_from_file, without file capabilities): set-user-ID and set-group-ID bits
 * change the effective (and saved) ids unless no_new_privs is set; root (real or
 * effective) gets permitted = bounding | inheritable and effective = permitted when its
 * effective uid is 0; others keep only their ambient set. Returns whether the exec is
 * "secure" (AT_SECURE: ids or capabilities were raised).
 */
export function credsOnExec(c: Writable<Credentials>, mode: number, uid: number, gid: number): boolean {
  let secure = false;
  if (!c.noNewPrivs) {
    if (mode & 0o4000 && uid !== c.euid) { c.euid = uid; secure = true; }
    if (mode & 0o2000 && gid !== c.egid) { c.egid = gid; secure = true; }
  }
  c.suid = c.euid; c.fsuid = c.euid;
  c.sgid = c.egid; c.fsgid = c.egid;
  const oldPrm = c.capPrm;
  if (c.euid === 0 || c.ruid === 0) {
    c.capPrm = (c.capInh | c.capBnd) & CAP_FULL;
    c.capEff = c.euid === 0 ? c.capPrm : 0n;
    c.capAmb = 0n;
  } else {
    c.capPrm = c.capAmb;
    c.capEff = c.capAmb;
  }
  if ((c.capPrm & ~oldPrm) !== 0n && c.ruid !== 0) secure = true;
  return secure || c.euid !== c.ruid || c.egid !== c.rgid;
}

/**
 * __ptrace_may_access with PTRACE_MODE_READ_FSCREDS (kernel/ptrace.c), as /proc/<pid>/environ,
 * maps, fd/N, cwd, root and exe ask it: a thread group may inspect itself; another one only if
 * the caller's fsuid and fsgid equal the target's real, effective and saved uids and gids, or the
 * caller holds CAP_SYS_PTRACE. (Dumpability is not modelled: every process counts as dumpable.)
 */
export function ptraceMayAccess(caller: ThreadGroupState, target: ThreadGroupState): boolean {
  if (caller === target) return true;
  const c = credsOf(caller), tc = credsOf(target);
  if (c.fsuid === tc.ruid && c.fsuid === tc.euid && c.fsuid === tc.suid && c.fsgid === tc.rgid && c.fsgid === tc.egid && c.fsgid === tc.sgid) return true;
  return capable(c, CAP_SYS_PTRACE);
}
