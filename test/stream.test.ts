import t from 'tap';
import { haversineM, METRES_PER_DEGREE_LAT, metresPerDegreeLon } from '../src/geo/distance.ts';
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT, LEFT_DELETED } from '../src/replica/batch.ts';
import { Replica } from '../src/replica/replica.ts';
import {
  cellAt,
  cellBox,
  cellKey,
  cellOf,
  cellsForBox,
  cellsNear,
  distanceToBoxM,
  MAX_BOX_CELLS,
  MAX_NEAR_CELLS,
  NEAR_ZOOM,
  STREAM_ZOOM,
} from '../src/stream/cells.ts';
import { CellFrames, freeLayer } from '../src/stream/frames.ts';
import { StreamHub, type ViewerSink } from '../src/stream/hub.ts';
import { StreamTokens } from '../src/stream/tokens.ts';
import { fixOf, type StreamCar, type StreamMove } from '../src/web/fixes.js';
import { Prng } from './support/prng.ts';

/** The streams' pure parts: cells, the shared frames, the hub's frames and back-pressure, tokens. */

t.test('cells: keys round-trip, a position is in its cell, boxes are covered', async (t) => {
  const rnd = new Prng(3);
  let bad = 0;
  for (let i = 0; i < 20_000; i++) {
    const lat = (rnd.float() * 2 - 1) * 85;
    const lon = (rnd.float() * 2 - 1) * 180;
    const key = cellAt(lat, lon);
    const { z, x, y } = cellOf(key);
    if (z !== STREAM_ZOOM || cellKey(z, x, y) !== key) bad++;
    const [a, b, c, d] = cellBox(key);
    if (!(lon >= a && lon <= c && lat >= b && lat <= d)) bad++;
  }
  t.equal(bad, 0, '20,000 random positions inside their cells');
  // A box across the antimeridian; a continent at a coarser zoom.
  const across = cellsForBox(179.9, -18, -179.9, -17.9);
  t.ok(across.some((k) => cellOf(k).x === 0) && across.some((k) => cellOf(k).x === 2 ** STREAM_ZOOM - 1));
  const europe = cellsForBox(-10, 35, 30, 60);
  t.ok(europe.length <= MAX_BOX_CELLS && cellOf(europe[0]!).z < STREAM_ZOOM, 'a big box at a coarser zoom');
});

t.test(
  'cellsNear: the nearest cells that hold the cars asked for, nearest first; every cell when fewer',
  async (t) => {
    const rnd = new Prng(11);
    const P = { lat: 48.8566, lon: 2.3522 };
    const mLon = metresPerDegreeLon(P.lat);
    // 6,000 cars: a crowd around P (as at a station) and the rest spread over 12 km.
    const cars: Array<[number, number]> = [];
    for (let i = 0; i < 6000; i++) {
      const crowd = i < 3000;
      const r = crowd ? Math.sqrt(rnd.float()) * 700 : 0;
      const a = rnd.float() * 2 * Math.PI;
      const dy = crowd ? r * Math.cos(a) : (rnd.float() * 2 - 1) * 6000;
      const dx = crowd ? r * Math.sin(a) : (rnd.float() * 2 - 1) * 6000;
      cars.push([P.lat + dy / METRES_PER_DEGREE_LAT, P.lon + dx / mLon]);
    }
    // Cars by cell at every zoom a cover may use, counted here independently of the cover.
    const byCell = new Map<number, number>();
    for (const [lat, lon] of cars)
      for (let z = NEAR_ZOOM; z >= 12; z--) {
        const k = cellAt(lat, lon, z);
        byCell.set(k, (byCell.get(k) ?? 0) + 1);
      }
    const count = (k: number): number => byCell.get(k) ?? 0;
    let bad = 0;
    let partial = 0;
    let whole = 0;
    for (let trial = 0; trial < 400; trial++) {
      const lat = P.lat + ((rnd.float() * 2 - 1) * 4000) / METRES_PER_DEGREE_LAT;
      const lon = P.lon + ((rnd.float() * 2 - 1) * 4000) / mLon;
      const radius = [200, 1000, 3000][trial % 3]!;
      const limit = rnd.int(1, 400);
      const cover = cellsNear(lat, lon, radius, limit, count);
      const z = cellOf(cover.cells[0]!).z;
      if (cover.cells.some((k) => cellOf(k).z !== z)) bad++;
      const held = cover.cells.reduce((n, k) => n + count(k), 0);
      if (held !== cover.cars) bad++;
      if (cover.whole) whole++;
      else {
        partial++;
        // Enough cars, and no cell more than needed.
        if (held < limit || held - count(cover.cells.at(-1)!) >= limit) bad++;
      }
      // Nearest first: no car left out within the radius is nearer than a chosen cell.
      let far = 0;
      for (const k of cover.cells) far = Math.max(far, distanceToBoxM(lat, lon, cellBox(k)));
      const chosen = new Set(cover.cells);
      for (const [clat, clon] of cars) {
        const d = haversineM(lat, lon, clat, clon);
        if (d > radius || chosen.has(cellAt(clat, clon, z))) continue;
        if (cover.whole || d < far - 1) bad++;
      }
    }
    t.equal(bad, 0, '400 random covers: enough cars, nearest first, every car within the radius when whole');
    t.ok(partial > 50 && whole > 50, `both kinds seen (${partial} partial, ${whole} whole)`);
    // A 1 km view in the crowd: a few cells, not the hundred of the circle.
    const crowd = cellsNear(P.lat, P.lon, 1000, 100, count);
    t.ok(crowd.cells.length <= 6 && crowd.cars >= 100, `${crowd.cells.length} cells, ${crowd.cars} cars`);
    // A large radius is covered at a coarser zoom; the antimeridian is covered too.
    const big = cellsNear(P.lat, P.lon, 50_000, 1e9, () => 0);
    t.ok(
      big.whole && big.cells.length <= MAX_NEAR_CELLS && cellOf(big.cells[0]!).z < NEAR_ZOOM,
      'coarser for 50 km',
    );
    const across = cellsNear(-17.95, 179.999, 500, 1e9, () => 0);
    t.ok(
      across.cells.some((k) => cellOf(k).x === 0) &&
        across.cells.some((k) => cellOf(k).x === 2 ** NEAR_ZOOM - 1),
      'across the antimeridian',
    );
    t.equal(distanceToBoxM(0, 179.9, [-180, -1, -179.95, 1]) < 16_000, true, 'the nearer way round');
  },
);

/** A replica fed by hand: one source, snapshot then deltas. */
function replicaWith(): { r: Replica; send: (recs: Array<[string, ...unknown[]]>) => void } {
  const r = new Replica();
  const w = new BatchWriter();
  let seq = 1;
  w.begin(KIND_SNAPSHOT, 1, seq, 0);
  r.apply(Buffer.from(w.finish()), 0);
  const send = (recs: Array<[string, ...unknown[]]>): void => {
    w.begin(KIND_DELTA, 1, ++seq, 0);
    for (const [tag, ...a] of recs) {
      if (tag === 'a') w.appeared(a[0] as number, a[1] as string, a[2] as string);
      else if (tag === 'm')
        w.moved(a[0] as number, a[1] as number, a[2] as number, a[3] as number, 10, 90, a[4] !== false, 0);
      else w.left(a[0] as number, a[1] as number);
    }
    r.apply(Buffer.from(w.finish()), 0);
  };
  return { r, send };
}

const parse = (b: Buffer): unknown[] => JSON.parse(`[${b.toString()}]`) as unknown[];

t.test('frames: a cell says who moved in or within it, who left, and its snapshot', async (t) => {
  const { r, send } = replicaWith();
  const cell = cellAt(48.8566, 2.3522);
  const [w, s, e, n] = cellBox(cell);
  const lat = (f: number): number => Math.round((s + (n - s) * f) * 1e6);
  const lon = (f: number): number => Math.round((w + (e - w) * f) * 1e6);
  send([
    ['a', 1, 'd1', 'c1'],
    ['m', 1, lat(0.2), lon(0.2), 100],
    ['a', 2, 'd2', 'c2'],
    ['m', 2, lat(0.8), lon(0.8), 100],
  ]);
  const frames = new CellFrames(r);
  t.same(frames.prepare([cell]), [], 'no car has a previous fix yet: no path to match');
  frames.build();
  t.same(
    parse(frames.cars(cell))
      .map((c) => (c as { id: string }).id)
      .sort(),
    ['d1', 'd2'],
    'a new cell: all its cars',
  );
  // d1 moves 100 m within the cell, d2 stands, d3 arrives, and the next tick says exactly that.
  send([
    ['m', 1, lat(0.2) + 900, lon(0.2), 101],
    ['a', 3, 'd3', 'c3'],
    ['m', 3, lat(0.5), lon(0.5), 101],
  ]);
  t.same(
    frames.prepare([cell]).map((slot) => r.id(slot)),
    ['d1'],
    'd1 moved far enough for a road path',
  );
  const roads = new Map([[r.find('d1'), '[[1,2,3],[4,5,6]]']]);
  frames.build((slot) => roads.get(slot));
  const cars = parse(frames.cars(cell)) as Array<{ id: string; path: number[][] }>;
  t.same(cars.map((c) => c.id).sort(), ['d1', 'd3']);
  t.same(
    cars.find((c) => c.id === 'd1')!.path,
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    'a road path where there is one',
  );
  t.same(cars.find((c) => c.id === 'd3')!.path.length, 1, 'a new car: its point');
  t.notOk('cab' in cars.find((c) => c.id === 'd1')!, 'd1 moved within the cell: a move, without its cab');
  t.match(
    cars.find((c) => c.id === 'd3'),
    { cab: 'c3', lat: lat(0.5) / 1e6 },
    'd3 is new to it: whole',
  );
  t.same(parse(frames.left(cell)), []);
  // d2 is deleted, d3 leaves the cell.
  send([
    ['l', 2, LEFT_DELETED],
    ['m', 3, lat(0.5) - 20_000, lon(0.5), 131],
  ]);
  frames.prepare([cell]);
  frames.build();
  t.same(parse(frames.left(cell)).sort(), ['d2', 'd3'], 'both left');
  t.same(parse(frames.cars(cell)), []);
  t.same(
    parse(frames.snapshot(cell)).map((c) => (c as { id: string }).id),
    ['d1'],
    'the snapshot: who is in it now',
  );
  // Straight paths: from the previous fix, or the point alone under 20 m.
  send([['m', 1, lat(0.2) + 901, lon(0.2), 140]]);
  frames.prepare([cell]);
  frames.build();
  t.equal((parse(frames.cars(cell))[0] as { path: unknown[] }).path.length, 1, 'a 0.1 m move: no path');
  // The free layer: a car taking an order leaves it.
  frames.prepare([cell, freeLayer(cell)]);
  frames.build();
  t.same(
    parse(frames.cars(freeLayer(cell))).map((c) => (c as { id: string }).id),
    ['d1'],
  );
  send([['m', 1, lat(0.2) + 1800, lon(0.2), 150, false]]);
  frames.prepare([freeLayer(cell)]);
  frames.build();
  t.same(parse(frames.left(freeLayer(cell))), ['d1'], 'busy now: gone from the free layer');
  t.equal(frames.cells, 1, 'the cell no viewer covers any more is forgotten');
});

interface FakeSink extends ViewerSink {
  out: string[];
  /** Every buffer written, as written: a socket may hold one for seconds. */
  held: Array<{ bytes: Buffer; text: string }>;
  queued: number;
  closed: boolean;
}

function sink(): FakeSink {
  const s: FakeSink = {
    out: [],
    held: [],
    queued: 0,
    closed: false,
    write(b) {
      const text = b.toString();
      s.out.push(text);
      s.held.push({ bytes: b, text });
    },
    backlog: () => s.queued,
    close() {
      s.closed = true;
    },
  };
  return s;
}

t.test(
  'hub: shared frames, snapshot first, skipped when behind, then cut off; heartbeats; the cap',
  async (t) => {
    const { r, send } = replicaWith();
    const cell = cellAt(10, 10);
    const [w, s] = cellBox(cell);
    const at = (f: number): [number, number] => [
      Math.round((s + 1e-4 * f) * 1e6),
      Math.round((w + 1e-4 * f) * 1e6),
    ];
    send([
      ['a', 1, 'd1', 'c1'],
      ['m', 1, ...at(1), 100],
    ]);
    const frames = new CellFrames(r);
    let now = 0;
    const hub = new StreamHub({
      frames,
      maxViewers: 3,
      maxBacklogBytes: 1000,
      maxBehindMs: 3000,
      heartbeatMs: 15_000,
      now: () => now,
    });
    const a = sink();
    const b = sink();
    hub.add([cell], a);
    hub.add([cell], b);
    t.equal(hub.add([cell], sink()) === null, false);
    t.equal(hub.add([cell], sink()), null, 'past the cap: refused');
    const tick = (): void => {
      frames.prepare(hub.activeCells());
      frames.build();
      hub.tick();
      now += 1000;
    };
    tick();
    t.match(a.out[0], /^id: 1\ndata: \{"frame":1,"time":0,"snapshot":true,"cars":\[\{"id":"d1"/);
    t.equal(a.out[0], b.out[0], 'the same bytes for viewers of the same cells');
    tick();
    t.equal(a.out.length, 1, 'nothing changed: no frame');
    send([['m', 1, ...at(2), 101]]);
    tick();
    t.match(a.out[1], /"snapshot":false,"cars":\[\{"id":"d1"/);
    // a falls behind: its frames are skipped (it gets a snapshot after), then it is cut off.
    a.queued = 5000;
    for (let i = 3; i < 7; i++) {
      send([['m', 1, ...at(i), 100 + i]]);
      tick();
    }
    t.equal(hub.counters.skipped, 4);
    t.equal(a.closed, true, 'cut off after 3 s behind');
    t.equal(hub.counters.disconnects.slow, 1);
    t.equal(b.out.length, 6, 'the other viewer had every frame');
    // A viewer behind for a moment only: skips, then a snapshot.
    const c = sink();
    hub.add([cell], c);
    tick();
    c.queued = 5000;
    send([['m', 1, ...at(8), 108]]);
    tick();
    c.queued = 0;
    send([['m', 1, ...at(9), 109]]);
    tick();
    t.match(c.out.at(-1), /"snapshot":true/, 'back after a skip: a snapshot');
    // Quiet for 15 s: a heartbeat comment.
    for (let i = 0; i < 16; i++) tick();
    t.match(b.out.at(-1), /^: heartbeat\n\n$/);
    hub.close();
    t.equal(b.closed && c.closed, true);
  },
);

t.test('hub: the cells prepared follow viewers as they come, go and are cut off', async (t) => {
  const { r, send } = replicaWith();
  const c0 = cellAt(10, 10);
  const { x, y } = cellOf(c0);
  const c1 = cellKey(STREAM_ZOOM, x + 1, y);
  const c2 = cellKey(STREAM_ZOOM, x + 2, y);
  const c3 = cellKey(STREAM_ZOOM, x + 3, y);
  // A car in c3, which no viewer covers at first.
  const [w3, s3] = cellBox(c3);
  send([
    ['a', 1, 'd1', 'c1'],
    ['m', 1, Math.round((s3 + 1e-4) * 1e6), Math.round((w3 + 1e-4) * 1e6), 100],
  ]);
  let now = 0;
  const frames = new CellFrames(r);
  const hub = new StreamHub({
    frames,
    maxViewers: 10,
    maxBacklogBytes: 1000,
    maxBehindMs: 2000,
    now: () => now,
  });
  const cover = hub.activeCells();
  const keys = (): number[] => [...cover.keys()].sort((a, b) => a - b);
  const tick = (): void => {
    frames.prepare(cover);
    frames.build();
    hub.tick();
    now += 1000;
  };
  const a = sink();
  const b = sink();
  const va = hub.add([c0, c1], a)!;
  hub.add([c1, c2], b);
  t.same(
    keys(),
    [c0, c1, c2].sort((p, q) => p - q),
    'the union of the viewers cells, each once',
  );
  tick();
  t.equal(frames.cells, 3, 'three cells prepared');
  const version = cover.version;
  tick();
  t.equal(cover.version, version, 'no viewer came or went: the same cover');
  hub.remove(va);
  t.same(
    keys(),
    [c1, c2].sort((p, q) => p - q),
    "a's own cell left; the shared one stayed",
  );
  tick();
  t.equal(frames.cells, 2, 'and its cell is forgotten');
  // b stops reading: cut off after 2 s behind, and its cells go with it.
  b.queued = 5000;
  for (let i = 0; i < 3; i++) tick();
  t.equal(b.closed, true);
  t.same(keys(), [], 'no viewer: no cell');
  tick();
  t.equal(frames.cells, 0);
  // A viewer of c3 joins: its cell opens in the same tick, and its first frame shows the car there.
  const c = sink();
  hub.add([c3], c);
  tick();
  t.match(
    c.out[0],
    /"snapshot":true,"cars":\[\{"id":"d1"/,
    "the new viewer's snapshot has the car in its cell",
  );
  hub.remove(va);
  t.same(keys(), [c3], 'a viewer removed twice is taken out once');
});

t.test('hub: a moving view is chosen again when its cars drive off, and sent a snapshot', async (t) => {
  const { r, send } = replicaWith();
  const here = cellAt(10, 10, NEAR_ZOOM);
  const [w, s, e, n] = cellBox(here);
  const lat0 = (s + n) / 2;
  const lon0 = (w + e) / 2;
  const e6 = (x: number): number => Math.round(x * 1e6);
  // d1 and d2 in the rider's own cell, d3 three cells east.
  send([
    ['a', 1, 'd1', 'c1'],
    ['m', 1, e6(lat0), e6(lon0), 100],
    ['a', 2, 'd2', 'c2'],
    ['m', 2, e6(lat0 + (n - s) / 4), e6(lon0), 100],
    ['a', 3, 'd3', 'c3'],
    ['m', 3, e6(lat0), e6(lon0 + 3 * (e - w)), 100],
  ]);
  const count = (k: number): number => {
    let c = 0;
    const [a, b, cc, d] = cellBox(k);
    r.forEachIn(a, b, cc, d, () => c++);
    return c;
  };
  const choose = () => cellsNear(lat0, lon0, 2000, 2, count);
  const frames = new CellFrames(r);
  const hub = new StreamHub({ frames, maxViewers: 10 });
  const v = sink();
  const fixed = sink();
  const first = choose();
  t.same(first.cells, [here], "two cars asked for: the rider's own cell holds them");
  hub.add({ cover: first, choose }, v);
  hub.add(first.cells, fixed);
  const tick = (): number => {
    const changed = hub.rechoose();
    frames.prepare(hub.activeCells());
    frames.build();
    hub.tick();
    return changed;
  };
  const frame = (x: string | undefined): { snapshot: boolean; cars: Array<{ id: string }>; left: string[] } =>
    JSON.parse(x!.split('\n')[1]!.slice('data: '.length));
  t.equal(tick(), 0);
  t.same(
    frame(v.out[0])
      .cars.map((c) => c.id)
      .sort(),
    ['d1', 'd2'],
    'the nearest cars, not d3',
  );
  // Both drive off 5 km: the view empties (a delta says they left), then is chosen again.
  send([
    ['m', 1, e6(lat0 + 0.045), e6(lon0), 200],
    ['m', 2, e6(lat0 + 0.045), e6(lon0), 200],
  ]);
  t.equal(tick(), 0, 'the cars are counted by the tick that sees them go');
  t.same(frame(v.out[1]).left.sort(), ['d1', 'd2']);
  t.equal(tick(), 1, 'then the view is chosen again');
  const again = frame(v.out[2]);
  t.equal(again.snapshot, true, 'a snapshot of the new cells');
  t.same(
    again.cars.map((c) => c.id),
    ['d3'],
    'the car now nearest',
  );
  t.equal(fixed.out.length, 2, 'a fixed view keeps its cells (nothing more to send it)');
  t.equal(tick(), 0, 'nothing more to choose while the count stays in its band');
});

t.test('frames model: a client that applies every frame sees exactly the cars in its cells', async (t) => {
  const rnd = new Prng(0xf4a);
  const { r, send } = replicaWith();
  // Four cells in a square, and a viewer of all four, one of two, one of the free layer of two.
  const c0 = cellAt(10, 10);
  const { x, y } = cellOf(c0);
  const quad = [
    c0,
    cellKey(STREAM_ZOOM, x + 1, y),
    cellKey(STREAM_ZOOM, x, y + 1),
    cellKey(STREAM_ZOOM, x + 1, y + 1),
  ];
  const boxes = quad.map(cellBox);
  const area = [
    Math.min(...boxes.map((b) => b[0])),
    Math.min(...boxes.map((b) => b[1])),
    Math.max(...boxes.map((b) => b[2])),
    Math.max(...boxes.map((b) => b[3])),
  ] as const;
  const views = [
    { cells: quad, free: false },
    { cells: quad.slice(0, 2), free: false },
    { cells: quad.slice(1, 3).map(freeLayer), free: true },
  ];
  const frames = new CellFrames(r);
  const hub = new StreamHub({ frames, maxViewers: 10 });
  const sinks = views.map((v) => {
    const k = sink();
    hub.add(v.cells, k);
    return k;
  });
  const seen = views.map(() => new Map<string, StreamCar>());
  const kinds = { whole: 0, moves: 0, unknownMoves: 0 };
  // The fleet: key -> id, position, time, free; some outside the four cells.
  const live = new Map<number, { id: string; lat: number; lon: number; time: number; free: boolean }>();
  let nextKey = 1;
  let time = 1000;
  const place = (): [number, number] => {
    const m = 0.3;
    const w = area[2] - area[0];
    const h = area[3] - area[1];
    return [
      Math.round((area[1] - h * m + rnd.float() * h * (1 + 2 * m)) * 1e6),
      Math.round((area[0] - w * m + rnd.float() * w * (1 + 2 * m)) * 1e6),
    ];
  };
  let bad = 0;
  let checked = 0;
  let firstBad = '';
  for (let tick = 0; tick < 60; tick++) {
    time++;
    const recs: Array<[string, ...unknown[]]> = [];
    // Moves (some standing still), order changes, departures.
    for (const [key, car] of live) {
      const u = rnd.float();
      if (u < 0.05) {
        live.delete(key);
        recs.push(['l', key, LEFT_DELETED]);
        continue;
      }
      if (u < 0.2) continue; // no fix this second
      if (u < 0.75) [car.lat, car.lon] = place();
      if (rnd.chance(0.1)) car.free = !car.free;
      car.time = time;
      recs.push(['m', key, car.lat, car.lon, time, car.free]);
    }
    // Arrivals after the departures: a slot freed in this batch is taken again in it.
    for (let i = rnd.int(0, 15); i > 0; i--) {
      const key = nextKey++;
      const [lat, lon] = place();
      const car = { id: `d${key}`, lat, lon, time, free: rnd.chance(0.5) };
      live.set(key, car);
      recs.push(['a', key, car.id, `c${key}`], ['m', key, lat, lon, time, car.free]);
    }
    send(recs);
    hub.rechoose();
    frames.prepare(hub.activeCells());
    frames.build();
    hub.tick();
    // Each client applies what it was sent: a snapshot replaces its view; a delta drops `left`, then
    // sets `cars`.
    for (let v = 0; v < views.length; v++) {
      const out = sinks[v]!.out;
      for (const text of out.splice(0)) {
        const f = JSON.parse(text.split('\n')[1]!.slice('data: '.length)) as {
          snapshot: boolean;
          cars: Array<StreamCar | StreamMove>;
          left: string[];
        };
        if (f.snapshot) seen[v]!.clear();
        for (const id of f.left) seen[v]!.delete(id);
        for (const c of f.cars) {
          // As the pages apply it (src/web/fixes.js): a move is of a car the client shows.
          const fix = fixOf(c, seen[v]!.get(c.id));
          if ('cab' in c) kinds.whole++;
          else kinds.moves++;
          if (fix === null) kinds.unknownMoves++;
          else seen[v]!.set(c.id, fix);
        }
      }
      // The truth: the live cars inside the view's cells (of the free layer: free ones).
      const want = new Map<string, { lat: number; lon: number; time: number }>();
      for (const car of live.values()) {
        if (views[v]!.free && !car.free) continue;
        const inside = views[v]!.cells.some(
          (k) => cellAt(car.lat / 1e6, car.lon / 1e6) === (k < 0 ? -k - 1 : k),
        );
        if (inside) want.set(car.id, car);
      }
      const got = seen[v]!;
      let ok = got.size === want.size;
      for (const [id, w] of want) {
        const g = got.get(id);
        if (
          g === undefined ||
          Math.round(g.lat * 1e6) !== w.lat ||
          Math.round(g.lon * 1e6) !== w.lon ||
          g.time !== w.time
        )
          ok = false;
        else if (Math.round(g.path.at(-1)![0]! * 1e6) !== w.lon || g.path.at(-1)![2] !== w.time) ok = false;
      }
      checked++;
      if (!ok) {
        bad++;
        if (firstBad === '')
          firstBad = `tick ${tick} view ${v}: ${got.size} cars seen, ${want.size} in the cells`;
      }
    }
  }
  t.equal(
    bad,
    0,
    firstBad || `${checked} views after 60 ticks of arrivals, moves, order changes and departures`,
  );
  t.ok(live.size > 50, `${live.size} cars live at the end`);
  t.equal(kinds.unknownMoves, 0, 'no move of a car the client did not show');
  t.ok(kinds.whole > 100 && kinds.moves > 100, `${kinds.whole} whole cars and ${kinds.moves} moves sent`);
  // A frame a socket still held is unchanged by the ticks after it (frames are not views of bytes
  // that later ticks write over).
  const held = sinks.flatMap((k) => k.held);
  t.equal(
    held.filter((h) => h.bytes.toString() !== h.text).length,
    0,
    `${held.length} frames held unchanged`,
  );
});

t.test('hub: a slab is reused only once every write of its frames is done', async (t) => {
  const rnd = new Prng(0x51ab);
  const { r, send } = replicaWith();
  // 40 cells in a row, 120 cars each: a viewer of one cell, and one of each pair of neighbours, gets
  // frames of its own of 14-28 KB, so a tick's frames fill about two 1 MiB slabs.
  const c0 = cellAt(10, 10);
  const { x, y } = cellOf(c0);
  const row = Array.from({ length: 40 }, (_, i) => cellKey(STREAM_ZOOM, x + i, y));
  const cars: Array<{ key: number; cell: number }> = [];
  const place = (cell: number): [number, number] => {
    const [w, s, e, n] = cellBox(cell);
    return [
      Math.round((s + (n - s) * (0.05 + 0.9 * rnd.float())) * 1e6),
      Math.round((w + (e - w) * (0.05 + 0.9 * rnd.float())) * 1e6),
    ];
  };
  let time = 100;
  const recs: Array<[string, ...unknown[]]> = [];
  for (const cell of row) {
    for (let i = 0; i < 120; i++) {
      const key = cars.length + 1;
      cars.push({ key, cell });
      recs.push(['a', key, `driver-${key}`, `cab-${key}`], ['m', key, ...place(cell), time]);
    }
  }
  send(recs);
  const frames = new CellFrames(r);
  const hub = new StreamHub({ frames, maxViewers: 1000, maxBacklogBytes: 1 << 30, maxBehindMs: 1e9 });
  // Every view's socket finishes its writes a tick later, but for one more viewer of the first cell,
  // whose socket holds its first two frames throughout.
  const views = [...row.map((c) => [c]), ...row.slice(1).map((c, i) => [row[i]!, c])];
  type Held = { bytes: Buffer; text: string; done?: () => void };
  const quick: Held[][] = [];
  const slow: Held[] = [];
  const keep = (into: Held[]): ViewerSink => ({
    write: (bytes, done) => {
      into.push({ bytes, text: bytes.toString(), done });
    },
    backlog: () => 0,
    close() {},
  });
  for (const cells of views) {
    const mine: Held[] = [];
    quick.push(mine);
    hub.add(cells, keep(mine));
  }
  hub.add([row[0]!], keep(slow));
  const buffers = new Set<ArrayBufferLike>();
  let bytes = 0;
  for (let tick = 0; tick < 12; tick++) {
    time++;
    send(cars.map((c) => ['m', c.key, ...place(c.cell), time] as [string, ...unknown[]]));
    frames.prepare(hub.activeCells());
    frames.build();
    // The quick sockets finish the last tick's writes now (a socket calls back after the write).
    for (const mine of quick) for (const h of mine.splice(0)) h.done?.();
    for (const h of slow.slice(2)) h.done?.();
    slow.length = Math.min(slow.length, 2);
    hub.tick();
    for (const mine of quick) {
      for (const h of mine) {
        buffers.add(h.bytes.buffer);
        bytes += h.bytes.length;
      }
    }
  }
  t.equal(slow.length, 3, "the two frames held, and the last tick's");
  t.equal(
    slow.slice(0, 2).filter((h) => h.bytes.toString() !== h.text).length,
    0,
    'the frames a socket still holds are unchanged, ten ticks on',
  );
  t.ok(
    slow.every((h) => h.done !== undefined),
    'every frame in a slab is written with a callback',
  );
  const fresh = Math.ceil(bytes / (1 << 20));
  t.ok(
    buffers.size < fresh / 2,
    `${(bytes / (1 << 20)).toFixed(1)} MiB of frames in ${buffers.size} slabs (fresh ones each time: ${fresh} or more)`,
  );
});

t.test('stream tokens: signed, for a role, until they expire', async (t) => {
  let now = 1_000_000_000_000;
  const tokens = new StreamTokens('operator-token-0123456789', () => now);
  const other = new StreamTokens('another-operator-token-01', () => now);
  const { token, expiresAt } = tokens.issue('client', 300);
  t.equal(expiresAt, now / 1000 + 300);
  t.equal(tokens.verify(token), 'client');
  t.equal(tokens.verify(tokens.issue('operator').token), 'operator');
  t.equal(other.verify(token), null, 'another operator token: another key');
  t.equal(tokens.verify(token.replace('.c.', '.o.')), null, 'a client token made operator: forged');
  t.equal(tokens.verify('v1.c.99999999999.nonsense'), null);
  now += 300_000;
  t.equal(tokens.verify(token), 'expired');
});
