import type { Message } from 'protobufjs';
import t, { type Test } from 'tap';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack, type TrackFields, trackType } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { Prng } from './support/prng.ts';

// encodeTrack (protobufjs) then decodeTrack gives back every field, and agrees with protobufjs's own decoder.

type Plain = {
  sessionHi: number;
  sessionLo: number;
  lat: number;
  lon: number;
  time: number;
  orderHi: number;
  orderLo: number;
  cost: number;
  speed: number;
  bearing: number;
};

const MAX_U32 = 0xffff_ffff;
const MAX_U64 = (1n << 64n) - 1n;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;

function expected(f: TrackFields): Plain {
  const order = f.orderId ?? 0n;
  return {
    sessionHi: Number(f.session >> 32n),
    sessionLo: Number(f.session & 0xffff_ffffn),
    lat: f.lat,
    lon: f.lon,
    time: f.time,
    orderHi: Number(order >> 32n),
    orderLo: Number(order & 0xffff_ffffn),
    cost: f.cost ?? 0,
    speed: f.speed ?? 0,
    bearing: f.bearing ?? 0,
  };
}

function plain(f: Fix): Plain {
  return {
    sessionHi: f.sessionHi,
    sessionLo: f.sessionLo,
    lat: f.lat,
    lon: f.lon,
    time: f.time,
    orderHi: f.orderHi,
    orderLo: f.orderLo,
    cost: f.cost,
    speed: f.speed,
    bearing: f.bearing,
  };
}

/** protobufjs gives 64-bit fields as a Long (signed words) when long.js is present, else as a number. */
function halves(v: unknown): [hi: number, lo: number] {
  if (typeof v === 'number') return [Math.floor(v / 0x1_0000_0000), v >>> 0];
  const l = v as { high: number; low: number };
  return [l.high >>> 0, l.low >>> 0];
}

function fromProtobufjs(m: Message): Plain {
  const o = m as unknown as Record<string, unknown>;
  const [sessionHi, sessionLo] = halves(o['session']);
  const [orderHi, orderLo] = halves(o['orderId']);
  return {
    sessionHi,
    sessionLo,
    lat: o['lat'] as number,
    lon: o['lon'] as number,
    time: o['time'] as number,
    orderHi,
    orderLo,
    cost: o['cost'] as number,
    speed: o['speed'] as number,
    bearing: o['bearing'] as number,
  };
}

const Track = trackType();
const fix = new Fix();

function check(tt: Test, f: TrackFields, label: string): void {
  const bytes = encodeTrack(f);
  tt.equal(decodeTrack(bytes, bytes.length, fix), true, `${label}: ok`);
  tt.strictSame(plain(fix), expected(f), `${label}: decodeTrack`);
  tt.strictSame(fromProtobufjs(Track.decode(bytes)), expected(f), `${label}: protobufjs`);
}

const base: TrackFields = {
  session: 0x1234_5678_9abc_def0n,
  lat: 52_520_008,
  lon: 13_404_954,
  time: 1_763_700_000,
};

t.test('exact bytes of a small fix', async (tt) => {
  const bytes = encodeTrack({ session: 0x0102_0304_0506_0708n, lat: -1, lon: 1, time: 300 });
  // fixed64 little-endian, then zigzag(-1) = 1, zigzag(1) = 2, 300 = 0xac 0x02; zero fields absent.
  tt.strictSame(Array.from(bytes), [0x09, 8, 7, 6, 5, 4, 3, 2, 1, 0x10, 0x01, 0x18, 0x02, 0x20, 0xac, 0x02]);
  tt.equal(Object.getPrototypeOf(bytes), Uint8Array.prototype, 'a plain Uint8Array, not a pooled Buffer');
});

t.test('zero fields are omitted', async (tt) => {
  tt.equal(encodeTrack({ session: 0n, lat: 0, lon: 0, time: 0 }).length, 0);
  const withZeros = encodeTrack({ ...base, orderId: 0n, cost: 0, speed: 0, bearing: 0 });
  tt.strictSame(withZeros, encodeTrack(base));
  tt.equal(withZeros.length, 9 + 5 + 5 + 6);
  const empty = new Uint8Array(0);
  fix.lat = 7; // must not survive: decodeTrack resets
  tt.equal(decodeTrack(empty, 0, fix), true);
  tt.strictSame(plain(fix), expected({ session: 0n, lat: 0, lon: 0, time: 0 }));
});

t.test('edge values', async (tt) => {
  const sessions = [1n, 0xffn, 1n << 32n, 0xffff_ffffn, 1n << 63n, MAX_U64, 0x8000_0000_0000_0001n];
  for (const session of sessions) check(tt, { ...base, session }, `session ${session}`);
  const coords = [INT32_MIN, INT32_MAX, -90_000_000, 90_000_000, -180_000_000, 180_000_000, -1, 1, -64, 64];
  for (const lat of coords) check(tt, { ...base, lat }, `lat ${lat}`);
  for (const lon of coords) check(tt, { ...base, lon }, `lon ${lon}`);
  const u32s = [1, 127, 128, 16_383, 16_384, 2 ** 28 - 1, 2 ** 28, 2 ** 31, MAX_U32];
  for (const v of u32s) {
    check(tt, { ...base, time: v }, `time ${v}`);
    check(tt, { ...base, cost: v }, `cost ${v}`);
    check(tt, { ...base, speed: v }, `speed ${v}`);
    check(tt, { ...base, bearing: v }, `bearing ${v}`);
  }
  const orders = [1n, 0xffff_ffffn, 1n << 32n, (1n << 53n) + 1n, 1n << 63n, MAX_U64];
  for (const orderId of orders) check(tt, { ...base, orderId }, `orderId ${orderId}`);
  const max = {
    session: MAX_U64,
    lat: INT32_MIN,
    lon: INT32_MIN,
    time: MAX_U32,
    orderId: MAX_U64,
    cost: MAX_U32,
    speed: MAX_U32,
    bearing: MAX_U32,
  };
  check(tt, max, 'every field at its widest');
  // Tag + 8 bytes of fixed64, then 6 tags + 5-byte varints (sint32/uint32), then tag + 10-byte uint64.
  tt.equal(encodeTrack(max).length, 9 + 6 * 6 + 11);
});

t.test('seeded random fixes', async (tt) => {
  const rnd = new Prng(0xc0dec);
  let checked = 0;
  for (let i = 0; i < 500; i++) {
    const wide = rnd.chance(0.2); // sometimes any int32, not just valid coordinates
    const f: TrackFields = {
      session: rnd.uint64(),
      lat: wide ? rnd.int(INT32_MIN, INT32_MAX) : rnd.int(-90_000_000, 90_000_000),
      lon: wide ? rnd.int(INT32_MIN, INT32_MAX) : rnd.int(-180_000_000, 180_000_000),
      time: rnd.uint32(),
      orderId: rnd.chance(0.3) ? 0n : rnd.uint64() >> BigInt(rnd.int(0, 63)),
      cost: rnd.chance(0.3) ? 0 : rnd.uint32() >>> rnd.int(0, 31),
      speed: rnd.int(0, 300),
      bearing: rnd.int(0, 359),
    };
    const bytes = encodeTrack(f);
    const ok = decodeTrack(bytes, bytes.length, fix);
    const want = expected(f);
    if (ok && sameFields(plain(fix), want) && sameFields(fromProtobufjs(Track.decode(bytes)), want))
      checked++;
    else tt.fail(`fix ${i} ${JSON.stringify(f, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  }
  tt.equal(checked, 500);
});

t.test('reads only buf[0..len) and resets the previous fix', async (tt) => {
  const withOrder = encodeTrack({ ...base, orderId: 42n, cost: 1200, speed: 30, bearing: 90 });
  tt.equal(decodeTrack(withOrder, withOrder.length, fix), true);
  const free = encodeTrack(base);
  // A reused receive buffer: the new datagram is shorter and the old bytes are still behind it.
  const buf = new Uint8Array(64).fill(0xff);
  buf.set(free);
  tt.equal(decodeTrack(buf, free.length, fix), true);
  tt.strictSame(plain(fix), expected(base));
});

t.test('a len outside the buffer is a caller bug', async (tt) => {
  tt.throws(() => decodeTrack(new Uint8Array(4), 5, fix), RangeError);
  tt.throws(() => decodeTrack(new Uint8Array(4), -1, fix), RangeError);
});

t.test('encodeTrack refuses values its proto type cannot hold', async (tt) => {
  tt.throws(() => encodeTrack({ ...base, session: -1n }), new RangeError('Track.session -1 is not a uint64'));
  tt.throws(() => encodeTrack({ ...base, session: 1n << 64n }), RangeError);
  tt.throws(() => encodeTrack({ ...base, orderId: 1n << 64n }), RangeError);
  tt.throws(() => encodeTrack({ ...base, lat: 2 ** 31 }), RangeError);
  tt.throws(() => encodeTrack({ ...base, lon: 1.5 }), RangeError);
  tt.throws(() => encodeTrack({ ...base, time: -1 }), RangeError);
  tt.throws(
    () => encodeTrack({ ...base, speed: 2 ** 32 }),
    new RangeError('Track.speed 4294967296 is not an integer in [0, 4294967295]'),
  );
});

function sameFields(a: Plain, b: Plain): boolean {
  return (
    a.sessionHi === b.sessionHi &&
    a.sessionLo === b.sessionLo &&
    a.lat === b.lat &&
    a.lon === b.lon &&
    a.time === b.time &&
    a.orderHi === b.orderHi &&
    a.orderLo === b.orderLo &&
    a.cost === b.cost &&
    a.speed === b.speed &&
    a.bearing === b.bearing
  );
}
