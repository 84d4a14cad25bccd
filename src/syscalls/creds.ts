/**
 * Credentials and capabilities (man 7 credentials, man 7 capabilities; man 2 setuid,
 * setreuid, setresuid, setfsuid, setgroups, capget, capset; prctl's capability options).
 * Changing ids needs CAP_SETUID/CAP_SETGID unless the new ids are ones already held;
 * capabilities follow uid changes as security/commoncap.c does. Compare kernel/sys.c,
 * kernel/capability.c.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { Credentials } from '../kernel/state.js';
import type { Writable } from '../kernel/events.js';
import { CAP_FULL, CAP_LAST_CAP, CAP_SETGID, CAP_SETPCAP, CAP_SETUID, capable, credsOf, fixCapsAfterSetuid } from '../kernel/creds.js';
import { LINUX_CAPABILITY_VERSION_1, LINUX_CAPABILITY_VERSION_2, LINUX_CAPABILITY_VERSION_3, PR_CAPBSET_DROP, PR_CAPBSET_READ, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_LOWER, PR_CAP_AMBIENT_RAISE, PR_GET_KEEPCAPS, PR_GET_NO_NEW_PRIVS, PR_GET_SECUREBITS, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS } from '../abi/linux.js';
import { syscall } from './entry.js';

const NONE = 0xffffffff; // -1: leave unchanged

/** The caller's credentials (in the graph: ThreadGroupState.cred). */
export function cred(t: Task): Credentials {
  return credsOf(t.tg);
}

/** A copy of the caller's credentials to change, then store with `commit`. */
function draft(t: Task): Writable<Credentials> {
  const c = credsOf(t.tg);
  return { ...c, groups: [...c.groups] };
}

/** Store changed credentials (and the uid/gid the graph mirrors from the real ids) through the kernel's door: event creds.change. Returns 0. */
function commit(t: Task, c: Credentials): number {
  t.kernel.emit({ type: 'creds.change', tgid: t.tgid, uid: c.ruid, euid: c.euid, gid: c.rgid, egid: c.egid }, [
    ['set', ['threadGroups', t.tgid, 'cred'], c], ['set', ['threadGroups', t.tgid, 'uid'], c.ruid], ['set', ['threadGroups', t.tgid, 'gid'], c.rgid],
  ]);
  return 0;
}

/** The four ids of one kind (user or group) within Credentials, the capability that lets them change freely, and the graph field that mirrors the real one. */
interface IdSet { r: 'ruid' | 'rgid'; e: 'euid' | 'egid'; s: 'suid' | 'sgid'; fs: 'fsuid' | 'fsgid'; mirror: 'uid' | 'gid'; cap: number }
const UIDS: IdSet = { r: 'ruid', e: 'euid', s: 'suid', fs: 'fsuid', mirror: 'uid', cap: CAP_SETUID };
const GIDS: IdSet = { r: 'rgid', e: 'egid', s: 'sgid', fs: 'fsgid', mirror: 'gid', cap: CAP_SETGID };

function changed(t: Task, k: IdSet, c: Writable<Credentials>, old: Credentials): number {
  c[k.fs] = c[k.e];
  if (k === UIDS) fixCapsAfterSetuid(c, old);
  return commit(t, c);
}

/** setresuid(2)/setresgid(2): without CAP_SETUID/CAP_SETGID, only ids already held. */
function setres(t: Task, k: IdSet, r: number, e: number, s: number): number {
  const c = draft(t), old = { ...c };
  const held = [c[k.r], c[k.e], c[k.s]];
  if (!capable(c, k.cap) && [r, e, s].some((x) => x !== NONE && !held.includes(x))) return -E.EPERM;
  if (r !== NONE) c[k.r] = r;
  if (e !== NONE) c[k.e] = e;
  if (s !== NONE) c[k.s] = s;
  return changed(t, k, c, old);
}

/** setreuid(2)/setregid(2): an unprivileged caller may swap real and effective; the saved id follows a changed effective one. */
function setre(t: Task, k: IdSet, r: number, e: number): number {
  const c = draft(t), old = { ...c };
  if (!capable(c, k.cap)) {
    if (r !== NONE && r !== c[k.r] && r !== c[k.e]) return -E.EPERM;
    if (e !== NONE && e !== c[k.r] && e !== c[k.e] && e !== c[k.s]) return -E.EPERM;
  }
  const oldR = c[k.r];
  if (r !== NONE) c[k.r] = r;
  if (e !== NONE) c[k.e] = e;
  if (r !== NONE || (e !== NONE && e !== oldR)) c[k.s] = c[k.e];
  return changed(t, k, c, old);
}

/** setuid(2)/setgid(2): with the capability, all three ids; otherwise the effective one, to the real or saved id. */
function setOne(t: Task, k: IdSet, id: number): number {
  const c = cred(t);
  if (id === NONE) return -E.EINVAL;
  if (capable(c, k.cap)) return setres(t, k, id, id, id);
  return id === c[k.r] || id === c[k.s] ? setres(t, k, NONE, id, NONE) : -E.EPERM;
}

/** setfsuid(2)/setfsgid(2): returns the old id whether or not it changed. */
function setfs(t: Task, k: IdSet, id: number): number {
  const c = draft(t), old = { ...c }, prev = c[k.fs];
  if (capable(c, k.cap) || [c[k.r], c[k.e], c[k.s], c[k.fs]].includes(id)) {
    c[k.fs] = id;
    if (k === UIDS) fixCapsAfterSetuid(c, old);
    commit(t, c);
  }
  return prev;
}

function writeIds(t: Task, addrs: number[], ids: number[]): number {
  addrs.forEach((a, i) => t.mm.writeU32(a, ids[i]));
  return 0;
}

const CAP_V1 = LINUX_CAPABILITY_VERSION_1, CAP_V2 = LINUX_CAPABILITY_VERSION_2, CAP_V3 = LINUX_CAPABILITY_VERSION_3;

/** The number of 32-bit words of each set for a capability header's version, or -EINVAL (the preferred version is written back). */
function capWords(t: Task, hdr: number): number {
  const v = t.mm.readU32(hdr);
  if (v === CAP_V1) return 1;
  if (v === CAP_V2 || v === CAP_V3) return 2;
  t.mm.writeU32(hdr, CAP_V3);
  return -E.EINVAL;
}

/** capget(2): the effective, permitted and inheritable sets of the caller or of process `pid`. */
function capget(t: Task): number {
  const hdr = t.arg(0), data = t.arg(1);
  const words = capWords(t, hdr);
  if (!data || words < 0) return !data && words === -E.EINVAL ? 0 : words;
  const pid = t.mm.readU32(hdr + 4) | 0;
  if (pid < 0) return -E.EINVAL;
  const tg = pid === 0 ? t.tg : t.kernel.state.threadGroups[t.kernel.state.tasks[pid]?.tgid ?? -1];
  if (!tg) return -E.ESRCH;
  const c = credsOf(tg);
  const b = new Uint8Array(12 * words);
  const v = new DataView(b.buffer);
  for (let i = 0; i < words; i++) {
    const w = (x: bigint) => Number((x >> BigInt(32 * i)) & 0xffffffffn);
    v.setUint32(i * 12, w(c.capEff), true); v.setUint32(i * 12 + 4, w(c.capPrm), true); v.setUint32(i * 12 + 8, w(c.capInh), true);
  }
  t.mm.write(data, b);
  return 0;
}

/** capset(2) (kernel/capability.c, commoncap.c cap_capset): only the caller's own sets; EPERM when a set would grow. */
function capset(t: Task): number {
  const hdr = t.arg(0), data = t.arg(1);
  const words = capWords(t, hdr);
  if (words < 0) return words;
  const pid = t.mm.readU32(hdr + 4) | 0;
  if (pid !== 0 && pid !== t.tid && pid !== t.tgid) return -E.EPERM;
  const b = t.mm.read(data, 12 * words);
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  let eff = 0n, prm = 0n, inh = 0n;
  for (let i = 0; i < words; i++) {
    const sh = BigInt(32 * i);
    eff |= BigInt(v.getUint32(i * 12, true)) << sh; prm |= BigInt(v.getUint32(i * 12 + 4, true)) << sh; inh |= BigInt(v.getUint32(i * 12 + 8, true)) << sh;
  }
  eff &= CAP_FULL; prm &= CAP_FULL; inh &= CAP_FULL;
  const c = draft(t);
  const sub = (a: bigint, b: bigint) => (a & ~b) === 0n;
  if (!capable(c, CAP_SETPCAP) && !sub(inh, c.capInh | c.capPrm)) return -E.EPERM;
  if (!sub(inh, c.capInh | c.capBnd)) return -E.EPERM;
  if (!sub(prm, c.capPrm)) return -E.EPERM;
  if (!sub(eff, prm)) return -E.EPERM;
  c.capEff = eff; c.capPrm = prm; c.capInh = inh;
  c.capAmb &= prm & inh;
  return commit(t, c);
}


/** The prctl(2) options about credentials (kernel/sys.c, commoncap.c cap_task_prctl); undefined for any other option. */
export function prctlCreds(t: Task, op: number): number | undefined {
  const c = draft(t);
  const a2 = t.arg(1), rest = [t.arg(2), t.arg(3), t.arg(4)];
  const validCap = (n: number) => n >= 0 && n <= CAP_LAST_CAP;
  const bit = (n: number) => 1n << BigInt(n);
  switch (op) {
    case PR_GET_KEEPCAPS: return c.keepCaps ? 1 : 0;
    case PR_SET_KEEPCAPS: if (a2 > 1) return -E.EINVAL; c.keepCaps = a2 === 1; return commit(t, c);
    case PR_CAPBSET_READ: return validCap(a2) ? ((c.capBnd & bit(a2)) ? 1 : 0) : -E.EINVAL;
    case PR_CAPBSET_DROP:
      if (!capable(c, CAP_SETPCAP)) return -E.EPERM;
      if (!validCap(a2)) return -E.EINVAL;
      c.capBnd &= ~bit(a2);
      return commit(t, c);
    case PR_GET_SECUREBITS: return 0;
    case PR_SET_NO_NEW_PRIVS:
      if (a2 !== 1 || rest.some((x) => x !== 0)) return -E.EINVAL;
      c.noNewPrivs = true;
      return commit(t, c);
    case PR_GET_NO_NEW_PRIVS: return rest.concat(a2).some((x) => x !== 0) ? -E.EINVAL : c.noNewPrivs ? 1 : 0;
    case PR_CAP_AMBIENT: {
      if (a2 === PR_CAP_AMBIENT_CLEAR_ALL) { if (rest.some((x) => x !== 0)) return -E.EINVAL; c.capAmb = 0n; return commit(t, c); }
      const cap = rest[0];
      if (rest[1] || rest[2] || !validCap(cap)) return -E.EINVAL;
      if (a2 === PR_CAP_AMBIENT_IS_SET) return (c.capAmb & bit(cap)) ? 1 : 0;
      if (a2 === PR_CAP_AMBIENT_LOWER) { c.capAmb &= ~bit(cap); return commit(t, c); }
      if (a2 === PR_CAP_AMBIENT_RAISE) {
        if (!(c.capPrm & bit(cap)) || !(c.capInh & bit(cap))) return -E.EPERM;
        c.capAmb |= bit(cap);
        return commit(t, c);
      }
      return -E.EINVAL;
    }
  }
  return undefined;
}

export const credSyscalls = [
  syscall('getuid', 0, (t) => cred(t).ruid),
  syscall('geteuid', 0, (t) => cred(t).euid),
  syscall('getgid', 0, (t) => cred(t).rgid),
  syscall('getegid', 0, (t) => cred(t).egid),
  syscall('getresuid', 3, (t) => { const c = cred(t); return writeIds(t, [t.arg(0), t.arg(1), t.arg(2)], [c.ruid, c.euid, c.suid]); }),
  syscall('getresgid', 3, (t) => { const c = cred(t); return writeIds(t, [t.arg(0), t.arg(1), t.arg(2)], [c.rgid, c.egid, c.sgid]); }),
  syscall('setuid', 1, (t) => setOne(t, UIDS, t.argU32(0))),
  syscall('setgid', 1, (t) => setOne(t, GIDS, t.argU32(0))),
  syscall('setreuid', 2, (t) => setre(t, UIDS, t.argU32(0), t.argU32(1))),
  syscall('setregid', 2, (t) => setre(t, GIDS, t.argU32(0), t.argU32(1))),
  syscall('setresuid', 3, (t) => setres(t, UIDS, t.argU32(0), t.argU32(1), t.argU32(2))),
  syscall('setresgid', 3, (t) => setres(t, GIDS, t.argU32(0), t.argU32(1), t.argU32(2))),
  syscall('setfsuid', 1, (t) => setfs(t, UIDS, t.argU32(0))),
  syscall('setfsgid', 1, (t) => setfs(t, GIDS, t.argU32(0))),
  syscall('getgroups', 2, (t) => {
    const n = t.argInt(0), groups = cred(t).groups;
    if (n < 0) return -E.EINVAL;
    if (n === 0) return groups.length;
    if (n < groups.length) return -E.EINVAL;
    groups.forEach((g, i) => t.mm.writeU32(t.arg(1) + i * 4, g));
    return groups.length;
  }),
  syscall('setgroups', 2, (t) => {
    const n = t.argInt(0);
    // kernel/groups.c order: permission, size, then each gid ((gid_t)-1 is not a valid id); the list is kept sorted, duplicates too.
    if (!capable(cred(t), CAP_SETGID)) return -E.EPERM;
    if (n < 0 || n > 65536) return -E.EINVAL;
    const groups: number[] = [];
    for (let i = 0; i < n; i++) groups.push(t.mm.readU32(t.arg(1) + i * 4));
    if (groups.includes(NONE)) return -E.EINVAL;
    const c = draft(t);
    c.groups = groups.sort((a, b) => a - b);
    return commit(t, c);
  }),
  syscall('capget', 2, capget),
  syscall('capset', 2, capset, 'partial', 'the caller\'s own sets only (as Linux without CAP_SETPCAP over others)'),
];
