/**
 * /proc/net/{tcp,tcp6,udp,udp6,unix} (and /proc/PID/net/…): the sandbox's sockets in Linux's
 * formats (net/ipv4/tcp_ipv4.c tcp4_seq_show, net/ipv6/tcp_ipv6.c, net/ipv4/udp.c
 * udp4_seq_show, net/ipv6/datagram.c __ip6_dgram_sock_seq_show, net/unix/af_unix.c
 * unix_seq_show), generated from the graph when read (nothing of its own to save).
 *
 * With --network=sandbox the inet tables list the sandbox's own loopback sockets; with
 * --network=host they list the guest's host-backed sockets as the sandbox sees them (its
 * addresses, states and socket inodes), not the host's other sockets. Unix sockets are always
 * the sandbox's. Listed as Linux lists them: TCP sockets listening or connected (the listening
 * and established hashes), UDP sockets once bound (the UDP hash), every unix socket. The
 * socket inode is the number of the socket's /proc/PID/fd link ("socket:[N]", its fstat
 * st_ino); the owner is its creator's uid (sandbox sockets) or the uid of a process holding it
 * (host-backed ones). Kernel pointers print as zeros (kptr_restrict), timers as idle. Queue
 * sizes are bytes of data (Linux's UDP rx_queue counts buffer overhead too).
 */
import type { Kernel } from '../kernel/kernel.js';
import type { SockAddr } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';
import type { HostInetFile } from '../files/hostinet.js';
import { AF_INET, AF_INET6, AF_UNIX, SOCK_DGRAM, SOCK_STREAM } from '../abi/linux.js';

/** The /proc/net files this module serves. */
export const PROC_NET_FILES = ['tcp', 'tcp6', 'udp', 'udp6', 'unix'] as const;
export type ProcNetFile = (typeof PROC_NET_FILES)[number];

/** TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h). */
const TCP_ESTABLISHED = 1, TCP_CLOSE = 7, TCP_LISTEN = 10;
/** unix: __SO_ACCEPTCON in Flags; SS_UNCONNECTED, SS_CONNECTED in St. */
const SO_ACCEPTCON = 1 << 16, SS_UNCONNECTED = 1, SS_CONNECTED = 3;
const ZERO_PTR = '0000000000000000';

const hex = (n: number, width: number): string => (n >>> 0).toString(16).toUpperCase().padStart(width, '0');

/** The 4 bytes of an IPv4 address as the kernel prints a __be32 with %08X on little-endian x86-64. */
function v4Hex(ip: string): string {
  const b = ip.split('.').map(Number);
  return hex(((b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]) >>> 0, 8);
}

/** The 16 bytes of an IPv6 address (text, v4-mapped forms too), as four little-endian 32-bit words printed %08X. */
function v6Hex(ip: string): string {
  const bytes = new Uint8Array(16);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    v4[1].split('.').forEach((x, i) => { bytes[12 + i] = Number(x); });
    text = text.slice(0, -v4[1].length) + '0:0';
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups = tail === undefined ? hs : [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts];
  groups.forEach((g, i) => { const n = parseInt(g || '0', 16); bytes[i * 2] = n >> 8; bytes[i * 2 + 1] = n & 0xff; });
  if (v4) v4[1].split('.').forEach((x, i) => { bytes[12 + i] = Number(x); });
  const v = new DataView(bytes.buffer);
  return [0, 4, 8, 12].map((o) => hex(v.getUint32(o, true), 8)).join('');
}

function addrHex(a: SockAddr | undefined, v6: boolean): string {
  const ip = a?.ip ?? (v6 ? '::' : '0.0.0.0');
  return `${v6 ? v6Hex(ip) : v4Hex(ip)}:${hex(a?.port ?? 0, 4)}`;
}

/** A socket of either kind, reduced to what the tables show. */
interface Row { id: number; domain: number; type: number; state: number; local?: SockAddr; peer?: SockAddr; rxQueue: number; uid: number }

/** Uid of a process holding open file `id` (host-backed sockets record no owner), else 0. */
function holderUid(k: Kernel, id: number): number {
  for (const ts of Object.values(k.state.tasks)) {
    const table = k.state.fdTables[ts.fdTableId];
    if (table && Object.values(table.fds).some((d) => d.fileId === id)) return k.state.threadGroups[ts.tgid]?.uid ?? 0;
  }
  return 0;
}

/** The sandbox's inet sockets of `domain` (both kinds of file), as table rows. */
function inetRows(k: Kernel, domain: number): Row[] {
  const rows: Row[] = [];
  for (const f of Object.values(k.state.openFiles)) {
    if (f.kind === 'socket') {
      const s = (f as SocketFile).socket;
      if (s.domain !== domain || s.protocol) continue;
      const rx = s.type === SOCK_STREAM ? (s.rx ? k.state.pipes[s.rx]?.len ?? 0 : 0) : (s.dgrams ?? []).reduce((n, m) => n + m.data.length, 0);
      const state = s.state === 'listening' ? TCP_LISTEN : s.state === 'connected' || (s.type === SOCK_DGRAM && s.peer) ? TCP_ESTABLISHED : TCP_CLOSE;
      rows.push({ id: f.id, domain, type: s.type ?? SOCK_STREAM, state, local: s.local, peer: state === TCP_ESTABLISHED ? s.peer : undefined, rxQueue: s.state === 'listening' ? s.backlog?.length ?? 0 : rx, uid: s.owner?.[0] ?? 0 });
    } else if (f.kind === 'hostinet') {
      const h = (f as HostInetFile).hostinet;
      if (h.domain !== domain) continue;
      const state = h.state === 'listening' ? TCP_LISTEN : h.state === 'connected' && !h.reset ? TCP_ESTABLISHED : TCP_CLOSE;
      rows.push({ id: f.id, domain, type: h.type, state, local: h.local, peer: state === TCP_ESTABLISHED ? h.peer : undefined, rxQueue: 0, uid: holderUid(k, f.id) });
    }
  }
  return rows.sort((a, b) => a.id - b.id);
}

/** /proc/net/tcp or tcp6: listening and connected TCP sockets. */
function tcpTable(k: Kernel, v6: boolean): string {
  const rows = inetRows(k, v6 ? AF_INET6 : AF_INET).filter((r) => r.type === SOCK_STREAM && r.state !== TCP_CLOSE);
  const head = '  sl  local_address ' + (v6 ? '                        remote_address                        ' : 'rem_address   ') +
    'st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
  const line = (r: Row, i: number) => `${String(i).padStart(4)}: ${addrHex(r.local, v6)} ${addrHex(r.peer, v6)} ${hex(r.state, 2)} ${hex(0, 8)}:${hex(r.rxQueue, 8)} 00:00000000 00000000 ${String(r.uid).padStart(5)} ${'0'.padStart(8)} ${r.id} 1 ${ZERO_PTR} 20 4 30 10 -1`;
  // tcp4 pads its lines to 149 characters (seq_pad), tcp6 does not.
  const pad = (s: string) => (v6 ? s : s.padEnd(149));
  return [pad(head), ...rows.map((r, i) => pad(line(r, i)))].join('\n') + '\n';
}

/** /proc/net/udp or udp6: bound UDP sockets. */
function udpTable(k: Kernel, v6: boolean): string {
  const rows = inetRows(k, v6 ? AF_INET6 : AF_INET).filter((r) => r.type === SOCK_DGRAM && r.local);
  const head = (v6 ? '  sl  local_address                         remote_address                        ' : '   sl  local_address rem_address   ') +
    'st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';
  const line = (r: Row, i: number) => `${String(i).padStart(5)}: ${addrHex(r.local, v6)} ${addrHex(r.peer, v6)} ${hex(r.state, 2)} ${hex(0, 8)}:${hex(r.rxQueue, 8)} 00:00000000 00000000 ${String(r.uid).padStart(5)} ${'0'.padStart(8)} ${r.id} 2 ${ZERO_PTR} 0`;
  // udp4 pads its lines to 127 characters, udp6 does not.
  const pad = (s: string) => (v6 ? s : s.padEnd(127));
  return [pad(head), ...rows.map((r, i) => pad(line(r, i)))].join('\n') + '\n';
}

/** A unix socket's name as /proc/net/unix prints it: the path, or '@' and the abstract name with each NUL as '@'. */
const unixName = (a: SockAddr | undefined): string => (!a?.path ? '' : ' ' + (a.path.startsWith('\0') ? '@' + a.path.slice(1).replace(/\0/g, '@') : a.path));

/** /proc/net/unix: every unix socket of the sandbox. */
function unixTable(k: Kernel): string {
  const lines = ['Num       RefCount Protocol Flags    Type St Inode Path'];
  const files = Object.values(k.state.openFiles).filter((f): f is SocketFile => f.kind === 'socket' && (f as SocketFile).socket.domain === AF_UNIX).sort((a, b) => a.id - b.id);
  for (const f of files) {
    const s = f.socket;
    // A connected socket's peer holds a reference too (RefCount 3, else 2).
    const connected = s.state === 'connected' || s.pairPeer !== undefined;
    lines.push(`${ZERO_PTR}: ${hex(connected ? 3 : 2, 8)} ${hex(0, 8)} ${hex(s.state === 'listening' ? SO_ACCEPTCON : 0, 8)} ${hex(s.type ?? SOCK_STREAM, 4)} ${hex(connected ? SS_CONNECTED : SS_UNCONNECTED, 2)} ${String(f.id).padStart(5)}${unixName(s.local)}`);
  }
  return lines.join('\n') + '\n';
}

/** The text of /proc/net/`name` for sandbox `k`, as read now. */
export function procNetText(k: Kernel, name: ProcNetFile): string {
  switch (name) {
    case 'tcp': return tcpTable(k, false);
    case 'tcp6': return tcpTable(k, true);
    case 'udp': return udpTable(k, false);
    case 'udp6': return udpTable(k, true);
    case 'unix': return unixTable(k);
  }
}
