import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Cluster, Redis } from 'ioredis';
import { Pool } from 'undici';
import { sessionToHex } from '../codec/session.ts';
import { byNode } from '../redis/pipelines.ts';
import { sessionKey } from '../sessions/redis-registry.ts';
import { fleetSessions } from './fleet.ts';
import { formatReport, type SimReport, snapshot } from './report.ts';
import { type DatagramSink, Simulation } from './simulation.ts';

/*
 * The simulator's I/O edge: registers the fleet's sessions, then paces Simulation.step() with a timer and
 * puts each datagram on a UDP socket. Everything about what is sent lives in simulation.ts.
 *
 * Pacing: step s (car s mod n of tick floor(s / n)) is due s / (n x rate) seconds after the start, so the
 * fleet's datagrams are spread evenly over each second, as a real fleet's are, not sent in one burst per
 * second. Every TICK_MS the loop sends whatever has come due; when it falls behind it goes on at once
 * (setImmediate) in batches of at most MAX_BATCH_S of traffic, so timers and signals still get a turn.
 *
 * Sockets: one per `carsPerSocket` cars, each bound to its own source port and connected to the daemon (a
 * connected socket skips the address lookup per send, and the kernel's route lookup too). A car always
 * sends from the same socket, as a phone keeps its NAT mapping, so the daemon's SO_REUSEPORT hashing
 * keeps each driver on one worker, and many source ports spread the fleet over the workers.
 */

export type Registration = 'api' | 'redis' | 'none';

export interface RunOptions {
  drivers: number;
  rate: number;
  /**
   * Seconds of driving: every car takes durationS x rate fixes, however long sending them takes (a sender
   * that falls behind finishes late rather than short). 0 runs until `signal` aborts.
   */
  durationS: number;
  host: string;
  udpPort: number;
  /** API base URL, for --register api. */
  http: string;
  /** Operator token, for --register api. */
  token: string;
  register: Registration;
  /** For --register redis. */
  redisUrl: string;
  centreLat: number;
  centreLon: number;
  spacingM: number;
  radiusM: number;
  badShare: number;
  offlineShare: number;
  offlineMinS: number;
  offlineMaxS: number;
  seed: number;
  carsPerSocket: number;
  /** Seconds between progress reports; 0 for none. */
  reportEveryS: number;
  /** Driver ids are `${idPrefix}-${i}`, cabs `${idPrefix.toUpperCase()}-${i}`. */
  idPrefix: string;
  /** Where progress lines go. */
  print: (line: string) => void;
  signal?: AbortSignal;
  /** Called once the simulation exists and sending is about to start (the demo prints its curls then). */
  onStart?: (sim: Simulation) => void;
}

const TICK_MS = 5;
const MAX_BATCH_S = 0.05;
/** Session registrations in flight at once through the API. */
const API_CONCURRENCY = 32;
/** HSETs per Redis pipeline. */
const REDIS_BATCH = 1000;

export function driverId(prefix: string, i: number): string {
  return `${prefix}-${i}`;
}

export function cabOf(prefix: string, i: number): string {
  return `${prefix.toUpperCase()}-${i}`;
}

/** Registers the sessions, runs the fleet until the duration ends or `signal` aborts, returns the report. */
export async function runSimulation(o: RunOptions): Promise<SimReport> {
  const sessions = fleetSessions(o.seed, o.drivers);
  const t = performance.now();
  if (o.register === 'api') await registerApi(o, sessions);
  else if (o.register === 'redis') await registerRedis(o, sessions);
  if (o.register !== 'none') {
    o.print(
      `[sim] registered ${o.drivers} sessions (${o.register}) in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
  }

  const sockets = await openSockets(o);
  let sendErrors = 0;
  for (const s of sockets) s.on('error', () => sendErrors++);
  const perSocket = o.carsPerSocket;
  const sink: DatagramSink = (car, data, offset, length) => {
    sockets[(car / perSocket) | 0]!.send(data, offset, length);
  };

  const t0 = performance.now();
  const startS = Math.floor((performance.timeOrigin + t0) / 1000);
  const sim = new Simulation({
    cars: o.drivers,
    rate: o.rate,
    seed: o.seed,
    startS,
    centreLat: o.centreLat,
    centreLon: o.centreLon,
    spacingM: o.spacingM,
    radiusM: o.radiusM,
    badShare: o.badShare,
    offlineShare: o.offlineShare,
    offlineMinS: o.offlineMinS,
    offlineMaxS: o.offlineMaxS,
    // Ids from the start second: a rerun against the same daemon does not reuse the last run's orders.
    firstOrderId: startS * 100_000 + 1,
  });
  o.onStart?.(sim);

  const perSecond = o.drivers * o.rate;
  const totalSteps =
    o.durationS > 0 ? Math.max(1, Math.round(o.durationS * o.rate)) * o.drivers : Number.POSITIVE_INFINITY;
  const maxBatch = Math.max(1, Math.ceil(perSecond * MAX_BATCH_S));
  const lagS = (): number => Math.max(0, (performance.now() - t0) / 1000 - sim.steps / perSecond);

  let lastReportAt = t0;
  let lastReportSent = 0;
  const report =
    o.reportEveryS > 0
      ? setInterval(() => {
          const now = performance.now();
          const rate = ((sim.counters.sent - lastReportSent) * 1000) / (now - lastReportAt);
          lastReportAt = now;
          lastReportSent = sim.counters.sent;
          o.print(
            formatReport(snapshot(sim, { elapsedS: (now - t0) / 1000, rate, lagS: lagS(), sendErrors })),
          );
        }, o.reportEveryS * 1000)
      : undefined;

  await new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const done = (): void => {
      if (stopped) return;
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      o.signal?.removeEventListener('abort', done);
      resolve();
    };
    const pump = (): void => {
      timer = undefined;
      // An abort may land between a setImmediate and its turn.
      if (stopped) return;
      const due = Math.min(totalSteps, Math.floor(((performance.now() - t0) / 1000) * perSecond) + 1);
      const n = Math.min(due - sim.steps, maxBatch);
      for (let k = 0; k < n; k++) sim.step(sink);
      if (sim.steps >= totalSteps) done();
      else if (due > sim.steps) setImmediate(pump);
      else timer = setTimeout(pump, TICK_MS);
    };
    if (o.signal?.aborted) done();
    else {
      o.signal?.addEventListener('abort', done, { once: true });
      pump();
    }
  });
  const elapsedS = (performance.now() - t0) / 1000;
  if (report !== undefined) clearInterval(report);
  await closeSockets(sockets);
  const final = snapshot(sim, { elapsedS, rate: sim.counters.sent / elapsedS, lagS: lagS(), sendErrors });
  if (o.reportEveryS > 0) o.print(formatReport(final, true));
  return final;
}

async function openSockets(o: RunOptions): Promise<dgram.Socket[]> {
  const count = Math.ceil(o.drivers / o.carsPerSocket);
  const type = isIPv6(o.host) ? 'udp6' : 'udp4';
  const sockets: dgram.Socket[] = [];
  for (let k = 0; k < count; k++) {
    const s = dgram.createSocket(type);
    sockets.push(s);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.connect(o.udpPort, o.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
  }
  return sockets;
}

/** Waits (a little) for queued sends to leave, so that what the report counts as sent was sent. */
async function closeSockets(sockets: dgram.Socket[]): Promise<void> {
  for (let k = 0; k < 200; k++) {
    if (sockets.every((s) => s.getSendQueueCount() === 0)) break;
    await sleep(10);
  }
  for (const s of sockets) s.close();
}

/** PUT /v1/sessions/{session} for every car, API_CONCURRENCY at a time over a keep-alive pool. */
async function registerApi(o: RunOptions, sessions: Uint32Array): Promise<void> {
  if (o.token === '') throw new Error('--register api needs --token (or CABTRACK_OPERATOR_TOKEN)');
  const base = new URL(o.http);
  const prefix = base.pathname.replace(/\/+$/, '');
  const pool = new Pool(base.origin, { connections: 8, pipelining: 4 });
  const headers = { authorization: `Bearer ${o.token}`, 'content-type': 'application/json' };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.drivers && !o.signal?.aborted) {
      const i = next++;
      const hex = sessionToHex(sessions[2 * i]!, sessions[2 * i + 1]!);
      const res = await pool.request({
        method: 'PUT',
        path: `${prefix}/v1/sessions/${hex}`,
        headers,
        body: JSON.stringify({ driverId: driverId(o.idPrefix, i), cab: cabOf(o.idPrefix, i) }),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200 && res.statusCode !== 201) {
        throw new Error(`PUT /v1/sessions/${hex} answered ${res.statusCode}: ${text.slice(0, 200)}`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(API_CONCURRENCY, o.drivers) }, worker));
  } finally {
    await pool.close();
  }
}

/** Writes the session hashes as the dispatch system does (src/sessions/redis-registry.ts), pipelined. */
async function registerRedis(o: RunOptions, sessions: Uint32Array): Promise<void> {
  if (o.redisUrl === '') throw new Error('--register redis needs CABTRACK_REDIS_URL');
  const redis = new Redis(o.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await writeSessions(redis, sessions, o.drivers, o.idPrefix, o.signal);
  } finally {
    redis.disconnect();
  }
}

/**
 * Writes the first `drivers` sessions of `sessions` ([hi, lo, ...], as fleetSessions gives them) as the
 * dispatch system does: `cabtrack:session:<hex>` hashes {driverId, cab}, REDIS_BATCH to a pipeline. On a
 * Redis Cluster each batch is split by the node serving each key (ioredis refuses a pipeline across
 * nodes); a standalone Redis gets each batch as one pipeline. The multi-host tests register their
 * fleets through it with a Cluster client (test/support/balancer.ts).
 */
export async function writeSessions(
  redis: Redis | Cluster,
  sessions: Uint32Array,
  drivers: number,
  idPrefix: string,
  signal?: AbortSignal,
): Promise<void> {
  for (let from = 0; from < drivers && !signal?.aborted; from += REDIS_BATCH) {
    const to = Math.min(drivers, from + REDIS_BATCH);
    const keys: string[] = [];
    for (let i = from; i < to; i++) keys.push(sessionKey(sessions[2 * i]!, sessions[2 * i + 1]!));
    for (const group of byNode(redis, keys)) {
      const p = redis.pipeline();
      for (const k of group)
        p.hset(keys[k]!, 'driverId', driverId(idPrefix, from + k), 'cab', cabOf(idPrefix, from + k));
      const results = (await p.exec()) ?? [];
      const failed = results.find(([err]) => err !== null);
      if (failed !== undefined) throw failed[0]!;
    }
  }
}
