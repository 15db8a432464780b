import t from 'tap';
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT } from '../src/replica/batch.ts';
import { JsonBytes } from '../src/replica/json-bytes.ts';
import { Replica } from '../src/replica/replica.ts';
import { Prng } from './support/prng.ts';

/**
 * The nearest route writes its answer as bytes (src/replica/json-bytes.ts): the text must be exactly
 * what JSON.stringify writes for the same values, or clients would see other numbers.
 */

const written = (f: (w: JsonBytes) => void): string => {
  const w = new JsonBytes();
  f(w);
  return w.take().toString('latin1');
};

t.test('integers and fixed-point numbers are written as JSON.stringify writes their values', async (t) => {
  const rnd = new Prng(0x150b);
  const edges = [0, 1, 9, 10, 99, 100, 101, 1_000_000, 999_999, 2 ** 31, 4_294_967_295];
  for (const n of edges)
    t.equal(
      written((w) => w.uint(n)),
      JSON.stringify(n),
      `uint ${n}`,
    );
  const e6 = [0, 1, -1, 10, -10, 100_000, 1_000_000, -1_000_000, 90_000_000, -90_000_000, 180_000_000];
  e6.push(-179_999_999, 42_887_400, 42_887_417, -500, 5, 120_000_001);
  for (const v of e6)
    t.equal(
      written((w) => w.fixed(v, 6)),
      JSON.stringify(v / 1e6),
      `e6 ${v}`,
    );
  let bad = 0;
  for (let i = 0; i < 100_000; i++) {
    const v = (rnd.uint32() % 360_000_001) - 180_000_000;
    const tenths = rnd.uint32() % 500_001;
    const n = rnd.uint32();
    if (written((w) => w.fixed(v, 6)) !== JSON.stringify(v / 1e6)) bad++;
    if (written((w) => w.fixed(tenths, 1)) !== JSON.stringify(tenths / 10)) bad++;
    if (written((w) => w.uint(n)) !== JSON.stringify(n)) bad++;
  }
  t.equal(bad, 0, '300,000 random values written as JSON.stringify writes them');
});

t.test('the writer grows past its first buffer and keeps what it wrote', async (t) => {
  const w = new JsonBytes();
  const parts: number[] = [];
  w.byte(91);
  for (let i = 0; i < 10_000; i++) {
    if (i > 0) w.byte(44);
    w.uint(i * 7919);
    parts.push(i * 7919);
  }
  w.byte(93);
  t.same(JSON.parse(w.take().toString()), parts, '~60 KB written through a 16 KB start');
  t.equal(w.reset().length, 0, 'reset forgets it');
});

t.test("a driver's JSON is its view with its distance, byte for byte", async (t) => {
  const rnd = new Prng(0x7e57);
  const r = new Replica();
  const w = new BatchWriter();
  w.begin(KIND_SNAPSHOT, 1, 1, 1000);
  const n = 2_000;
  for (let key = 1; key <= n; key++) {
    // Names of every length and allowed character; positions around (0, 0) so both signs occur.
    const name = (len: number): string => {
      const chars = 'ABCXYZabcxyz0123456789._:-';
      let s = '';
      for (let i = 0; i < len; i++) s += chars[rnd.uint32() % chars.length];
      return s;
    };
    w.appeared(key, `${name(1 + (rnd.uint32() % 60))}-${key}`, name(1 + (rnd.uint32() % 20)));
    const latE6 = (rnd.uint32() % 200_001) - 100_000;
    const lonE6 = (rnd.uint32() % 200_001) - 100_000;
    // Below 2^31, so that the next fixes (2^31 + key) are newer.
    const time = rnd.uint32() >>> 1;
    w.moved(key, latE6, lonE6, time, rnd.uint32() % 65_536, rnd.uint32() % 360, rnd.uint32() % 2 === 0, 900);
  }
  r.apply(Buffer.from(w.finish()), 1000);
  t.equal(r.size, n, 'every driver placed');
  const slots: number[] = [];
  const distances: number[] = [];
  const found = r.nearest(0, 0, n, 50_000, false, slots, distances);
  t.equal(found, n, 'every driver found');
  const out = new JsonBytes();
  let mismatches = 0;
  let first = '';
  for (let i = 0; i < found; i++) {
    const tenths = Math.round(distances[i]! * 10);
    r.writeJson(slots[i]!, tenths, out.reset());
    const ours = out.take().toString('latin1');
    const theirs = JSON.stringify({ ...r.view(slots[i]!), distance: tenths / 10 });
    if (ours !== theirs) {
      mismatches++;
      if (first === '') first = `${ours} != ${theirs}`;
    }
  }
  t.equal(mismatches, 0, first || 'all 2,000 drivers written exactly as JSON.stringify writes their view');

  // Then each moves again, and is written as a stream's car: with its road path, straight from its
  // previous fix, or its point alone.
  w.begin(KIND_DELTA, 1, 2, 1000);
  for (let key = 1; key <= n; key++) {
    const latE6 = (rnd.uint32() % 200_001) - 100_000;
    const lonE6 = (rnd.uint32() % 200_001) - 100_000;
    w.moved(key, latE6, lonE6, 2 ** 31 + key, rnd.uint32() % 300, rnd.uint32() % 360, key % 3 === 0, 900);
  }
  r.apply(Buffer.from(w.finish()), 1000);
  let carMismatches = 0;
  let firstCar = '';
  const road = [
    [2.35, 48.85, 100],
    [2.351234, 48.850001, 100.5],
  ];
  for (const slot of slots) {
    const v = r.view(slot);
    const here = [v.lon, v.lat, v.time];
    const prev = [r.prevLonE6(slot) / 1e6, r.prevLatE6(slot) / 1e6, r.prevTime(slot)];
    for (const [roadPath, fromPrevious, path] of [
      [JSON.stringify(road), false, road],
      [undefined, true, [prev, here]],
      [undefined, false, [here]],
    ] as const) {
      r.writeCar(slot, out.reset(), roadPath, fromPrevious);
      const ours = out.take().toString('latin1');
      const theirs = JSON.stringify({ ...v, path });
      // As a move: the id, speed, bearing, free flag and path, in the order the StreamMove schema lists.
      r.writeMove(slot, out.reset(), roadPath, fromPrevious);
      const ourMove = out.take().toString('latin1');
      const theirMove = JSON.stringify({ id: v.id, speed: v.speed, bearing: v.bearing, free: v.free, path });
      for (const [a, b] of [
        [ours, theirs],
        [ourMove, theirMove],
      ]) {
        if (a !== b) {
          carMismatches++;
          if (firstCar === '') firstCar = `${a} != ${b}`;
        }
      }
    }
  }
  t.equal(slots.filter((s) => r.prevTime(s) === 0).length, 0, 'each with a previous fix to draw from');
  t.equal(
    carMismatches,
    0,
    firstCar ||
      "2,000 drivers' stream JSON, whole and as moves, three paths each, as JSON.stringify writes it",
  );
});
