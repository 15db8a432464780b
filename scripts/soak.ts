/**
 * Soak test, outside CI (`npm run soak -- --minutes 30`): the real daemon (2 workers) for a long while
 * at half its measured capacity, with churn: drivers logging in (sessions registered through the API),
 * moving between workers (their source port changes, as a NAT mapping does), logging out (sessions
 * revoked at once) or going quiet and expiring (a short CABTRACK_IDLE_TIMEOUT_S), and trips starting and
 * ending all the time. Every 10 s it samples the daemon's memory (RSS from /proc and from /metrics, V8
 * heap) and its handle and timer counts; at the end it fits a line through each (bytes per minute) and
 * reconciles the counters (received = accepted + rejected, and sent = received + kernel drops).
 * Results go to bench/results/soak.json.
 *
 * Options: --minutes N (30), --drivers N (20000), --rate N (datagrams/s; default half the capacity
 * measured at start), --churn F (fraction of the fleet replaced per minute, 0.2), --moves F (fraction
 * moving to another source port per minute, 0.3), --idle S (idle timeout, 20), --snapshots N (heap
 * snapshots of every process, 0).
 *
 * heapUsed is a GC sawtooth, so its slope over half an hour says little: the heap to watch is the live
 * heap, `cabtrack_nodejs_heap_live_bytes` (in use just after the last full GC). To find what grows, take
 * heap snapshots: the first once the fleet has turned over and the finished-trips LRU is full (a third of
 * the way in), the last after the final sample; their diff by constructor names it. A snapshot blocks its
 * process for seconds (the kernel's drops are counted) and leaves its RSS hundreds of MB higher, so the
 * RSS slope of a run with snapshots is not a measurement.
 *
 * Traffic: each live driver sends one fresh fix a second (its phase spread over the second); the rest
 * of the rate is re-sends of drivers' latest fixes (stale duplicates, what apps that retry produce).
 */
import type dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, setGlobalDispatcher } from 'undici';
import { Fix } from '../src/codec/fix.ts';
import { SLOT_BYTES, writeTrack } from '../src/sim/wire.ts';
import { type Daemon, startDaemon } from '../test/support/daemon.ts';
import {
  connectedSocket,
  daemonPids,
  rssBytes,
  type Samples,
  scrape,
  sleep,
  udpCounters,
} from '../test/support/hostile-net.ts';
import { startSender } from '../test/support/hostile-sender.ts';
import { Prng } from '../test/support/prng.ts';
import { growth, type HeapSummary, snapshotOf, summarise } from './heap-summary.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    drivers: { type: 'string', default: '20000' },
    rate: { type: 'string', default: '0' },
    churn: { type: 'string', default: '0.2' },
    moves: { type: 'string', default: '0.3' },
    idle: { type: 'string', default: '20' },
    snapshots: { type: 'string', default: '0' },
  },
});
const MINUTES = Number(args.minutes);
const DRIVERS = Number(args.drivers);
const CHURN_PER_MIN = Number(args.churn);
const MOVES_PER_MIN = Number(args.moves);
const IDLE_S = Number(args.idle);
const SNAPSHOTS = Number(args.snapshots);
for (const [k, v] of Object.entries({ MINUTES, DRIVERS, CHURN_PER_MIN, MOVES_PER_MIN, IDLE_S, SNAPSHOTS })) {
  if (!Number.isFinite(v) || v < 0) throw new Error(`soak: bad ${k}`);
}
const SAMPLE_MS = 10_000;
// The API calls (churn, scrapes) share 16 keep-alive connections, as a dispatch system's client would:
// otherwise every burst of calls opens more, and the daemon's handle count follows the soak's own pool.
setGlobalDispatcher(new Agent({ connections: 16 }));
const SOCKETS = 64;
/** Finished trips kept per worker: small, so that the LRU fills early and then stays flat. */
const FINISHED_TRIPS = 10_000;
const CENTRE = { lat: 51.5074, lon: -0.1278 };
const OUT = fileURLToPath(new URL('../bench/results/soak.json', import.meta.url));

// Fixes are encoded with the simulator's encoder (src/sim/wire.ts: protobufjs is too slow for 100k fixes a
// second), which test/sim-model.test.ts checks byte for byte against protobufjs.
const scratch = new Uint8Array(SLOT_BYTES);
const scratchFix = new Fix();

// ---------------------------------------------------------------------------------------------------------
// The fleet, as flat arrays: a slot per driver, taken over by a new driver when its driver leaves.

const MAX = DRIVERS;
const live = new Uint8Array(MAX);
const sessionLo = new Uint32Array(MAX);
const latE6 = new Int32Array(MAX);
const lonE6 = new Int32Array(MAX);
const lastTime = new Uint32Array(MAX);
const order = new Float64Array(MAX);
const orderLeft = new Int32Array(MAX);
const socketOf = new Uint16Array(MAX);
const lastBuf: Array<Buffer | undefined> = new Array(MAX);
/** Drivers by the 10 ms slot of the second in which they send. */
const phases: number[][] = Array.from({ length: 100 }, () => []);
const phaseOf = new Uint8Array(MAX);
const SESSION_HI = 0x50a1_7e57;
/** Sessions of the drivers that only take part in the capacity measurement. */
const PACK_HI = 0x50a1_cafe;
let nextSession = 1;
let nextOrder = 1;
const rnd = new Prng(0x50a1);

const hex = (hi: number, lo: number): string =>
  hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');

const churn = {
  appeared: 0,
  loggedOut: 0,
  wentQuiet: 0,
  sessionsCleaned: 0,
  moved: 0,
  socketsRotated: 0,
  apiErrors: 0,
};

async function register(d: Daemon, slot: number): Promise<void> {
  const lo = nextSession++;
  sessionLo[slot] = lo;
  const r = await d.request('PUT', `/v1/sessions/${hex(SESSION_HI, lo)}`, {
    body: { driverId: `soak-${lo}`, cab: `SOAK-${lo}` },
  });
  if (r.status !== 201) {
    churn.apiErrors++;
    return;
  }
  latE6[slot] = Math.round((CENTRE.lat + (rnd.float() - 0.5) * 0.2) * 1e6);
  lonE6[slot] = Math.round((CENTRE.lon + (rnd.float() - 0.5) * 0.3) * 1e6);
  lastTime[slot] = 0;
  order[slot] = 0;
  orderLeft[slot] = rnd.int(0, 60);
  socketOf[slot] = rnd.int(0, SOCKETS - 1);
  lastBuf[slot] = undefined;
  phaseOf[slot] = rnd.int(0, 99);
  phases[phaseOf[slot]!]!.push(slot);
  live[slot] = 1;
}

function unphase(slot: number): void {
  const list = phases[phaseOf[slot]!]!;
  const i = list.indexOf(slot);
  if (i >= 0) {
    list[i] = list[list.length - 1]!;
    list.pop();
  }
}

/** The driver's next fresh fix: ~10 m on, its order going on or changing. */
function freshFix(slot: number, nowS: number): Buffer {
  latE6[slot] = latE6[slot]! + rnd.int(-90, 90);
  lonE6[slot] = lonE6[slot]! + rnd.int(-140, 140);
  const t = Math.max(nowS, lastTime[slot]! + 1);
  lastTime[slot] = t;
  if (--orderLeft[slot]! <= 0) {
    if (order[slot] === 0) {
      order[slot] = 9_000_000_000 + nextOrder++;
      orderLeft[slot] = rnd.int(60, 240);
    } else {
      order[slot] = 0;
      orderLeft[slot] = rnd.int(10, 60);
    }
  }
  const f = scratchFix;
  f.reset();
  f.sessionHi = SESSION_HI;
  f.sessionLo = sessionLo[slot]!;
  f.lat = latE6[slot]!;
  f.lon = lonE6[slot]!;
  f.time = t;
  const o = order[slot]!;
  if (o !== 0) {
    f.orderHi = Math.floor(o / 2 ** 32);
    f.orderLo = o >>> 0;
    f.cost = 250 + (t % 1000);
  }
  f.speed = 36;
  const b = Buffer.from(scratch.subarray(0, writeTrack(scratch, 0, f)));
  lastBuf[slot] = b;
  return b;
}

// ---------------------------------------------------------------------------------------------------------

interface Sample {
  atS: number;
  rssProcBytes: number;
  rssPrimaryBytes: number;
  rssWorkersBytes: number;
  rssMetricBytes: number;
  heapUsedBytes: number;
  heapLiveBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  handles: number;
  /** Handles by type (summed over the processes): Socket, Pipe, Server, UDP, ChildProcess... */
  handlesByType: Record<string, number>;
  /** TCP connections open to the HTTP port (keep-alive ones included): what Socket handles follow. */
  httpConnections: number;
  timers: number;
  resources: number;
  drivers: number;
  /** Entries in the primary's directory of owners: should follow `drivers`. */
  directory: number;
  sessions: number;
  received: number;
  accepted: number;
  sentSoFar: number;
  liveDrivers: number;
}

/** Established TCP connections to a local port, from /proc/net/tcp (state 01 = ESTABLISHED). */
function tcpConnectionsTo(port: number): number {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(hexPort) && f[3] === '01') n++;
  }
  return n;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * Live heap per process at each snapshot round, the slope between the first and last rounds, and what
 * grew most between them, by constructor. A process seen in only one round (a restarted worker) is skipped.
 */
async function summariseRounds(
  rounds: Array<{ atS: number; files: Promise<Array<{ role: string; pid: number; file: string }>> }>,
): Promise<unknown> {
  const done = await Promise.all(rounds.map(async (r) => ({ atS: r.atS, files: await r.files })));
  const byPid = new Map<number, { role: string; points: Array<{ atS: number; summary: HeapSummary }> }>();
  for (const r of done) {
    for (const f of r.files) {
      const e = byPid.get(f.pid) ?? { role: f.role, points: [] };
      e.points.push({ atS: r.atS, summary: summarise(f.file) });
      byPid.set(f.pid, e);
      rmSync(f.file, { force: true });
    }
  }
  return [...byPid.values()].map(({ role, points }) => {
    const first = points[0]!;
    const last = points[points.length - 1]!;
    const minutes = (last.atS - first.atS) / 60;
    return {
      role,
      liveHeapBytes: points.map((p) => ({ atS: p.atS, bytes: p.summary.totalBytes, nodes: p.summary.nodes })),
      liveHeapSlopeBytesPerMinute:
        minutes > 0 ? Math.round((last.summary.totalBytes - first.summary.totalBytes) / minutes) : null,
      grewMost: points.length > 1 ? growth(first.summary, last.summary, 12) : [],
    };
  });
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const snapshotDir = mkdtempSync(join(tmpdir(), 'cabtrack-soak-'));
  const daemon = await startDaemon({
    NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}`,
    CABTRACK_WORKERS: '2',
    CABTRACK_IDLE_TIMEOUT_S: String(IDLE_S),
    CABTRACK_FINISHED_TRIPS: String(FINISHED_TRIPS),
  });
  const sockets: dgram.Socket[] = [];
  try {
    console.log(
      `soak: daemon up (udp ${daemon.udpPort}, http ${daemon.httpPort}); registering ${DRIVERS} drivers`,
    );
    for (let i = 0; i < DRIVERS; i += 32) {
      await Promise.all(Array.from({ length: Math.min(32, DRIVERS - i) }, (_, j) => register(daemon, i + j)));
    }
    for (let i = 0; i < SOCKETS; i++) sockets.push(await connectedSocket(daemon.udpPort));

    // Capacity, unless given: two sender processes flat out for 3 s with re-sent packs of the fleet's
    // fixes, and what the workers got through over the middle 2 s.
    let rate = Number(args.rate);
    let capacity: number | null = null;
    if (rate === 0) {
      const nowS = Math.floor(Date.now() / 1000);
      // Drivers of their own, so the soak's fleet starts clean; logged out again afterwards.
      const packSessions = Array.from({ length: 2000 }, (_, i) => hex(PACK_HI, i + 1));
      const each = async (method: string, body?: unknown): Promise<void> => {
        for (let i = 0; i < packSessions.length; i += 32) {
          await Promise.all(
            packSessions
              .slice(i, i + 32)
              .map((h) =>
                daemon.request(
                  method,
                  `/v1/sessions/${h}`,
                  body === undefined ? {} : { body: { driverId: `cap-${h}`, cab: `CAP-${h}` } },
                ),
              ),
          );
        }
      };
      await each('PUT', true);
      const senders = [0, 1].map((k) =>
        startSender({
          port: daemon.udpPort,
          rate: 0,
          durationMs: 3000,
          sockets: 8,
          sessions: packSessions.filter((_, i) => i % 2 === k),
          pack: 10,
          // Inside the idle timeout, so the fixes reach the shard (and are stale after the first pass).
          firstTime: nowS - 15,
          centre: CENTRE,
        }),
      );
      await sleep(700);
      const a = await scrape(daemon);
      const aAt = performance.now();
      await sleep(2000);
      const b = await scrape(daemon);
      capacity = Math.round(((b.received - a.received) / (performance.now() - aAt)) * 1000);
      await Promise.all(senders.map((s) => s.done));
      await each('DELETE');
      rate = Math.round(capacity / 2);
      console.log(`soak: capacity ${capacity}/s; running at ${rate}/s for ${MINUTES} min`);
      await sleep(1000);
    }

    const snmp0 = udpCounters();
    const s0 = await scrape(daemon);
    const samples: Sample[] = [];
    const t0 = performance.now();
    const endAt = t0 + MINUTES * 60_000;
    let sent = 0;
    let fresh = 0;
    let resends = 0;
    let lastSlot = Math.floor(Date.now() / 10);
    let nextSample = t0;
    let nextChurn = t0 + 1000;
    let nextRotation = t0 + 30_000;
    const pendingCleanup: Array<{ at: number; lo: number }> = [];
    /** Dispatch logs a session out (DELETE /v1/sessions); anything but a 204 counts as an API error. */
    const logOut = (lo: number): Promise<void> =>
      daemon.request('DELETE', `/v1/sessions/${hex(SESSION_HI, lo)}`).then(
        (r) => {
          if (r.status !== 204) churn.apiErrors++;
        },
        () => {
          churn.apiErrors++;
        },
      );
    // Snapshot rounds: from a third of the way in (the fleet turned over, the LRU full) to the end, the last
    // one after the final sample, so that it cannot disturb the samples. The files are only read after the
    // run: parsing them would stall the sender.
    const runMs = MINUTES * 60_000;
    const snapshotTimes = Array.from({ length: SNAPSHOTS }, (_, i) =>
      SNAPSHOTS === 1 ? endAt : t0 + runMs / 3 + ((runMs * 2) / 3) * (i / (SNAPSHOTS - 1)),
    );
    const rounds: Array<{ atS: number; files: Promise<Array<{ role: string; pid: number; file: string }>> }> =
      [];
    const api: Promise<unknown>[] = [];

    const snapshotRound = (now: number): (typeof rounds)[number] => {
      const { primary, workers } = daemonPids(daemon);
      const procs = [
        { role: 'primary', pid: primary },
        ...workers.map((pid, i) => ({ role: `worker ${i + 1}`, pid })),
      ];
      console.log(`soak: heap snapshots of ${procs.map((p) => p.pid).join(', ')}`);
      return {
        atS: Math.round((now - t0) / 1000),
        files: Promise.all(procs.map(async (p) => ({ ...p, file: await snapshotOf(p.pid, snapshotDir) }))),
      };
    };

    const sample = async (): Promise<void> => {
      const s = await scrape(daemon);
      const { primary, workers } = daemonPids(daemon);
      const x: Sample = {
        atS: Math.round((performance.now() - t0) / 100) / 10,
        rssProcBytes: [primary, ...workers].map(rssBytes).reduce((a, b) => a + b, 0),
        rssPrimaryBytes: rssBytes(primary),
        rssWorkersBytes: workers.map(rssBytes).reduce((a, b) => a + b, 0),
        rssMetricBytes: s.get('cabtrack_process_resident_memory_bytes'),
        heapUsedBytes: s.get('cabtrack_nodejs_heap_size_used_bytes'),
        heapLiveBytes: s.get('cabtrack_nodejs_heap_live_bytes'),
        heapTotalBytes: s.get('cabtrack_nodejs_heap_size_total_bytes'),
        externalBytes: s.get('cabtrack_nodejs_external_memory_bytes'),
        handles: s.sum('cabtrack_nodejs_active_handles'),
        handlesByType: s.byLabel('cabtrack_nodejs_active_handles', 'type'),
        httpConnections: tcpConnectionsTo(daemon.httpPort),
        timers: s.get('cabtrack_nodejs_active_resources', { type: 'Timeout' }),
        resources: s.sum('cabtrack_nodejs_active_resources'),
        drivers: s.get('cabtrack_drivers'),
        directory: s.get('cabtrack_directory_drivers'),
        sessions: s.get('cabtrack_sessions'),
        received: s.received,
        accepted: s.accepted,
        sentSoFar: sent,
        liveDrivers: live.reduce((a, b) => a + b, 0),
      };
      samples.push(x);
      const mb = (b: number): string => `${(b / 1048576).toFixed(1)} MB`;
      console.log(
        `soak ${x.atS.toFixed(0).padStart(5)} s: rss ${mb(x.rssProcBytes)} heap ${mb(x.heapUsedBytes)} live ${mb(x.heapLiveBytes)} handles ${x.handles} ` +
          `(${Object.entries(x.handlesByType)
            .map(([k, v]) => `${k} ${v}`)
            .join(
              ', ',
            )}; http conns ${x.httpConnections}) timers ${x.timers} drivers ${x.drivers}/${x.liveDrivers} directory ${x.directory} sessions ${x.sessions} sent ${sent} received ${x.received - s0.received}`,
      );
    };

    while (performance.now() < endAt) {
      const now = performance.now();
      const nowMs = Date.now();
      const nowS = Math.floor(nowMs / 1000);
      // Fresh fixes: every driver whose 10 ms slot of the second has come round.
      const slotNow = Math.floor(nowMs / 10);
      for (let s = lastSlot + 1; s <= slotNow && s <= lastSlot + 100; s++) {
        for (const slot of phases[s % 100]!) {
          sockets[socketOf[slot]!]!.send(freshFix(slot, nowS));
          fresh++;
          sent++;
        }
      }
      lastSlot = slotNow;
      // Re-sends fill the rest of the rate.
      const due = Math.min(((now - t0) / 1000) * rate - sent, rate / 20);
      for (let i = 0, n = 0; n < due && i < 3 * due; i++) {
        const slot = rnd.int(0, MAX - 1);
        const b = lastBuf[slot];
        if (live[slot] !== 1 || b === undefined) continue;
        sockets[socketOf[slot]!]!.send(b);
        n++;
        resends++;
        sent++;
      }
      if (now >= nextChurn) {
        nextChurn += 1000;
        const perSecond = (CHURN_PER_MIN * DRIVERS) / 60;
        const n = Math.floor(perSecond) + (rnd.chance(perSecond % 1) ? 1 : 0);
        for (let i = 0; i < n; i++) {
          // One leaves: half log out (revoked at once), half go quiet (expire, then dispatch cleans up).
          let slot = rnd.int(0, MAX - 1);
          for (let tries = 0; live[slot] !== 1 && tries < 20; tries++) slot = rnd.int(0, MAX - 1);
          if (live[slot] !== 1) continue;
          live[slot] = 0;
          unphase(slot);
          const lo = sessionLo[slot]!;
          if (rnd.chance(0.5)) {
            churn.loggedOut++;
            api.push(logOut(lo));
          } else {
            churn.wentQuiet++;
            pendingCleanup.push({ at: now + (IDLE_S + 25) * 1000, lo });
          }
          // And another arrives in its place (a new session, a new driver id), so the fleet keeps its size.
          churn.appeared++;
          api.push(
            register(daemon, slot).catch(() => {
              churn.apiErrors++;
            }),
          );
        }
        while (pendingCleanup.length > 0 && pendingCleanup[0]!.at <= now) {
          const { lo } = pendingCleanup.shift()!;
          churn.sessionsCleaned++;
          // The driver has expired; its session is still registered until this DELETE finds it.
          api.push(logOut(lo));
        }
        const moves = (MOVES_PER_MIN * DRIVERS) / 60;
        for (let i = 0; i < moves; i++) {
          const slot = rnd.int(0, MAX - 1);
          if (live[slot] !== 1) continue;
          socketOf[slot] = rnd.int(0, SOCKETS - 1);
          churn.moved++;
        }
        if (api.length > 200) await Promise.all(api.splice(0));
      }
      if (now >= nextRotation) {
        // A NAT gateway rebinds: one socket closes and a new one (a new source port) takes its drivers.
        nextRotation += 30_000;
        const k = rnd.int(0, SOCKETS - 1);
        const old = sockets[k]!;
        sockets[k] = await connectedSocket(daemon.udpPort);
        old.close();
        churn.socketsRotated++;
      }
      if (now >= nextSample) {
        nextSample += SAMPLE_MS;
        await sample();
      }
      if (snapshotTimes.length > 0 && now >= snapshotTimes[0]! && now < endAt) {
        snapshotTimes.shift();
        rounds.push(snapshotRound(now));
      }
      await sleep(5);
    }
    await Promise.all(api);
    await sample();
    if (snapshotTimes.length > 0) rounds.push(snapshotRound(performance.now()));

    // Drain and reconcile: the kernel queues empty, nothing waiting in the workers.
    let last: Samples = await scrape(daemon);
    for (let stable = 0; stable < 10; ) {
      await sleep(100);
      const s = await scrape(daemon);
      stable = s.received === last.received && s.received === s.accepted + s.rejected ? stable + 1 : 0;
      last = s;
    }
    const drops = udpCounters().RcvbufErrors - snmp0.RcvbufErrors;
    const received = last.received - s0.received;
    const xs = samples.map((x) => x.atS / 60);
    const half = Math.floor(samples.length / 2);
    const fit = (f: (x: Sample) => number): { all: number; secondHalf: number } => ({
      all: Math.round(slope(xs, samples.map(f))),
      secondHalf: Math.round(slope(xs.slice(half), samples.slice(half).map(f))),
    });
    const range = (f: (x: Sample) => number): { first: number; last: number; min: number; max: number } => {
      const v = samples.map(f);
      return { first: v[0]!, last: v[v.length - 1]!, min: Math.min(...v), max: Math.max(...v) };
    };
    // The envelope of each third of the run: RSS follows V8's committed heap, a sawtooth whose size V8
    // sets from the live data; a leak shows as maxima and minima that keep rising, where a least-squares
    // slope over a sawtooth mostly measures where its teeth fell.
    const lastAt = samples[samples.length - 1]?.atS ?? 0;
    const envelope = [0, 1, 2].map((k) => {
      const from = (lastAt * k) / 3;
      const to = (lastAt * (k + 1)) / 3;
      const w = samples.filter((x) => x.atS >= from && (k === 2 ? x.atS <= to : x.atS < to));
      const mm = (f: (x: Sample) => number): { min: number; max: number } => ({
        min: Math.min(...w.map(f)),
        max: Math.max(...w.map(f)),
      });
      return {
        fromMin: Math.round(from / 6) / 10,
        toMin: Math.round(to / 6) / 10,
        rssBytes: mm((x) => x.rssProcBytes),
        rssPrimaryBytes: mm((x) => x.rssPrimaryBytes),
        rssWorkersBytes: mm((x) => x.rssWorkersBytes),
        heapTotalBytes: mm((x) => x.heapTotalBytes),
        heapLiveBytes: mm((x) => x.heapLiveBytes),
      };
    });
    const durationS = (performance.now() - t0) / 1000;
    const heapSnapshots = await summariseRounds(rounds);
    rmSync(snapshotDir, { recursive: true, force: true });
    const result = {
      node: process.version,
      date: startedAt.toISOString(),
      question:
        'Does the daemon hold steady for a long run at half capacity with churn: flat memory, no handle or timer leaks, counters that reconcile?',
      config: {
        minutes: MINUTES,
        drivers: DRIVERS,
        workers: 2,
        idleTimeoutS: IDLE_S,
        finishedTripsPerWorker: FINISHED_TRIPS,
        churnPerMinute: CHURN_PER_MIN,
        movesPerMinute: MOVES_PER_MIN,
        sockets: SOCKETS,
      },
      capacityPerSecond: capacity,
      ratePerSecond: rate,
      achievedPerSecond: Math.round(sent / durationS),
      sent: { total: sent, fresh, resends },
      churn,
      slopesBytesPerMinute: {
        rssProc: fit((x) => x.rssProcBytes),
        rssPrimary: fit((x) => x.rssPrimaryBytes),
        rssWorkers: fit((x) => x.rssWorkersBytes),
        rssMetric: fit((x) => x.rssMetricBytes),
        heapLive: fit((x) => x.heapLiveBytes),
        heapUsed: fit((x) => x.heapUsedBytes),
        external: fit((x) => x.externalBytes),
      },
      envelopeByThird: envelope,
      slopesPerMinute: {
        handles: fit((x) => x.handles),
        timers: fit((x) => x.timers),
        resources: fit((x) => x.resources),
      },
      ranges: {
        rssProcBytes: range((x) => x.rssProcBytes),
        heapLiveBytes: range((x) => x.heapLiveBytes),
        heapUsedBytes: range((x) => x.heapUsedBytes),
        handles: range((x) => x.handles),
        timers: range((x) => x.timers),
        resources: range((x) => x.resources),
        drivers: range((x) => x.drivers),
        directory: range((x) => x.directory),
        sessions: range((x) => x.sessions),
      },
      counters: {
        received,
        accepted: last.accepted - s0.accepted,
        rejected: last.rejected - s0.rejected,
        rejectedByReason: Object.fromEntries(
          Object.entries(last.byLabel('cabtrack_datagrams_rejected_total', 'reason')).map(([k, v]) => [
            k,
            v - s0.rejectedFor(k),
          ]),
        ),
        reconciled: last.received === last.accepted + last.rejected,
        lostInKernel: sent - received,
        rcvbufErrorsHost: drops,
        lossExplainedByKernelDrops: sent - received <= drops,
      },
      heapSnapshots,
      daemon: {
        workerRestarts: last.get('cabtrack_worker_restarts_total'),
        driversExpired: last.get('cabtrack_drivers_expired_total'),
        handoffs: last.get('cabtrack_driver_handoffs_total'),
        tripsEnded: last.get('cabtrack_trips_ended_total'),
        queryWorkerTimeouts: last.get('cabtrack_query_worker_timeouts_total'),
      },
      samples,
    };
    mkdirSync(new URL('../bench/results/', import.meta.url), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
    const { samples: _, ...summary } = result;
    console.log(JSON.stringify(summary, null, 2));
    console.log(`soak: wrote ${OUT}`);
  } finally {
    for (const s of sockets) s.close();
    await daemon.stop();
  }
}

await main();
