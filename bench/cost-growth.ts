/**
 * Question: how do the cost of a datagram and the latency of a nearest-10 query grow from 10k to 1M
 * live drivers? The targets (issue 14): a datagram at 1M costs at most 1.3 times what it costs at 10k,
 * and so does a nearest-10 query (at most 3 times).
 *
 * - In-process, through the worker's own per-datagram path minus the socket: an Ingest
 *   (src/ingest/ingest.ts) over one Shard holding the fleet, its datagrams applied in batches of up to
 *   32 as the worker applies a burst of reads (decode, checkFix, session lookup, Shard.ingest with
 *   ring, trip, expiry order and the replica change log's dirty flag). The seeded city fleet
 *   (support/fleet.ts) sends rounds of one fix per driver, each round encoded ahead. Every round is
 *   decoded alone first (the baseline, same datagrams, same run).
 * - Sizes are compared on the same fixes: the median of rounds 14 to 16, in which the fixes arrive in
 *   the drivers' order, which is also the order of their slots (they were added in that order, as
 *   drivers coming back at once are added in the order of their first fixes). Rounds 17 to 19 send the
 *   fixes in a shuffled order (phones send at their own phase of the second, and churn scatters slots):
 *   what a worker sees after a while; reported beside it.
 * - A 10k round lasts milliseconds: smaller fleets are measured as several independent fleets (other
 *   seeds, up to 10) and the median taken; the curve and the queries are the first fleet's.
 * - Queries: Replica.nearest (what an HTTP worker answers GET /v1/drivers/nearest with, k = 10) at 1 km
 *   and 3 km from seeded rider positions (riders are where drivers are), on a replica loaded from the
 *   shard's snapshot after round 16; median of three passes after a warm-up pass, us per query.
 * - Daemon-level check: the CPU a worker spends per datagram (its process CPU time over a trial at a
 *   fixed 100k datagrams/s, receive syscalls included) at each fleet size, from bench/ingest.ts's run
 *   (that benchmark already holds a one-worker daemon at each size; registering 1M sessions again here
 *   would cost another minute and a half). Only taken when ingest.json comes from the same run.
 *
 *   node bench/cost-growth.ts [--quick] [--sizes 10000,1000000]   Result: bench/results/cost-growth.json
 */
import { existsSync, readFileSync } from 'node:fs';
import { decodeTrack } from '../src/codec/decode.ts';
import { Fix } from '../src/codec/fix.ts';
import { BATCH, Ingest } from '../src/ingest/ingest.ts';
import { BatchWriter, KIND_SNAPSHOT, LEFT_RELEASED } from '../src/replica/batch.ts';
import { Replica } from '../src/replica/replica.ts';
import { Shard } from '../src/store/shard.ts';
import { Prng } from '../test/support/prng.ts';
import { cabNumber, driverId, Fleet } from './support/fleet.ts';
import { waitQuiet } from './support/proc.ts';
import { QUICK, RUN_ID, say, writeResult } from './support/report.ts';

const SEED = 0xc057;
const sizesArg = process.argv.indexOf('--sizes');
const SIZES =
  sizesArg > 0
    ? process.argv[sizesArg + 1]!.split(',').map(Number)
    : QUICK
      ? [10_000, 100_000]
      : [10_000, 100_000, 1_000_000];
/** Rounds in the drivers' order; the comparison is on the last three. */
const ROUNDS = 16;
/** Then rounds in a shuffled order. */
const SHUFFLED_ROUNDS = 3;
/** Query points per pass: fewer at 1M, where a query costs ~0.2 ms. */
const queriesFor = (n: number): number => (n > 100_000 ? 2_000 : 5_000);
const RADII = [1000, 3000];
const IDLE_S = 900;
const T0 = 1_763_000_000;

const noSink = { appeared() {}, moved() {}, left() {} };

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

interface Row {
  drivers: number;
  /** Independent fleets measured; the figures are the median over them. */
  replicas: number;
  /** Median ns per datagram over rounds 14-16: the figure compared across sizes. */
  decodeNsPerDatagram: number;
  pipelineNsPerDatagram: number;
  /** Median ns per datagram over the rounds in a shuffled order (17-19). */
  shuffledNsPerDatagram: number;
  /** Other jobs' load when the compared rounds started (median), cores. */
  otherCores: number;
  /** Per round: ns per datagram. */
  curve: Array<{ round: number; ns: number; shuffled: boolean }>;
  queries: Array<{ radiusM: number; usPerQuery: number; meanFound: number }>;
}

/** Independent fleets (seeds) per size: a 10k round lasts milliseconds, so one fleet is a noisy sample. */
const replicasFor = (n: number): number => Math.min(10, Math.max(1, Math.round(300_000 / n)));

async function measure(n: number, replica: number): Promise<Row> {
  const fleet = new Fleet(n, SEED + replica, T0);
  const shard = new Shard({ trackPoints: 20, idleTimeoutS: IDLE_S });
  for (let i = 0; i < n; i++) shard.add(driverId(i), cabNumber(i), fleet.hi[i]!, i + 1, T0 * 1000);
  const clock = { nowMs: T0 * 1000, nowS: T0 };
  // Every session is the shard's: the registry and the directory are never asked.
  const ingest = new Ingest({
    shard,
    registry: { lookup: () => undefined },
    ports: { claim() {}, dropped() {} },
    clock,
    idleTimeoutS: IDLE_S,
    // The worker flushes after each burst of reads; here a batch is flushed when full (32).
    defer: () => {},
  });
  const slab = new Uint8Array(n * 64);
  const starts = new Uint32Array(n + 1);
  // The shuffled order: a fixed permutation of the drivers.
  const order = new Int32Array(n);
  const shuffle = new Prng(SEED ^ replica);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = shuffle.int(0, i);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  // The round's datagrams in the order they are sent: the k-th sent is at starts[k] (read in that
  // order, as a worker reads what the kernel just wrote).
  const encodeRound = (shuffled: boolean): void => {
    let at = 0;
    for (let k = 0; k < n; k++) {
      const i = shuffled ? order[k]! : k;
      fleet.step(i);
      starts[k] = at;
      at += fleet.encode(i, slab, at);
    }
    starts[n] = at;
  };
  // The worker's per-datagram path (src/ingest/ingest.ts), minus the socket: a view of each datagram
  // (dgram gives a Buffer of its own to each), applied in batches.
  const pipelineRound = (nowS: number): number => {
    clock.nowS = nowS;
    clock.nowMs = nowS * 1000;
    const t = process.hrtime.bigint();
    for (let k = 0; k < n; k++) ingest.datagram(slab.subarray(starts[k]!, starts[k + 1]!));
    ingest.flush();
    return Number(process.hrtime.bigint() - t) / n;
  };
  const fix = new Fix();
  let sink = 0;
  const decodeRound = (): number => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const b = slab.subarray(starts[i]!, starts[i + 1]!);
      sink += (decodeTrack(b, b.length, fix) ? 1 : 0) + fix.lat;
    }
    return Number(process.hrtime.bigint() - t) / n;
  };

  const rounds = ROUNDS + SHUFFLED_ROUNDS;
  const curve: Row['curve'] = [];
  const decode: number[] = [];
  const others: number[] = [];
  for (let r = 1; r <= rounds; r++) {
    const shuffled = r > ROUNDS;
    encodeRound(shuffled);
    // The rounds compared start when other jobs on the machine are quiet (waiting up to 2 s), as the
    // daemon-level benchmarks' trials do: a round at 1M lasts a third of a second, a busy neighbour in
    // it measures the neighbour.
    if (r >= ROUNDS - 2) others.push(await waitQuiet([process.pid], 0.25, 2000));
    decode.push(decodeRound());
    const ns = pipelineRound(fleet.time[0]!);
    curve.push({ round: r, ns: Math.round(ns), shuffled });
    // A tick's change log, drained as the publisher does (not timed: it runs once a tick, not per fix).
    shard.drainChanges(noSink);
    if (process.env['BENCH_DEBUG']) say(`${n} round ${r}: ${JSON.stringify(curve.at(-1))}`);
  }
  const c = ingest.counters;
  if (c.accepted !== rounds * n) {
    throw new Error(
      `only ${c.accepted} of ${rounds * n} fixes accepted (${Array.from(c.rejected).join(',')})`,
    );
  }
  const at = (from: number, to: number): number => median(curve.slice(from - 1, to).map((x) => x.ns));
  const main = at(ROUNDS - 2, ROUNDS);
  const shuffled = at(ROUNDS + 1, rounds);
  const decodeNs = Math.round(median(decode.slice(ROUNDS - 3, ROUNDS)));
  const otherCores = median(others);
  if (replica > 0) {
    return {
      ...emptyRow,
      drivers: n,
      pipelineNsPerDatagram: main,
      shuffledNsPerDatagram: shuffled,
      decodeNsPerDatagram: decodeNs,
      otherCores,
      curve,
    };
  }
  // The read replica an HTTP worker would hold, from the shard's snapshot.
  const replicaOf = new Replica();
  const w = new BatchWriter();
  w.begin(KIND_SNAPSHOT, 1, 1, T0 * 1000);
  shard.snapshot({
    appeared: (k, id, cab) => w.appeared(k, id, cab),
    moved: (k, a, b, c, d, e, f, g) => w.moved(k, a, b, c, d, e, f, g),
    left: (k) => w.left(k, LEFT_RELEASED),
  });
  replicaOf.apply(w.finish(), T0 * 1000);
  const slots: number[] = [];
  const dists: number[] = [];
  const rnd = new Prng(SEED ^ n);
  const points = queriesFor(n);
  const qs = new Float64Array(points * 2);
  for (let q = 0; q < points; q++) {
    const [lat, lon] = fleet.city.point(rnd);
    qs[2 * q] = lat;
    qs[2 * q + 1] = lon;
  }
  const queries = RADII.map((radiusM) => {
    let found = 0;
    const pass = (): number => {
      const t = process.hrtime.bigint();
      found = 0;
      for (let q = 0; q < points; q++)
        found += replicaOf.nearest(qs[2 * q]!, qs[2 * q + 1]!, 10, radiusM, false, slots, dists);
      return Number(process.hrtime.bigint() - t) / 1000 / points;
    };
    pass();
    const us = median([pass(), pass(), pass()]);
    return { radiusM, usPerQuery: Number(us.toFixed(2)), meanFound: Number((found / points).toFixed(2)) };
  });
  if (sink === 0.5) say('');
  return {
    drivers: n,
    replicas: 1,
    decodeNsPerDatagram: decodeNs,
    pipelineNsPerDatagram: main,
    shuffledNsPerDatagram: shuffled,
    otherCores,
    curve,
    queries,
  };
}

const emptyRow: Row = {
  drivers: 0,
  replicas: 1,
  decodeNsPerDatagram: 0,
  pipelineNsPerDatagram: 0,
  shuffledNsPerDatagram: 0,
  otherCores: 0,
  curve: [],
  queries: [],
};

const rows: Row[] = [];
for (const n of SIZES) {
  const replicas: Row[] = [];
  for (let r = 0; r < replicasFor(n); r++) replicas.push(await measure(n, r));
  const row: Row = {
    ...replicas[0]!,
    replicas: replicas.length,
    pipelineNsPerDatagram: median(replicas.map((r) => r.pipelineNsPerDatagram)),
    shuffledNsPerDatagram: median(replicas.map((r) => r.shuffledNsPerDatagram)),
    decodeNsPerDatagram: median(replicas.map((r) => r.decodeNsPerDatagram)),
    otherCores: median(replicas.map((r) => r.otherCores)),
  };
  const { curve: _, ...brief } = row;
  say(JSON.stringify(brief));
  rows.push(row);
}

/** The daemon-level figures of bench/ingest.ts, when they come from this run. */
function daemonLevel(): Record<string, unknown> {
  const file = new URL('./results/ingest.json', import.meta.url);
  if (!existsSync(file)) return { available: false, why: 'no bench/results/ingest.json' };
  const r = JSON.parse(readFileSync(file, 'utf8')) as {
    run: string;
    fixedRate: number;
    oneWorker: Array<{ drivers: number; fixedRate: { cpuUsPerDatagram: number; zeroLoss: boolean } }>;
    bare: { fixedRate: { cpuUsPerDatagram: number } };
  };
  if (r.run !== RUN_ID) return { available: false, why: 'bench/results/ingest.json is from another run' };
  const points = r.oneWorker.map((w) => ({
    drivers: w.drivers,
    cpuUsPerDatagram: w.fixedRate.cpuUsPerDatagram,
    zeroLoss: w.fixedRate.zeroLoss,
  }));
  // The 1M row runs on its own (ingest.ts --1m: registering 1M sessions does not fit npm run bench's
  // time budget); taken from whichever run made it, with that run's bare receiver for scale.
  const m1File = new URL('./results/ingest-1m.json', import.meta.url);
  let oneMillion: Record<string, unknown> | null = null;
  if (existsSync(m1File)) {
    const m = JSON.parse(readFileSync(m1File, 'utf8')) as typeof r & { machine: { date: string } };
    const w = m.oneWorker[0];
    if (w !== undefined) {
      oneMillion = {
        run: m.run,
        date: m.machine.date,
        drivers: w.drivers,
        cpuUsPerDatagram: w.fixedRate.cpuUsPerDatagram,
        zeroLoss: w.fixedRate.zeroLoss,
        bareCpuUsPerDatagram: m.bare.fixedRate.cpuUsPerDatagram,
      };
    }
  }
  const first = points[0]!;
  const last = points.at(-1)!;
  return {
    available: true,
    oneMillion,
    rate: r.fixedRate,
    bareCpuUsPerDatagram: r.bare.fixedRate.cpuUsPerDatagram,
    points,
    ratioLargestToSmallest: Number((last.cpuUsPerDatagram / first.cpuUsPerDatagram).toFixed(2)),
    largest: last.drivers,
  };
}

const first = rows[0]!;
const last = rows.at(-1)!;
writeResult('cost-growth', 'CPU per datagram and nearest-10 latency from 10k to 1M drivers', {
  seed: SEED,
  rounds: ROUNDS,
  comparedRounds: [ROUNDS - 2, ROUNDS],
  shuffledRounds: [ROUNDS + 1, ROUNDS + SHUFFLED_ROUNDS],
  batch: BATCH,
  inProcess: rows,
  ratios: {
    from: first.drivers,
    to: last.drivers,
    pipeline: Number((last.pipelineNsPerDatagram / first.pipelineNsPerDatagram).toFixed(2)),
    shuffled: Number((last.shuffledNsPerDatagram / first.shuffledNsPerDatagram).toFixed(2)),
    decode: Number((last.decodeNsPerDatagram / first.decodeNsPerDatagram).toFixed(2)),
    queries: last.queries.map((q, i) => ({
      radiusM: q.radiusM,
      ratio: Number((q.usPerQuery / first.queries[i]!.usPerQuery).toFixed(2)),
    })),
  },
  daemonLevel: daemonLevel(),
});
