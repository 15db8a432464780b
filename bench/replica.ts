/**
 * Question: what does a read replica cost an HTTP worker, and does its index beat rbush for a fleet
 * that moves all the time? At 10k, 100k and 1M drivers of the seeded city fleet (support/fleet.ts):
 *
 * - memory per driver of a Replica (src/replica/replica.ts) holding the fleet, after a full GC: RSS,
 *   V8 heap, and typed arrays (issue 10's target: at most 96 B per driver per HTTP process at 1M);
 * - apply cost: ns per MOVED record, applying ticks of real batches (a fifth of the fleet per tick, as at
 *   one fix a second and a 200 ms tick), decoding included, over 30 s of driving;
 * - nearest-10 within 1 km and 3 km from seeded rider positions: us per query, in-process;
 * - the same moves and queries on rbush as the shards used it (items padded by 100 m, a remove and an
 *   insert when a driver leaves its box, geographic kNN from src/geo/knn.ts): the baseline the
 *   quadtree (src/geo/point-index.ts) replaced, measured in the same run on the same fleet.
 *
 * Each size runs in its own child process, so one size's garbage and heap growth do not weigh on the
 * next one's memory figure, with the malloc setting the daemon gives its workers.
 *
 *   node bench/replica.ts [--quick]      Result: bench/results/replica.json
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import RBush from 'rbush';
import { WORKER_ENV } from '../src/cluster/primary.ts';
import { METRES_PER_DEGREE_LAT, metresPerDegreeLon } from '../src/geo/distance.ts';
import { type GeoItem, nearest as rbushNearest } from '../src/geo/knn.ts';
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT } from '../src/replica/batch.ts';
import { Replica } from '../src/replica/replica.ts';
import { Prng } from '../test/support/prng.ts';
import { cabNumber, driverId, Fleet } from './support/fleet.ts';
import { QUICK, say, writeResult } from './support/report.ts';

const SEED = 0x4e9;
const SIZES = QUICK ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
/** 30 s of driving: 150 ticks of a fifth of the fleet. */
const TICKS = 150;
const QUERIES = 5000;
const RADII = [1000, 3000];
const PAD_M = 100;
const T0 = 1_763_000_000;
const SELF = fileURLToPath(import.meta.url);

interface SizeResult {
  drivers: number;
  memory: { rssBytesPerDriver: number; heapBytesPerDriver: number; typedArrayBytesPerDriver: number };
  applyNsPerMoved: number;
  rbushMoveNsPerMoved: number;
  rbushReindexShare: number;
  queries: Array<{ radiusM: number; quadtreeUs: number; rbushUs: number; meanFound: number }>;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

class Item implements GeoItem {
  lat: number;
  lon: number;
  minX = 0;
  minY = 0;
  maxX = 0;
  maxY = 0;
  readonly id: number;
  constructor(id: number, lat: number, lon: number) {
    this.id = id;
    this.lat = lat;
    this.lon = lon;
    this.pad();
  }
  pad(): void {
    const padLat = PAD_M / METRES_PER_DEGREE_LAT;
    const padLon = PAD_M / metresPerDegreeLon(this.lat);
    this.minX = this.lon - padLon;
    this.maxX = this.lon + padLon;
    this.minY = this.lat - padLat;
    this.maxY = this.lat + padLat;
  }
}

async function measure(n: number): Promise<SizeResult> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
  };
  const fleet = new Fleet(n, SEED, T0);
  const lat = (i: number): number => Math.round(fleet.lat[i]! * 1e6);
  const lon = (i: number): number => Math.round(fleet.lon[i]! * 1e6);

  // The fleet as one snapshot, built before the baseline so that only the replica is measured.
  const w = new BatchWriter();
  w.begin(KIND_SNAPSHOT, 1, 1, T0 * 1000);
  for (let i = 0; i < n; i++) {
    w.appeared(i, driverId(i), cabNumber(i));
    w.moved(i, lat(i), lon(i), fleet.time[i]!, 30, 90, i % 2 === 0, T0 * 1000);
  }
  const snapshot = Buffer.from(w.finish());
  await settle();
  const m0 = process.memoryUsage();
  const heap0 = getHeapStatistics().used_heap_size;
  const replica = new Replica();
  replica.apply(snapshot, T0 * 1000);
  await settle();
  const m1 = process.memoryUsage();
  const heap1 = getHeapStatistics().used_heap_size;
  if (replica.size !== n) throw new Error(`replica holds ${replica.size} of ${n}`);
  const memory = {
    rssBytesPerDriver: Math.round((m1.rss - m0.rss) / n),
    heapBytesPerDriver: Math.round((heap1 - heap0) / n),
    typedArrayBytesPerDriver: Math.round(replica.byteLength / n),
  };

  // rbush as the shards had it, on the same positions.
  const items: Item[] = [];
  for (let i = 0; i < n; i++) items.push(new Item(i, fleet.lat[i]!, fleet.lon[i]!));
  const tree = new RBush<Item>().load(items);

  // Ticks of moves, a fifth of the fleet each (one fix a second at a 200 ms tick), both structures
  // given the same moves; each tick's batch is built untimed, then applied (timed), then the same moves
  // made in rbush (timed). The first ticks are the fleet setting off; the figures are the median over
  // the last third, when drivers have been driving a while (about 6% of rbush moves then leave their
  // box, as in the shards).
  const applyNs: number[] = [];
  const moveNs: number[] = [];
  let reindexed = 0;
  let counted = 0;
  const pos = new Float64Array(2 * Math.ceil(n / 5));
  for (let t = 0; t < TICKS; t++) {
    w.begin(KIND_DELTA, 1, t + 2, (T0 + t) * 1000);
    let k = 0;
    for (let i = t % 5; i < n; i += 5) {
      fleet.step(i);
      w.moved(i, lat(i), lon(i), fleet.time[i]!, 30, 90, i % 2 === 0, (T0 + t) * 1000);
      pos[k++] = fleet.lat[i]!;
      pos[k++] = fleet.lon[i]!;
    }
    const batch = w.finish();
    const moves = k / 2;
    let t0 = process.hrtime.bigint();
    replica.apply(batch, T0 * 1000);
    applyNs.push(Number(process.hrtime.bigint() - t0) / moves);
    k = 0;
    let re = 0;
    t0 = process.hrtime.bigint();
    for (let i = t % 5; i < n; i += 5) {
      const it = items[i]!;
      it.lat = pos[k++]!;
      it.lon = pos[k++]!;
      if (it.lon < it.minX || it.lon > it.maxX || it.lat < it.minY || it.lat > it.maxY) {
        tree.remove(it);
        it.pad();
        tree.insert(it);
        re++;
      }
    }
    moveNs.push(Number(process.hrtime.bigint() - t0) / moves);
    if (t >= (2 * TICKS) / 3) {
      reindexed += re;
      counted += moves;
    }
  }

  const rnd = new Prng(SEED ^ n);
  const qs = new Float64Array(QUERIES * 2);
  for (let q = 0; q < QUERIES; q++) {
    const [a, b] = fleet.city.point(rnd);
    qs[2 * q] = a;
    qs[2 * q + 1] = b;
  }
  const slots: number[] = [];
  const dists: number[] = [];
  const byId = (a: Item, b: Item): number => a.id - b.id;
  const queries = RADII.map((radiusM) => {
    let found = 0;
    const quad = (): number => {
      const t0 = process.hrtime.bigint();
      found = 0;
      for (let q = 0; q < QUERIES; q++)
        found += replica.nearest(qs[2 * q]!, qs[2 * q + 1]!, 10, radiusM, false, slots, dists);
      return Number(process.hrtime.bigint() - t0) / 1000 / QUERIES;
    };
    const rb = (): number => {
      const t0 = process.hrtime.bigint();
      for (let q = 0; q < QUERIES; q++)
        rbushNearest(tree, qs[2 * q]!, qs[2 * q + 1]!, 10, radiusM, undefined, [], byId);
      return Number(process.hrtime.bigint() - t0) / 1000 / QUERIES;
    };
    quad();
    rb();
    return {
      radiusM,
      quadtreeUs: Number(median([quad(), quad(), quad()]).toFixed(2)),
      rbushUs: Number(median([rb(), rb(), rb()]).toFixed(2)),
      meanFound: Number((found / QUERIES).toFixed(2)),
    };
  });
  return {
    drivers: n,
    memory,
    applyNsPerMoved: Math.round(median(applyNs.slice((2 * TICKS) / 3))),
    rbushMoveNsPerMoved: Math.round(median(moveNs.slice((2 * TICKS) / 3))),
    rbushReindexShare: Number((reindexed / counted).toFixed(3)),
    queries,
  };
}

if (process.argv[2] === '--child') {
  const r = await measure(Number(process.argv[3]));
  process.send!(r);
} else {
  const results: SizeResult[] = [];
  for (const n of SIZES) {
    const r = await new Promise<SizeResult>((resolve, reject) => {
      // The daemon's workers run with the same malloc setting (src/cluster/primary.ts WORKER_ENV).
      const child = fork(SELF, ['--child', String(n)], {
        execArgv: ['--max-old-space-size=4096'],
        env: { ...process.env, ...WORKER_ENV },
      });
      child.once('message', (m) => resolve(m as SizeResult));
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`size ${n} exited ${code}`))));
    });
    say(JSON.stringify(r));
    results.push(r);
  }
  const first = results[0]!;
  const last = results.at(-1)!;
  writeResult(
    'replica',
    'read replica: memory, apply cost and nearest-10, quadtree against rbush, 10k to 1M drivers',
    {
      ticks: TICKS,
      queries: QUERIES,
      results,
      growth: {
        from: first.drivers,
        to: last.drivers,
        nearest: RADII.map((radiusM, i) => ({
          radiusM,
          quadtree: Number((last.queries[i]!.quadtreeUs / first.queries[i]!.quadtreeUs).toFixed(2)),
          rbush: Number((last.queries[i]!.rbushUs / first.queries[i]!.rbushUs).toFixed(2)),
        })),
        applyNs: Number((last.applyNsPerMoved / first.applyNsPerMoved).toFixed(2)),
        rbushMoveNs: Number((last.rbushMoveNsPerMoved / first.rbushMoveNsPerMoved).toFixed(2)),
      },
    },
  );
}
