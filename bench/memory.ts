/**
 * Question: how much memory does a live driver cost the whole daemon, RSS and V8 heap, at 100k and at
 * 1M drivers with their 20-point rings full, over the daemon's own idle footprint measured in the same
 * run? Issue 14's target: at most 600 B of RSS a driver at 1M for the primary and the ingest workers
 * together; the HTTP workers' read replicas are reported apart (their own target is issue 10's).
 *
 * - The daemon runs with its default worker count (one per core) and the inspector on (NODE_OPTIONS
 *   --inspect=127.0.0.1:0), so that every process can be made to collect its garbage before it is
 *   measured: RSS from /proc/<pid>/status summed over the processes, heap used from V8 (summed), and
 *   the typed arrays (the rings' slabs) from the daemon's external-memory metric.
 * - Baseline: the same daemon, idle, before any session exists.
 * - Every process is measured on its own and grouped by role (the primary, the ingest workers, the
 *   HTTP workers: CABTRACK_ROLE in each one's environment).
 * - A driver costs its session (the primary's table: the only copy), its directory entry (the
 *   primary), its slot in an ingest worker's shard (record, ring, names, index entries) and its entry in
 *   every HTTP worker's replica. Sessions are registered with PUT /v1/sessions,
 *   every driver sends fixes until its ring holds 20 points (checked by reading the points of sampled
 *   drivers through GET /v1/drivers/{id}).
 * - 1M: the same daemon grows from 100k. Registering 900k more sessions over HTTP takes about 1.5 min
 *   here, and filling 1M rings 20 deep is 20M datagrams (over 2 min at a zero-loss rate): the fill at 1M
 *   runs as far as its time budget allows, and the result says how full the rings were. At 100k the
 *   rings are filled all the way and RSS is recorded as they fill, which shows what a fuller ring costs.
 *
 *   node bench/memory.ts [--quick]     Result: bench/results/memory.json
 */
import { availableParallelism } from 'node:os';
import type { Daemon } from '../test/support/daemon.ts';
import { OPERATOR } from '../test/support/daemon.ts';
import { Prng } from '../test/support/prng.ts';
import {
  fleetStartTime,
  ingestCounts,
  registerFleet,
  scrape,
  sleep,
  startCabtrack,
  waitDrivers,
  workersByRole,
} from './support/cabtrack.ts';
import { driverId } from './support/fleet.ts';
import { collectGarbage, heapUsed, INSPECT_OPTIONS, inspectorUrls } from './support/inspector.ts';
import { rssBytes } from './support/proc.ts';
import { QUICK, remainingMs, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';

const SEED = 0x3e3;
const SIZES = QUICK ? [100_000] : [100_000, 1_000_000];
const POINTS = 20;
/** Fixes a second while filling: below the cluster's zero-loss rate, so that few fixes are lost. */
const FILL_RATE = 100_000;
/** First fixes are slower: each makes a worker claim the driver from the primary. */
const FIRST_FIX_RATE = 30_000;
/**
 * Time allowed for registering and filling the step up to 1M, ms, and what must be left of the run's
 * budget (bench/run.ts) when it ends, for the final measurement.
 */
const BUDGET_1M_MS = 170_000;
const RESERVE_MS = 15_000;
/** Below this the step to 1M would not even register the sessions: it is skipped and said so. */
const MIN_STEP_MS = 90_000;

const workers = availableParallelism();
const httpWorkers = availableParallelism();

interface Snapshot {
  /** Every process. */
  rssBytes: number;
  /** The scope: the primary and the ingest workers. */
  ingestSideRssBytes: number;
  /** The HTTP workers (their read replicas). */
  httpRssBytes: number;
  /** Primary, then the ingest workers, then the HTTP workers. */
  rssByProcess: number[];
  heapUsedBytes: number;
  externalBytes: number;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

async function snapshot(d: Daemon): Promise<Snapshot> {
  const urls = inspectorUrls(d.logs);
  await collectGarbage(urls);
  await sleep(500);
  const primary = rssBytes(d.proc.pid!);
  const roles = workersByRole(d);
  const ingest = roles.ingest.sort((a, b) => a - b).map(rssBytes);
  const http = roles.http.sort((a, b) => a - b).map(rssBytes);
  const m = await scrape(d);
  return {
    rssBytes: primary + sum(ingest) + sum(http),
    ingestSideRssBytes: primary + sum(ingest),
    httpRssBytes: sum(http),
    rssByProcess: [primary, ...ingest, ...http],
    heapUsedBytes: await heapUsed(urls),
    externalBytes: m.get('cabtrack_nodejs_external_memory_bytes') ?? 0,
  };
}

/** Points held by `n` sampled drivers (GET /v1/drivers/{id}): min and mean. */
async function ringFill(d: Daemon, drivers: number, n: number): Promise<{ min: number; mean: number }> {
  const rnd = new Prng(drivers);
  let min = Number.POSITIVE_INFINITY;
  let sum = 0;
  for (let k = 0; k < n; k++) {
    const res = await fetch(`${d.url}/v1/drivers/${driverId(rnd.int(0, drivers - 1))}`, {
      headers: { authorization: `Bearer ${OPERATOR}` },
    });
    const points = res.status === 200 ? ((await res.json()) as { points: unknown[] }).points.length : 0;
    min = Math.min(min, points);
    sum += points;
  }
  return { min, mean: sum / n };
}

const perDriver = (loaded: Snapshot, idle: Snapshot, n: number): Record<string, number> => ({
  rssBytes: Math.round((loaded.rssBytes - idle.rssBytes) / n),
  ingestSideRssBytes: Math.round((loaded.ingestSideRssBytes - idle.ingestSideRssBytes) / n),
  httpRssBytes: Math.round((loaded.httpRssBytes - idle.httpRssBytes) / n),
  heapUsedBytes: Math.round((loaded.heapUsedBytes - idle.heapUsedBytes) / n),
  externalBytes: Math.round((loaded.externalBytes - idle.externalBytes) / n),
});

/** (b - a) / n in bytes, in all and per process (primary first). */
function split(b: Snapshot, a: Snapshot, n: number): Record<string, unknown> {
  return {
    rssBytes: Math.round((b.rssBytes - a.rssBytes) / n),
    ingestSideRssBytes: Math.round((b.ingestSideRssBytes - a.ingestSideRssBytes) / n),
    heapUsedBytes: Math.round((b.heapUsedBytes - a.heapUsedBytes) / n),
    rssBytesByProcess: b.rssByProcess.map((x, i) => Math.round((x - (a.rssByProcess[i] ?? 0)) / n)),
  };
}

const d = await startCabtrack(workers, {
  NODE_OPTIONS: INSPECT_OPTIONS,
  CABTRACK_HTTP_WORKERS: String(httpWorkers),
});
const startTime = fleetStartTime();
try {
  await sleep(2000);
  const idle = await snapshot(d);
  say(`idle: ${JSON.stringify(idle)}`);
  const results: Array<Record<string, unknown>> = [];
  let registered = 0;
  let previous = idle;
  const skipped: Array<{ drivers: number; why: string }> = [];
  for (const [step, n] of SIZES.entries()) {
    const t0 = Date.now();
    if (n > 100_000 && remainingMs() - RESERVE_MS < MIN_STEP_MS) {
      say(`no time left in the run's budget for ${n} drivers: skipped`);
      skipped.push({
        drivers: n,
        why: `the run's time budget was spent (${Math.round(remainingMs() / 1000)} s left)`,
      });
      continue;
    }
    const deadline =
      n > 100_000 ? t0 + Math.min(BUDGET_1M_MS, remainingMs() - RESERVE_MS) : Number.POSITIVE_INFINITY;
    const reg = await registerFleet(d, SEED, registered, n, deadline);
    registered += reg.registered;
    say(`${registered} sessions (${reg.registered} in ${reg.seconds.toFixed(1)} s)`);
    // What the sessions alone cost, before any driver is live: the registry's share of a driver.
    const sessionsOnly = await snapshot(d);
    // A sender per size (its round-robin covers exactly the registered fleet). Fleets of the same seed
    // share their first drivers; a later one's clocks start 10,000 s later, so its fixes are newer.
    const s = await Sender.start({
      drivers: registered,
      seed: SEED,
      startTime: startTime + step * 10_000,
      sockets: 32,
    });
    /** Fixes of a round (one per driver) that fit before the deadline at `rate`; 0 if too few. */
    const fits = (rate: number): number => {
      const n = Math.min(registered, Math.floor((rate * (deadline - Date.now())) / 1000));
      return n < registered / 10 ? 0 : n;
    };
    try {
      let live = (await ingestCounts(d)).drivers;
      let rounds = 0;
      const curve: Array<Record<string, number>> = [];
      while (live < registered && rounds < 4 && fits(FIRST_FIX_RATE) > 0) {
        await s.run(d.udpPort, FIRST_FIX_RATE, fits(FIRST_FIX_RATE));
        rounds++;
        live = await waitDrivers(d, registered, 20_000);
      }
      say(`${live} drivers live after ${rounds} round(s) of first fixes`);
      let fill = await ringFill(d, registered, 100);
      while (fill.min < POINTS && rounds < POINTS + 6 && fits(FILL_RATE) > 0) {
        await s.run(d.udpPort, FILL_RATE, fits(FILL_RATE));
        rounds++;
        fill = await ringFill(d, registered, 100);
        if (n <= 100_000 && [1, 2, 5, 10, POINTS].includes(Math.round(fill.mean))) {
          const snap = await snapshot(d);
          curve.push({
            meanPoints: fill.mean,
            rssBytesPerDriver: Math.round((snap.rssBytes - idle.rssBytes) / live),
            ingestSideRssBytesPerDriver: Math.round(
              (snap.ingestSideRssBytes - idle.ingestSideRssBytes) / live,
            ),
          });
        }
      }
      const loaded = await snapshot(d);
      const counts = await ingestCounts(d);
      const row = {
        drivers: counts.drivers,
        sessions: registered,
        registrationTimedOut: reg.timedOut,
        roundsSent: rounds,
        ringPoints: { sampled: 100, ...fill, of: POINTS },
        ringsFull: fill.min >= POINTS,
        seconds: Math.round((Date.now() - t0) / 1000),
        idle,
        sessionsOnly,
        loaded,
        perDriver: perDriver(loaded, idle, counts.drivers),
        // The step's new sessions, registered but not yet live, per session and per process; then what
        // a driver adds once live (its slot in a shard, directory entry, replica entries).
        perSession: split(sessionsOnly, previous, reg.registered),
        perLiveDriverBeyondSession: split(loaded, sessionsOnly, reg.registered),
        rssAsRingsFill: curve,
      };
      previous = loaded;
      say(JSON.stringify(row));
      results.push(row);
    } finally {
      s.stop();
    }
  }
  writeResult('memory', 'RSS and heap per live driver, whole cluster, 20-point rings, over the idle daemon', {
    workers,
    httpWorkers,
    processes: 1 + workers + httpWorkers,
    fillRate: FILL_RATE,
    results,
    skipped,
  });
} finally {
  await d.stop();
}
