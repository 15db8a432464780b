import t from 'tap';
import { CellSplit } from '../src/hosts/cell-split.ts';
import { channelCell, inRegion, liveCell, liveChannel, parseRegion } from '../src/hosts/live-cells.ts';
import { RemoteFeed } from '../src/hosts/remote-feed.ts';
import {
  BatchWriter,
  FrameReader,
  KIND_DELTA,
  KIND_SNAPSHOT,
  LEFT_EXPIRED,
  LEFT_RELEASED,
} from '../src/replica/batch.ts';
import { Replica } from '../src/replica/replica.ts';

/**
 * The live view between hosts, without Redis: hosts' workers publish their batch streams, each host's
 * CellSplit cuts them by live cell, and a subscriber's RemoteFeed applies the cells' messages to a
 * replica. Checked against a model of where every driver is after random moves (across cells, between
 * workers and hosts), expiries, a subscriber that joins late, messages lost, a region, a host gone.
 */

const ZOOM = 10; // cells of about 30 km: the random walk below crosses them often

/** A deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Car {
  id: string;
  cab: string;
  latE6: number;
  lonE6: number;
  time: number;
  free: boolean;
  /** Host and worker that own it, slot there. */
  host: number;
  worker: number;
  slot: number;
}

/** A worker's batch stream, as the Publisher writes it: a snapshot first, then a delta a tick. */
class WorkerStream {
  readonly source: number;
  readonly slots = new Map<number, Car>();
  #seq = 0;
  #w = new BatchWriter();
  #pending: Array<(w: BatchWriter) => void> = [];
  #started = false;
  #free: number[] = [];
  #next = 0;

  constructor(source: number) {
    this.source = source;
  }

  add(car: Car): void {
    car.slot = this.#free.pop() ?? this.#next++;
    this.slots.set(car.slot, car);
    const c = { ...car };
    this.#pending.push((w) => {
      w.appeared(c.slot, c.id, c.cab);
      w.moved(c.slot, c.latE6, c.lonE6, c.time, 10, 0, c.free, 1000);
    });
  }

  move(car: Car): void {
    const c = { ...car };
    this.#pending.push((w) => w.moved(c.slot, c.latE6, c.lonE6, c.time, 10, 0, c.free, 1000));
  }

  remove(car: Car, reason: number): void {
    this.slots.delete(car.slot);
    this.#free.push(car.slot);
    const slot = car.slot;
    this.#pending.push((w) => w.left(slot, reason));
  }

  tick(nowMs: number): Buffer {
    const w = this.#w;
    this.#seq++;
    if (!this.#started) {
      this.#started = true;
      this.#pending = [];
      w.begin(KIND_SNAPSHOT, this.source, this.#seq, nowMs);
      for (const c of this.slots.values()) {
        w.appeared(c.slot, c.id, c.cab);
        w.moved(c.slot, c.latE6, c.lonE6, c.time, 10, 0, c.free, 1000);
      }
    } else {
      w.begin(KIND_DELTA, this.source, this.#seq, nowMs);
      for (const p of this.#pending) p(w);
      this.#pending = [];
    }
    return Buffer.from(w.finish());
  }
}

/** A host: its workers' streams and its CellSplit. */
class Host {
  readonly id: string;
  readonly workers: WorkerStream[];
  readonly split: CellSplit;

  constructor(id: string, workers: number, keyframeTicks: number) {
    this.id = id;
    this.workers = Array.from({ length: workers }, (_, i) => new WorkerStream(i + 1));
    this.split = new CellSplit({ zoom: ZOOM, hostId: id, keyframeTicks });
  }

  tick(nowMs: number): Array<{ channel: string; message: Buffer }> {
    for (const w of this.workers) this.split.push(w.source, w.tick(nowMs));
    return this.split.tick(nowMs);
  }
}

/** A subscriber host: a replica fed by RemoteFeed from the messages of the cells it follows. */
class Subscriber {
  readonly replica = new Replica({ handoffGraceMs: 1000 });
  readonly feed: RemoteFeed;
  readonly lags: number[] = [];
  /** When the last message it follows came. */
  lastAt = 0;
  readonly #follows: (channel: string) => boolean;

  constructor(hostId: string, follows: (channel: string) => boolean = () => true) {
    this.feed = new RemoteFeed({
      replica: this.replica,
      hostId,
      staleMs: 3000,
      onLag: (ms) => this.lags.push(ms),
    });
    this.#follows = follows;
  }

  deliver(messages: Array<{ channel: string; message: Buffer }>, nowMs: number): void {
    for (const m of messages) {
      if (!this.#follows(m.channel)) continue;
      this.lastAt = nowMs;
      new FrameReader((f) => this.feed.frame(Buffer.from(f), nowMs)).push(m.message);
    }
  }

  /** id -> "latE6,lonE6,time,free" of every listed driver. */
  view(): Map<string, string> {
    const out = new Map<string, string>();
    this.replica.forEach((slot) => {
      const v = this.replica.view(slot);
      out.set(v.id, `${Math.round(v.lat * 1e6)},${Math.round(v.lon * 1e6)},${v.time},${v.free}`);
    });
    return out;
  }
}

function modelView(cars: Iterable<Car>, keep: (c: Car) => boolean = () => true): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of cars) if (keep(c)) out.set(c.id, `${c.latE6},${c.lonE6},${c.time},${c.free}`);
  return out;
}

const sorted = (m: Map<string, string>): Array<[string, string]> =>
  [...m].sort(([a], [b]) => (a < b ? -1 : 1));

t.test('live cells: numbering, channels, regions', async (t) => {
  const cell = liveCell(41.3917, 2.1649, 8);
  t.equal(liveChannel(8, cell), 'cabtrack:live:8/129/95', "Barcelona's cell at zoom 8");
  t.equal(channelCell(liveChannel(8, cell), 8), cell, 'the channel names the cell back');
  t.equal(channelCell(liveChannel(8, cell), 9), -1, 'another zoom is not this zoom’s cell');
  t.equal(channelCell('cabtrack:revoke', 8), -1);
  const spain = parseRegion('-9.5,36,3.4,43.8');
  t.ok(inRegion(cell, 8, spain), 'Barcelona is in Spain');
  t.notOk(inRegion(liveCell(48.8566, 2.3522, 8), 8, spain), 'Paris is not');
  t.ok(inRegion(liveCell(48.8566, 2.3522, 8), 8, []), 'an empty region is the world');
  t.ok(inRegion(liveCell(0, 179.9, 8), 8, parseRegion('170,-10,-170,10')), 'across the antimeridian');
  t.throws(() => parseRegion('1,2,3'), /minLon,minLat,maxLon,maxLat/);
  t.throws(() => parseRegion('0,50,10,40'), /min first/);
});

t.test('three hosts, random moves: a fourth host sees exactly every driver, at its fix', async (t) => {
  const random = rng(7);
  const keyframeTicks = 5;
  const hosts = ['a', 'b', 'c'].map((id) => new Host(id, 2, keyframeTicks));
  const cars = new Map<string, Car>();
  let n = 0;
  const place = (c: Car): void => {
    const w = hosts[c.host]!.workers[c.worker]!;
    w.add(c);
  };
  const newCar = (time: number): Car => {
    const id = `d${n++}`;
    return {
      id,
      cab: id.toUpperCase(),
      latE6: Math.round((40 + random() * 2) * 1e6),
      lonE6: Math.round((1 + random() * 3) * 1e6),
      time,
      free: random() < 0.5,
      host: Math.floor(random() * 3),
      worker: Math.floor(random() * 2),
      slot: 0,
    };
  };
  for (let i = 0; i < 300; i++) {
    const c = newCar(1);
    cars.set(c.id, c);
    place(c);
  }
  const early = new Subscriber('x');
  let late: Subscriber | null = null;
  let synced = -1;
  const lateJoinsAt = 12;
  let crossings = 0;
  let handoffs = 0;
  for (let tick = 0; tick < 40; tick++) {
    const now = 10_000 + tick * 200;
    if (tick > 0) {
      for (const c of cars.values()) {
        if (random() < 0.02) {
          // Expired at its owner.
          hosts[c.host]!.workers[c.worker]!.remove(c, LEFT_EXPIRED);
          cars.delete(c.id);
          continue;
        }
        const before = liveCell(c.latE6 / 1e6, c.lonE6 / 1e6, ZOOM);
        c.latE6 += Math.round((random() - 0.5) * 40_000);
        c.lonE6 += Math.round((random() - 0.5) * 40_000);
        c.time += 1;
        if (random() < 0.05) c.free = !c.free;
        if (liveCell(c.latE6 / 1e6, c.lonE6 / 1e6, ZOOM) !== before) crossings++;
        if (random() < 0.03) {
          // Its fixes start reaching another worker, maybe on another host: released there, taken here.
          hosts[c.host]!.workers[c.worker]!.remove(c, LEFT_RELEASED);
          c.host = Math.floor(random() * 3);
          c.worker = Math.floor(random() * 2);
          place(c);
          handoffs++;
        } else {
          hosts[c.host]!.workers[c.worker]!.move(c);
        }
      }
      for (let i = 0; i < 5; i++) {
        const c = newCar(tick + 1);
        cars.set(c.id, c);
        place(c);
      }
    }
    const messages = hosts.flatMap((h) => h.tick(now));
    early.deliver(messages, now + 5);
    if (tick === lateJoinsAt) late = new Subscriber('y');
    late?.deliver(messages, now + 5);
    if (tick >= 1) {
      // After the first tick every cell has sent its snapshot (a cell's first message is one).
      t.same(sorted(early.view()), sorted(modelView(cars.values())), `tick ${tick}: the subscriber's view`);
    }
    if (late !== null && synced < 0 && sorted(late.view()).length === cars.size) {
      if (JSON.stringify(sorted(late.view())) === JSON.stringify(sorted(modelView(cars.values()))))
        synced = tick;
    }
  }
  t.ok(crossings > 100, `drivers crossed cells (${crossings} times)`);
  t.ok(handoffs > 100, `drivers changed owners (${handoffs} times)`);
  t.ok(
    synced >= lateJoinsAt && synced <= lateJoinsAt + keyframeTicks - 1,
    `a late joiner is whole within a keyframe interval (tick ${synced})`,
  );
  t.same(sorted(late!.view()), sorted(modelView(cars.values())), 'and stays whole');
  t.ok(early.lags.length > 1000 && early.lags.every((ms) => ms >= 0), 'lag measured on deltas');
});

t.test('a lost message: the cell is dropped, and whole again at its next snapshot', async (t) => {
  const a = new Host('a', 1, 4);
  const sub = new Subscriber('x');
  const w = a.workers[0]!;
  const cars: Car[] = [];
  for (let i = 0; i < 20; i++) {
    const c: Car = {
      id: `d${i}`,
      cab: `C${i}`,
      latE6: 41_390_000 + i * 100,
      lonE6: 2_160_000,
      time: 1,
      free: true,
      host: 0,
      worker: 0,
      slot: 0,
    };
    cars.push(c);
    w.add(c);
  }
  let lostAt = -1;
  const seen: number[] = [];
  for (let tick = 0; tick < 12; tick++) {
    for (const c of cars) {
      c.time++;
      c.lonE6 += 50;
      if (tick > 0) w.move(c);
    }
    const msgs = a.tick(1000 + tick * 200);
    if (tick === 3) {
      lostAt = tick;
      continue; // lost on the way
    }
    sub.deliver(msgs, 1000 + tick * 200);
    seen.push(sub.view().size);
    if (tick === 4) t.equal(sub.view().size, 0, 'the gap after the lost message drops the cell');
  }
  t.equal(lostAt, 3);
  t.ok(sub.feed.counters.resyncs >= 1, 'counted as a resync');
  t.same(sorted(sub.view()), sorted(modelView(cars)), 'whole again, at the latest fixes');
});

t.test('a region: only its cells are followed; own messages skipped; a gone host leaves', async (t) => {
  const a = new Host('a', 1, 3);
  const b = new Host('b', 1, 3);
  const barcelona: Car = {
    id: 'bcn',
    cab: 'B',
    latE6: 41_391_700,
    lonE6: 2_164_900,
    time: 5,
    free: true,
    host: 0,
    worker: 0,
    slot: 0,
  };
  const madrid: Car = {
    id: 'mad',
    cab: 'M',
    latE6: 40_416_800,
    lonE6: -3_703_800,
    time: 5,
    free: true,
    host: 1,
    worker: 0,
    slot: 0,
  };
  a.workers[0]!.add(barcelona);
  b.workers[0]!.add(madrid);
  const region = parseRegion('1.9,41.2,2.4,41.6');
  const sub = new Subscriber('b', (ch) => inRegion(channelCell(ch, ZOOM), ZOOM, region));
  const own = new Subscriber('a');
  for (let tick = 0; tick < 3; tick++) {
    const msgs = [...a.tick(1000 + tick * 200), ...b.tick(1000 + tick * 200)];
    sub.deliver(msgs, 1000 + tick * 200);
    own.deliver(msgs, 1000 + tick * 200);
  }
  t.same([...sub.view().keys()], ['bcn'], 'the region’s driver only');
  t.same([...own.view().keys()], ['mad'], 'host a skips its own cells (its local streams have them)');
  t.equal(own.feed.dropHost('b'), 1, 'host b’s one cell');
  t.equal(own.view().size, 0, 'host b’s drivers left with it');
  // A silent source goes after staleMs.
  t.equal(sub.feed.sweep(sub.lastAt + 2999), 0, 'not yet');
  t.equal(sub.feed.sweep(sub.lastAt + 3000), 1, 'silent for staleMs: dropped');
  t.equal(sub.view().size, 0);
});
