import t from 'tap';
import { Names } from '../src/store/names.ts';
import { Prng } from './support/prng.ts';

/**
 * The interned names (src/store/names.ts) against plain Maps after random operations: ids found by
 * string and by bytes, cabs found by the cab index (cabs may repeat), through growth, rehashing, cab
 * changes and the arena's compaction.
 */

t.test('agrees with Maps after random set, setCab and delete', async (t) => {
  const rnd = new Prng(0x4a3e);
  const names = new Names({ byCab: true });
  const model = new Map<number, { id: string; cab: string }>();
  const slotOf = new Map<string, number>();
  const free: number[] = [];
  let nextSlot = 0;
  let nextId = 0;
  let broken = 0;
  // Few cabs, so that several drivers share one; ids of every length up to the API's 64.
  const cab = (): string => `CAB-${rnd.int(0, 300)}`;
  const newId = (): string => `d${nextId++}`.padEnd(rnd.int(2, 64), 'x');
  for (let step = 0; step < 60_000; step++) {
    const op = rnd.int(0, 9);
    const slots = [...model.keys()];
    if (op < 4 || slots.length === 0) {
      const slot = free.pop() ?? nextSlot++;
      const id = newId();
      const c = cab();
      if (rnd.chance(0.5)) names.setText(slot, id, c);
      else {
        const b = Buffer.from(`..${id}${c}`, 'latin1');
        names.set(slot, b, 2, id.length, 2 + id.length, c.length);
      }
      model.set(slot, { id, cab: c });
      slotOf.set(id, slot);
    } else if (op < 6) {
      const slot = rnd.pick(slots);
      const c = cab();
      names.setCabText(slot, c);
      model.get(slot)!.cab = c;
    } else if (op < 8) {
      const slot = rnd.pick(slots);
      names.delete(slot);
      slotOf.delete(model.get(slot)!.id);
      model.delete(slot);
      free.push(slot);
    } else {
      const slot = rnd.pick(slots);
      const m = model.get(slot)!;
      if (names.find(m.id) !== slot || names.id(slot) !== m.id || names.cab(slot) !== m.cab) broken++;
      const b = Buffer.from(m.id, 'latin1');
      if (names.findBytes(b, 0, b.length) !== slot || !names.idIs(slot, m.id)) broken++;
      if (names.find(`${m.id}?`) !== -1) broken++;
      const want = [...model].filter(([, x]) => x.cab === m.cab).map(([s]) => s);
      const got: number[] = [];
      names.forCab(m.cab, (s) => got.push(s));
      if (got.sort((a, b) => a - b).join() !== want.sort((a, b) => a - b).join()) broken++;
    }
    if (names.size !== model.size) broken++;
  }
  t.equal(broken, 0, 'every lookup agreed with the model');
  t.equal(names.cabEntries, model.size, 'one cab entry per slot');
  for (const [slot, m] of model) {
    if (names.id(slot) !== m.id || names.cab(slot) !== m.cab || !names.has(slot)) broken++;
  }
  t.equal(broken, 0, 'every slot holds its names at the end');
  for (const slot of free) t.notOk(names.has(slot));
});

t.test('ids compare in byte order, as the API pages them', async (t) => {
  const names = new Names();
  names.setText(0, 'b', 'x');
  names.setText(1, 'ab', 'x');
  names.setText(2, 'abc', 'y');
  t.ok(names.compareIds(1, 0) < 0);
  t.ok(names.compareIds(1, 2) < 0);
  t.equal(names.compareIds(2, 2), 0);
  t.ok(names.compareIdTo(0, 'a') > 0);
  t.equal(names.compareIdTo(2, 'abc'), 0);
  t.throws(() => names.forCab('x', () => {}), 'no cab index without the option');
});
