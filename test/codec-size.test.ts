import t from 'tap';
import { encodeTrack, type TrackFields } from '../src/codec/encode.ts';
import { MAX_DATAGRAM_BYTES } from '../src/reasons.ts';
import { Prng } from './support/prng.ts';

// How big a realistic Track datagram gets: the largest of many fixes from all over the world equals the
// worst case worked out from the field ranges, and fits under MAX_DATAGRAM_BYTES.

const NOW = Math.floor(Date.now() / 1000);

/**
 * The ranges a real driver app produces. Busy drivers carry an order id and a running cost. Order ids
 * are a dispatch database's sequence: below 2^35 (34 billion orders) they take 5 varint bytes. Costs in
 * minor units stay below 2^21 (20,971.52 in major units) for any taxi or delivery fare: 3 bytes. Speed
 * and bearing take their full ranges.
 */
const RANGE = {
  lat: [-90_000_000, 90_000_000],
  lon: [-180_000_000, 180_000_000],
  // Fixes are up to a day old when a phone flushes its backlog, and at most 60 s ahead (the future filter).
  time: [NOW - 86_400, NOW + 60],
  orderId: [0, 2 ** 35 - 1],
  cost: [0, 2 ** 21 - 1],
  speed: [0, 250],
  bearing: [0, 359],
} as const;

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Largest zigzag value over [min, max]: zigzag(x) is 2x for x >= 0 and -2x-1 below. */
function zigzagMax([min, max]: readonly [number, number]): number {
  return Math.max(max > 0 ? 2 * max : 0, min < 0 ? -2 * min - 1 : 0);
}

// Each field present costs a 1-byte tag (field numbers 1-8 fit in one byte) plus its payload.
// A varint grows with its value, so the largest value of each range is its widest encoding.
const worst = {
  session: 1 + 8, // fixed64: any nonzero session is 8 bytes
  lat: 1 + varintBytes(zigzagMax(RANGE.lat)),
  lon: 1 + varintBytes(zigzagMax(RANGE.lon)),
  time: 1 + varintBytes(RANGE.time[1]),
  orderId: 1 + varintBytes(RANGE.orderId[1]),
  cost: 1 + varintBytes(RANGE.cost[1]),
  speed: 1 + varintBytes(RANGE.speed[1]),
  bearing: 1 + varintBytes(RANGE.bearing[1]),
};
const worstCase = Object.values(worst).reduce((a, b) => a + b, 0);

function randomFix(rnd: Prng): TrackFields {
  // Uniform over the sphere's area rather than over latitude, so the poles are not overrepresented.
  const lat = Math.round((Math.asin(2 * rnd.float() - 1) * 180 * 1e6) / Math.PI);
  const busy = rnd.chance(0.7);
  return {
    session: rnd.uint64() || 1n,
    lat,
    lon: rnd.int(RANGE.lon[0], RANGE.lon[1]),
    time: rnd.int(RANGE.time[0], RANGE.time[1]),
    orderId: busy ? BigInt(rnd.int(1, RANGE.orderId[1])) : 0n,
    cost: busy ? rnd.int(RANGE.cost[0], RANGE.cost[1]) : 0,
    speed: rnd.int(RANGE.speed[0], RANGE.speed[1]),
    bearing: rnd.int(RANGE.bearing[0], RANGE.bearing[1]),
  };
}

t.test('the worst case worked out from the field ranges', async (tt) => {
  tt.strictSame(worst, { session: 9, lat: 5, lon: 6, time: 6, orderId: 6, cost: 4, speed: 3, bearing: 3 });
  tt.equal(worstCase, 42);
  tt.ok(worstCase <= MAX_DATAGRAM_BYTES, 'fits under the oversize limit');
  tt.comment(`worst-case Track: ${worstCase} bytes ${JSON.stringify(worst)}`);
});

t.test('realistic fixes all over the world', async (tt) => {
  const rnd = new Prng(0x6e0);
  // The corners of the map, the antimeridian and both poles, then random fixes.
  const fixes: TrackFields[] = [];
  for (const lat of [-90_000_000, 90_000_000, 0, -1_048_576, 1_048_576]) {
    for (const lon of [-180_000_000, 180_000_000, -179_999_999, 179_999_999, -134_217_728, 134_217_728]) {
      fixes.push({ ...randomFix(rnd), lat, lon });
    }
  }
  for (let i = 0; i < 100_000; i++) fixes.push(randomFix(rnd));

  let max = 0;
  let atMax = 0;
  let south = 0;
  let nearAntimeridian = 0;
  for (const f of fixes) {
    const n = encodeTrack(f).length;
    if (n > max) {
      max = n;
      atMax = 0;
    }
    if (n === max) atMax++;
    if (f.lat < 0) south++;
    if (Math.abs(f.lon) > 179_000_000) nearAntimeridian++;
  }
  tt.comment(`largest of ${fixes.length} fixes: ${max} bytes (${atMax} fixes that size)`);
  tt.ok(south > 40_000 && south < 60_000, `both hemispheres (${south} south of the equator)`);
  tt.ok(nearAntimeridian > 100, `fixes within 1 degree of +/-180 (${nearAntimeridian})`);
  tt.equal(max, worstCase, 'the sample reaches the analytic worst case');
  tt.ok(max <= MAX_DATAGRAM_BYTES, 'fits under the oversize limit');
  tt.ok(max <= 42, 'at most 42 bytes, as proto/track.proto says');
});

t.test('beyond the realistic ranges a fix still fits under the oversize limit', async (tt) => {
  // Every field at its widest: a 2^64-1 order id, a 2^32-1 cost, speed and bearing at uint32 max.
  const n = encodeTrack({
    session: 2n ** 64n - 1n,
    lat: -90_000_000,
    lon: -180_000_000,
    time: 2 ** 32 - 1,
    orderId: 2n ** 64n - 1n,
    cost: 2 ** 32 - 1,
    speed: 2 ** 32 - 1,
    bearing: 2 ** 32 - 1,
  }).length;
  tt.equal(n, 9 + 5 + 6 + 6 + 11 + 6 + 6 + 6);
  tt.ok(n <= MAX_DATAGRAM_BYTES, `${n} bytes <= ${MAX_DATAGRAM_BYTES}`);
});
