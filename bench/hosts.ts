/**
 * Question: what do several hosts sharing one live view cost (issue 13)? Three daemon hosts on this
 * machine (loopback, each its own ports; one ingest and one HTTP worker each) on a real Redis Cluster
 * of three primaries with a replica each, the simulator driving two cities (Barcelona and Madrid) at one
 * fix a second through a balancer that hashes the source, and client apps asking host 0 for the nearest
 * cars. Over a measured window, after every host lists every driver:
 *
 * - cross-host lag: from a fix received by its owner to the fix visible to queries on another host
 *   (cabtrack_cross_host_lag_seconds, every host's HTTP worker), p50 and p99;
 * - Redis Cluster: operations and bytes (in, out, replication) a second over all six nodes, from their
 *   INFO, and per 1,000 drivers; the multi-host layer's own operations by kind (directory, lease, live
 *   cells) from the hosts' cabtrack_redis_host_ops_total;
 * - per host: the drivers it owns, the fixes a second it takes, the queries it serves, and the CPU of
 *   each of its processes (/proc), from which the CPU a driver and a query cost.
 *
 * The figures feed docs/multi-host.md's cost model. All of it shares two cores with the simulator and
 * Redis: the CPU figures are what each process used, not what a host would have to itself.
 *
 *   node bench/hosts.ts [--quick]      Result: bench/results/hosts.json
 */
import type { Cluster } from 'ioredis';
import { Pool } from 'undici';
import { Balancer, driveCities } from '../test/support/balancer.ts';
import { CLIENT, type Daemon, freePort, startDaemon } from '../test/support/daemon.ts';
import { Prng } from '../test/support/prng.ts';
import { startRedisCluster } from '../test/support/redis-cluster.ts';
import { scrape, sleep, workersByRole } from './support/cabtrack.ts';
import { buckets, quantile } from './support/histogram.ts';
import { cpuMs } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';

const CARS_PER_CITY = QUICK ? 2000 : 7500;
const CARS = 2 * CARS_PER_CITY;
const HOSTS = 3;
const WINDOW_S = QUICK ? 10 : 30;
const QPS = 200;
const PUBLISH_MS = 200;
const CITIES = [
  { centre: { lat: 41.3917, lon: 2.1649 }, idPrefix: 'bcn', cars: CARS_PER_CITY, seed: 41 },
  { centre: { lat: 40.4168, lon: -3.7038 }, idPrefix: 'mad', cars: CARS_PER_CITY, seed: 42 },
];

interface NodeStats {
  calls: Map<string, number>;
  netIn: number;
  netOut: number;
  replOut: number;
  /** used_cpu_sys + used_cpu_user, seconds: the node's CPU (the main thread's and its children's). */
  cpuS: number;
}

async function nodeStats(c: Cluster, port: number): Promise<NodeStats> {
  const node = c.nodes('all').find((n) => n.options.port === port)!;
  const text = String(await node.info('all'));
  const calls = new Map<string, number>();
  let netIn = 0;
  let netOut = 0;
  let replOut = 0;
  let cpuS = 0;
  for (const line of text.split('\r\n')) {
    const m = /^cmdstat_([a-z|]+):calls=(\d+)/.exec(line);
    if (m !== null) calls.set(m[1]!, Number(m[2]));
    if (line.startsWith('total_net_input_bytes:')) netIn = Number(line.split(':')[1]);
    if (line.startsWith('total_net_output_bytes:')) netOut = Number(line.split(':')[1]);
    if (line.startsWith('total_net_repl_output_bytes:')) replOut = Number(line.split(':')[1]);
    if (line.startsWith('used_cpu_sys:') || line.startsWith('used_cpu_user:'))
      cpuS += Number(line.split(':')[1]);
  }
  return { calls, netIn, netOut, replOut, cpuS };
}

async function histogram(d: Daemon, name: string): Promise<Array<[number, number]>> {
  return buckets(await (await fetch(`${d.url}/metrics`)).text(), name);
}

async function labelled(d: Daemon, name: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${d.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const label = /="([^"]+)"/.exec(line)?.[1] ?? '';
    out[label] = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return out;
}

function cpuOf(pids: number[]): number {
  let ms = 0;
  for (const p of pids) {
    try {
      ms += cpuMs(p);
    } catch {
      // gone
    }
  }
  return ms;
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;
const ms = (seconds: number | null): number | null => (seconds === null ? null : round(seconds * 1000, 0));

async function main(): Promise<void> {
  const cluster = await startRedisCluster({
    bind: '127.0.0.1',
    primaries: 3,
    replicasPerPrimary: 1,
    nodeTimeoutMs: 2000,
  });
  const hosts: Daemon[] = [];
  try {
    for (let i = 0; i < HOSTS; i++) {
      const httpPort = await freePort();
      hosts.push(
        await startDaemon({
          CABTRACK_HTTP_PORT: String(httpPort),
          CABTRACK_WORKERS: '1',
          CABTRACK_HTTP_WORKERS: '1',
          CABTRACK_PUBLISH_MS: String(PUBLISH_MS),
          CABTRACK_REDIS_CLUSTER: cluster.seeds,
          CABTRACK_HOST_ID: `h${i}`,
          CABTRACK_HOST_URL: `http://127.0.0.1:${httpPort}`,
          CABTRACK_LOG_LEVEL: 'warn',
        }),
      );
    }
    const dispatch = await cluster.client();
    const balancer = new Balancer(hosts.map((h) => ({ address: '127.0.0.1', port: h.udpPort })));
    const stop = new AbortController();
    say(`registering ${CARS} sessions and driving`);
    const drive = await driveCities({
      cities: CITIES,
      balancer,
      rate: 1,
      signal: stop.signal,
      maxS: WINDOW_S + 120,
      carsPerSocket: 20,
      register: { redis: dispatch },
      sourceAddress: '127.0.0.1',
    });
    const listed = async (d: Daemon): Promise<number> =>
      (await scrape(d)).get('cabtrack_replica_drivers') ?? 0;
    const started = Date.now();
    while ((await Promise.all(hosts.map(listed))).some((n) => n < CARS)) {
      if (Date.now() - started > 60_000) throw new Error('the hosts did not list every driver within 60 s');
      await sleep(500);
    }
    say(`every host lists ${CARS} drivers after ${((Date.now() - started) / 1000).toFixed(1)} s; warming up`);
    await sleep(5000);

    const pids = hosts.map((h) => ({ primary: [h.proc.pid!], ...workersByRole(h) }));
    const portsOf = cluster.nodes.map((n) => n.port);
    const before = {
      redis: await Promise.all(portsOf.map((p) => nodeStats(dispatch, p))),
      lag: await Promise.all(hosts.map((h) => histogram(h, 'cabtrack_cross_host_lag_seconds'))),
      ops: await Promise.all(hosts.map((h) => labelled(h, 'cabtrack_redis_host_ops_total'))),
      metrics: await Promise.all(hosts.map(scrape)),
      cpu: pids.map((p) => ({ primary: cpuOf(p.primary), ingest: cpuOf(p.ingest), http: cpuOf(p.http) })),
      at: performance.now(),
    };

    // Client apps on host 0: nearest at random points of the two cities, QPS a second.
    const rng = new Prng(0x405);
    const pool = new Pool(hosts[0]!.url, { connections: 8 });
    let served = 0;
    let failed = 0;
    const end = Date.now() + WINDOW_S * 1000;
    const inflight = new Set<Promise<void>>();
    for (let next = Date.now(); Date.now() < end; next += 1000 / QPS) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      const c = CITIES[rng.int(0, 1)]!.centre;
      const lat = c.lat + (rng.float() - 0.5) * 0.04;
      const lon = c.lon + (rng.float() - 0.5) * 0.05;
      const p = pool
        .request({
          method: 'GET',
          path: `/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=10&radius=1000`,
          headers: { authorization: `Bearer ${CLIENT}` },
        })
        .then(async (r) => {
          await r.body.text();
          if (r.statusCode === 200) served++;
          else failed++;
        })
        .catch(() => {
          failed++;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
    const seconds = (performance.now() - before.at) / 1000;
    const after = {
      redis: await Promise.all(portsOf.map((p) => nodeStats(dispatch, p))),
      lag: await Promise.all(hosts.map((h) => histogram(h, 'cabtrack_cross_host_lag_seconds'))),
      ops: await Promise.all(hosts.map((h) => labelled(h, 'cabtrack_redis_host_ops_total'))),
      metrics: await Promise.all(hosts.map(scrape)),
      cpu: pids.map((p) => ({ primary: cpuOf(p.primary), ingest: cpuOf(p.ingest), http: cpuOf(p.http) })),
    };
    await pool.close();
    await drive.stop();

    const per1000 = (x: number): number => round((x / seconds) * (1000 / CARS), 2);
    const calls = new Map<string, number>();
    let netIn = 0;
    let netOut = 0;
    let replOut = 0;
    // Each node's CPU, cores: the primaries' is what a shard costs, the replicas' what replication does.
    const nodeCpu: number[] = [];
    for (let i = 0; i < portsOf.length; i++) {
      const a = before.redis[i]!;
      const b = after.redis[i]!;
      nodeCpu.push(round((b.cpuS - a.cpuS) / seconds));
      // A replica counts the commands it replays from its primary, and its input is the replication
      // stream: the clients' operations and bytes are the primaries' (no failover during the bench).
      if (cluster.nodes[i]!.role !== 'primary') continue;
      for (const [cmd, n] of b.calls) calls.set(cmd, (calls.get(cmd) ?? 0) + n - (a.calls.get(cmd) ?? 0));
      netIn += b.netIn - a.netIn;
      netOut += b.netOut - a.netOut;
      replOut += b.replOut - a.replOut;
    }
    // The commands behind the window's INFO calls are the bench's own: left out.
    calls.delete('info');
    const totalCalls = [...calls.values()].reduce((x, y) => x + y, 0);
    const byCommand = Object.fromEntries(
      [...calls]
        .filter(([, n]) => n > 0)
        .sort((x, y) => y[1] - x[1])
        .map(([c, n]) => [c, round(n / seconds, 1)]),
    );
    const layerOps: Record<string, number> = {};
    for (let h = 0; h < HOSTS; h++) {
      for (const [op, n] of Object.entries(after.ops[h]!)) {
        layerOps[op] = (layerOps[op] ?? 0) + n - (before.ops[h]![op] ?? 0);
      }
    }
    const perHost = hosts.map((_, h) => {
      const m0 = before.metrics[h]!;
      const m1 = after.metrics[h]!;
      const fixes =
        ((m1.get('cabtrack_datagrams_accepted_total') ?? 0) -
          (m0.get('cabtrack_datagrams_accepted_total') ?? 0)) /
        seconds;
      const cpu = {
        primary: round((after.cpu[h]!.primary - before.cpu[h]!.primary) / 1000 / seconds),
        ingest: round((after.cpu[h]!.ingest - before.cpu[h]!.ingest) / 1000 / seconds),
        http: round((after.cpu[h]!.http - before.cpu[h]!.http) / 1000 / seconds),
      };
      const lag: [Array<[number, number]>, Array<[number, number]>] = [before.lag[h]!, after.lag[h]!];
      return {
        host: `h${h}`,
        driversOwned: m1.get('cabtrack_drivers') ?? 0,
        fixesPerS: round(fixes, 1),
        queriesPerS: h === 0 ? round(served / seconds, 1) : 0,
        cpuCores: cpu,
        crossHostLag: {
          p50Ms: ms(quantile(...lag, 0.5)),
          p99Ms: ms(quantile(...lag, 0.99)),
          fixes: (lag[1].at(-1)?.[1] ?? 0) - (lag[0].at(-1)?.[1] ?? 0),
        },
        liveBytesOutPerS: round(
          ((m1.get('cabtrack_live_published_bytes_total') ?? 0) -
            (m0.get('cabtrack_live_published_bytes_total') ?? 0)) /
            seconds,
          0,
        ),
        liveBytesInPerS: round(
          ((m1.get('cabtrack_live_received_bytes_total') ?? 0) -
            (m0.get('cabtrack_live_received_bytes_total') ?? 0)) /
            seconds,
          0,
        ),
        liveMessagesOutPerS: round(
          ((m1.get('cabtrack_live_published_total') ?? 0) - (m0.get('cabtrack_live_published_total') ?? 0)) /
            seconds,
          1,
        ),
      };
    });
    // Every host's lag histogram summed, bucket by bucket (the hosts share one set of bounds).
    const sum = (hs: Array<Array<[number, number]>>): Array<[number, number]> =>
      hs[0]!.map(([bound], i) => [bound, hs.reduce((n, b) => n + (b[i]?.[1] ?? 0), 0)]);
    const allLag = [sum(before.lag), sum(after.lag)] as const;
    // What a driver and a query cost a host, from the window: ingest and the primary's live cells per
    // 1,000 owned drivers; the HTTP worker's replica per 1,000 drivers it follows (all of them); a query.
    const owned = perHost.reduce((x, h) => x + h.driversOwned, 0);
    const cost = {
      ingestCoresPer1000Owned: round(perHost.reduce((x, h) => x + h.cpuCores.ingest, 0) / (owned / 1000), 4),
      primaryCoresPer1000Owned: round(
        perHost.reduce((x, h) => x + h.cpuCores.primary, 0) / (owned / 1000),
        4,
      ),
      httpCoresPer1000Followed: round(
        perHost.slice(1).reduce((x, h) => x + h.cpuCores.http, 0) / (HOSTS - 1) / (CARS / 1000),
        4,
      ),
      httpCoreMsPerQuery: round(
        ((perHost[0]!.cpuCores.http - (perHost[1]!.cpuCores.http + perHost[2]!.cpuCores.http) / 2) * 1000) /
          Math.max(1, perHost[0]!.queriesPerS),
        4,
      ),
    };
    const result = {
      drivers: CARS,
      hosts: HOSTS,
      windowS: round(seconds, 1),
      publishMs: PUBLISH_MS,
      crossHostLag: {
        p50Ms: ms(quantile(...allLag, 0.5)),
        p99Ms: ms(quantile(...allLag, 0.99)),
      },
      redis: {
        opsPerS: round(totalCalls / seconds, 0),
        opsPer1000DriversPerS: per1000(totalCalls),
        bytesInPer1000DriversPerS: per1000(netIn),
        bytesOutPer1000DriversPerS: per1000(netOut),
        replicationBytesPer1000DriversPerS: per1000(replOut),
        nodeCpuCores: Object.fromEntries(cluster.nodes.map((n, i) => [`${n.role}:${n.port}`, nodeCpu[i]!])),
        cpuCoresPer1000DriversAllNodes: round(nodeCpu.reduce((x, y) => x + y, 0) / (CARS / 1000), 4),
        byCommandPerS: byCommand,
        // Of the bytes: the live cells' (SPUBLISH in, one delivery per subscribed host out), from the
        // hosts' own counters; the rest is sessions and trips, as on a single host.
        liveBytesInPer1000DriversPerS: round(
          (perHost.reduce((x, h) => x + h.liveBytesOutPerS, 0) * 1000) / CARS,
          0,
        ),
        liveBytesOutPer1000DriversPerS: round(
          (perHost.reduce((x, h) => x + h.liveBytesInPerS, 0) * 1000) / CARS,
          0,
        ),
        multiHostLayerOpsPer1000DriversPerS: Object.fromEntries(
          Object.entries(layerOps).map(([k, v]) => [k, per1000(v)]),
        ),
      },
      perHost,
      queries: { served, failed, qps: round(served / seconds, 1) },
      cost,
    };
    say(
      `cross-host lag p50 ${result.crossHostLag.p50Ms} ms, p99 ${result.crossHostLag.p99Ms} ms; Redis ${result.redis.opsPer1000DriversPerS} ops and ` +
        `${result.redis.bytesInPer1000DriversPerS} B in, ${result.redis.bytesOutPer1000DriversPerS} B out per 1000 drivers a second`,
    );
    for (const h of perHost)
      say(
        `${h.host}: ${h.driversOwned} drivers, ${h.fixesPerS} fixes/s, ${h.queriesPerS} q/s, cores ${JSON.stringify(h.cpuCores)}`,
      );
    say(`cost: ${JSON.stringify(cost)}`);
    writeResult('hosts', 'several hosts on Redis Cluster: cross-host lag, Redis load, per-host cost', result);
    dispatch.disconnect();
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
    await cluster.stop();
  }
}

await main();
