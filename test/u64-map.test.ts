import t from 'tap';
import { U64Map } from '../src/store/u64-map.ts';
import { Prng } from './support/prng.ts';

t.test('agrees with a Map keyed by BigInt after random set, delete and get', async (t) => {
  const rnd = new Prng(7);
  const map = new U64Map<number>(4);
  const model = new Map<bigint, number>();
  // A small key space makes collisions, overwrites and deletions of present keys common; the high
  // halves repeat on purpose so that keys differing only in one half are exercised.
  const keys = Array.from({ length: 300 }, () => ({
    hi: rnd.pick([0, 1, 0xffffffff, rnd.uint32()]),
    lo: rnd.uint32(),
  }));
  for (let i = 0; i < 100_000; i++) {
    const k = rnd.pick(keys);
    const big = (BigInt(k.hi) << 32n) | BigInt(k.lo);
    const op = rnd.int(0, 2);
    if (op === 0) {
      map.set(k.hi, k.lo, i);
      model.set(big, i);
    } else if (op === 1) {
      if (map.delete(k.hi, k.lo) !== model.delete(big)) t.fail(`delete #${i} differs`);
    } else if (map.get(k.hi, k.lo) !== model.get(big)) {
      t.fail(`get #${i} differs`);
    }
  }
  t.equal(map.size, model.size);
  const seen = new Map<bigint, number>();
  map.forEach((v, hi, lo) => {
    seen.set((BigInt(hi) << 32n) | BigInt(lo), v);
  });
  t.same([...seen].sort(), [...model].sort());
});

t.test('keys that differ only in one half are distinct', async (t) => {
  const map = new U64Map<string>();
  map.set(1, 2, 'a');
  map.set(2, 1, 'b');
  map.set(0, 2, 'c');
  t.equal(map.get(1, 2), 'a');
  t.equal(map.get(2, 1), 'b');
  t.equal(map.get(0, 2), 'c');
  t.equal(map.get(1, 0), undefined);
  t.equal(map.size, 3);
});
