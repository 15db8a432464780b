import t from 'tap';
import { Fix } from '../src/codec/fix.ts';
import { haversineM } from '../src/geo/distance.ts';
import { Reason } from '../src/reasons.ts';
import { Publisher, type Subscriber } from '../src/replica/publisher.ts';
import { Replica } from '../src/replica/replica.ts';
import type { TripRecord } from '../src/store/driver.ts';
import { Shard } from '../src/store/shard.ts';
import { Prng } from './support/prng.ts';

/**
 * The store against a plain Map after random operations: fixes, small and large moves, handoffs
 * between two shards (as between two workers), deletes, revocations, order changes, expiry and a
 * worker killed. After every step each shard's maps, expiry list, rings and trips must agree with the
 * model; and a read replica fed by the shards' batches (src/replica/), their two streams interleaved at
 * random as two sockets deliver them, must hold every live driver exactly as its owner has it, and no
 * other (issue 10).
 */

interface ModelDriver {
  id: string;
  cab: string;
  hi: number;
  lo: number;
  shard: number;
  lat: number;
  lon: number;
  latE6: number;
  lonE6: number;
  time: number;
  seenAt: number;
  points: number[];
  order: number;
  tripDistance: number;
  tripStart: number;
  tripPoints: number;
}

const POINTS = 5;
const IDLE_S = 100;

t.test('shards agree with a plain Map after random operations', async (t) => {
  const rnd = new Prng(2024);
  const ended: TripRecord[] = [];
  const shards = [0, 1].map(
    () => new Shard({ trackPoints: POINTS, idleTimeoutS: IDLE_S, onTripEnd: (r) => ended.push(r) }),
  );
  const model = new Map<string, ModelDriver>();
  const fix = new Fix();
  // Each shard publishes to the replica as an ingest worker does: a tick's batch on its own stream.
  const replica = new Replica();
  const streams: Buffer[][] = [[], []];
  const sources = [1, 2];
  let nextSource = 3;
  let kills = 0;
  const publishers = shards.map((shard, i) => publisherFor(shard, sources[i]!, streams[i]!));
  let now = 1_700_000_000_000;
  let nextId = 0;
  let nextOrder = 1;
  const expectedEnds: string[] = [];

  const send = (m: ModelDriver, lat: number, lon: number): void => {
    const shard = shards[m.shard]!;
    // Time enough for the move at under 50 m/s, so the store must accept every fix.
    const metres = m.time === 0 ? 0 : haversineM(m.lat, m.lon, lat, lon);
    const time = Math.max(m.time + Math.max(1, Math.ceil(metres / 50)), Math.floor(now / 1000));
    fix.reset();
    fix.sessionHi = m.hi;
    fix.sessionLo = m.lo;
    fix.lat = Math.round(lat * 1e6);
    fix.lon = Math.round(lon * 1e6);
    fix.time = time;
    fix.orderLo = m.order;
    fix.cost = m.order === 0 ? 0 : m.tripPoints * 10;
    const d = shard.bySession(m.hi, m.lo)!;
    const r = shard.ingest(d, fix, now);
    t.equal(r, Reason.ok, `fix for ${m.id} accepted`);
    const newLat = fix.lat / 1e6;
    const newLon = fix.lon / 1e6;
    if (m.order !== 0) {
      if (m.tripPoints === 0) {
        m.tripStart = time;
        m.tripDistance = 0;
      } else {
        m.tripDistance += haversineM(m.lat, m.lon, newLat, newLon);
      }
      m.tripPoints++;
    }
    m.lat = newLat;
    m.lon = newLon;
    m.latE6 = fix.lat;
    m.lonE6 = fix.lon;
    m.time = time;
    m.seenAt = now;
    m.points.push(fix.lat, fix.lon, time);
    if (m.points.length > POINTS * 3) m.points.splice(0, 3);
  };

  for (let step = 0; step < 6000; step++) {
    now += rnd.int(0, 3000);
    const ids = [...model.keys()];
    const op = ids.length === 0 ? 0 : rnd.int(0, 9);
    const m = ids.length === 0 ? undefined : model.get(rnd.pick(ids))!;
    if (op === 0 || m === undefined) {
      // A new driver: 60 degrees north half the time, so padding in longitude is exercised.
      const id = `d${nextId++}`;
      const nm: ModelDriver = {
        id,
        cab: `cab-${id}`,
        hi: rnd.uint32(),
        lo: rnd.uint32() | 1,
        shard: rnd.int(0, 1),
        lat: 0,
        lon: 0,
        latE6: 0,
        lonE6: 0,
        time: 0,
        seenAt: now,
        points: [],
        order: 0,
        tripDistance: 0,
        tripStart: 0,
        tripPoints: 0,
      };
      model.set(id, nm);
      shards[nm.shard]!.add(id, nm.cab, nm.hi, nm.lo, now);
      send(nm, rnd.chance(0.5) ? 60 + rnd.float() * 0.1 : rnd.float() * 0.1, 10 + rnd.float() * 0.1);
    } else if (op <= 4) {
      // A small move (stays in the box) or a larger one (leaves it), always under 250 km/h.
      const metres = rnd.chance(0.3) ? 300 : 5;
      send(
        m,
        m.lat + (rnd.float() - 0.5) * (metres / 111_195),
        m.lon + (rnd.float() - 0.5) * (metres / 111_195),
      );
    } else if (op === 5) {
      // The order changes: the running trip (if any) ends, a new one may start.
      if (m.order !== 0) expectedEnds.push(String(m.order));
      m.order = rnd.chance(0.7) ? nextOrder++ : 0;
      m.tripPoints = 0;
      send(m, m.lat, m.lon);
    } else if (op === 6) {
      // Handoff to the other shard, with ring and trip.
      const from = shards[m.shard]!;
      const d = from.byId(m.id);
      const state = from.exportState(d);
      from.remove(d, 'released');
      m.shard = 1 - m.shard;
      shards[m.shard]!.add(m.id, m.cab, m.hi, m.lo, now, state);
      m.seenAt = now;
      send(m, m.lat, m.lon);
    } else if (op === 7) {
      const s = shards[m.shard]!;
      s.remove(s.byId(m.id), rnd.chance(0.5) ? 'deleted' : 'revoked');
      if (m.order !== 0) expectedEnds.push(String(m.order));
      model.delete(m.id);
    } else if (op === 8 && rnd.chance(0.01)) {
      // A worker killed: its drivers are gone (their trips are not ended: nobody is left to end them),
      // its replica stream closes, and a new worker takes its place with a new source id. (What it
      // published before is applied first: a driver handed to it in this very tick would otherwise sit
      // out the handoff's grace in the replica, as it would in a daemon.)
      check(step);
      const k = m.shard;
      kills++;
      for (const x of [...model.values()]) if (x.shard === k) model.delete(x.id);
      replica.dropSource('', sources[k]!);
      streams[k]!.length = 0;
      shards[k] = new Shard({ trackPoints: POINTS, idleTimeoutS: IDLE_S, onTripEnd: (r) => ended.push(r) });
      sources[k] = nextSource++;
      publishers[k] = publisherFor(shards[k]!, sources[k]!, streams[k]!);
    } else {
      const cutoff = now - IDLE_S * 1000;
      let expected = 0;
      for (const x of model.values()) {
        if (x.seenAt > cutoff) continue;
        if (x.order !== 0) expectedEnds.push(String(x.order));
        model.delete(x.id);
        expected++;
      }
      t.equal(shards[0]!.expire(now) + shards[1]!.expire(now), expected, `step ${step}: expired count`);
    }
    if (step % 50 === 0 || step === 5999) check(step);
  }
  t.ok(kills > 0, `workers killed: ${kills}`);

  function check(step: number): void {
    // A tick: both shards publish, and the two streams reach the replica interleaved at random.
    for (const p of publishers) p.tick(now);
    const queues = streams.map((q) => q.splice(0));
    while (queues[0]!.length + queues[1]!.length > 0) {
      const q =
        queues[0]!.length === 0 ? queues[1]! : queues[1]!.length === 0 ? queues[0]! : queues[rnd.int(0, 1)]!;
      replica.apply(q.shift()!.subarray(4), now);
    }
    const placed = [...model.values()].filter((x) => x.time !== 0);
    t.equal(replica.size, placed.length, `step ${step}: the replica lists every placed driver once`);
    for (const x of placed) {
      const slot = replica.find(x.id);
      if (slot < 0 || !replica.placed(slot)) {
        t.fail(`step ${step}: ${x.id} missing from the replica`);
        continue;
      }
      const v = replica.view(slot);
      if (
        v.cab !== x.cab ||
        v.lat !== x.lat ||
        v.lon !== x.lon ||
        v.time !== x.time ||
        v.free !== (x.order === 0)
      ) {
        t.fail(`step ${step}: ${x.id} in the replica ${JSON.stringify(v)}, owner has ${JSON.stringify(x)}`);
      }
      t.equal(replica.owner(slot)?.source, sources[x.shard], `step ${step}: ${x.id} owned by its worker`);
    }
    for (const [i, shard] of shards.entries()) {
      const mine = [...model.values()].filter((x) => x.shard === i);
      const v = shard.inspect();
      const ids: string[] = [];
      shard.forEach((slot) => {
        ids.push(shard.id(slot));
      });
      t.same(ids.sort(), mine.map((x) => x.id).sort(), `step ${step}: shard ${i} ids`);
      t.equal(shard.size, mine.length, `step ${step}: shard ${i} size`);
      t.equal(v.sessions, mine.length, `step ${step}: shard ${i} session index`);
      t.equal(v.cabs, mine.length, `step ${step}: shard ${i} cab index`);
      const expiry = v.expiryOrder.map((slot) => shard.id(slot));
      t.same(
        expiry,
        [...mine].sort((a, b) => a.seenAt - b.seenAt || order(expiry, a.id, b.id)).map((x) => x.id),
        `step ${step}: shard ${i} expiry order`,
      );
      const trips = mine.filter((x) => x.order !== 0).length;
      t.equal(v.trips, trips, `step ${step}: shard ${i} active trips`);
      t.equal(v.tripIndex, trips, `step ${step}: shard ${i} trip index`);
      for (const x of mine) {
        const d = shard.byId(x.id);
        t.equal(shard.bySession(x.hi, x.lo), d, `step ${step}: ${x.id} by session`);
        t.equal(shard.byCab(x.cab), d, `step ${step}: ${x.id} by cab`);
        t.same(shard.points(d), x.points, `step ${step}: ${x.id} ring`);
        t.equal(shard.latE6(d), x.latE6);
        t.equal(shard.lonE6(d), x.lonE6);
        t.equal(shard.seenAtMs(d), x.seenAt);
        if (x.order !== 0) {
          const trip = shard.trip(String(x.order))!;
          t.equal(trip.active, true);
          t.equal(trip.points, x.tripPoints, `step ${step}: ${x.id} trip points`);
          t.equal(trip.startTime, x.tripStart);
          t.ok(Math.abs(trip.distanceM - x.tripDistance) < 0.1, `step ${step}: ${x.id} trip distance`);
        }
      }
    }
    // Expiry reports trips shard by shard, so compare as sorted lists: each exactly once.
    t.same(
      ended.map((r) => r.orderId).sort(),
      [...expectedEnds].sort(),
      `step ${step}: every ended trip reported exactly once`,
    );
  }
});

/** Equal seenAt: the list keeps insertion order, which the model does not track; take the list's. */
function order(list: string[], a: string, b: string): number {
  return list.indexOf(a) - list.indexOf(b);
}

/** A shard's publisher, writing its frames to a stream (an array standing in for the socket). */
function publisherFor(shard: Shard, source: number, stream: Buffer[]): Publisher {
  const p = new Publisher({ shard, source });
  const sub: Subscriber = {
    write: (frame) => stream.push(frame),
    backlog: () => 0,
    close: () => {},
  };
  p.subscribe(sub);
  return p;
}
