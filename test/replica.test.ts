import t from 'tap';
import { BatchError } from '../src/errors.ts';
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT, LEFT_DELETED, LEFT_RELEASED } from '../src/replica/batch.ts';
import { Replica } from '../src/replica/replica.ts';

/**
 * The read replica's rules, one case each (test/shard-model.test.ts checks it against the owners after
 * random operations): one entry per driver whichever sources name it, the newest fix winning across a
 * handoff in either order, a handoff not making the car blink, deletions at once, sources dropped at
 * once, snapshots replacing, gaps refused.
 */

type Rec =
  | ['a', number, string, string]
  | ['m', number, number, number, number, boolean?]
  | ['l', number, number];

/** A batch of `kind` from `source` with sequence `seq`: records as [a]ppeared, [m]oved, [l]eft. */
function batch(kind: number, source: number, seq: number, nowMs: number, recs: Rec[]): Buffer {
  const w = new BatchWriter();
  w.begin(kind, source, seq, nowMs);
  for (const r of recs) {
    if (r[0] === 'a') w.appeared(r[1], r[2], r[3]);
    else if (r[0] === 'm') w.moved(r[1], r[2], r[3], r[4], 10, 90, r[5] ?? true, nowMs - 40);
    else w.left(r[1], r[2]);
  }
  return Buffer.from(w.finish());
}

const ids = (r: Replica): string[] => {
  const out: string[] = [];
  r.forEach((s) => {
    out.push(r.view(s).id);
  });
  return out.sort();
};

t.test('a handoff in either order lists the driver once, at its newest fix', async (t) => {
  for (const newFirst of [false, true]) {
    const lag: number[] = [];
    const r = new Replica({ onLag: (ms) => lag.push(ms) });
    r.apply(
      batch(KIND_SNAPSHOT, 1, 1, 1000, [
        ['a', 5, 'd1', 'C1'],
        ['m', 5, 10_000_000, 20_000_000, 100],
      ]),
      1000,
    );
    r.apply(batch(KIND_SNAPSHOT, 2, 1, 1000, []), 1000);
    const leave = batch(KIND_DELTA, 1, 2, 1200, [['l', 5, LEFT_RELEASED]]);
    const arrive = batch(KIND_DELTA, 2, 2, 1200, [
      ['a', 9, 'd1', 'C1'],
      ['m', 9, 10_000_100, 20_000_000, 101],
    ]);
    r.apply(newFirst ? arrive : leave, 1210);
    t.same(ids(r), ['d1'], `${newFirst ? 'new owner' : 'old owner'} first: listed once`);
    r.apply(newFirst ? leave : arrive, 1220);
    t.same(ids(r), ['d1'], 'still once');
    const slot = r.find('d1');
    t.equal(r.view(slot).time, 101, 'at the newest fix');
    t.same(r.owner(slot), { host: '', source: 2 }, 'owned by the new worker');
    t.ok(
      lag.length > 0 && lag.every((ms) => ms > 0 && ms < 100),
      `lag measured on deltas: ${lag.join(', ')} ms`,
    );
  }
});

t.test('a late, older fix from the old owner does not move the driver back', async (t) => {
  const r = new Replica();
  r.apply(
    batch(KIND_SNAPSHOT, 1, 1, 0, [
      ['a', 1, 'd1', 'C1'],
      ['m', 1, 1_000_000, 1_000_000, 100],
    ]),
    0,
  );
  r.apply(
    batch(KIND_SNAPSHOT, 2, 1, 0, [
      ['a', 7, 'd1', 'C1'],
      ['m', 7, 2_000_000, 1_000_000, 105],
    ]),
    0,
  );
  r.apply(batch(KIND_DELTA, 1, 2, 0, [['m', 1, 1_000_500, 1_000_000, 104]]), 0);
  t.equal(r.view(r.find('d1')).time, 105);
  t.equal(r.view(r.find('d1')).lat, 2);
  t.equal(r.size, 1);
});

t.test('a handed-off driver whose new owner never names it leaves after the grace', async (t) => {
  const r = new Replica({ handoffGraceMs: 1000 });
  r.apply(
    batch(KIND_SNAPSHOT, 1, 1, 0, [
      ['a', 1, 'd1', 'C1'],
      ['m', 1, 1_000_000, 1_000_000, 100],
    ]),
    0,
  );
  r.apply(batch(KIND_DELTA, 1, 2, 0, [['l', 1, LEFT_RELEASED]]), 5000);
  t.equal(r.size, 1, 'still listed, where it was');
  r.apply(batch(KIND_DELTA, 1, 3, 0, []), 5999);
  t.equal(r.size, 1);
  r.apply(batch(KIND_DELTA, 1, 4, 0, []), 6000);
  t.equal(r.size, 0, 'gone at the end of the grace');
  t.equal(r.known, 0);
});

t.test(
  'deleted, revoked, expired: gone with the batch; a dead source: all its drivers at once',
  async (t) => {
    const r = new Replica();
    r.apply(
      batch(KIND_SNAPSHOT, 1, 1, 0, [
        ['a', 1, 'd1', 'C1'],
        ['m', 1, 1_000_000, 1_000_000, 100],
        ['a', 2, 'd2', 'C2'],
        ['m', 2, 1_000_100, 1_000_000, 100],
      ]),
      0,
    );
    r.apply(
      batch(KIND_SNAPSHOT, 2, 1, 0, [
        ['a', 1, 'd3', 'C3'],
        ['m', 1, 1_000_200, 1_000_000, 100],
      ]),
      0,
    );
    r.apply(batch(KIND_DELTA, 1, 2, 0, [['l', 1, LEFT_DELETED]]), 0);
    t.same(ids(r), ['d2', 'd3']);
    t.equal(r.dropSource('', 2), 1);
    t.same(ids(r), ['d2']);
    t.notOk(r.synced('', 2));
  },
);

t.test('a snapshot replaces what its source said before; a gap or a delta first is refused', async (t) => {
  const r = new Replica();
  r.apply(
    batch(KIND_SNAPSHOT, 1, 1, 0, [
      ['a', 1, 'd1', 'C1'],
      ['m', 1, 1_000_000, 1_000_000, 100],
    ]),
    0,
  );
  r.apply(
    batch(KIND_SNAPSHOT, 1, 9, 0, [
      ['a', 4, 'd2', 'C2'],
      ['m', 4, 1_000_000, 1_000_000, 100],
    ]),
    0,
  );
  t.same(ids(r), ['d2'], 'd1 is no longer named by the source');
  t.throws(() => r.apply(batch(KIND_DELTA, 1, 11, 0, []), 0), BatchError, 'seq 11 after 9: a gap');
  t.throws(() => r.apply(batch(KIND_DELTA, 3, 1, 0, []), 0), BatchError, 'a delta before any snapshot');
  t.throws(
    () => r.apply(batch(KIND_DELTA, 1, 10, 0, [['m', 77, 1, 1, 1]]), 0),
    BatchError,
    'MOVED for a key never named',
  );
});

t.test('a cab change reaches the replica; free filters nearest', async (t) => {
  const r = new Replica();
  r.apply(
    batch(KIND_SNAPSHOT, 1, 1, 0, [
      ['a', 1, 'd1', 'C1'],
      ['m', 1, 1_000_000, 1_000_000, 100, false],
      ['a', 2, 'd2', 'C2'],
      ['m', 2, 1_001_000, 1_000_000, 100, true],
    ]),
    0,
  );
  r.apply(batch(KIND_DELTA, 1, 2, 0, [['a', 1, 'd1', 'NEW-CAB']]), 0);
  t.equal(r.view(r.find('d1')).cab, 'NEW-CAB');
  const slots: number[] = [];
  const dists: number[] = [];
  t.equal(r.nearest(1, 1, 10, 5000, true, slots, dists), 1);
  t.equal(r.view(slots[0]!).id, 'd2', 'only the free one');
  t.equal(r.nearest(1, 1, 10, 5000, false, slots, dists), 2);
  t.same(
    r.within(0, 0, 2, 2, 'd1', 10).map((s) => r.view(s).id),
    ['d2'],
    'a box page after d1',
  );
});
