/**
 * Credentials (man 7 credentials; man 2 setuid, setreuid, setresuid, setgroups, …):
 * real, effective, saved and filesystem ids per thread group, with Linux's permission
 * rules (an effective uid of 0 may set anything; others only to ids they already hold).
 * Compare kernel/sys.c.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { Credentials } from '../kernel/state.js';
import { syscall } from './entry.js';

const NONE = 0xffffffff; // -1: leave unchanged

export function cred(t: Task): Credentials {
  const tg = t.tg;
  tg.cred ??= { ruid: tg.uid, euid: tg.uid, suid: tg.uid, fsuid: tg.uid, rgid: tg.gid, egid: tg.gid, sgid: tg.gid, fsgid: tg.gid, groups: [] };
  return tg.cred;
}

const privileged = (c: Credentials) => c.euid === 0;

/** The four ids of one kind (user or group) within Credentials, and the graph field that mirrors the real one. */
interface IdSet { r: 'ruid' | 'rgid'; e: 'euid' | 'egid'; s: 'suid' | 'sgid'; fs: 'fsuid' | 'fsgid'; mirror: 'uid' | 'gid' }
const UIDS: IdSet = { r: 'ruid', e: 'euid', s: 'suid', fs: 'fsuid', mirror: 'uid' };
const GIDS: IdSet = { r: 'rgid', e: 'egid', s: 'sgid', fs: 'fsgid', mirror: 'gid' };

/** setresuid(2)/setresgid(2): unprivileged callers may only pick ids they already hold. */
function setres(t: Task, k: IdSet, r: number, e: number, s: number): number {
  const c = cred(t);
  const held = [c[k.r], c[k.e], c[k.s]];
  if (!privileged(c) && [r, e, s].some((x) => x !== NONE && !held.includes(x))) return -E.EPERM;
  if (r !== NONE) c[k.r] = r;
  if (e !== NONE) c[k.e] = e;
  if (s !== NONE) c[k.s] = s;
  c[k.fs] = c[k.e];
  t.tg[k.mirror] = c[k.r];
  return 0;
}

/** setreuid(2)/setregid(2): an unprivileged caller may swap real and effective; the saved id follows a changed effective one. */
function setre(t: Task, k: IdSet, r: number, e: number): number {
  const c = cred(t);
  if (!privileged(c)) {
    if (r !== NONE && r !== c[k.r] && r !== c[k.e]) return -E.EPERM;
    if (e !== NONE && e !== c[k.r] && e !== c[k.e] && e !== c[k.s]) return -E.EPERM;
  }
  const oldR = c[k.r];
  if (r !== NONE) c[k.r] = r;
  if (e !== NONE) c[k.e] = e;
  if (r !== NONE || (e !== NONE && e !== oldR)) c[k.s] = c[k.e];
  c[k.fs] = c[k.e];
  t.tg[k.mirror] = c[k.r];
  return 0;
}

function writeIds(t: Task, addrs: number[], ids: number[]): number {
  addrs.forEach((a, i) => t.mm.writeU32(a, ids[i]));
  return 0;
}

export const credSyscalls = [
  syscall('getuid', 0, (t) => cred(t).ruid),
  syscall('geteuid', 0, (t) => cred(t).euid),
  syscall('getgid', 0, (t) => cred(t).rgid),
  syscall('getegid', 0, (t) => cred(t).egid),
  syscall('getresuid', 3, (t) => { const c = cred(t); return writeIds(t, [t.arg(0), t.arg(1), t.arg(2)], [c.ruid, c.euid, c.suid]); }),
  syscall('getresgid', 3, (t) => { const c = cred(t); return writeIds(t, [t.arg(0), t.arg(1), t.arg(2)], [c.rgid, c.egid, c.sgid]); }),
  syscall('setuid', 1, (t) => {
    const c = cred(t), u = t.argU32(0);
    if (u === NONE) return -E.EINVAL;
    if (privileged(c)) return setres(t, UIDS, u, u, u);
    return u === c.ruid || u === c.suid ? setres(t, UIDS, NONE, u, NONE) : -E.EPERM;
  }),
  syscall('setgid', 1, (t) => {
    const c = cred(t), g = t.argU32(0);
    if (g === NONE) return -E.EINVAL;
    if (privileged(c)) return setres(t, GIDS, g, g, g);
    return g === c.rgid || g === c.sgid ? setres(t, GIDS, NONE, g, NONE) : -E.EPERM;
  }),
  syscall('setreuid', 2, (t) => setre(t, UIDS, t.argU32(0), t.argU32(1))),
  syscall('setregid', 2, (t) => setre(t, GIDS, t.argU32(0), t.argU32(1))),
  syscall('setresuid', 3, (t) => setres(t, UIDS, t.argU32(0), t.argU32(1), t.argU32(2))),
  syscall('setresgid', 3, (t) => setres(t, GIDS, t.argU32(0), t.argU32(1), t.argU32(2))),
  syscall('setfsuid', 1, (t) => { const c = cred(t), old = c.fsuid, u = t.argU32(0); if (privileged(c) || [c.ruid, c.euid, c.suid].includes(u)) c.fsuid = u; return old; }),
  syscall('setfsgid', 1, (t) => { const c = cred(t), old = c.fsgid, g = t.argU32(0); if (privileged(c) || [c.rgid, c.egid, c.sgid].includes(g)) c.fsgid = g; return old; }),
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
    if (n < 0 || n > 65536) return -E.EINVAL;
    if (!privileged(cred(t))) return -E.EPERM;
    const groups: number[] = [];
    for (let i = 0; i < n; i++) groups.push(t.mm.readU32(t.arg(1) + i * 4));
    cred(t).groups = groups;
    return 0;
  }),
];
