import dgram from 'node:dgram';
import { readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';

/*
 * A tiny UDP and HTTP echo server and a prober, to show that the hosts of a private network
 * (test/support/netns.ts) reach each other and the root namespace. Run in a host's namespace:
 *
 *   ip netns exec <ns> node test/support/net-probe.ts serve <address> <udpPort> <httpPort>
 *   ip netns exec <ns> node test/support/net-probe.ts probe '<json [{address, udpPort, httpPort?}]>'
 *
 * The server answers a datagram `ping:<x>` with `pong:<its address>:<x>`, counts every other datagram by
 * its source `address:port` (where a load balancer sent it), and serves GET /who (its address and
 * network namespace) and GET /counts over HTTP. The prober prints one JSON line of what answered.
 */

export interface Who {
  address: string;
  /** `net:[inode]` of the process's network namespace. */
  netns: string;
  pid: number;
}

export interface Counts {
  total: number;
  bySource: Record<string, number>;
}

export interface ProbeTarget {
  address: string;
  udpPort: number;
  httpPort?: number;
}

export interface ProbeResult {
  address: string;
  /** The pong, or null when no answer came in 3 tries of 1 s. */
  udp: string | null;
  /** /who's answer, or null. */
  http: Who | null;
}

export function netnsOfSelf(): string {
  return readlinkSync('/proc/self/ns/net');
}

export interface EchoServer {
  udp: dgram.Socket;
  http: Server;
  counts: Counts;
  close(): Promise<void>;
}

export async function serve(address: string, udpPort: number, httpPort: number): Promise<EchoServer> {
  const counts: Counts = { total: 0, bySource: {} };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const text = msg.subarray(0, 5).toString('latin1');
    if (text === 'ping:') {
      udp.send(`pong:${address}:${msg.subarray(5).toString('utf8')}`, rinfo.port, rinfo.address);
      return;
    }
    counts.total++;
    const key = `${rinfo.address}:${rinfo.port}`;
    counts.bySource[key] = (counts.bySource[key] ?? 0) + 1;
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(udpPort, address, () => resolve());
  });
  const who: Who = { address, netns: netnsOfSelf(), pid: process.pid };
  const http = createServer((req, res) => {
    const body = req.url === '/who' ? who : req.url === '/counts' ? counts : null;
    res.writeHead(body === null ? 404 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(httpPort, address, () => resolve());
  });
  return {
    udp,
    http,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        udp.close();
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}

async function pingUdp(t: ProbeTarget): Promise<string | null> {
  const s = dgram.createSocket('udp4');
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const tag = `${process.pid}-${attempt}`;
      const answer = await new Promise<string | null>((resolve) => {
        const timer = setTimeout(() => {
          s.off('message', onMessage);
          resolve(null);
        }, 1000);
        const onMessage = (msg: Buffer): void => {
          const text = msg.toString('utf8');
          if (!text.endsWith(`:${tag}`)) return;
          clearTimeout(timer);
          s.off('message', onMessage);
          resolve(text.slice(0, -tag.length - 1));
        };
        s.on('message', onMessage);
        s.send(`ping:${tag}`, t.udpPort, t.address);
      });
      if (answer !== null) return answer;
    }
    return null;
  } finally {
    s.close();
  }
}

async function getWho(t: ProbeTarget): Promise<Who | null> {
  if (t.httpPort === undefined) return null;
  try {
    const res = await fetch(`http://${t.address}:${t.httpPort}/who`, { signal: AbortSignal.timeout(3000) });
    return res.status === 200 ? ((await res.json()) as Who) : null;
  } catch {
    return null;
  }
}

export async function probe(targets: readonly ProbeTarget[]): Promise<ProbeResult[]> {
  return Promise.all(
    targets.map(async (t) => ({ address: t.address, udp: await pingUdp(t), http: await getWho(t) })),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'serve') {
    const [address, udpPort, httpPort] = args;
    await serve(address!, Number(udpPort), Number(httpPort));
    process.stdout.write('ready\n');
  } else if (mode === 'probe') {
    const results = await probe(JSON.parse(args[0]!) as ProbeTarget[]);
    process.stdout.write(`${JSON.stringify({ netns: netnsOfSelf(), results })}\n`);
  } else {
    process.stderr.write('usage: net-probe.ts serve <address> <udpPort> <httpPort> | probe <json>\n');
    process.exit(2);
  }
}
