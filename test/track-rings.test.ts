import t from 'tap';
import { TrackRings } from '../src/store/track-rings.ts';

t.test('slots are independent, grow without losing points, and are reused after release', async (t) => {
  const rings = new TrackRings(3, 2);
  const slots = [rings.alloc(), rings.alloc(), rings.alloc(), rings.alloc(), rings.alloc()];
  t.same(slots, [0, 1, 2, 3, 4]);
  for (const s of slots)
    for (let p = 0; p < 3; p++) rings.write(s, p, s * 100 + p, -(s * 100 + p), 2_000_000_000 + s);
  for (const s of slots) {
    for (let p = 0; p < 3; p++) {
      t.equal(rings.latE6(s, p), s * 100 + p);
      t.equal(rings.lonE6(s, p), -(s * 100 + p));
      // Unix seconds past 2038 (> 2^31) survive: times are uint32.
      t.equal(rings.time(s, p), 2_000_000_000 + s);
    }
  }
  t.equal(rings.size, 5);
  rings.release(2);
  t.equal(rings.size, 4);
  t.equal(rings.alloc(), 2);
  t.equal(rings.time(4, 0), 2_000_000_004);
  rings.write(0, 0, 0, 0, 4_294_967_295);
  t.equal(rings.time(0, 0), 4_294_967_295);
});
