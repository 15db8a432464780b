import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './daemon.ts';

/**
 * Real `redis-server` processes for tests: on free loopback ports, persistence off, in a temporary
 * directory, killed on teardown (the test's, and the process's exit as a backstop when a test throws).
 * Talks to them with a small RESP client of its own, so the helpers do not depend on the ioredis
 * behaviour under test.
 */

/** Just what teardown needs from a tap test. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to exit. */
  stop(): Promise<void>;
  /** stop(), then a new server on the same port; it starts empty (no persistence). */
  restart(): Promise<void>;
  /** Calls per command since the server started, from INFO commandstats (`hgetall: 3`). */
  commandStats(): Promise<Record<string, number>>;
}

export interface RedisCluster {
  readonly nodes: Array<{ host: string; port: number }>;
  stop(): Promise<void>;
}

export interface ReplyDropper {
  /** Connect clients here instead of to Redis. */
  readonly port: number;
  /** The next reply Redis sends (on any connection) is not delivered: the connection is cut instead. */
  dropNextReply(): void;
  /** Replies dropped so far. */
  readonly dropped: number;
}

const HOST = '127.0.0.1';
const live = new Set<ChildProcess>();
const killAll = (): void => {
  for (const p of live) p.kill('SIGKILL');
};
process.once('exit', killAll);
// A test runner's timeout ends the test process with a signal, which skips 'exit': kill the servers,
// then die of the same signal.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

/** A standalone Redis on a free loopback port. */
export async function startRedis(t: Teardown): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cabtrack-redis-'));
  let proc = await spawnRedis(port, dir, []);
  const stop = async (): Promise<void> => {
    await kill(proc);
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    port,
    url: `redis://${HOST}:${port}`,
    stop,
    async restart() {
      await stop();
      proc = await spawnRedis(port, dir, []);
    },
    async commandStats() {
      return parseCommandStats(String(await command(port, 'INFO', 'commandstats')));
    },
  };
}

/**
 * A Redis Cluster of `n` masters (no replicas), each on a free loopback port with its cluster bus on
 * another free port (`cluster-port`; the default port + 10000 may be past 65535 for an ephemeral port).
 */
export async function startRedisCluster(t: Teardown, n = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'cabtrack-redis-cluster-'));
  const procs: ChildProcess[] = [];
  const nodes: Array<{ host: string; port: number }> = [];
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map(kill));
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const taken = new Set<number>();
  const pick = async (): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  for (let i = 0; i < n; i++) {
    const port = await pick();
    const busPort = await pick();
    procs.push(
      await spawnRedis(port, dir, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-port',
        String(busPort),
        '--cluster-node-timeout',
        '5000',
      ]),
    );
    nodes.push({ host: HOST, port });
  }
  await run('redis-cli', [
    '--cluster',
    'create',
    ...nodes.map((nd) => `${nd.host}:${nd.port}`),
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ]);
  await waitUntil(async () => {
    for (const nd of nodes) {
      const info = String(await command(nd.port, 'CLUSTER', 'INFO'));
      if (!info.includes('cluster_state:ok')) return false;
    }
    return true;
  }, 'cluster_state:ok on every node');
  return { nodes, stop };
}

/**
 * A TCP proxy in front of a Redis that can lose a reply: Redis has run the commands, the client never
 * hears back and sees its connection drop, as when a network fails at the wrong moment.
 */
export async function startReplyDropper(t: Teardown, redisPort: number): Promise<ReplyDropper> {
  let drop = false;
  let dropped = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(redisPort, HOST);
    sockets.add(client);
    sockets.add(upstream);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (drop) {
        drop = false;
        dropped++;
        close();
        return;
      }
      client.write(d);
    });
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port: (server.address() as { port: number }).port,
    dropNextReply() {
      drop = true;
    },
    get dropped() {
      return dropped;
    },
  };
}

async function spawnRedis(port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  const proc = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      `dump-${port}.rdb`,
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(proc);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let exited = false;
  proc.once('exit', () => {
    exited = true;
    live.delete(proc);
  });
  proc.once('error', (err) => {
    output += String(err);
    exited = true;
  });
  try {
    await waitUntil(async () => {
      if (exited) throw new Error(`redis-server on port ${port} exited:\n${output}`);
      return (await command(port, 'PING').catch(() => '')) === 'PONG';
    }, `redis-server on port ${port} to answer PING`);
  } catch (err) {
    await kill(proc);
    throw err;
  }
  return proc;
}

function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

async function waitUntil(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `cmdstat_hgetall:calls=3,usec=...` lines, as { hgetall: 3 }. */
function parseCommandStats(info: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of info.split('\r\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m !== null) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * Sends one command over a fresh connection and reads one reply: a simple string, an integer or a bulk
 * string (enough for PING, INFO and CLUSTER INFO). A Redis error reply rejects.
 */
function command(port: number, ...args: string[]): Promise<string | number> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, HOST);
    let buf = Buffer.alloc(0);
    const fail = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    sock.setTimeout(2000, () => fail(new Error(`redis on port ${port}: no reply to ${args[0]}`)));
    sock.once('error', fail);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.subarray(1, eol).toString('utf8');
      const type = String.fromCharCode(buf[0]!);
      if (type === '+' || type === ':' || type === '-') {
        sock.destroy();
        if (type === '-') reject(new Error(head));
        else resolve(type === ':' ? Number(head) : head);
        return;
      }
      if (type !== '$') return fail(new Error(`unexpected reply type ${type}`));
      const len = Number(head);
      if (len < 0) {
        sock.destroy();
        resolve('');
        return;
      }
      if (buf.length < eol + 2 + len + 2) return;
      sock.destroy();
      resolve(buf.subarray(eol + 2, eol + 2 + len).toString('utf8'));
    });
    const parts = [`*${args.length}\r\n`];
    for (const a of args) parts.push(`$${Buffer.byteLength(a)}\r\n${a}\r\n`);
    sock.write(parts.join(''));
  });
}
