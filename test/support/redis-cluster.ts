import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { atExit, pidAlive } from './exit-cleanup.ts';

/*
 * A real Redis Cluster for multi-host tests: primaries with replicas, bound to one address (the private
 * network's root address, test/support/netns.ts, so daemons in the host namespaces reach it), created with
 * `redis-cli --cluster create` as an operator would. Unlike test/support/redis.ts's cluster (masters only,
 * loopback), it can lose a primary: killPrimary() SIGKILLs one and waits for its replica to take over.
 *
 * Ports: the cluster bus is the client port + 10000, so both must be free on the address; they are
 * picked in 20000-29999 (bus 30000-39999), below most of Linux's ephemeral range. A port taken between
 * the check and redis-server's bind shows as a server that will not start: it is tried again elsewhere.
 *
 * Every server is killed (SIGKILL) and its directory removed on stop(), which is idempotent, and at the
 * process's exit or fatal signal (test/support/exit-cleanup.ts) as a backstop when a test throws or times
 * out. A run killed outright (SIGKILL) leaves its servers running: the next start sweeps them, found by
 * their working directory, which carries the dead run's pid (sweepRedisLeftovers).
 */

export type ClusterRole = 'primary' | 'replica';

export interface ClusterNode {
  readonly host: string;
  readonly port: number;
  /** The node's id (CLUSTER MYID). */
  readonly id: string;
  /** Its role when the cluster was made (see primaries() for now). */
  readonly role: ClusterRole;
}

export interface CurrentNode {
  host: string;
  port: number;
  id: string;
  role: ClusterRole;
  /** For a replica, its primary's id; '' for a primary. */
  primaryId: string;
  /** Slot ranges served, for a primary (`0-5460`). */
  slots: string[];
}

export interface RedisClusterOptions {
  /** Address every node binds and announces, e.g. the private network's root address. */
  bind: string;
  primaries?: number;
  replicasPerPrimary?: number;
  /** cluster-node-timeout: how long a silent primary takes to be failed over (plus the election). */
  nodeTimeoutMs?: number;
}

export interface RedisClusterHandle {
  /** Every node, as created (ports and ids do not change; roles do, see primaries()). */
  readonly nodes: readonly ClusterNode[];
  /** `host:port,host:port,...` of every node, for CABTRACK_REDIS_CLUSTER. */
  readonly seeds: string;
  /** The primaries now, from CLUSTER NODES on a live node (failed ones left out). */
  primaries(): Promise<CurrentNode[]>;
  /**
   * SIGKILLs a primary (by its index in primaries(), or its port) and resolves once one of its replicas
   * serves its slots and every surviving node says cluster_state:ok with all 16384 slots ok.
   */
  killPrimary(which?: number | { port: number }): Promise<{ killed: CurrentNode; promoted: CurrentNode }>;
  /** `redis-cli -c -h <a live node> -p <port> <args>`: its stdout, trimmed. */
  cli(...args: string[]): Promise<string>;
  /** A new ioredis Cluster client on the seeds, connected (the caller disconnects it). */
  client(): Promise<Cluster>;
  /** Kills every node and removes their directories. Idempotent. */
  stop(): Promise<void>;
}

const SLOTS = 16384;
const PORT_LOW = 20000;
const PORT_SPAN = 10000;
const WAIT_MS = 30_000;

interface Server {
  port: number;
  proc: ChildProcess;
  output: string;
}

/** Each run's directory: `<tmp>/cabtrack-t-rc-<pid>-XXXXXX/<port>/`, every node's working directory. */
const DIR_PREFIX = 'cabtrack-t-rc-';

/**
 * Kills the redis-servers of runs that died without cleaning up (SIGKILL), and removes their
 * directories. A node's working directory (--dir) names its run's pid, so a server is killed only when
 * it runs in the directory of a run whose process is gone: never another live run's, whatever the pid
 * reuse.
 */
export function sweepRedisLeftovers(): string[] {
  const removed: string[] = [];
  const owner = new RegExp(`^${tmpdir().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/${DIR_PREFIX}(\\d+)-`);
  const deadOwner = (path: string): boolean => {
    const m = owner.exec(path);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  };
  let procs: string[] = [];
  try {
    procs = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    // no /proc: nothing to sweep
  }
  for (const pid of procs) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'redis-server') continue;
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      if (!deadOwner(cwd)) continue;
      process.kill(Number(pid), 'SIGKILL');
      removed.push(`redis-server ${pid} in ${cwd}`);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  for (const name of readdirSync(tmpdir())) {
    const path = join(tmpdir(), name);
    if (!name.startsWith(DIR_PREFIX) || !deadOwner(path)) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/** Whether a TCP listener can bind host:port now. */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A port free on `host` whose bus port (+10000) is free too, not in `taken`. */
async function pickPort(host: string, taken: Set<number>): Promise<number> {
  for (let k = 0; k < 200; k++) {
    const port = PORT_LOW + Math.floor(Math.random() * PORT_SPAN);
    if (taken.has(port) || taken.has(port + 10000)) continue;
    if ((await canListen(host, port)) && (await canListen(host, port + 10000))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(
    `no free port pair (port, port + 10000) on ${host} in ${PORT_LOW}-${PORT_LOW + PORT_SPAN - 1}`,
  );
}

function run(cmd: string, args: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** One command on one node over a fresh connection, failing fast (a killed node must not hang a poll). */
async function command(host: string, port: number, ...args: string[]): Promise<unknown> {
  const r = new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  r.on('error', () => {}); // reported by the rejected call
  try {
    await r.connect();
    return await r.call(args[0]!, ...args.slice(1));
  } finally {
    r.disconnect();
  }
}

async function waitUntil(cond: () => Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** CLUSTER NODES parsed; nodes flagged fail (or without an address) are left out. */
export function parseClusterNodes(text: string): CurrentNode[] {
  const out: CurrentNode[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8) continue;
    const [id, addr, flags, primaryId] = f as [string, string, string, string];
    const fl = flags.split(',');
    if (fl.includes('fail') || fl.includes('noaddr') || fl.includes('handshake')) continue;
    const m = /^(.*):(\d+)@\d+/.exec(addr);
    if (m === null) continue;
    out.push({
      host: m[1]!,
      port: Number(m[2]),
      id,
      role: fl.includes('master') ? 'primary' : 'replica',
      primaryId: primaryId === '-' ? '' : primaryId,
      slots: f.slice(8).filter((s) => /^\d+(-\d+)?$/.test(s)),
    });
  }
  return out;
}

/**
 * True for a primary, and for a replica whose link to its primary is up with no sync in progress (one
 * that can be elected when its primary dies).
 */
async function replicaInSync(host: string, port: number): Promise<boolean> {
  const info = String(await command(host, port, 'INFO', 'replication'));
  if (info.includes('role:master')) return true;
  return info.includes('master_link_status:up') && info.includes('master_sync_in_progress:0');
}

/** Slots covered by ranges such as `0-5460`, `5461`. */
function slotCount(ranges: readonly string[]): number {
  let n = 0;
  for (const r of ranges) {
    const [a, b] = r.split('-').map(Number) as [number, number | undefined];
    n += (b ?? a) - a + 1;
  }
  return n;
}

export async function startRedisCluster(o: RedisClusterOptions): Promise<RedisClusterHandle> {
  const primaries = o.primaries ?? 3;
  const replicas = o.replicasPerPrimary ?? 1;
  const nodeTimeoutMs = o.nodeTimeoutMs ?? 2000;
  if (!(primaries >= 3)) throw new RangeError('a Redis Cluster needs at least 3 primaries');
  const host = o.bind;
  sweepRedisLeftovers();
  const dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  const servers: Server[] = [];
  const dead = new Set<number>();
  let stopped = false;
  const cancelAtExit = atExit(() => {
    for (const s of servers) s.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(servers.map((s) => kill(s.proc)));
    rmSync(dir, { recursive: true, force: true });
    cancelAtExit();
  };

  const spawnNode = async (port: number): Promise<Server> => {
    const nodeDir = join(dir, String(port));
    mkdirSync(nodeDir, { recursive: true });
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        host,
        // It listens on a private, non-loopback address with no password: protected mode would refuse
        // the daemons in the other namespaces.
        '--protected-mode',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(nodeDir, 'nodes.conf'),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        '--save',
        '',
        '--appendonly',
        'no',
        // A primary waits this long (5 s by default) for more replicas before a diskless full sync; the
        // cluster is not ready (see replicaInSync) until every replica has synced.
        '--repl-diskless-sync-delay',
        '0',
        '--dir',
        nodeDir,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // Listed at once, so that a failure from here on (or the process's exit) kills it with the rest.
    const s: Server = { port, proc, output: '' };
    servers.push(s);
    const keep = (chunk: Buffer): void => {
      s.output = (s.output + chunk.toString('utf8')).slice(-4000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    proc.once('error', (err) => {
      s.output += String(err);
      exited = true;
    });
    const end = Date.now() + 10_000;
    try {
      for (;;) {
        if (exited) throw new Error(`redis-server on ${host}:${port} exited:\n${s.output}`);
        if ((await command(host, port, 'PING').catch(() => '')) === 'PONG') return s;
        if (Date.now() > end)
          throw new Error(`redis-server on ${host}:${port} did not answer PING in 10 s:\n${s.output}`);
        await sleep(20);
      }
    } catch (err) {
      await kill(proc);
      servers.splice(servers.indexOf(s), 1);
      throw err;
    }
  };

  try {
    const taken = new Set<number>();
    const total = primaries * (1 + replicas);
    for (let i = 0; i < total; i++) {
      let server: Server | undefined;
      for (let attempt = 0; server === undefined; attempt++) {
        try {
          server = await spawnNode(await pickPort(host, taken));
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
    }
    // Primaries are the first `primaries` addresses given; redis-cli places the replicas. It warns that
    // replicas share a host with their primaries (all on one address) and goes on with --cluster-yes.
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...servers.map((s) => `${host}:${s.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      60_000,
    );
    await waitUntil(async () => {
      for (const s of servers) {
        const info = String(await command(host, s.port, 'CLUSTER', 'INFO'));
        if (!info.includes('cluster_state:ok') || !info.includes(`cluster_slots_ok:${SLOTS}`)) return false;
        // Every node must see every other and all the replicas attached, or a failover may find none.
        const nodes = parseClusterNodes(String(await command(host, s.port, 'CLUSTER', 'NODES')));
        if (nodes.length !== total) return false;
        if (nodes.filter((n) => n.role === 'replica').length !== primaries * replicas) return false;
      }
      // A replica that has not finished its first sync cannot be elected (it counts as disconnected
      // from its primary for ever, past cluster-replica-validity-factor): a primary killed before then
      // is never failed over.
      for (const s of servers) if (!(await replicaInSync(host, s.port))) return false;
      return true;
    }, 'cluster_state:ok, every slot covered and every replica attached and in sync, on every node');
  } catch (err) {
    await stop();
    throw err;
  }

  const first = parseClusterNodes(String(await command(host, servers[0]!.port, 'CLUSTER', 'NODES')));
  const nodes: ClusterNode[] = servers.map((s) => {
    const n = first.find((x) => x.port === s.port)!;
    return { host, port: s.port, id: n.id, role: n.role };
  });
  const liveServers = (): Server[] => servers.filter((s) => !dead.has(s.port));

  const currentNodes = async (): Promise<CurrentNode[]> => {
    let lastErr: unknown;
    for (const s of liveServers()) {
      try {
        return parseClusterNodes(String(await command(host, s.port, 'CLUSTER', 'NODES'))).filter(
          (n) => !dead.has(n.port),
        );
      } catch (err) {
        lastErr = err;
      }
    }
    throw new Error(`no node answered CLUSTER NODES: ${String(lastErr)}`);
  };

  const handle: RedisClusterHandle = {
    nodes,
    seeds: nodes.map((n) => `${n.host}:${n.port}`).join(','),
    async primaries() {
      return (await currentNodes()).filter((n) => n.role === 'primary');
    },
    async killPrimary(which = 0) {
      const prims = (await currentNodes()).filter((n) => n.role === 'primary');
      const victim = typeof which === 'number' ? prims[which] : prims.find((p) => p.port === which.port);
      if (victim === undefined) throw new RangeError(`no such primary ${JSON.stringify(which)}`);
      const replicaIds = new Set(
        (await currentNodes()).filter((n) => n.primaryId === victim.id).map((n) => n.id),
      );
      if (replicaIds.size === 0) throw new Error(`primary ${victim.port} has no replica to take over`);
      const server = servers.find((s) => s.port === victim.port)!;
      const replicaPorts = (await currentNodes()).filter((n) => replicaIds.has(n.id)).map((n) => n.port);
      await waitUntil(
        async () => (await Promise.all(replicaPorts.map((p) => replicaInSync(host, p)))).some(Boolean),
        `a replica of ${host}:${victim.port} in sync with it`,
      );
      dead.add(victim.port);
      await kill(server.proc);
      let promoted: CurrentNode | undefined;
      // Failover takes the node timeout to mark it failed plus an election (0.5-1 s plus rank x 1 s).
      await waitUntil(
        async () => {
          for (const s of liveServers()) {
            const info = String(await command(host, s.port, 'CLUSTER', 'INFO'));
            if (!info.includes('cluster_state:ok') || !info.includes(`cluster_slots_ok:${SLOTS}`))
              return false;
            const view = parseClusterNodes(String(await command(host, s.port, 'CLUSTER', 'NODES')));
            const p = view.find((n) => replicaIds.has(n.id) && n.role === 'primary');
            if (p === undefined) return false;
            // Every slot on a live primary in this node's view: the dead one serves nothing any more.
            const served = view
              .filter((n) => n.role === 'primary' && !dead.has(n.port))
              .reduce((sum, n) => sum + slotCount(n.slots), 0);
            if (served !== SLOTS) return false;
            promoted = p;
          }
          return true;
        },
        `a replica of ${host}:${victim.port} to be promoted and cluster_state:ok on the survivors`,
        Math.max(WAIT_MS, nodeTimeoutMs * 10),
      ).catch((err: Error) => {
        const logs = servers
          .filter((s) => replicaIds.has(nodes.find((n) => n.port === s.port)?.id ?? ''))
          .map((s) => `--- replica ${s.port}:\n${s.output}`);
        throw new Error(`${err.message}\n${logs.join('\n')}`);
      });
      return { killed: victim, promoted: promoted! };
    },
    async cli(...args) {
      const s = liveServers()[0];
      if (s === undefined) throw new Error('no live node');
      return (await run('redis-cli', ['-c', '-h', host, '-p', String(s.port), ...args])).trim();
    },
    async client() {
      const c = new Cluster(
        liveServers().map((s) => ({ host, port: s.port })),
        { lazyConnect: true, clusterRetryStrategy: (times) => (times > 20 ? null : 100) },
      );
      c.on('error', () => {}); // a killed node's connection errors are expected; commands report their own
      await c.connect();
      return c;
    },
    stop,
  };
  return handle;
}

function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}
