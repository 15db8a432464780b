import t from 'tap';
import { U64Index } from '../src/store/u64-index.ts';
import { Prng } from './support/prng.ts';

t.test('agrees with a Map keyed by BigInt after random set, delete and get', async (t) => {
  const rnd = new Prng(11);
  const index = new U64Index(4);
  const model = new Map<bigint, number>();
  // A small key space makes collisions, overwrites, growth and deletions of present keys common; high
  // halves repeat on purpose so that keys differing in one half only are exercised.
  const keys = Array.from({ length: 400 }, () => ({
    hi: rnd.pick([0, 1, 0xffffffff, rnd.uint32()]),
    lo: rnd.uint32(),
  }));
  let broken = 0;
  for (let i = 0; i < 200_000; i++) {
    const k = rnd.pick(keys);
    const big = (BigInt(k.hi) << 32n) | BigInt(k.lo);
    const op = rnd.int(0, 3);
    if (op === 0) {
      const v = rnd.int(0, 1_000_000);
      index.set(k.hi, k.lo, v);
      model.set(big, v);
    } else if (op === 1) {
      if (index.delete(k.hi, k.lo) !== model.delete(big)) broken++;
    } else if (op === 2) {
      // Conditional delete: only when the key holds that value.
      const v = model.get(big) ?? 0;
      const guess = rnd.chance(0.5) ? v : v + 1;
      const want = model.get(big) === guess;
      if (want) model.delete(big);
      if (index.delete(k.hi, k.lo, guess) !== want) broken++;
    } else if (index.get(k.hi, k.lo) !== (model.get(big) ?? -1)) {
      broken++;
    }
    if (index.size !== model.size) broken++;
  }
  t.equal(broken, 0, 'every answer and size agreed');
  const seen = new Map<bigint, number>();
  index.forEach((v, hi, lo) => {
    seen.set((BigInt(hi) << 32n) | BigInt(lo), v);
  });
  t.same([...seen].sort(), [...model].sort());
});

t.test('keys that differ in one half only are distinct; int32 halves find their uint32 twins', async (t) => {
  const index = new U64Index();
  index.set(1, 2, 10);
  index.set(2, 1, 20);
  index.set(0xffffffff, 2, 30);
  t.equal(index.get(1, 2), 10);
  t.equal(index.get(2, 1), 20);
  t.equal(index.get(-1, 2), 30, '-1 | 0 is 0xffffffff');
  t.equal(index.get(1, 0), -1);
  t.equal(index.size, 3);
  index.clear();
  t.equal(index.size, 0);
  t.equal(index.get(1, 2), -1);
});
