import t from 'tap';
import { TrackRings } from '../src/store/track-rings.ts';

t.test('slots are independent and grow without losing points', async (t) => {
  const rings = new TrackRings(3, 2);
  const slots = [0, 1];
  const write = (s: number): void => {
    for (let p = 0; p < 3; p++) rings.write(s, p, s * 100 + p, -(s * 100 + p), 2_000_000_000 + s);
  };
  for (const s of slots) write(s);
  // Room for five: the slab doubles to 8, keeping slots 0 and 1.
  rings.reserve(5);
  t.equal(rings.capacity, 8);
  for (const s of [2, 3, 4]) write(s);
  for (const s of [0, 1, 2, 3, 4]) {
    for (let p = 0; p < 3; p++) {
      t.equal(rings.latE6(s, p), s * 100 + p);
      t.equal(rings.lonE6(s, p), -(s * 100 + p));
      // Unix seconds past 2038 (> 2^31) survive: times are uint32.
      t.equal(rings.time(s, p), 2_000_000_000 + s);
    }
  }
  rings.write(0, 0, 0, 0, 4_294_967_295);
  t.equal(rings.time(0, 0), 4_294_967_295);
  t.equal(rings.latE6(1, 0), 100, 'a neighbour is untouched');
  t.equal(rings.byteLength, 8 * 3 * 12);
});
