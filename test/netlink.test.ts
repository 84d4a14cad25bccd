/**
 * AF_NETLINK NETLINK_ROUTE and the interface ioctls for the sandbox's one interface, lo
 * (src/net/netlink.ts): glibc's getifaddrs, if_nameindex, if_nametoindex and if_indextoname, raw
 * RTM_GETLINK/RTM_GETADDR requests with their sequence numbers and port ids, errors as NLMSG_ERROR,
 * port-id binding; Node's os.networkInterfaces() (libuv) giving lo as natively; a queued reply
 * across checkpoint/restore, and `inspect` naming the netlink socket. The host's other interfaces are not printed (the sandbox has none).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, compileStatic, expectSandboxOutput, freshDir, native, orphanStubs, restoreChecked, snapvisor } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static void addr(const char *what, struct sockaddr *sa) {
  char b[64] = "-";
  if (sa && sa->sa_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, b, sizeof b);
  if (sa && sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, b, sizeof b);
  if (sa && sa->sa_family == AF_PACKET) strcpy(b, "packet");
  SAY(" %s %s", what, b);
}
int main(void) {
  struct ifaddrs *ifs;
  SAY("getifaddrs: %ld\n", R(getifaddrs(&ifs)));
  for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
    if (strcmp(i->ifa_name, "lo")) continue;
    SAY("%s flags %x", i->ifa_name, i->ifa_flags);
    addr("addr", i->ifa_addr); addr("mask", i->ifa_netmask); SAY("\n");
  }
  freeifaddrs(ifs);
  SAY("if_nametoindex(lo) %u, (nope) %u\n", if_nametoindex("lo"), if_nametoindex("nope0"));
  char n[IF_NAMESIZE]; SAY("if_indextoname(1) %s\n", if_indextoname(1, n) ? n : "none");
  struct if_nameindex *ni = if_nameindex();
  for (struct if_nameindex *p = ni; p && p->if_index; p++) if (!strcmp(p->if_name, "lo")) SAY("if_nameindex has lo at %u\n", p->if_index);
  if_freenameindex(ni);
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  struct sockaddr_nl a = { AF_NETLINK }; socklen_t al = sizeof a;
  SAY("getsockname unbound: %ld pid %u len %d\n", R(getsockname(s, (struct sockaddr *)&a, &al)), a.nl_pid, (int)al);
  SAY("bind: %ld\n", R(bind(s, (struct sockaddr *)&a, sizeof a)));
  al = sizeof a; getsockname(s, (struct sockaddr *)&a, &al); SAY("bound to own pid: %d\n", a.nl_pid == (unsigned)getpid());
  int s2 = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE); struct sockaddr_nl a2 = { AF_NETLINK }; bind(s2, (struct sockaddr *)&a2, sizeof a2);
  al = sizeof a2; getsockname(s2, (struct sockaddr *)&a2, &al); SAY("second socket: negative port id %d\n", (int)a2.nl_pid < 0);
  struct sockaddr_nl taken = { AF_NETLINK, 0, getpid() };
  int s3 = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  SAY("bind taken: %ld\n", R(bind(s3, (struct sockaddr *)&taken, sizeof taken)));
  SAY("bad protocol: %ld, stream: %ld\n", R(socket(AF_NETLINK, SOCK_RAW, 31)), R(socket(AF_NETLINK, SOCK_STREAM, 0)));
  struct { struct nlmsghdr h; struct ifinfomsg i; } req = { { sizeof req, RTM_GETLINK, NLM_F_REQUEST, 42, 0 }, { AF_UNSPEC, 0, 0, 99 } };
  struct sockaddr_nl k = { AF_NETLINK };
  SAY("get link 99: %ld\n", R(sendto(s, &req, sizeof req, 0, (struct sockaddr *)&k, sizeof k)));
  char buf[8192]; struct sockaddr_nl from; socklen_t fl = sizeof from;
  long r = R(recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl));
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  SAY("reply %ld from pid %u len %d: type %d seq %u error %d\n", r, from.nl_pid, (int)fl, h->nlmsg_type, h->nlmsg_seq, ((struct nlmsgerr *)NLMSG_DATA(h))->error);
  req.i.ifi_index = 1; req.h.nlmsg_seq = 43; sendto(s, &req, sizeof req, 0, (struct sockaddr *)&k, sizeof k);
  r = recv(s, buf, sizeof buf, 0); h = (struct nlmsghdr *)buf;
  struct ifinfomsg *ifi = NLMSG_DATA(h);
  SAY("link 1: type %d seq %u index %d flags %x arphrd %d pid ok %d\n", h->nlmsg_type, h->nlmsg_seq, ifi->ifi_index, ifi->ifi_flags & 0xffff, ifi->ifi_type, h->nlmsg_pid == (unsigned)getpid());
  struct { struct nlmsghdr h; struct rtgenmsg g; } d = { { sizeof d, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 44, 0 }, { AF_INET } };
  send(s, &d, sizeof d, 0);
  int done = 0, n4 = 0;
  while (!done) {
    r = recv(s, buf, sizeof buf, 0);
    for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, r); h = NLMSG_NEXT(h, r)) {
      if (h->nlmsg_type == NLMSG_DONE) { done = 1; break; }
      struct ifaddrmsg *ia = NLMSG_DATA(h);
      if (h->nlmsg_type == RTM_NEWADDR && ia->ifa_index == 1) { n4++; SAY("lo address family %d prefix %d scope %d multi %d\n", ia->ifa_family, ia->ifa_prefixlen, ia->ifa_scope, !!(h->nlmsg_flags & NLM_F_MULTI)); }
    }
  }
  struct { struct nlmsghdr h; struct rtmsg m; } rr = { { sizeof rr, 1000, NLM_F_REQUEST | NLM_F_ACK, 45, 0 } };
  send(s, &rr, sizeof rr, 0);
  r = recv(s, buf, sizeof buf, 0); h = (struct nlmsghdr *)buf;
  SAY("unknown request: type %d seq %u error %d\n", h->nlmsg_type, h->nlmsg_seq, ((struct nlmsgerr *)NLMSG_DATA(h))->error);
  SAY("listen: %ld shutdown: %ld\n", R(listen(s, 1)), R(shutdown(s, SHUT_RDWR)));
  return 0;
}
`;

const CHECKPOINTED = String.raw`
import os, socket, struct, sys, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0))
s.send(struct.pack("=IHHII", 20, 18, 0x301, 7, 0) + struct.pack("=BxHiII", 0, 0, 0, 0, 0)[:4])
print("ready", flush=True)
# The reply stays queued until the file sys.argv[1] exists: the test makes it after the checkpoint
# (natively, before the run).
while not os.path.exists(sys.argv[1]): time.sleep(0.02)
data = s.recv(65536)
names, off = [], 0
while off + 16 <= len(data):
    ln, ty, fl, seq, pid = struct.unpack_from("=IHHII", data, off)
    if ty == 16:
        a = off + 32
        while a + 4 <= off + ln:
            alen, aty = struct.unpack_from("=HH", data, a)
            if aty == 3: names.append((seq, data[a + 4:a + alen].rstrip(b"\0").decode()))
            a += (alen + 3) & ~3
    if ty == 3: names.append((seq, "done"))
    off += (ln + 3) & ~3
print("links", [n for n in names if n[1] == "lo"], flush=True)
print("if_nameindex has lo", (1, "lo") in socket.if_nameindex(), flush=True)
`;

const NODE = "console.log(JSON.stringify(require('os').networkInterfaces().lo))";

describe('netlink route sockets and interface ioctls', () => {
  it('getifaddrs, if_nameindex and raw requests answer for lo as natively', async () => {
    const exe = compileStatic('netlink', SOURCE);
    const want = await native([exe], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe], want.stdout.toString());
  }, 60_000);

  it("Node's os.networkInterfaces() shows lo as natively", async () => {
    const want = await native([process.execPath, '-e', NODE], { timeoutMs: 20_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([process.execPath, '-e', NODE], want.stdout.toString(), 60_000);
  }, 90_000);

  it('keeps a queued reply across checkpoint/restore; inspect names the netlink socket', async () => {
    const goNative = path.join(freshDir('netlink-go'), 'go'), go = path.join(freshDir('netlink-go'), 'go');
    fs.writeFileSync(goNative, '');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, goNative], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    const c = await checkpointAtReady('netlink-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, go]);
    expect(c.before).toEqual(lines.slice(0, lines.indexOf('ready') + 1));
    const report = JSON.parse((await snapvisor(['inspect', c.id, '--store', c.store, '--json'])).stdout.toString());
    const nl = report.sockets.filter((s: { domain: string }) => s.domain === 'AF_NETLINK');
    expect(nl).toHaveLength(1);
    expect(nl[0]).toMatchObject({ type: 'raw', state: 'bound', datagramsQueued: 1, local: `netlink:${report.processes[0].pid}` });
    fs.writeFileSync(go, '');
    const r = await restoreChecked(c);
    expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(lines.slice(lines.indexOf('ready') + 1));
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 150_000);
});
