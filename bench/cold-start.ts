/**
 * Question: after a restart, how long until a 100k fleet is live again, when every driver's first fix
 * arrives within one second (and its next ones a second apart, as phones send them)? Without Redis
 * (sessions in the primary) and with Redis (sessions looked up by the workers under their per-worker
 * cap, CABTRACK_SESSION_LOOKUPS_PER_S). Issue 12: every driver live within 3 s without Redis; with
 * Redis within the cap's arithmetic (drivers / (cap x workers) seconds, plus the second a refused
 * driver waits for its next fix).
 *
 * With --1m: a million drivers, without Redis, their first fixes spread over 10 s (100k datagrams a
 * second, what the sender and the daemon sustain together on two cores; a round is every driver's
 * next fix, 10 s later). Issue 14: the cold start completes without the daemon refusing what it can
 * hold (queue_full and throttled are its bounded queues refusing). Registering the million sessions
 * through the API takes a minute or two, so it runs on its own, not in `npm run bench`.
 *
 * - The daemon with its default workers (one per core); 100k sessions registered through the API
 *   without Redis, and written straight to Redis with it, as the dispatch system does (through the API
 *   the workers would cache them, which a restarted daemon has not).
 * - The sender (support/sender.ts) sends every driver's fix once a second, 100k datagrams a second,
 *   rounds after rounds, until every driver is live or 15 rounds have gone.
 * - Time to live: from the first datagram until cabtrack_drivers reaches 100k (polled every 50 ms);
 *   with the datagrams refused on the way, by reason, and the kernel's drops on the port.
 *
 *   node bench/cold-start.ts [--quick]      Result: bench/results/cold-start.json
 *   node bench/cold-start.ts --1m           Result: bench/results/cold-start-1m.json
 */
import { availableParallelism } from 'node:os';
import { Redis } from 'ioredis';
import { sessionKey } from '../src/sessions/redis-registry.ts';
import { startRedis } from '../test/support/redis.ts';
import {
  fleetStartTime,
  ingestCounts,
  registerFleet,
  scrape,
  sleep,
  startCabtrack,
} from './support/cabtrack.ts';
import { cabNumber, driverId, sessionHi } from './support/fleet.ts';
import { udpQueue } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';

const SEED = 0xc01d;
const ONE_MILLION = process.argv.includes('--1m');
const DRIVERS = ONE_MILLION ? 1_000_000 : QUICK ? 20_000 : 100_000;
/** Each round sends every driver's next fix over this long. */
const ROUND_S = ONE_MILLION ? 10 : 1;
const MAX_ROUNDS = ONE_MILLION ? 4 : 15;
/** Per worker (the default of CABTRACK_SESSION_LOOKUPS_PER_S). */
const CAP = 10_000;
const workers = availableParallelism();

interface Outcome {
  mode: string;
  drivers: number;
  workers: number;
  /** Seconds from the first datagram until every driver was live (null: not within MAX_ROUNDS). */
  secondsToLive: number | null;
  /** Drivers live at each whole second after the first datagram. */
  liveBySecond: number[];
  rounds: number;
  roundSeconds: number;
  sent: number;
  rejected: Record<string, number>;
  lookups: Record<string, number>;
  kernelDrops: number;
  registration: { perSecond: number; seconds: number };
}

async function run(mode: 'embedded' | 'redis'): Promise<Outcome> {
  const teardowns: Array<() => unknown> = [];
  const env: Record<string, string> = {};
  let redisPort = 0;
  if (mode === 'redis') {
    redisPort = (await startRedis({ teardown: (fn) => teardowns.push(fn) })).port;
    env['CABTRACK_REDIS_URL'] = `redis://127.0.0.1:${redisPort}`;
  }
  const daemon = await startCabtrack(workers, env);
  const sender = await Sender.start({
    drivers: DRIVERS,
    seed: SEED,
    startTime: fleetStartTime(),
    sockets: 32,
  });
  try {
    const reg =
      mode === 'redis' ? await writeSessions(redisPort) : await registerFleet(daemon, SEED, 0, DRIVERS);
    say(`${mode}: registered ${reg.registered} in ${reg.seconds.toFixed(1)} s`);
    if (reg.registered < DRIVERS) throw new Error(`only ${reg.registered} of ${DRIVERS} sessions registered`);
    const drops0 = udpQueue(daemon.udpPort).drops;
    const t0 = performance.now();
    const liveBySecond: number[] = [];
    let secondsToLive: number | null = null;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const live = (await ingestCounts(daemon)).drivers;
        const at = (performance.now() - t0) / 1000;
        while (liveBySecond.length < Math.floor(at)) liveBySecond.push(live);
        if (live >= DRIVERS && secondsToLive === null) secondsToLive = at;
        if (secondsToLive !== null) return;
        await sleep(50);
      }
    })();
    let rounds = 0;
    let sent = 0;
    while (rounds < MAX_ROUNDS && secondsToLive === null) {
      // One round: every driver's next fix, spread over ROUND_S.
      sent += (await sender.run(daemon.udpPort, DRIVERS / ROUND_S, DRIVERS)).sent;
      rounds++;
    }
    // The last round's fixes may still be on their way in: give them a moment.
    const end = Date.now() + 3000;
    while (secondsToLive === null && Date.now() < end) await sleep(50);
    polling = false;
    await poll;
    const m = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
    const byLabel = (name: string, label: string): Record<string, number> => {
      const out: Record<string, number> = {};
      const re = new RegExp(`^${name}\\{.*${label}="([^"]+)".*\\} (\\S+)$`);
      for (const line of m.split('\n')) {
        const x = re.exec(line);
        if (x !== null && Number(x[2]) > 0) out[x[1]!] = Number(x[2]);
      }
      return out;
    };
    const kernelDrops = udpQueue(daemon.udpPort).drops - drops0;
    const outcome: Outcome = {
      mode,
      drivers: DRIVERS,
      workers,
      secondsToLive: secondsToLive === null ? null : Math.round((secondsToLive as number) * 100) / 100,
      liveBySecond,
      rounds,
      roundSeconds: ROUND_S,
      sent,
      rejected: byLabel('cabtrack_datagrams_rejected_total', 'reason'),
      lookups: byLabel('cabtrack_session_lookups_total', 'outcome'),
      kernelDrops,
      registration: { perSecond: Math.round(reg.perSecond), seconds: Math.round(reg.seconds * 10) / 10 },
    };
    say(`${mode}: ${JSON.stringify(outcome)}`);
    void scrape;
    return outcome;
  } finally {
    sender.stop();
    await daemon.stop();
    for (const fn of teardowns) await fn();
  }
}

/** The sessions as the dispatch system writes them at login (src/sessions/redis-registry.ts). */
async function writeSessions(
  port: number,
): Promise<{ registered: number; seconds: number; perSecond: number }> {
  const redis = new Redis({ port, host: '127.0.0.1' });
  const t0 = performance.now();
  for (let from = 0; from < DRIVERS; from += 10_000) {
    const p = redis.pipeline();
    for (let i = from; i < Math.min(DRIVERS, from + 10_000); i++) {
      p.hset(sessionKey(sessionHi(SEED, i), i + 1), { driverId: driverId(i), cab: cabNumber(i) });
    }
    await p.exec();
  }
  redis.disconnect();
  const seconds = (performance.now() - t0) / 1000;
  return { registered: DRIVERS, seconds, perSecond: DRIVERS / seconds };
}

if (ONE_MILLION) {
  const embedded = await run('embedded');
  writeResult(
    'cold-start-1m',
    'time until a 1M fleet is live again when every first fix arrives within 10 s, and what was refused',
    { drivers: DRIVERS, workers, roundSeconds: ROUND_S, runs: [embedded] },
  );
} else {
  const embedded = await run('embedded');
  const redis = await run('redis');
  writeResult(
    'cold-start',
    'time until a 100k fleet is live again when every first fix arrives within one second',
    {
      drivers: DRIVERS,
      workers,
      lookupCapPerWorker: CAP,
      capArithmeticS: Math.ceil(DRIVERS / (CAP * workers)),
      runs: [embedded, redis],
    },
  );
}
