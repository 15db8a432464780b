/**
 * Question: how many nearest-10 queries a second does cabtrack's HTTP API answer over 100k drivers,
 * within 1 km and within 3 km, and how fast (p50, p99), while ingest runs at half the cluster's
 * capacity, against Redis GEOSEARCH ... ASC COUNT 10 on the same positions with GEOADD updates at the
 * same rate, driven by the same load generator with the same settings?
 *
 * - cabtrack: the daemon with its default worker count (one per core), 100k sessions registered, every
 *   driver live; the UDP sender (support/sender.ts) offers half the cluster's zero-loss rate measured by
 *   bench/ingest.ts in the same run (or half of 2 x 150k/s when run alone) during the measurement.
 * - Redis: a local redis-server, the same seeded fleet at the same positions (GEOADD), and a child
 *   process moving it at the same rate (support/geo-updater.ts, one variadic GEOADD a millisecond).
 *   The command is GEOSEARCH key FROMLONLAT lon lat BYRADIUS r m ASC COUNT 10: ids only, where the API
 *   answers with each driver's cab, position, time, speed, bearing, free and distance.
 * - The load generator (support/load.ts): a closed loop of 16 clients (saturation: throughput) and of 4
 *   (below saturation: latency), keep-alive (an undici Pool of 16 connections; 16 ioredis connections,
 *   one per client), 1 s warm-up then 4 s measured, the same seeded query points (riders are where the
 *   drivers are), from this process, for both.
 * - The two systems take turns (cabtrack then Redis, at each radius and load level), each idle while the
 *   other is measured.
 * - A second baseline from the same load generator: cabtrack's own GET /healthz at each load level, with
 *   the same ingest (issue 10: nearest-10 should cost about what a trivial request costs).
 * - Replica lag (a fix received by its ingest worker -> visible to nearest): p50 and p99 of
 *   cabtrack_replica_lag_seconds over each cabtrack measurement, interpolated in its buckets as
 *   Prometheus's histogram_quantile does.
 *
 *   node bench/query.ts [--quick]     Result: bench/results/query.json
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { Prng } from '../test/support/prng.ts';
import { startRedis } from '../test/support/redis.ts';
import {
  CLIENT,
  daemonPids,
  fleetStartTime,
  ingestCounts,
  registerFleet,
  startCabtrack,
  waitDrivers,
} from './support/cabtrack.ts';
import { City } from './support/fleet.ts';
import { GEO_KEY, GeoUpdater } from './support/geo-updater.ts';
import { closedLoop, type LoadOptions, type LoadResult } from './support/load.ts';
import { foreignLoad, waitQuiet } from './support/proc.ts';
import { QUICK, RUN_ID, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';

const SEED = 0x9e0;
const DRIVERS = 100_000;
const RADII = [1000, 3000];
const K = 10;
/**
 * Two load levels with the same settings otherwise: 16 clients saturate either system on two cores (its
 * throughput; latency there is queueing, 16 / throughput by Little's law), 4 clients load it below
 * saturation (the latency a client sees on a busy, not overloaded, service).
 */
const LEVELS = [16, 4];
const WARMUP_S = QUICK ? 0.5 : 1;
const SECONDS = QUICK ? 2 : 3;
const load = (concurrency: number): LoadOptions => ({ concurrency, warmupS: WARMUP_S, seconds: SECONDS });
const MAX_CLIENTS = Math.max(...LEVELS);
const QUERY_POINTS = 50_000;
/** The target for one worker, for when there is no ingest result from this run. */
const FALLBACK_CAPACITY_PER_WORKER = 150_000;

const workers = availableParallelism();

/**
 * Half the cluster's zero-loss ingest rate from this run's bench/ingest.ts; in a quick run (no cluster
 * figure) half of one worker's, which is less; run alone, half of the one-worker target.
 */
function ingestRate(): { rate: number; source: string } {
  const file = new URL('./results/ingest.json', import.meta.url);
  if (existsSync(file)) {
    const r = JSON.parse(readFileSync(file, 'utf8')) as {
      run: string;
      cluster: { workers: number; search: { zeroLossRate: number } } | null;
      oneWorker: Array<{ drivers: number; search: { zeroLossRate: number } }>;
    };
    const cluster = r.cluster;
    if (
      r.run === RUN_ID &&
      cluster !== null &&
      cluster.workers === workers &&
      cluster.search.zeroLossRate > 0
    ) {
      return {
        rate: Math.round(cluster.search.zeroLossRate / 2),
        source: `half the cluster's zero-loss rate (${cluster.search.zeroLossRate}/s) in bench/ingest.ts, same run`,
      };
    }
    const one = r.oneWorker.find((w) => w.drivers === DRIVERS);
    if (r.run === RUN_ID && one !== undefined && one.search.zeroLossRate > 0) {
      return {
        rate: Math.round(one.search.zeroLossRate / 2),
        source: `half of one worker's zero-loss rate (${one.search.zeroLossRate}/s) in bench/ingest.ts, same run (no cluster figure in a quick run)`,
      };
    }
  }
  return {
    rate: FALLBACK_CAPACITY_PER_WORKER / 2,
    source: `no ingest result from this run: half of the ${FALLBACK_CAPACITY_PER_WORKER}/s one-worker target`,
  };
}

const rnd = new Prng(SEED ^ 0x0e1);
const city = new City(SEED);
const points = new Float64Array(QUERY_POINTS * 2);
for (let i = 0; i < QUERY_POINTS; i++) {
  const [lat, lon] = city.point(rnd);
  points[2 * i] = lat;
  points[2 * i + 1] = lon;
}
const lat = (q: number): string => points[2 * (q % QUERY_POINTS)]!.toFixed(6);
const lon = (q: number): string => points[2 * (q % QUERY_POINTS) + 1]!.toFixed(6);

function countOf(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n++;
  return n;
}

/** Cumulative counts of a histogram's buckets on a /metrics page, by upper bound. */
function buckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m !== null) out.set(m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The q-quantile of the observations between two scrapes, interpolated linearly within its bucket. */
function quantile(before: Map<number, number>, after: Map<number, number>, q: number): number | null {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  if (total <= 0) return null;
  const want = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const c = (after.get(b) ?? 0) - (before.get(b) ?? 0);
    if (c >= want) {
      if (b === Number.POSITIVE_INFINITY) return prevBound;
      return prevBound + ((b - prevBound) * (want - prevCount)) / Math.max(1, c - prevCount);
    }
    prevBound = b;
    prevCount = c;
  }
  return null;
}

const LAG = 'cabtrack_replica_lag_seconds';
const metricsText = async (): Promise<string> => (await fetch(`${daemon.url}/metrics`)).text();

const { rate, source } = ingestRate();
say(`ingest during queries: ${rate}/s (${source})`);

const teardowns: Array<() => unknown> = [];
const redisServer = await startRedis({ teardown: (fn) => teardowns.push(fn) });
const daemon = await startCabtrack(workers);
const startTime = fleetStartTime();
const sender = await Sender.start({ drivers: DRIVERS, seed: SEED, startTime, sockets: 32 });
const updater = await GeoUpdater.start(redisServer.port, DRIVERS, SEED, startTime);
const pool = new Pool(daemon.url, { connections: MAX_CLIENTS, pipelining: 1 });
/** Our processes, whose CPU is not "other jobs'". */
const ours = (): number[] => {
  const p = daemonPids(daemon);
  return [p.primary, ...p.workers, sender.pid, updater.pid, process.pid];
};
const redisClients = Array.from(
  { length: MAX_CLIENTS },
  () => new Redis({ port: redisServer.port, host: '127.0.0.1', lazyConnect: true }),
);

try {
  const reg = await registerFleet(daemon, SEED, 0, DRIVERS);
  say(`registered ${reg.registered} sessions in ${reg.seconds.toFixed(1)} s`);
  // Every driver's first fix (each one a claim through the primary: slowly, and again for any lost),
  // then a warm-up round. The Redis fleet skips the same fixes, so both hold the same positions.
  let sent = 0;
  let live = 0;
  for (let round = 0; round < 3 && live < DRIVERS; round++) {
    sent += (await sender.run(daemon.udpPort, 30_000, DRIVERS)).sent;
    live = await waitDrivers(daemon, DRIVERS, 30_000);
  }
  sent += (await sender.run(daemon.udpPort, 50_000, DRIVERS)).sent;
  await updater.skip(sent - DRIVERS);
  await updater.load();
  await updater.skip(DRIVERS);
  await updater.load();
  await Promise.all(redisClients.map((c) => c.connect()));
  say(`${live} drivers live in cabtrack; ${await redisClients[0]!.zcard(GEO_KEY)} in Redis`);

  const httpQuery =
    (radius: number) =>
    async (q: number): Promise<number> => {
      const res = await pool.request({
        method: 'GET',
        path: `/v1/drivers/nearest?lat=${lat(q)}&lon=${lon(q)}&k=${K}&radius=${radius}`,
        headers: { authorization: `Bearer ${CLIENT}` },
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
      // The drivers counted without parsing the JSON: the load generator shares the two cores with the
      // daemon, and a parse per answer (which /healthz and Redis's ids do not need) would weigh on it.
      return countOf(text, '"id":');
    };
  /** Redis's answer to query q: the K nearest ids within radius metres, nearest first. */
  const geoSearch = async (c: (typeof redisClients)[number], q: number, radius: number): Promise<string[]> =>
    (await c.call(
      'GEOSEARCH',
      GEO_KEY,
      'FROMLONLAT',
      lon(q),
      lat(q),
      'BYRADIUS',
      String(radius),
      'm',
      'ASC',
      'COUNT',
      String(K),
    )) as string[];
  const redisQuery =
    (radius: number) =>
    async (q: number, client = 0): Promise<number> => {
      return (await geoSearch(redisClients[client]!, q, radius)).length;
    };

  // Both answer the same question: compare the ids at rest, before any load. Redis stores positions as
  // 52-bit geohashes (about 0.6 m) and uses another earth radius, so near-ties may come out in another
  // order: the same set is the check, the same order is for information.
  const agreement: Record<string, { sameSet: number; sameOrder: number }> = {};
  for (const radius of RADII) {
    let sameSet = 0;
    let sameOrder = 0;
    for (let q = 0; q < 200; q++) {
      const res = await pool.request({
        method: 'GET',
        path: `/v1/drivers/nearest?lat=${lat(q)}&lon=${lon(q)}&k=${K}&radius=${radius}`,
        headers: { authorization: `Bearer ${CLIENT}` },
      });
      const ours = ((await res.body.json()) as { drivers: Array<{ id: string }> }).drivers.map((d) => d.id);
      const theirs = await geoSearch(redisClients[0]!, q, radius);
      if (theirs.join() === ours.join()) sameOrder++;
      if ([...theirs].sort().join() === [...ours].sort().join()) sameSet++;
    }
    agreement[`${radius}m`] = { sameSet: sameSet / 200, sameOrder: sameOrder / 200 };
  }
  say(`same nearest-10 ids at rest: ${JSON.stringify(agreement)}`);

  // JIT and connections warm on both sides before anything is measured.
  const warm = { concurrency: MAX_CLIENTS, warmupS: 0, seconds: QUICK ? 1 : 2 };
  await closedLoop(httpQuery(3000), warm);
  await closedLoop(redisQuery(3000), warm);

  /**
   * The machine is shared: a measurement starts when other jobs are quiet (waiting up to 3 s), and one
   * during which they used half a core or more is run once more; the quieter of the two is kept, with
   * the other jobs' load of both.
   */
  const quietly = async <T extends object>(
    run: () => Promise<{ result: T; oursGoneMs: number }>,
  ): Promise<T & { otherCores: number[] }> => {
    let best: { result: T; other: number } | null = null;
    const seen: number[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      await waitQuiet(ours(), 0.3, 3000);
      const stop = foreignLoad();
      const { result, oursGoneMs } = await run();
      const other = stop(oursGoneMs);
      seen.push(other);
      if (best === null || other < best.other) best = { result, other };
      if (other < 0.5) break;
    }
    return { ...best!.result, otherCores: seen };
  };

  const runs: Array<{
    radiusM: number;
    concurrency: number;
    cabtrack: LoadResult & {
      ingest: Record<string, number>;
      otherCores: number[];
      lagP50Ms: number | null;
      lagP99Ms: number | null;
    };
    redis: LoadResult & { updates: Record<string, number>; otherCores: number[] };
  }> = [];
  const windowS = WARMUP_S + SECONDS + 0.5;

  /** A cabtrack measurement: the load while the fleet sends at `rate`, with the ingest and the lag. */
  const underIngest = async (request: Parameters<typeof closedLoop>[0], concurrency: number) =>
    quietly(async () => {
      const before = await ingestCounts(daemon);
      const lagBefore = buckets(await metricsText(), LAG);
      const sending = sender.run(daemon.udpPort, rate, Math.round(rate * windowS));
      await new Promise((r) => setTimeout(r, 200));
      const measured = await closedLoop(request, load(concurrency));
      const s = await sending;
      const after = await ingestCounts(daemon);
      const lagAfter = buckets(await metricsText(), LAG);
      const ms = (x: number | null): number | null => (x === null ? null : Math.round(x * 10_000) / 10);
      const result = {
        ...measured,
        ingest: {
          offered: Math.round(s.rate),
          sent: s.sent,
          accepted: after.accepted - before.accepted,
          lost: s.sent - (after.accepted - before.accepted),
        },
        lagP50Ms: ms(quantile(lagBefore, lagAfter, 0.5)),
        lagP99Ms: ms(quantile(lagBefore, lagAfter, 0.99)),
      };
      return { result, oursGoneMs: s.cpuMs };
    });

  // The trivial request, from the same load generator, under the same ingest.
  const healthz: Array<
    LoadResult & { concurrency: number; ingest: Record<string, number>; otherCores: number[] }
  > = [];
  for (const concurrency of LEVELS) {
    const r = await underIngest(async () => {
      const res = await pool.request({ method: 'GET', path: '/healthz' });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
      return 1;
    }, concurrency);
    say(`cabtrack /healthz x${concurrency}: ${JSON.stringify(r)}`);
    healthz.push({ ...r, concurrency });
  }
  for (const radius of RADII) {
    for (const concurrency of LEVELS) {
      const cabtrack = await underIngest(httpQuery(radius), concurrency);
      say(`cabtrack ${radius} m x${concurrency}: ${JSON.stringify(cabtrack)}`);
      const redis = await quietly(async () => {
        const updating = updater.run(rate, windowS);
        await new Promise((r) => setTimeout(r, 200));
        const theirs = await closedLoop(redisQuery(radius), load(concurrency));
        const upd = await updating;
        const result = {
          ...theirs,
          updates: { rate: Math.round(upd.rate), updates: upd.updates, cpuMs: Math.round(upd.cpuMs) },
        };
        return { result, oursGoneMs: 0 };
      });
      say(`redis ${radius} m x${concurrency}: ${JSON.stringify(redis)}`);
      runs.push({ radiusM: radius, concurrency, cabtrack, redis });
    }
  }

  writeResult('query', 'nearest-10 over 100k drivers while ingesting: cabtrack HTTP API vs Redis GEOSEARCH', {
    drivers: DRIVERS,
    workers,
    k: K,
    load: { levels: LEVELS, warmupS: WARMUP_S, seconds: SECONDS },
    ingestRate: rate,
    ingestRateSource: source,
    redisCommand: `GEOSEARCH ${GEO_KEY} FROMLONLAT lon lat BYRADIUS r m ASC COUNT ${K}`,
    redisUpdates: 'one variadic GEOADD per millisecond with the updates due, same fleet, same rate',
    agreementAtRest: agreement,
    publishMs: 200,
    healthz,
    runs: runs.map((r) => ({
      ...r,
      throughputRatio: Math.round((r.cabtrack.perSecond / Math.max(1, r.redis.perSecond)) * 100) / 100,
    })),
  });
} finally {
  await pool.close();
  for (const c of redisClients) c.disconnect();
  sender.stop();
  updater.stop();
  await daemon.stop();
  for (const fn of teardowns) await fn();
}
