import { createHash } from 'node:crypto';
import t from 'tap';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { sessionToBigInt } from '../src/codec/session.ts';
import { haversineM } from '../src/geo/distance.ts';
import { checkFix } from '../src/ingest/filter.ts';
import { Reason } from '../src/reasons.ts';
import { BAD_KINDS, badKindNames, badKindReason } from '../src/sim/bad-datagrams.ts';
import { City, DEFAULT_CENTRE, DEFAULT_RADIUS_M, DEFAULT_SPACING_M } from '../src/sim/city.ts';
import {
  FLAG_FALL,
  Fleet,
  MAX_CRUISE_MS,
  MAX_RED_S,
  MAX_SPEED_MS,
  MIN_CRUISE_MS,
  MIN_RED_S,
  NOISE_MAX_M,
} from '../src/sim/fleet.ts';
import { Simulation, type SimulationOptions } from '../src/sim/simulation.ts';
import { writeTrack } from '../src/sim/wire.ts';
import { Prng } from './support/prng.ts';

// The fleet model on its own: no sockets, no clock. Everything is seeded, so every figure is exact.

const START_S = 1_750_000_000;
const IDLE_TIMEOUT_S = 900;
/** A degree x 1e6 is 0.11 m: the rounding of a coordinate on the wire. */
const E6_ROUNDING_M = 0.12;

const cityOptions = {
  centreLat: DEFAULT_CENTRE.lat,
  centreLon: DEFAULT_CENTRE.lon,
  spacingM: DEFAULT_SPACING_M,
  radiusM: DEFAULT_RADIUS_M,
};

function simOptions(over: Partial<SimulationOptions> = {}): SimulationOptions {
  return {
    ...cityOptions,
    cars: 300,
    rate: 1,
    seed: 42,
    startS: START_S,
    badShare: 0.05,
    offlineShare: 0.05,
    offlineMinS: 3,
    offlineMaxS: 20,
    firstOrderId: 1,
    ...over,
  };
}

interface Sent {
  car: number;
  bytes: Uint8Array;
  burst: boolean;
  kind: number;
  /** The tick time when it was sent. */
  at: number;
}

/** Runs `ticks` whole ticks and keeps a copy of every datagram. */
function run(sim: Simulation, ticks: number): Sent[] {
  const out: Sent[] = [];
  const n = ticks * sim.cars;
  for (let k = 0; k < n; k++) {
    const at = sim.time;
    sim.step((car, data, offset, length, burst, kind) => {
      out.push({ car, bytes: data.slice(offset, offset + length), burst, kind, at });
    });
  }
  return out;
}

function decode(bytes: Uint8Array): Fix {
  const f = new Fix();
  if (!decodeTrack(bytes, bytes.length, f)) throw new Error('a good fix did not decode');
  return f;
}

t.test('the encoder writes what protobufjs writes, byte for byte', async (t) => {
  const rng = new Prng(7);
  const buf = new Uint8Array(64);
  const f = new Fix();
  let mismatches = 0;
  for (let k = 0; k < 20_000; k++) {
    // Zeros often, to cover the left-out fields; every width of every field.
    const pick = (max: number): number => (rng.chance(0.2) ? 0 : rng.int(0, max));
    f.sessionHi = pick(0xffff_ffff);
    f.sessionLo = pick(0xffff_ffff);
    f.lat = rng.chance(0.2) ? 0 : rng.int(-0x8000_0000, 0x7fff_ffff);
    f.lon = rng.chance(0.2) ? 0 : rng.int(-180_000_000, 180_000_000);
    f.time = pick(0xffff_ffff);
    f.orderHi = rng.chance(0.5) ? 0 : pick(0xffff_ffff);
    f.orderLo = pick(0xffff_ffff);
    f.cost = pick(0xffff_ffff);
    f.speed = pick(300);
    f.bearing = pick(359);
    const len = writeTrack(buf, 0, f);
    const want = encodeTrack({
      session: sessionToBigInt(f.sessionHi, f.sessionLo),
      lat: f.lat,
      lon: f.lon,
      time: f.time,
      orderId: sessionToBigInt(f.orderHi, f.orderLo),
      cost: f.cost,
      speed: f.speed,
      bearing: f.bearing,
    });
    if (Buffer.compare(buf.subarray(0, len), want) !== 0) mismatches++;
  }
  t.equal(mismatches, 0);
});

t.test('the same seed gives the same datagrams; another seed does not', async (t) => {
  const digest = (seed: number): string => {
    const h = createHash('sha256');
    for (const s of run(new Simulation(simOptions({ seed })), 120)) {
      h.update(`${s.car}:${s.burst}:${s.kind}:`);
      h.update(s.bytes);
    }
    return h.digest('hex');
  };
  const a = digest(42);
  t.equal(digest(42), a, 'seed 42 twice');
  t.not(digest(43), a, 'seed 43');
});

/** Steps every car `ticks` times, calling `each` with the state before and after each step. */
function drive(
  fleet: Fleet,
  ticks: number,
  each: (i: number, before: { x: number; y: number; stop: number; order: number }, time: number) => void,
): void {
  for (let k = 0; k < ticks; k++) {
    for (let i = 0; i < fleet.size; i++) {
      const before = { x: fleet.x[i]!, y: fleet.y[i]!, stop: fleet.stopLeft[i]!, order: fleet.orderId[i]! };
      fleet.step(i, 1, START_S + k);
      each(i, before, START_S + k);
    }
  }
}

t.test('cars drive on the streets, at city speeds, with a few metres of GPS noise', async (t) => {
  const city = new City(cityOptions);
  const fleet = new Fleet({ cars: 200, seed: 1, city, firstOrderId: 1 });
  let offStreet = 0;
  let outside = 0;
  let noisy = 0;
  let tooFast = 0;
  let reportedTooFast = 0;
  let wrongSpeedField = 0;
  let maxNoise = 0;
  let drivingSteps = 0;
  let drivingM = 0;
  const lastFix = new Map<number, { lat: number; lon: number }>();
  drive(fleet, 600, (i, before) => {
    const x = fleet.x[i]!;
    const y = fleet.y[i]!;
    if (city.offStreetM(x, y) > 1e-6) offStreet++;
    if (Math.abs(x) > city.extentM + 1e-6 || Math.abs(y) > city.extentM + 1e-6) outside++;
    // Along the grid, a car covers at least the straight-line distance.
    const moved = Math.hypot(x - before.x, y - before.y);
    if (moved > MAX_SPEED_MS + 1e-9) tooFast++;
    const f = fleet.fix;
    if (f.speed > Math.round(MAX_SPEED_MS * 3.6)) wrongSpeedField++;
    const noise = Math.max(Math.abs(city.xOf(f.lon) - x), Math.abs(city.yOf(f.lat) - y));
    maxNoise = Math.max(maxNoise, noise);
    if (noise > NOISE_MAX_M + E6_ROUNDING_M) noisy++;
    const prev = lastFix.get(i);
    const now = { lat: f.lat / 1e6, lon: f.lon / 1e6 };
    // Two fixes a second apart: the car's move plus the noise of both, each up to 6 m on each axis.
    const bound = MAX_SPEED_MS + 2 * Math.SQRT2 * (NOISE_MAX_M + E6_ROUNDING_M);
    if (prev !== undefined && haversineM(prev.lat, prev.lon, now.lat, now.lon) > bound) reportedTooFast++;
    lastFix.set(i, now);
    // A whole second of driving: not standing before, and not stopped at a crossing during the step.
    if (before.stop === 0 && fleet.stopLeft[i] === 0) {
      drivingSteps++;
      drivingM += f.speed / 3.6;
    }
  });
  t.equal(offStreet, 0, 'true positions are on a street axis');
  t.equal(outside, 0, 'and inside the grid');
  t.equal(tooFast, 0, `no move longer than ${MAX_SPEED_MS} m in a second`);
  t.equal(wrongSpeedField, 0, 'the speed field is never above the top speed');
  t.equal(noisy, 0, `fixes within ${NOISE_MAX_M} m of the true position on each axis`);
  t.ok(maxNoise > NOISE_MAX_M / 2, `the noise is there (largest ${maxNoise.toFixed(2)} m)`);
  t.equal(reportedTooFast, 0, 'consecutive fixes are never an implausible jump apart');
  const mean = drivingM / drivingSteps;
  t.ok(mean > MIN_CRUISE_MS && mean < MAX_CRUISE_MS, `mean driving speed ${mean.toFixed(2)} m/s`);
});

t.test('standstills: jitter in the fixes, no movement', async (t) => {
  const city = new City(cityOptions);
  const fleet = new Fleet({ cars: 200, seed: 2, city, firstOrderId: 1 });
  let standing = 0;
  let moved = 0;
  let speedNotZero = 0;
  let beyondNoise = 0;
  let redLights = 0;
  let badRedLength = 0;
  const spells = new Map<number, Set<string>>();
  let jitteryStandstills = 0;
  let longStandstills = 0;
  drive(fleet, 300, (i, before) => {
    const f = fleet.fix;
    if (before.stop > 0) {
      standing++;
      if (fleet.x[i] !== before.x || fleet.y[i] !== before.y) moved++;
      if (f.speed !== 0) speedNotZero++;
      const off = Math.max(Math.abs(city.xOf(f.lon) - before.x), Math.abs(city.yOf(f.lat) - before.y));
      if (off > NOISE_MAX_M + E6_ROUNDING_M) beyondNoise++;
      let seen = spells.get(i);
      if (seen === undefined) {
        seen = new Set();
        spells.set(i, seen);
      }
      seen.add(`${f.lat},${f.lon}`);
    } else {
      const seen = spells.get(i);
      if (seen !== undefined) {
        spells.delete(i);
        longStandstills++;
        if (seen.size > 1) jitteryStandstills++;
      }
      // A new red light: the car ends its step exactly on a crossing, and waits 5-35 s.
      if (fleet.stopLeft[i]! > 0 && before.order === fleet.orderId[i]) {
        const s = city.spacingM;
        const onCrossing =
          Math.abs(fleet.x[i]! - Math.round(fleet.x[i]! / s) * s) < 1e-6 &&
          Math.abs(fleet.y[i]! - Math.round(fleet.y[i]! / s) * s) < 1e-6;
        if (onCrossing) {
          redLights++;
          if (fleet.stopLeft[i]! < MIN_RED_S || fleet.stopLeft[i]! > MAX_RED_S) badRedLength++;
        }
      }
    }
  });
  t.ok(standing > 1000, `cars stood still for ${standing} fixes`);
  t.ok(redLights > 100, `${redLights} red lights`);
  t.equal(badRedLength, 0, `red lights last ${MIN_RED_S}-${MAX_RED_S} s`);
  t.equal(moved, 0, 'a standing car does not move');
  t.equal(speedNotZero, 0, 'and reports speed 0');
  t.equal(beyondNoise, 0, 'its fixes stay within the GPS noise of where it stands');
  t.ok(longStandstills > 100, `${longStandstills} standstills ended`);
  t.equal(jitteryStandstills, longStandstills, 'every standstill shows jitter in its fixes');
});

t.test('trips: order ids from a counter, a cost that grows while the trip runs, then free', async (t) => {
  const city = new City(cityOptions);
  const fleet = new Fleet({ cars: 200, seed: 3, city, firstOrderId: 1000 });
  const startedAtStart = fleet.tripsStarted;
  t.ok(startedAtStart > 80 && startedAtStart < 160, `${startedAtStart} of 200 cars busy at the start`);
  const lastCost = new Map<number, { order: number; cost: number; first: number }>();
  const seenOrders = new Set<number>();
  let costDown = 0;
  let newTripFlagFall = 0;
  let freeWithCost = 0;
  let ended = 0;
  let grewOverTrip = 0;
  let orderOutOfCounter = 0;
  drive(fleet, 900, (i) => {
    const f = fleet.fix;
    const order = f.orderHi * 0x1_0000_0000 + f.orderLo;
    const prev = lastCost.get(i);
    if (order === 0) {
      if (f.cost !== 0) freeWithCost++;
      if (prev !== undefined) {
        ended++;
        if (prev.cost > prev.first) grewOverTrip++;
        lastCost.delete(i);
      }
      return;
    }
    if (prev === undefined || prev.order !== order) {
      if (seenOrders.has(order)) t.fail(`order ${order} used twice`);
      seenOrders.add(order);
      if (order < 1000 || order >= fleet.nextOrderId) orderOutOfCounter++;
      // A new trip's first fix shows the flag fall: the meter starts with the order.
      if (prev === undefined && order >= 1000 + startedAtStart && f.cost !== FLAG_FALL) newTripFlagFall++;
      lastCost.set(i, { order, cost: f.cost, first: f.cost });
      return;
    }
    if (f.cost < prev.cost) costDown++;
    prev.cost = f.cost;
  });
  t.equal(costDown, 0, 'the cost never goes down during a trip');
  t.equal(newTripFlagFall, 0, 'a new trip starts at the flag fall');
  t.equal(freeWithCost, 0, 'a free car reports no cost');
  t.equal(orderOutOfCounter, 0, 'order ids come from the counter');
  t.equal(seenOrders.size, fleet.nextOrderId - 1000, 'every order id handed out was driven');
  t.ok(ended > 50, `${ended} trips ended`);
  t.equal(grewOverTrip, ended, 'every ended trip cost more at its end than at its start');
  t.equal(fleet.tripsEnded, ended, 'the fleet counted them');
  t.ok(fleet.tripsStarted > startedAtStart + 50, `${fleet.tripsStarted - startedAtStart} new orders`);
});

t.test(
  'offline phones come back with a burst: their fixes in order, with their original times',
  async (t) => {
    const sim = new Simulation(simOptions({ cars: 200, badShare: 0, offlineShare: 0.2, seed: 5 }));
    const sent = run(sim, 200);
    const lastTime = new Map<number, number>();
    let notIncreasing = 0;
    let gaps = 0;
    let burstNotOld = 0;
    let bursts = 0;
    let burstFixes = 0;
    let brokenBursts = 0;
    for (let k = 0; k < sent.length; k++) {
      const s = sent[k]!;
      const f = decode(s.bytes);
      const prev = lastTime.get(s.car);
      // Every tick makes a fix and none is lost (no bad ones here): a car's times go up one second at a time.
      if (prev !== undefined && f.time <= prev) notIncreasing++;
      if (prev !== undefined && f.time !== prev + 1) gaps++;
      lastTime.set(s.car, f.time);
      if (s.burst) {
        burstFixes++;
        if (f.time >= s.at) burstNotOld++;
        const next = sent[k + 1];
        // A burst is followed by more of it or by the car's live fix of this tick, nothing in between.
        if (next === undefined || next.car !== s.car) brokenBursts++;
        else if (!next.burst) {
          bursts++;
          if (decode(next.bytes).time !== s.at) brokenBursts++;
        }
      }
    }
    t.equal(notIncreasing, 0, 'every car sends its fixes in time order, bursts included');
    t.equal(gaps, 0, 'and none is missing');
    t.equal(burstNotOld, 0, 'a burst carries the times the fixes were taken, not the time it is sent');
    t.equal(brokenBursts, 0, 'a burst goes out all at once, then the live fix');
    const c = sim.counters;
    t.equal(c.burst, burstFixes, 'the burst count');
    t.ok(bursts > 100, `${bursts} bursts`);
    t.equal(
      bursts + c.offlineNow,
      c.offlineEpisodes,
      'every offline spell ends in a burst, or still goes on',
    );
    t.equal(c.sent + c.held, 200 * 200, 'every fix is sent or still held');
    // Every fix taken offline is held, then sent in a burst: car-seconds offline over car-seconds in all.
    // Everyone starts online, and the share reaches 20 % within a spell or two: a little under 20 % here.
    const share = (c.burst + c.held) / (200 * 200);
    t.ok(share > 0.17 && share < 0.22, `${(share * 100).toFixed(1)} % of car-seconds offline (asked 20 %)`);
  },
);

t.test(
  'bad datagrams: the share asked for, and each kind refused by the daemon for its reason',
  async (t) => {
    const badShare = 0.1;
    const sim = new Simulation(simOptions({ cars: 2000, badShare, offlineShare: 0.05, seed: 9 }));
    const sent = run(sim, 60);
    const c = sim.counters;
    t.equal(sent.length, c.sent);
    const share = c.badTotal / c.sent;
    // 120k datagrams: the binomial's standard deviation is 0.09 %; 0.5 % is 5 of them.
    t.ok(Math.abs(share - badShare) < 0.005, `bad share ${(share * 100).toFixed(2)} % (asked 10 %)`);
    for (let k = 0; k < BAD_KINDS; k++) {
      const kindShare = c.bad[k]! / c.sent;
      t.ok(
        Math.abs(kindShare - badShare / BAD_KINDS) < 0.003,
        `${badKindNames[k]} ${(kindShare * 100).toFixed(2)} %`,
      );
    }
    const fix = new Fix();
    const refusedAs = Array.from({ length: BAD_KINDS }, () => new Map<number, number>());
    let goodRefused = 0;
    let burstBad = 0;
    for (const s of sent) {
      // The daemon's own path: the 64-byte limit, the decoder, then the filter on its clock.
      let r: number =
        s.bytes.length > 64
          ? Reason.oversize
          : decodeTrack(s.bytes, s.bytes.length, fix)
            ? Reason.ok
            : Reason.malformed;
      if (r === Reason.ok) r = checkFix(fix, s.at, IDLE_TIMEOUT_S);
      if (s.kind < 0) {
        if (r !== Reason.ok) goodRefused++;
        continue;
      }
      if (s.burst) burstBad++;
      const m = refusedAs[s.kind]!;
      m.set(r, (m.get(r) ?? 0) + 1);
    }
    t.equal(goodRefused, 0, 'every good fix passes the decoder and the filter');
    t.ok(burstBad > 0, 'bad datagrams held by offline phones are in their bursts too');
    for (let k = 0; k < BAD_KINDS; k++) {
      t.same(
        [...refusedAs[k]!],
        [[badKindReason[k], c.bad[k]]],
        `every ${badKindNames[k]} datagram is refused as reason ${badKindReason[k]}`,
      );
    }
  },
);
