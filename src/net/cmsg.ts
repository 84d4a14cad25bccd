/**
 * Control messages of sendmsg(2)/recvmsg(2) (man 3 cmsg, man 7 unix): reading a sender's
 * control buffer as net/core/scm.c __scm_send does, and filling a receiver's as put_cmsg and
 * scm_detach_fds do (truncation, MSG_CTRUNC, the length consumed written back). Nothing here
 * lives in the graph: parsed control data becomes fields of a queued message (src/net/unix.ts).
 */
import { E, SyscallError } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { UCred } from '../kernel/state.js';
import { credsOf, capable } from '../kernel/creds.js';
import { AF_INET6, AF_UNIX, CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN, IPPROTO_IPV6, IPV6_HOPLIMIT, IPV6_TCLASS, MSG_CTRUNC, SOCK_DGRAM, SCM_CREDENTIALS, SCM_RIGHTS, SOL_SOCKET } from '../abi/linux.js';

/** struct cmsghdr: u64 cmsg_len, i32 level, i32 type (16 bytes on x86-64). */
const CMSG_HDR = 16;
const align8 = (n: number) => (n + 7) & ~7;
/** SCM_MAX_FD: files one message may carry. */
const SCM_MAX_FD = 253;
/** net.core.optmem_max: the largest control buffer sendmsg accepts (ENOBUFS past it). */
const OPTMEM_MAX = 131072;

/** What a sender's control buffer asks for: fds to pass (SCM_RIGHTS), credentials (SCM_CREDENTIALS), IPv6 hop limit and traffic class. */
export interface SendControl {
  /** Guest fds, each checked open (EBADF otherwise). */
  fds: number[];
  creds?: UCred;
  /** IPV6_HOPLIMIT / IPV6_TCLASS of this datagram (-1: the socket's default). */
  hopLimit?: number;
  tclass?: number;
}

/** IPPROTO_IPV6 control messages sendmsg takes without acting on them here (RFC 3542: pktinfo, next hop, extension headers, dontfrag). */
const IPV6_IGNORED_CMSGS = new Set([50 /* PKTINFO */, 53 /* NEXTHOP */, 54 /* HOPOPTS */, 57 /* RTHDR */, 59 /* DSTOPTS */, 55 /* RTHDRDSTOPTS */, 62 /* DONTFRAG */, 2, 3, 4, 5, 6, 8 /* RFC 2292 forms */]);

/** The credentials a message carries by default (scm_set_cred): the sender's tgid, real uid and real gid. */
export function senderCred(t: Task): UCred {
  const c = credsOf(t.tg);
  return { pid: t.tgid, uid: c.ruid, gid: c.rgid };
}

/** The credentials a connection records (init_peercred, SO_PEERCRED): tgid, effective uid and gid. */
export function peerCredOf(t: Task): UCred {
  const c = credsOf(t.tg);
  return { pid: t.tgid, uid: c.euid, gid: c.egid };
}

/**
 * Parse the control buffer of a sendmsg msghdr (`ctl` guest address, `len` bytes) for a socket
 * of `domain` and `type`. AF_UNIX: SCM_RIGHTS and SCM_CREDENTIALS; other SOL_SOCKET types are
 * EINVAL and other levels ignored. AF_INET6 datagrams: IPV6_HOPLIMIT and IPV6_TCLASS (an int,
 * -1..255) as ip6_datagram_send_ctl, other RFC 3542 items ignored, unknown ones EINVAL. Inet
 * sockets ignore SCM_RIGHTS, SCM_CREDENTIALS and a few other SOL_SOCKET items (__sock_cmsg_send)
 * and refuse the rest with EINVAL. Errors: ENOBUFS (buffer
 * past optmem_max), EFAULT, EINVAL (bad cmsg_len, unknown SOL_SOCKET type, more than SCM_MAX_FD files, SCM_CREDENTIALS of the wrong size or uid/gid -1), EBADF (a
 * closed fd), EPERM (credentials not the sender's without CAP_SYS_ADMIN/CAP_SETUID/CAP_SETGID),
 * ESRCH (no such pid). Source: net/core/scm.c __scm_send, scm_fp_copy, scm_check_creds.
 */
export function parseControl(t: Task, ctl: number, len: number, domain: number, type: number): SendControl {
  const out: SendControl = { fds: [] };
  const unix = domain === AF_UNIX, ip6dgram = domain === AF_INET6 && type === SOCK_DGRAM;
  if (len > 0x7fffffff || len > OPTMEM_MAX) throw new SyscallError(E.ENOBUFS);
  if (!ctl || len < CMSG_HDR) return out;
  const raw = t.mm.read(ctl, len);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let off = 0; off + CMSG_HDR <= len;) {
    const clen = Number(v.getBigUint64(off, true));
    if (clen < CMSG_HDR || clen > len - off) throw new SyscallError(E.EINVAL);
    const level = v.getInt32(off + 8, true), type = v.getInt32(off + 12, true);
    if (level === SOL_SOCKET && !unix) {
      // __sock_cmsg_send: rights and credentials mean nothing here and are ignored, as are the
      // mark, timestamping, txtime and priority requests; anything else is EINVAL.
      if (![SCM_RIGHTS, SCM_CREDENTIALS, 12 /* SO_PRIORITY */, 36 /* SO_MARK */, 37 /* SO_TIMESTAMPING_OLD */, 61 /* SCM_TXTIME */].includes(type)) throw new SyscallError(E.EINVAL);
    } else if (level === SOL_SOCKET) {
      if (type === SCM_RIGHTS) {
        const n = Math.floor((clen - CMSG_HDR) / 4);
        if (n > 0) {
          if (n > SCM_MAX_FD || out.fds.length + n > SCM_MAX_FD) throw new SyscallError(E.EINVAL);
          for (let i = 0; i < n; i++) {
            const fd = v.getInt32(off + CMSG_HDR + i * 4, true);
            if (!t.fdTable.fds[fd]) throw new SyscallError(E.EBADF);
            out.fds.push(fd);
          }
        }
      } else if (type === SCM_CREDENTIALS) {
        if (clen !== CMSG_HDR + 12) throw new SyscallError(E.EINVAL);
        const cred = { pid: v.getInt32(off + 16, true), uid: v.getUint32(off + 20, true), gid: v.getUint32(off + 24, true) };
        checkCreds(t, cred);
        out.creds = cred;
      } else throw new SyscallError(E.EINVAL);
    } else if (level === IPPROTO_IPV6 && ip6dgram) {
      if (type === IPV6_HOPLIMIT || type === IPV6_TCLASS) {
        if (clen !== CMSG_HDR + 4) throw new SyscallError(E.EINVAL);
        const val = v.getInt32(off + CMSG_HDR, true);
        if (val < -1 || val > 255) throw new SyscallError(E.EINVAL);
        if (type === IPV6_HOPLIMIT) out.hopLimit = val; else out.tclass = val;
      } else if (!IPV6_IGNORED_CMSGS.has(type)) throw new SyscallError(E.EINVAL);
    }
    off += align8(clen);
  }
  return out;
}

/** scm_check_creds: EINVAL for uid/gid -1, EPERM for another's identity without the capability, ESRCH for a pid that does not exist. */
function checkCreds(t: Task, cred: UCred): void {
  if (cred.uid === 0xffffffff || cred.gid === 0xffffffff) throw new SyscallError(E.EINVAL);
  const c = credsOf(t.tg);
  const pidOk = cred.pid === t.tgid || capable(c, CAP_SYS_ADMIN);
  const uidOk = cred.uid === c.ruid || cred.uid === c.euid || cred.uid === c.suid || capable(c, CAP_SETUID);
  const gidOk = cred.gid === c.rgid || cred.gid === c.egid || cred.gid === c.sgid || capable(c, CAP_SETGID);
  if (!(pidOk && uidOk && gidOk)) throw new SyscallError(E.EPERM);
  if (!t.kernel.state.threadGroups[cred.pid]) throw new SyscallError(E.ESRCH);
}

/**
 * A recvmsg control buffer being filled (put_cmsg): `room` bytes left at guest address `at`.
 * `finish` returns the msg_controllen to write back (bytes used) and whether MSG_CTRUNC is due.
 */
export class ControlWriter {
  private used = 0;
  truncated = false;
  constructor(private readonly t: Task, private readonly at: number, private readonly room: number) {}

  /** put_cmsg: a header and `data`, truncated (MSG_CTRUNC) to the room left; nothing if not even a header fits. */
  put(level: number, type: number, data: Uint8Array): void {
    const left = this.room - this.used;
    if (!this.at || left < CMSG_HDR) { this.truncated = true; return; }
    let clen = CMSG_HDR + data.length;
    if (left < clen) { this.truncated = true; clen = left; }
    const b = new Uint8Array(clen);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(clen), true); v.setInt32(8, level, true); v.setInt32(12, type, true);
    b.set(data.subarray(0, clen - CMSG_HDR), CMSG_HDR);
    this.t.mm.write(this.at + this.used, b);
    this.used += Math.min(align8(CMSG_HDR + data.length), left);
  }

  /** How many 4-byte fds an SCM_RIGHTS message may still carry (scm_detach_fds' fdmax). */
  fdRoom(): number {
    const left = this.room - this.used;
    return this.at && left > CMSG_HDR ? Math.floor((left - CMSG_HDR) / 4) : 0;
  }

  /** scm_detach_fds' message: `fds` installed (at most fdRoom()); `total` files came with the message. */
  putRights(fds: number[], total: number): void {
    if (fds.length) {
      const b = new Uint8Array(fds.length * 4);
      const v = new DataView(b.buffer);
      fds.forEach((fd, i) => v.setInt32(i * 4, fd, true));
      this.put(SOL_SOCKET, SCM_RIGHTS, b);
    }
    if (fds.length < total) this.truncated = true;
  }

  /** An int-valued control message (IPV6_HOPLIMIT, IPV6_TCLASS). */
  putInt(level: number, type: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, value, true);
    this.put(level, type, b);
  }

  /** The struct ucred of SCM_CREDENTIALS. */
  putCreds(c: UCred): void {
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setInt32(0, c.pid, true); v.setUint32(4, c.uid, true); v.setUint32(8, c.gid, true);
    this.put(SOL_SOCKET, SCM_CREDENTIALS, b);
  }

  /** msg_controllen to write back, and the MSG_CTRUNC flag if anything was cut. */
  finish(): { controllen: number; flags: number } {
    return { controllen: this.used, flags: this.truncated ? MSG_CTRUNC : 0 };
  }
}
