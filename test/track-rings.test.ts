import t from 'tap';
import { TrackRings } from '../src/store/track-rings.ts';
import { Prng } from './support/prng.ts';

/**
 * The rings of differences (src/store/track-rings.ts) against plain arrays of the last N points: small
 * steps a second apart (what fits), and jumps, long gaps, equal and backward times, extreme coordinates
 * and times past 2038 (what escapes), through growth, wrap-around, release and reuse of slots.
 */

t.test('every slot reads back its last N points exactly, after random pushes', async (t) => {
  const rnd = new Prng(0x717c);
  for (const n of [1, 3, 20]) {
    const rings = new TrackRings(n, 2);
    const model: number[][] = [];
    const heads: number[] = [];
    let broken = 0;
    const point = (s: number): [number, number, number] => {
      const last = model[s]!.slice(-3);
      const kind = rnd.int(0, 19);
      if (last.length === 0 || kind === 0) {
        // Anywhere, any time (uint32, past 2038 too).
        return [rnd.int(-90_000_000, 90_000_000), rnd.int(-180_000_000, 180_000_000), rnd.uint32()];
      }
      const [lat, lon, time] = last as [number, number, number];
      if (kind === 1) return [lat + rnd.int(-40_000, 40_000), lon, time + rnd.int(0, 2)];
      if (kind === 2) return [lat, lon, time + rnd.int(200, 2000)];
      if (kind === 3) return [lat + 32_767, lon - 32_767, time + 254];
      return [lat + rnd.int(-700, 700), lon + rnd.int(-700, 700), time + rnd.int(1, 3)];
    };
    for (let step = 0; step < 20_000; step++) {
      const s = rnd.int(0, 40);
      if (s >= model.length) {
        rings.reserve(s + 1);
        while (model.length <= s) {
          model.push([]);
          heads.push(0);
        }
      }
      if (rnd.chance(0.01)) {
        rings.release(s);
        model[s] = [];
        heads[s] = 0;
        continue;
      }
      const [lat, lon, time] = point(s);
      rings.push(s, heads[s]!, lat, lon, time >>> 0, model[s]!.length === 0);
      heads[s] = (heads[s]! + 1) % n;
      model[s]!.push(lat, lon, time >>> 0);
      if (model[s]!.length > 3 * n) model[s]!.splice(0, 3);
      const out: number[] = [];
      rings.read(s, heads[s]!, model[s]!.length / 3, out);
      if (out.join() !== model[s]!.join()) broken++;
    }
    t.equal(broken, 0, `${n} points: every read agreed with the model`);
    t.ok(rings.escapes > 0 || n === 1, `${n} points: ${rings.escapes} escapes in use`);
    for (let s = 0; s < model.length; s++) rings.release(s);
    t.equal(rings.escapes, 0, `${n} points: released slots keep no escape`);
  }
});

t.test('20 points take 112 bytes a slot; reads append to what the array holds', async (t) => {
  const rings = new TrackRings(20, 4);
  t.equal(rings.stride, 112);
  t.equal(rings.byteLength, 4 * 112);
  rings.push(1, 0, 10, 20, 4_294_967_295, true);
  rings.push(1, 1, 11, 21, 4_294_967_295, false);
  const out = [7];
  rings.read(1, 2, 2, out);
  t.same(out, [7, 10, 20, 4_294_967_295, 11, 21, 4_294_967_295], 'an equal time escapes and reads back');
  rings.read(1, 2, 0, out);
  t.equal(out.length, 7);
});
