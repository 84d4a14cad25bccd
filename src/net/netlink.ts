/**
 * AF_NETLINK NETLINK_ROUTE sockets (man 7 netlink, man 7 rtnetlink; net/core/rtnetlink.c) for
 * the sandbox's one network interface, `lo` (index 1, 127.0.0.1/8 and ::1/128): enough for
 * glibc's getifaddrs/if_nameindex (libuv's uv_interface_addresses, Node's os.networkInterfaces,
 * Python's socket.if_nameindex) and `ip link`/`ip addr`. A request written to the socket is
 * answered at once: RTM_GETLINK and RTM_GETADDR (dump, or one link by index or name), an empty
 * dump for RTM_GETROUTE/RTM_GETNEIGH/RTM_GETRULE, NLMSG_ERROR with EOPNOTSUPP for the rest (and
 * acks asked for with NLM_F_ACK). Replies wait in the socket's message queue (SocketState.dgrams)
 * as plain data, so they are checkpointed with it; the port id a socket binds is a key of
 * NetState.bound.
 *
 * With --network=host the guest's TCP and UDP sockets are the host's (src/net/hostinet.ts), so
 * its interfaces are the host's too: a GET request (RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE…) is
 * answered by the host kernel (HostSockets.routeQuery), the replies given the guest socket's port
 * id; requests that would change anything (RTM_NEW*, RTM_DEL*, RTM_SET*) still get EOPNOTSUPP.
 */
import { E, SyscallError } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { SockAddr, SocketState } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';
import { bindName, netState, socketPath } from './door.js';
import { AF_INET, AF_INET6, AF_NETLINK, AF_UNSPEC } from '../abi/linux.js';

export const NETLINK_ROUTE = 0;
const NLMSG_ERROR = 2, NLMSG_DONE = 3;
const NLM_F_REQUEST = 1, NLM_F_MULTI = 2, NLM_F_ACK = 4, NLM_F_DUMP = 0x300;
const RTM_NEWLINK = 16, RTM_GETLINK = 18, RTM_NEWADDR = 20, RTM_GETADDR = 22, RTM_GETROUTE = 26, RTM_GETNEIGH = 30, RTM_GETRULE = 34;
const IFLA_ADDRESS = 1, IFLA_BROADCAST = 2, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_TXQLEN = 13, IFLA_OPERSTATE = 16, IFLA_LINKMODE = 17;
const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_LABEL = 3, IFA_FLAGS = 8;
const ARPHRD_LOOPBACK = 772;
/** IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP. */
const LO_FLAGS = 0x1 | 0x8 | 0x40 | 0x10000;
const IFA_F_PERMANENT = 0x80, RT_SCOPE_HOST = 254;
const LO_INDEX = 1;

const align4 = (n: number) => (n + 3) & ~3;

function bound(t: Task): Readonly<Record<string, number>> {
  return netState(t.kernel).bound;
}

/** One route attribute (struct rtattr: u16 len, u16 type, payload padded to 4). */
function attr(type: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(align4(4 + payload.length));
  const v = new DataView(b.buffer);
  v.setUint16(0, 4 + payload.length, true); v.setUint16(2, type, true);
  b.set(payload, 4);
  return b;
}
const u32 = (n: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); return b; };
const u8 = (n: number) => Uint8Array.of(n);
const cstr = (s: string) => new Uint8Array([...Buffer.from(s, 'latin1'), 0]);

/** One netlink message (struct nlmsghdr + body), padded to 4. */
function nlmsg(type: number, flags: number, seq: number, pid: number, body: Uint8Array[]): Uint8Array {
  const len = 16 + body.reduce((n, p) => n + p.length, 0);
  const b = new Uint8Array(align4(len));
  const v = new DataView(b.buffer);
  v.setUint32(0, len, true); v.setUint16(4, type, true); v.setUint16(6, flags, true); v.setUint32(8, seq, true); v.setUint32(12, pid, true);
  let o = 16;
  for (const p of body) { b.set(p, o); o += p.length; }
  return b;
}

/** RTM_NEWLINK for lo (struct ifinfomsg and its attributes). */
function loLink(flags: number, seq: number, pid: number): Uint8Array {
  const ifi = new Uint8Array(16);
  const v = new DataView(ifi.buffer);
  v.setUint8(0, AF_UNSPEC); v.setUint16(2, ARPHRD_LOOPBACK, true); v.setInt32(4, LO_INDEX, true); v.setUint32(8, LO_FLAGS, true);
  return nlmsg(RTM_NEWLINK, flags, seq, pid, [ifi, attr(IFLA_IFNAME, cstr('lo')), attr(IFLA_TXQLEN, u32(1000)), attr(IFLA_OPERSTATE, u8(0)), attr(IFLA_LINKMODE, u8(0)),
    attr(IFLA_MTU, u32(65536)), attr(IFLA_ADDRESS, new Uint8Array(6)), attr(IFLA_BROADCAST, new Uint8Array(6))]);
}

/** RTM_NEWADDR messages for lo's addresses of `family` (AF_UNSPEC: both). */
function loAddrs(family: number, seq: number, pid: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const ifa = (fam: number, prefix: number) => {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    v.setUint8(0, fam); v.setUint8(1, prefix); v.setUint8(2, IFA_F_PERMANENT); v.setUint8(3, RT_SCOPE_HOST); v.setUint32(4, LO_INDEX, true);
    return b;
  };
  if (family === AF_UNSPEC || family === AF_INET) {
    const ip = Uint8Array.of(127, 0, 0, 1);
    out.push(nlmsg(RTM_NEWADDR, NLM_F_MULTI, seq, pid, [ifa(AF_INET, 8), attr(IFA_ADDRESS, ip), attr(IFA_LOCAL, ip), attr(IFA_LABEL, cstr('lo')), attr(IFA_FLAGS, u32(IFA_F_PERMANENT))]));
  }
  if (family === AF_UNSPEC || family === AF_INET6) {
    const ip = new Uint8Array(16); ip[15] = 1;
    out.push(nlmsg(RTM_NEWADDR, NLM_F_MULTI, seq, pid, [ifa(AF_INET6, 128), attr(IFA_ADDRESS, ip), attr(IFA_FLAGS, u32(IFA_F_PERMANENT))]));
  }
  return out;
}

/** NLMSG_ERROR answering `req` (error 0 is an ack: the request's header only, as netlink_ack). */
function errorMsg(req: Uint8Array, err: number, pid: number): Uint8Array {
  const v = new DataView(req.buffer, req.byteOffset, req.length);
  const e = new Uint8Array(4);
  new DataView(e.buffer).setInt32(0, err, true);
  return nlmsg(NLMSG_ERROR, err ? 0 : 0x100 /* NLM_F_CAPPED */, v.getUint32(8, true), pid, [e, err ? req : req.subarray(0, 16)]);
}

/** The IFLA_IFNAME attribute of an RTM_GETLINK request, if any. */
function ifnameOf(body: Uint8Array): string | undefined {
  const v = new DataView(body.buffer, body.byteOffset, body.length);
  for (let o = 16; o + 4 <= body.length;) {
    const len = v.getUint16(o, true), type = v.getUint16(o + 2, true);
    if (len < 4) break;
    if (type === IFLA_IFNAME) { const s = body.subarray(o + 4, o + len); const nul = s.indexOf(0); return Buffer.from(nul >= 0 ? s.subarray(0, nul) : s).toString('latin1'); }
    o += align4(len);
  }
  return undefined;
}

/**
 * Answer the netlink messages in `data` written to socket `f` (a NETLINK_ROUTE socket): the
 * replies are queued on it. Messages too short end the batch (netlink_rcv_skb). Replies carry
 * the request's sequence number and the socket's port id.
 */
export function netlinkRequest(t: Task, f: SocketFile, data: Uint8Array): void {
  const s = f.socket;
  const pid = s.local?.port ?? 0;
  const v = new DataView(data.buffer, data.byteOffset, data.length);
  for (let o = 0; o + 16 <= data.length;) {
    const len = v.getUint32(o, true);
    if (len < 16 || o + len > data.length) break;
    const type = v.getUint16(o + 4, true), flags = v.getUint16(o + 6, true), seq = v.getUint32(o + 8, true);
    const req = data.subarray(o, o + len);
    const body = req.subarray(16);
    o += align4(len);
    if (!(flags & NLM_F_REQUEST) || type < 16) continue; // control messages and replies are not requests
    const dump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    const done = () => { const z = new Uint8Array(4); return nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, pid, [z]); };
    let reply: Uint8Array[];
    if (t.kernel.state.config.network === 'host' && (type & 3) === 2) {
      // A GET (read-only) to the host kernel; its reply datagrams (and an ack, if asked) as the host wrote them.
      const r = t.kernel.host.sockets.routeQuery(req);
      if (typeof r === 'number') queueReply(t, f, [errorMsg(req, r, pid)]);
      else for (const d of r) queueReply(t, f, [withPortId(d, pid)]);
      continue;
    }
    if (type === RTM_GETLINK && dump) reply = [loLink(NLM_F_MULTI, seq, pid), done()];
    else if (type === RTM_GETLINK) {
      const index = body.length >= 8 ? new DataView(body.buffer, body.byteOffset + 4, 4).getInt32(0, true) : 0;
      const name = ifnameOf(body);
      const isLo = index === LO_INDEX || (index === 0 && name === 'lo');
      reply = isLo ? [loLink(0, seq, pid)] : [errorMsg(req, -E.ENODEV, pid)];
    } else if (type === RTM_GETADDR && dump) reply = [...loAddrs(body.length ? body[0] : AF_UNSPEC, seq, pid), done()];
    else if ((type === RTM_GETROUTE || type === RTM_GETNEIGH || type === RTM_GETRULE) && dump) reply = [done()];
    else reply = [errorMsg(req, -E.EOPNOTSUPP, pid)];
    if (flags & NLM_F_ACK && reply[0] && new DataView(reply[0].buffer).getUint16(4, true) !== NLMSG_ERROR) reply.push(errorMsg(req, 0, pid));
    queueReply(t, f, reply);
  }
  t.kernel.pipes.changed$.next(f.id);
}

/** Queue the reply messages to one request on netlink socket `f`, as one message of its queue. */
function queueReply(t: Task, f: SocketFile, reply: Uint8Array[]): void {
  const total = reply.reduce((n, m) => n + m.length, 0);
  const out = new Uint8Array(total);
  let p = 0;
  for (const m of reply) { out.set(m, p); p += m.length; }
  t.kernel.emit({ type: 'socket.queue', fileId: f.id, len: out.length }, [['splice', socketPath(f, 'dgrams'), f.socket.dgrams!.length, 0, { from: { family: AF_NETLINK, port: 0 }, data: out }]], true);
}

/** Netlink messages `b` (concatenated) with each header's nlmsg_pid set to `pid` (the guest socket's port id). */
function withPortId(b: Uint8Array, pid: number): Uint8Array {
  const out = new Uint8Array(b);
  const v = new DataView(out.buffer);
  for (let o = 0; o + 16 <= out.length;) {
    const len = v.getUint32(o, true);
    v.setUint32(o + 12, pid, true);
    if (len < 16) break;
    o += align4(len);
  }
  return out;
}

/**
 * bind(2) of a netlink socket (netlink_bind): port id `a.port` (0: the caller's tgid if free,
 * else a negative one, as netlink_autobind). Multicast groups are accepted (no events come).
 * EADDRINUSE for a taken port id; EINVAL if bound to another.
 */
export function netlinkBind(t: Task, f: SocketFile, a: SockAddr): void {
  const s = f.socket;
  const b = bound(t);
  let port = a.port ?? 0;
  if (s.local) {
    if (port && port !== s.local.port) throw new SyscallError(E.EINVAL);
    return;
  }
  if (port) {
    if (b[`nl:${port}`] !== undefined) throw new SyscallError(E.EADDRINUSE);
  } else {
    port = t.tgid;
    for (let n = -4097; b[`nl:${port}`] !== undefined; n--) port = n >>> 0;
  }
  bindName(t.kernel, f, `nl:${port}`, { boundKey: `nl:${port}`, local: { family: AF_NETLINK, port }, state: 'bound' });
}

/** Encode a sockaddr_nl (12 bytes: family, pad, u32 port id, u32 groups). */
export function encodeNetlinkAddr(a: SockAddr | undefined): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint16(0, AF_NETLINK, true); v.setUint32(4, a?.port ?? 0, true);
  return b;
}

/** Decode a sockaddr_nl of `len` bytes: EINVAL if shorter than 12. */
export function decodeNetlinkAddr(b: Uint8Array, len: number): SockAddr {
  if (len < 12) throw new SyscallError(E.EINVAL);
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  return { family: AF_NETLINK, port: v.getUint32(4, true) };
}

/** A netlink socket: its messages are read as datagrams. */
export const isNetlink = (s: SocketState) => s.domain === AF_NETLINK;

/** Interface ioctls (linux/sockios.h). */
const SIOCGIFNAME = 0x8910, SIOCGIFCONF = 0x8912, SIOCGIFFLAGS = 0x8913, SIOCGIFADDR = 0x8915, SIOCGIFBRDADDR = 0x8919, SIOCGIFNETMASK = 0x891b, SIOCGIFMTU = 0x8921, SIOCGIFHWADDR = 0x8927, SIOCGIFINDEX = 0x8933, SIOCGIFTXQLEN = 0x8942;
/** The interface ioctls socketIoctl answers; other requests are not interface ones. */
export const INTERFACE_IOCTLS = new Set([SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFBRDADDR, SIOCGIFNETMASK, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFTXQLEN]);
const IFREQ = 40;

/** A struct sockaddr_in of `ip` (four bytes) as the 16 bytes of an ifreq's union. */
function sin(ip: number[]): Uint8Array {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint16(0, AF_INET, true);
  b.set(ip, 4);
  return b;
}

/**
 * The interface ioctls of any socket (net/core/dev_ioctl.c, devinet_ioctl for the address ones,
 * which only AF_INET sockets answer) for `lo`, the one interface: struct ifreq (40 bytes: the name,
 * then the answer) at guest address `arg`. ENODEV for another name or index, ENOTTY for an address
 * request on a socket of another family, EFAULT.
 */
export function interfaceIoctl(t: Task, f: SocketFile, req: number, arg: number): number {
  const inet = f.socket.domain === AF_INET;
  if (req === SIOCGIFCONF) {
    if (!inet) return -E.ENOTTY;
    const hdr = t.mm.read(arg, 16);
    const hv = new DataView(hdr.buffer, hdr.byteOffset, 16);
    const len = hv.getInt32(0, true), buf = Number(hv.getBigUint64(8, true));
    if (!buf) { t.mm.writeU32(arg, IFREQ); return 0; } // the room it needs
    if (len < IFREQ) { t.mm.writeU32(arg, 0); return 0; }
    const r = new Uint8Array(IFREQ);
    r.set(cstr('lo'));
    r.set(sin([127, 0, 0, 1]), 16);
    t.mm.write(buf, r);
    t.mm.writeU32(arg, IFREQ);
    return 0;
  }
  const ifr = new Uint8Array(t.mm.read(arg, IFREQ));
  const v = new DataView(ifr.buffer);
  if (req === SIOCGIFNAME) {
    if (v.getInt32(16, true) !== LO_INDEX) return -E.ENODEV;
    ifr.fill(0, 0, 16); ifr.set(cstr('lo'));
    t.mm.write(arg, ifr);
    return 0;
  }
  const nul = ifr.subarray(0, 16).indexOf(0);
  if (Buffer.from(ifr.subarray(0, nul >= 0 ? nul : 16)).toString('latin1') !== 'lo') return -E.ENODEV;
  const out = ifr.subarray(16);
  out.fill(0);
  switch (req) {
    case SIOCGIFINDEX: v.setInt32(16, LO_INDEX, true); break;
    case SIOCGIFFLAGS: v.setUint16(16, LO_FLAGS & 0xffff, true); break;
    case SIOCGIFMTU: v.setInt32(16, 65536, true); break;
    case SIOCGIFTXQLEN: v.setInt32(16, 1000, true); break;
    case SIOCGIFHWADDR: v.setUint16(16, ARPHRD_LOOPBACK, true); break;
    case SIOCGIFADDR: if (!inet) return -E.ENOTTY; out.set(sin([127, 0, 0, 1])); break;
    case SIOCGIFNETMASK: if (!inet) return -E.ENOTTY; out.set(sin([255, 0, 0, 0])); break;
    case SIOCGIFBRDADDR: if (!inet) return -E.ENOTTY; out.set(sin([0, 0, 0, 0])); break;
  }
  t.mm.write(arg, ifr);
  return 0;
}
