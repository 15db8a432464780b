/**
 * Question: what does one HTTP worker's stream tick cost in CPU, per rider, against answering the same
 * riders' nearest polls, in-process? bench/stream.ts measures the whole daemon over real sockets, where
 * the kernel's share and a saturated machine blur the figure; this measures the user-space work alone,
 * repeatable on a busy machine. 100k drivers of the seeded city (all moving: one fix a second each),
 * 5,000 riders (one HTTP worker's half of bench/stream.ts's 10,000) with 1 km views at random points
 * where the drivers are, following their nearest 100 cars:
 *
 * - stream tick: what src/cluster/http-worker.ts does once a second: the hub re-chooses moving views,
 *   CellFrames scans and builds the covered cells, and the hub assembles every rider's frame (written to
 *   a sink that only counts bytes: no socket);
 * - baseline, the same run and replica: each rider's poll, nearest 100 within 1 km written as the
 *   answer's JSON bytes, as the HTTP worker writes it.
 *
 * Each of 20 ticks applies a batch moving every driver (untimed), then times both; the figures are the
 * medians of the last 16 ticks.
 *
 *   node bench/stream-tick.ts [--quick]      Result: bench/results/stream-tick.json
 */
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT } from '../src/replica/batch.ts';
import { JsonBytes } from '../src/replica/json-bytes.ts';
import { Replica } from '../src/replica/replica.ts';
import { cellBox, cellsNear } from '../src/stream/cells.ts';
import { CellFrames } from '../src/stream/frames.ts';
import { StreamHub } from '../src/stream/hub.ts';
import { Prng } from '../test/support/prng.ts';
import { cabNumber, driverId, Fleet } from './support/fleet.ts';
import { QUICK, say, writeResult } from './support/report.ts';

const SEED = 0x57e;
const DRIVERS = QUICK ? 20_000 : 100_000;
const RIDERS = QUICK ? 1000 : 5000;
const RADIUS = 1000;
const LIMIT = 100;
const TICKS = 20;
const MEASURED = 16;
const T0 = 1_763_000_000;

const fleet = new Fleet(DRIVERS, SEED, T0);
const lat = (i: number): number => Math.round(fleet.lat[i]! * 1e6);
const lon = (i: number): number => Math.round(fleet.lon[i]! * 1e6);
const w = new BatchWriter();
w.begin(KIND_SNAPSHOT, 1, 1, T0 * 1000);
for (let i = 0; i < DRIVERS; i++) {
  w.appeared(i, driverId(i), cabNumber(i));
  w.moved(i, lat(i), lon(i), fleet.time[i]!, 30, 90, i % 2 === 0, T0 * 1000);
}
const replica = new Replica();
replica.apply(Buffer.from(w.finish()), T0 * 1000);

const frames = new CellFrames(replica);
const hub = new StreamHub({ frames, maxViewers: RIDERS });
let bytes = 0;
let writes = 0;
// A socket calls back once it has written a frame (the hub then reuses the frame's slab): here at the
// next tick, timed with it.
let pending: Array<() => void> = [];
const sink = {
  write: (b: Buffer, done?: () => void): void => {
    bytes += b.length;
    writes++;
    if (done !== undefined) pending.push(done);
  },
  backlog: (): number => 0,
  close: (): void => {},
};
// As the HTTP worker counts a cell's cars: from the last tick's frames, else from the replica.
const count = (key: number): number => {
  const known = frames.count(key);
  if (known !== undefined) return known;
  let n = 0;
  const [a, b, c, d] = cellBox(key);
  replica.forEachIn(a, b, c, d, () => n++);
  return n;
};
const rnd = new Prng(SEED ^ 0x7);
const points = new Float64Array(2 * RIDERS);
for (let v = 0; v < RIDERS; v++) {
  const [pLat, pLon] = fleet.city.point(rnd);
  points[2 * v] = pLat;
  points[2 * v + 1] = pLon;
  const choose = () => cellsNear(pLat, pLon, RADIUS, LIMIT, count);
  hub.add({ cover: choose(), choose }, sink);
}

const slots: number[] = [];
const distances: number[] = [];
const answer = new JsonBytes();
const ticks: Array<{
  streamMs: number;
  chooseMs: number;
  prepareMs: number;
  buildMs: number;
  hubMs: number;
  pollsMs: number;
  frameBytes: number;
  answerBytes: number;
}> = [];
const round = (x: number): number => Math.round(x * 10) / 10;
let cells = 0;
for (let t = 0; t < TICKS; t++) {
  w.begin(KIND_DELTA, 1, t + 2, (T0 + t + 1) * 1000);
  for (let i = 0; i < DRIVERS; i++) {
    fleet.step(i);
    w.moved(i, lat(i), lon(i), fleet.time[i]!, 30, 90, i % 2 === 0, (T0 + t + 1) * 1000);
  }
  replica.apply(Buffer.from(w.finish()), (T0 + t + 1) * 1000);

  bytes = 0;
  writes = 0;
  let t0 = performance.now();
  for (const done of pending) done();
  pending = [];
  hub.rechoose();
  const active = hub.activeCells();
  const t1 = performance.now();
  frames.prepare(active, false);
  const t2 = performance.now();
  frames.build();
  const t3 = performance.now();
  hub.tick();
  const streamMs = performance.now() - t0;
  const phases = {
    chooseMs: round(t1 - t0),
    prepareMs: round(t2 - t1),
    buildMs: round(t3 - t2),
    hubMs: round(t0 + streamMs - t3),
  };
  cells = active.size;
  const frameBytes = writes === 0 ? 0 : bytes / writes;

  let answerBytes = 0;
  t0 = performance.now();
  for (let v = 0; v < RIDERS; v++) {
    const n = replica.nearest(points[2 * v]!, points[2 * v + 1]!, LIMIT, RADIUS, false, slots, distances);
    const out = answer.reset();
    replica.writeAnswer(n, slots, distances, out);
    answerBytes += out.take().length;
  }
  const pollsMs = performance.now() - t0;
  ticks.push({ streamMs, ...phases, pollsMs, frameBytes, answerBytes: answerBytes / RIDERS });
  say(
    `tick ${t}: stream ${streamMs.toFixed(0)} ms (choose ${phases.chooseMs}, prepare ${phases.prepareMs}, ` +
      `build ${phases.buildMs}, frames ${phases.hubMs}; ${cells} cells, ${writes} frames of ${Math.round(frameBytes)} B), ` +
      `${RIDERS} polls ${pollsMs.toFixed(0)} ms`,
  );
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const last = ticks.slice(-MEASURED);
const streamUs = (median(last.map((x) => x.streamMs)) * 1000) / RIDERS;
const pollUs = (median(last.map((x) => x.pollsMs)) * 1000) / RIDERS;
writeResult('stream-tick', "one HTTP worker's stream tick against its riders' polls, in-process", {
  drivers: DRIVERS,
  riders: RIDERS,
  radiusM: RADIUS,
  limit: LIMIT,
  cells,
  ticks,
  streamUsPerRider: round(streamUs),
  pollUsPerRider: round(pollUs),
  ratio: Math.round((pollUs / streamUs) * 100) / 100,
  frameBytes: Math.round(median(last.map((x) => x.frameBytes))),
  answerBytes: Math.round(median(last.map((x) => x.answerBytes))),
});
say(
  `per rider and tick: stream ${round(streamUs)} us, poll ${round(pollUs)} us (${(pollUs / streamUs).toFixed(2)}x)`,
);
