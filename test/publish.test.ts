/**
 * run --publish HOSTPORT:GUESTPORT (issue 8 point 4): host connections to a published port reach
 * the guest's listener, both ways with back-pressure; a port taken on the host is one line;
 * a checkpoint with a forwarded connection open is refused (naming the port) unless
 * --tcp-close-on-checkpoint, and then the restored guest sees that connection end while the
 * restore publishes the port again.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/** A line server on guest port 80: echoes each line back; `hold` waits for one more line (or end of file); `quit` ends it. */
const SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen()
print('listening', flush=True)
while True:
    c, a = s.accept()
    f = c.makefile('rb')
    line = f.readline()
    if line.startswith(b'quit'):
        c.sendall(b'bye\\n'); c.close(); break
    if line.startswith(b'hold'):
        print('holding', flush=True)
        rest = f.readline()
        print('after hold:', 'end of file' if rest == b'' else rest.decode().strip(), flush=True)
        f.close(); c.close(); continue
    c.sendall(line); f.close(); c.close()
print('done', flush=True)
`;


/** Connect to 127.0.0.1:port, send `data`, collect everything until the other side closes. */
function exchange(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(port, '127.0.0.1');
    const got: Buffer[] = [];
    c.on('data', (d) => got.push(d));
    c.on('end', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
    c.write(data);
  });
}

/** Open a connection that sends `hold` and stays open; resolves once connected. */
function holdOpen(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(port, '127.0.0.1', () => resolve(c));
    c.on('error', reject);
    c.write('hold\n');
  });
}

/** A UDP responder on guest port 53: answers each datagram with its bytes upper-cased and the sender port it saw; `quit` ends it. */
const UDP_SERVER = `
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 53))
print('bound', flush=True)
seen = set()
while True:
    d, a = u.recvfrom(100)
    seen.add(a[1])
    u.sendto(d.upper() + b' ' + a[0].encode() + b' ' + str(len(seen)).encode(), a)
    if d == b'quit': break
print('flows', len(seen), flush=True)
`;

/** Send each of `msgs` from one new UDP socket to 127.0.0.1:port and wait for its reply (the datagram retried every 200 ms until `ms`). */
async function udpAsk(port: number, msgs: string[], ms = 20_000): Promise<string[]> {
  const s = dgram.createSocket('udp4');
  try {
    const replies: string[] = [];
    for (const msg of msgs) {
      replies.push(await new Promise<string>((resolve, reject) => {
        const until = Date.now() + ms;
        const send = () => { if (Date.now() > until) { clearInterval(timer); reject(new Error(`no reply to ${msg}`)); } else s.send(msg, port, '127.0.0.1'); };
        const timer = setInterval(send, 200);
        // A retried datagram may draw a second reply: only the first reply to this message counts.
        const onMessage = (m: Buffer) => {
          if (!m.toString().startsWith(msg.toUpperCase() + ' ')) return;
          clearInterval(timer); s.off('message', onMessage); resolve(m.toString());
        };
        s.on('message', onMessage);
        send();
      }));
    }
    return replies;
  } finally {
    s.close();
  }
}

describe('run --publish', () => {
  it('forwards host connections to the guest listener, a 4 MiB line both ways; a connection with no guest listener is reset', async () => {
    const port = await freePort();
    const run = snapvisorStreaming(['run', '--publish', `${port}:80`, '--', '/usr/bin/python3', '-c', SERVER], { timeoutMs: 60_000 });
    // 40 s for each python3 guest's first line: a start-up under CI load took over 20 s once.
    await run.waitFor((l) => l === 'listening', 40_000);
    expect((await exchange(port, Buffer.from('hello\n'))).toString()).toBe('hello\n');
    const big = Buffer.concat([Buffer.alloc(4 << 20, 'x'), Buffer.from('\n')]);
    expect((await exchange(port, big)).equals(big)).toBe(true);
    expect((await exchange(port, Buffer.from('quit\n'))).toString()).toBe('bye\n');
    expect(await run.done).toBe(0);
    expect(run.lines).toEqual(['listening', 'done']);
    expect(run.stderr()).toBe('');

    // No listener in the guest on the published port: the host connection is reset.
    // It sleeps on until the test ends it (SIGTERM below): still there when the test connects, however slow the machine.
    const idle = snapvisorStreaming(['run', '--publish', `${port}:81`, '--', '/bin/sh', '-c', 'echo up; exec sleep 60'], { timeoutMs: 30_000 });
    await idle.waitFor((l) => l === 'up', 20_000);
    await expect(exchange(port, Buffer.from('anyone?\n'))).rejects.toThrow(/ECONNRESET|EPIPE/);
    idle.child.kill('SIGTERM');
    await idle.done;
    expect(orphanStubs()).toEqual([]);
  }, 90_000);

  it('HOSTPORT:GUESTPORT/udp forwards datagrams both ways, one flow per host peer; /tcp is TCP; a checkpoint goes ahead and the restore binds the port again', async () => {
    const port = await freePort();
    const tport = await freePort();
    const base = freshDir('publish-udp');
    const root = `${base}/state`, store = `${base}/store`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'pub-udp', '--publish', `${port}:53/udp`, '--publish', `${tport}:80/tcp`, '--', '/usr/bin/python3', '-c', UDP_SERVER], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'bound', 40_000);
    // Two host peers: each is its own flow (its own sandbox address); the replies come back to each.
    expect(await udpAsk(port, ['one', 'two'])).toEqual(['ONE 127.0.0.1 1', 'TWO 127.0.0.1 1']);
    expect(await udpAsk(port, ['three'])).toEqual(['THREE 127.0.0.1 2']);
    // /tcp is a TCP port: nobody listens on guest port 80, so the connection is reset.
    await expect(exchange(tport, Buffer.from('x\n'))).rejects.toThrow(/ECONNRESET|EPIPE/);
    // UDP flows are no connections: the checkpoint goes ahead without --tcp-close-on-checkpoint.
    const cp = await snapvisor(['--root', root, 'checkpoint', 'pub-udp', '--store', store], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = snapvisorStreaming(['--root', root, 'restore', id, '--store', store], { timeoutMs: 60_000 });
    // The restore binds the published UDP port again; old flows are gone, a new peer is a new flow.
    expect(await udpAsk(port, ['again', 'quit'])).toEqual(['AGAIN 127.0.0.1 3', 'QUIT 127.0.0.1 3']);
    expect(await r.done).toBe(0);
    expect(r.lines).toEqual(['flows 3']);
    expect(r.stderr()).toBe('');
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a host port already taken is one line and status 125, nothing left running', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const r = await snapvisor(['run', '--publish', `${port}:80`, '--', '/bin/true'], { timeoutMs: 20_000 });
      expect(r.status).toBe(125);
      expect(stderrLines(r.stderr)).toEqual([`snapvisor: --publish ${port}:80: port ${port} of 127.0.0.1 is already taken`]);
      const bad = await snapvisor(['run', '--publish', '80', '--', '/bin/true'], { timeoutMs: 20_000 });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('expected HOSTPORT:GUESTPORT');
      // A UDP port taken on the host, and --publish with --network=host: one line each.
      const takenUdp = dgram.createSocket('udp4');
      await new Promise<void>((r) => takenUdp.bind(0, '127.0.0.1', () => r()));
      const uport = takenUdp.address().port;
      const u = await snapvisor(['run', '--publish', `${uport}:53/udp`, '--', '/bin/true'], { timeoutMs: 20_000 });
      takenUdp.close();
      expect(u.status).toBe(125);
      expect(stderrLines(u.stderr)).toEqual([`snapvisor: --publish ${uport}:53/udp: UDP port ${uport} of 127.0.0.1 is already taken`]);
      const h = await snapvisor(['run', '--network=host', '--publish', '8080:80', '--', '/bin/true'], { timeoutMs: 20_000 });
      expect(h.status).toBe(2);
      expect(stderrLines(h.stderr)).toEqual(['snapvisor: --publish forwards into the sandbox\'s own network: with --network=host the guest\'s listeners are host sockets already (reach GUESTPORT on the host)']);
    } finally {
      taken.close();
    }
    expect(orphanStubs()).toEqual([]);
  }, 60_000);

  it('a checkpoint with a forwarded connection open is refused unless --tcp-close-on-checkpoint; then the restored guest sees it end and the port is published again', async () => {
    const port = await freePort();
    const base = freshDir('publish');
    const root = `${base}/state`, store = `${base}/store`;
    // Without the flag: refused with one line naming the port; the sandbox and the connection go on.
    const a = snapvisorStreaming(['--root', root, 'run', '--name', 'pub-a', '--publish', `${port}:80`, '--', '/usr/bin/python3', '-c', SERVER], { timeoutMs: 60_000 });
    await a.waitFor((l) => l === 'listening', 40_000);
    const held = await holdOpen(port);
    await a.waitFor((l) => l === 'holding', 20_000);
    const refused = await snapvisor(['--root', root, 'checkpoint', 'pub-a', '--store', store], { timeoutMs: 30_000 });
    expect(refused.status).toBe(1);
    expect(stderrLines(refused.stderr)).toEqual([`snapvisor: checkpoint of 'pub-a' failed: 1 connection through published port 127.0.0.1:${port} is open: the host side cannot be checkpointed (close it, or run with --tcp-close-on-checkpoint: a restore then closes them)`]);
    held.end('more\n');
    await a.waitFor((l) => l === 'after hold: more', 20_000);
    expect((await exchange(port, Buffer.from('quit\n'))).toString()).toBe('bye\n');
    expect(await a.done).toBe(0);

    // With it: the checkpoint goes ahead; the restored guest reads end of file on the held connection.
    const b = snapvisorStreaming(['--root', root, 'run', '--name', 'pub-b', '--publish', `${port}:80`, '--tcp-close-on-checkpoint', '--', '/usr/bin/python3', '-c', SERVER], { timeoutMs: 60_000 });
    await b.waitFor((l) => l === 'listening', 40_000);
    const held2 = await holdOpen(port);
    await b.waitFor((l) => l === 'holding', 20_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', 'pub-b', '--store', store], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await b.done).toBe(137);
    held2.destroy();
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = snapvisorStreaming(['--root', root, 'restore', id, '--store', store], { timeoutMs: 60_000 });
    await r.waitFor((l) => l === 'after hold: end of file', 20_000);
    // The restore listens on the published port again.
    expect((await exchange(port, Buffer.from('again\n'))).toString()).toBe('again\n');
    expect((await exchange(port, Buffer.from('quit\n'))).toString()).toBe('bye\n');
    expect(await r.done).toBe(0);
    expect(r.stderr()).toBe('');
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
