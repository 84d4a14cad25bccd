/**
 * UDP-Lite and IPv6 datagram ancillary data (src/net/socket.ts, src/net/cmsg.ts; man 7 udplite,
 * RFC 3542): UDP-Lite sockets exchange datagrams in their own port space (SO_PROTOCOL 136,
 * checksum-coverage options read back); IPV6_RECVHOPLIMIT/IPV6_RECVTCLASS receivers get the hop
 * limit and traffic class a datagram was sent with (an IPV6_HOPLIMIT/IPV6_TCLASS control message,
 * else the sender's IPV6_UNICAST_HOPS/IPV6_TCLASS options, else 64 and 0), truncated control
 * buffers set MSG_CTRUNC, bad control messages are EINVAL and SCM_RIGHTS is ignored as Linux does;
 * against the same program natively, with a queued datagram keeping its hop limit across
 * checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, expectCheckpointRestoreMatches, native, PY_WAIT_FOR_GATE } from './helpers.js';

const UDPX = String.raw`
import array, errno, os, socket, sys, time
IPV6 = socket.IPPROTO_IPV6
def ints(anc):
    return [(lvl == IPV6, {socket.IPV6_HOPLIMIT: "hoplimit", socket.IPV6_TCLASS: "tclass"}.get(typ, typ), array.array("i", data).tolist()) for lvl, typ, data in anc]
# UDP-Lite: datagrams between UDP-Lite sockets, its own ports
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    a = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE); a.bind((host, 0))
    b = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
    b.setsockopt(socket.IPPROTO_UDPLITE, 10, 20)  # UDPLITE_SEND_CSCOV
    print("udplite", a.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL), b.getsockopt(socket.IPPROTO_UDPLITE, 10))
    b.sendto(b"lite", a.getsockname()); d, src = a.recvfrom(10); print(" got", d, src[1] == b.getsockname()[1])
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, a.getsockname()[1])); print(" udp on the same port: bound")
    u.sendto(b"plain udp", a.getsockname()); print(" udp to udplite:", u.recvfrom(10) if False else "sent")
    a.setblocking(False)
    try: print(" udplite got", a.recv(10))
    except BlockingIOError: print(" udplite gets nothing from udp")
# IPv6 hop limit and traffic class
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); c.connect(s.getsockname())
s.setsockopt(IPV6, socket.IPV6_RECVHOPLIMIT, 1)
c.send(b"default"); m, anc, fl, _ = s.recvmsg(100, 1024); print(m, ints(anc), fl)
s.setsockopt(IPV6, socket.IPV6_RECVTCLASS, 1)

c.sendmsg([b"cmsgs2"], [(IPV6, socket.IPV6_HOPLIMIT, array.array("i", [7])), (IPV6, socket.IPV6_TCLASS, array.array("i", [32]))]); m, anc, fl, _ = s.recvmsg(100, 1024); print(m, ints(anc), fl)
c.setsockopt(IPV6, socket.IPV6_UNICAST_HOPS, 9); c.setsockopt(IPV6, socket.IPV6_TCLASS, 4)
c.send(b"options"); m, anc, fl, _ = s.recvmsg(100, 1024); print(m, ints(anc), fl)
c.send(b"short buffer"); m, anc, fl, _ = s.recvmsg(100, socket.CMSG_SPACE(4)); print(m, ints(anc), fl & socket.MSG_CTRUNC != 0)
for bad in ([(IPV6, socket.IPV6_HOPLIMIT, array.array("i", [256]))], [(IPV6, socket.IPV6_HOPLIMIT, array.array("i", [1]).tobytes() + b"\0")], [(IPV6, 9999, array.array("i", [1]))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))]):
    try: c.sendmsg([b"x"], bad); print("accepted")
    except OSError as x: print("refused", errno.errorcode[x.errno])
c.send(b"queued across a checkpoint")
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
m, anc, fl, _ = s.recvmsg(100, 1024); print(m, ints(anc), fl)
`;

describe('UDP-Lite and IPv6 datagram ancillary data', () => {
  it('answer as natively, also across checkpoint/restore', async () => {
    const gate = checkpointGate('udp-ancillary');
    const want = await native(['/usr/bin/python3', '-c', UDPX, gate.native], { timeoutMs: 30_000 });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('udp-ancillary', ['/usr/bin/python3', '-c', UDPX, gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 150_000);
});
