/**
 * Question: what does a live stream of the cars in a rider's view cost, against the same riders
 * polling nearest once a second (what the stream replaces)? 100k drivers at one fix a second (100k
 * datagrams/s, about half the cluster's zero-loss rate here), and 10,000 riders with random ~1 km views
 * where the drivers are (the seeded city's hotspots), from a load-generator process:
 *
 * - streams: every rider holds GET /v1/stream/nearby?radius=1000 open (raw sockets, counted, not parsed),
 *   following its nearest 100 cars (the stream's default limit);
 * - polls: every rider asks GET /v1/drivers/nearest?radius=1000&k=100 once a second (k=100, the API's
 *   most, and the same 100 cars), the same points;
 * - baseline: the ingest alone, no riders;
 * - half: the streams again with half the riders, so that the streams' CPU splits into a part that
 *   grows with the viewers and a part that does not (each HTTP worker follows every car in view each
 *   tick, however many watch), and what one more viewer costs against one more poller.
 *
 * Per rider-second: the daemon's CPU (all its processes, /proc) over the measured window minus the
 * baseline's, divided by riders x seconds; and the bytes the riders received. Also the stream's latency
 * (cabtrack_stream_latency_seconds: a fix received by its ingest worker to the frame carrying it leaving
 * the HTTP worker) and what the ingest lost meanwhile.
 *
 *   node bench/stream.ts [--quick]      Result: bench/results/stream.json
 */
import { availableParallelism } from 'node:os';
import { Prng } from '../test/support/prng.ts';
import { DAEMON_RECV_BUFFER } from './support/bare-receiver.ts';
import {
  CLIENT,
  daemonPids,
  fleetStartTime,
  ingestCounts,
  registerFleet,
  sleep,
  startCabtrack,
  waitDrivers,
  workersByRole,
} from './support/cabtrack.ts';
import { City } from './support/fleet.ts';
import { buckets, quantile } from './support/histogram.ts';
import { cpuTimes, raiseRmemMax, restoreRmemMax, udpQueue } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';
import { Viewers, type ViewersResult } from './support/viewers.ts';

const SEED = 0x57e;
const DRIVERS = QUICK ? 20_000 : 100_000;
const RIDERS = QUICK ? 2000 : 10_000;
const SECONDS = QUICK ? 5 : 10;
const RADIUS = 1000;
const workers = availableParallelism();

const city = new City(SEED);
const rnd = new Prng(SEED ^ 0x7);
const points: number[] = [];
for (let i = 0; i < RIDERS; i++) points.push(...city.point(rnd));

// The daemon as the README says to deploy it: with net.core.rmem_max raised so that its 32 MiB receive
// buffer is granted (restored after), as the ingest bench measures the zero-loss rate 100k/s is about
// half of. An ingest worker waiting for a core behind an HTTP worker's tick (about 0.2 s of CPU) has only
// that buffer to hold what arrives meanwhile (on a quiet machine the kernel's 4 MiB cap lost nothing
// either: two runs each way on 2026-12-06).
const rmem = raiseRmemMax(DAEMON_RECV_BUFFER);
say(`net.core.rmem_max ${rmem.before} -> ${rmem.after} (${rmem.note})`);
const restoreRmem = (): void => {
  if (rmem.raised) restoreRmemMax(rmem.before);
};
const daemon = await startCabtrack(workers, { CABTRACK_STREAM_MAX_VIEWERS: String(RIDERS) }).catch(
  (err: unknown) => {
    restoreRmem();
    throw err;
  },
);
const sender = await Sender.start({ drivers: DRIVERS, seed: SEED, startTime: fleetStartTime(), sockets: 32 });
const viewers = new Viewers();
/** The daemon's CPU so far, milliseconds: in all, the kernel's share, and the HTTP workers' share. */
interface Cpu {
  ms: number;
  systemMs: number;
  httpMs: number;
}
const daemonCpu = (): Cpu => {
  const p = daemonPids(daemon);
  const http = new Set(workersByRole(daemon).http);
  const c: Cpu = { ms: 0, systemMs: 0, httpMs: 0 };
  for (const pid of [p.primary, ...p.workers]) {
    const t = cpuTimes(pid);
    c.ms += t.userMs + t.systemMs;
    c.systemMs += t.systemMs;
    if (http.has(pid)) c.httpMs += t.userMs + t.systemMs;
  }
  return c;
};
const NO_CPU: Cpu = { ms: 0, systemMs: 0, httpMs: 0 };
const metrics = async (): Promise<string> => (await fetch(`${daemon.url}/metrics`)).text();

interface Phase {
  name: string;
  cpuMs: number;
  /** Of cpuMs, in the kernel (system time: sockets, mostly). */
  systemMs: number;
  /** Of cpuMs, in the HTTP workers. */
  httpCpuMs: number;
  seconds: number;
  ingest: { sent: number; accepted: number; lost: number; kernelDrops: number };
  riders: ViewersResult | null;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
}

/** One phase: the fleet sends at one fix a second while `riders` (or nothing) runs. */
async function phase(
  name: string,
  riders: ((mark: (e: 'start' | 'end') => void) => Promise<ViewersResult>) | null,
): Promise<Phase> {
  const before = await ingestCounts(daemon);
  const drops0 = udpQueue(daemon.udpPort).drops;
  const lat0 = buckets(await metrics(), 'cabtrack_stream_latency_seconds');
  const sending = sender.run(daemon.udpPort, DRIVERS, DRIVERS * (SECONDS + 12), SECONDS + 12);
  let cpu0 = NO_CPU;
  let cpu1 = NO_CPU;
  let t0 = 0;
  let t1 = 0;
  let lat1: Array<[number, number]> = [];
  let r: ViewersResult | null = null;
  if (riders === null) {
    await sleep(2000);
    cpu0 = daemonCpu();
    t0 = performance.now();
    await sleep(SECONDS * 1000);
    cpu1 = daemonCpu();
    t1 = performance.now();
  } else {
    r = await riders((edge) => {
      if (edge === 'start') {
        cpu0 = daemonCpu();
        t0 = performance.now();
      } else {
        cpu1 = daemonCpu();
        t1 = performance.now();
        void metrics().then((m) => {
          lat1 = buckets(m, 'cabtrack_stream_latency_seconds');
        });
      }
    });
  }
  const s = await sending;
  await sleep(500);
  const after = await ingestCounts(daemon);
  if (lat1.length === 0) lat1 = buckets(await metrics(), 'cabtrack_stream_latency_seconds');
  const ms = (x: number | null): number | null => (x === null ? null : Math.round(x * 1000));
  const p: Phase = {
    name,
    cpuMs: cpu1.ms - cpu0.ms,
    systemMs: cpu1.systemMs - cpu0.systemMs,
    httpCpuMs: cpu1.httpMs - cpu0.httpMs,
    seconds: (t1 - t0) / 1000,
    ingest: {
      sent: s.sent,
      accepted: after.accepted - before.accepted,
      lost: s.sent - (after.accepted - before.accepted),
      kernelDrops: udpQueue(daemon.udpPort).drops - drops0,
    },
    riders: r,
    latencyP50Ms: name === 'streams' ? ms(quantile(lat0, lat1, 0.5)) : null,
    latencyP99Ms: name === 'streams' ? ms(quantile(lat0, lat1, 0.99)) : null,
  };
  say(JSON.stringify(p));
  return p;
}

try {
  const reg = await registerFleet(daemon, SEED, 0, DRIVERS);
  say(`registered ${reg.registered} in ${reg.seconds.toFixed(1)} s`);
  await sender.run(daemon.udpPort, 50_000, DRIVERS);
  await waitDrivers(daemon, DRIVERS, 30_000);
  const base = await phase('baseline', null);
  const streaming = (riders: number) => (mark: (e: 'start' | 'end') => void) =>
    viewers.run(
      {
        t: 'stream',
        port: daemon.httpPort,
        token: CLIENT,
        points: points.slice(0, 2 * riders),
        radius: RADIUS,
        seconds: SECONDS,
        rampPerSecond: 2000,
      },
      mark,
    );
  const half = await phase('half', streaming(RIDERS / 2));
  const streams = await phase('streams', streaming(RIDERS));
  const polls = await phase('polls', (mark) =>
    viewers.run(
      { t: 'poll', port: daemon.httpPort, token: CLIENT, points, radius: RADIUS, k: 100, seconds: SECONDS },
      mark,
    ),
  );
  // A phase's CPU (of one kind) less the baseline's at the same rate: what the riders added, ms.
  const extra = (p: Phase, of: (x: Phase) => number): number => of(p) - (of(base) / base.seconds) * p.seconds;
  const perRiderSecond = (p: Phase): { cpuUs: number; systemUs: number; httpUs: number; bytes: number } => {
    // A streaming rider costs its share of the window; a polling rider one poll a second, so its cost is
    // the CPU per poll answered: when the daemon cannot answer every rider each second, dividing by
    // riders x seconds would credit polling with the polls it never answered.
    const riderSeconds = p.riders !== null && p.riders.requests > 0 ? p.riders.requests : RIDERS * p.seconds;
    const us = (ms: number): number => Math.round(((ms * 1000) / riderSeconds) * 10) / 10;
    return {
      cpuUs: us(extra(p, (x) => x.cpuMs)),
      systemUs: us(extra(p, (x) => x.systemMs)),
      httpUs: us(extra(p, (x) => x.httpCpuMs)),
      bytes: Math.round(
        (p.riders?.bytes ?? 0) /
          (p.riders !== null && p.riders.requests > 0
            ? p.riders.requests
            : (p.riders?.seconds ?? p.seconds) * RIDERS),
      ),
    };
  };
  const s = perRiderSecond(streams);
  const q = perRiderSecond(polls);
  // The streams' CPU above the baseline, a second, at half the riders and at all of them: a line through
  // the two, cost = fixed + perViewer x viewers. Its fixed part is mostly the cells' work (each HTTP
  // worker follows every car in view, whoever watches); it is not quite fixed (half the riders cover
  // fewer cells), so the line is a fit over this range, not a law.
  const extraMsPerS = (p: Phase): number => extra(p, (x) => x.cpuMs) / p.seconds;
  const perViewerUs = ((extraMsPerS(streams) - extraMsPerS(half)) * 1000) / (RIDERS - RIDERS / 2);
  const fixedMsPerS = extraMsPerS(streams) - (perViewerUs * RIDERS) / 1000;
  // A poll against what one more viewer adds: the ratio the stream's tends to as the viewers grow and the
  // fixed part is shared by more of them.
  const scaling = {
    halfRiders: RIDERS / 2,
    perViewerUs: Math.round(perViewerUs * 10) / 10,
    fixedMsPerS: Math.round(fixedMsPerS),
    marginalRatio: Math.round((q.cpuUs / Math.max(0.01, perViewerUs)) * 100) / 100,
  };
  writeResult(
    'stream',
    'live streams against polling nearest once a second: CPU and bytes per rider-second',
    {
      drivers: DRIVERS,
      riders: RIDERS,
      workers,
      radiusM: RADIUS,
      seconds: SECONDS,
      rmemMax: rmem,
      phases: [base, half, streams, polls],
      perRiderSecond: { stream: s, poll: q },
      scaling,
      cpuRatio: Math.round((q.cpuUs / Math.max(0.01, s.cpuUs)) * 100) / 100,
    },
  );
  say(`per rider-second: stream ${JSON.stringify(s)}, poll ${JSON.stringify(q)}`);
  say(`streams' CPU: ${JSON.stringify(scaling)}`);
} finally {
  viewers.stop();
  sender.stop();
  await daemon.stop();
  restoreRmem();
}
