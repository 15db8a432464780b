/**
 * Heap-growth tests for what a long-running daemon churns through (after isaacs/node-lru-cache's): a
 * shard whose drivers come, move, hand off, finish trips and leave, with the read replica that follows
 * its batches, and a session registry fed random lookups, run for many rounds. After a warm-up (maps and slabs at their working size, the
 * finished-trips LRU full), the live heap after a full GC must not grow with the rounds: anything kept
 * per departed driver or per looked-up session would add megabytes over these rounds. The scale of the
 * soak (`npm run soak`), in seconds.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { Fix } from '../src/codec/fix.ts';
import { Reason } from '../src/reasons.ts';
import { Publisher } from '../src/replica/publisher.ts';
import { Replica } from '../src/replica/replica.ts';
import { FetchingRegistry, type Resolved } from '../src/sessions/fetching-registry.ts';
import { PENDING } from '../src/sessions/registry.ts';
import { Shard } from '../src/store/shard.ts';
import { Prng } from './support/prng.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function liveHeap(): Promise<number> {
  // Two passes: weak references and finalisers let go of more on the second.
  for (let i = 0; i < 2; i++) {
    gc();
    await tick();
  }
  return getHeapStatistics().used_heap_size;
}

const MB = 1048576;

t.test(
  'a shard churning through 200,000 drivers, and a replica following it, keep a flat heap',
  async (t) => {
    const rnd = new Prng(0x1ea6);
    const DRIVERS = 5000;
    const ROUNDS = 40;
    const ended: number[] = [0];
    const shards = [0, 1].map(
      () =>
        new Shard({
          trackPoints: 20,
          idleTimeoutS: 60,
          finishedTrips: 2000,
          onTripEnd: () => {
            ended[0]!++;
          },
        }),
    );
    // Each shard publishes its batches, once a tick, to a read replica, as an ingest worker does.
    const replica = new Replica();
    const publishers = shards.map((shard, i) => {
      const p = new Publisher({ shard, source: i + 1 });
      p.subscribe({
        write: (frame) => replica.apply(frame.subarray(4), now),
        backlog: () => 0,
        close: () => {},
      });
      return p;
    });
    const publish = (): void => {
      for (const p of publishers) p.tick(now);
    };
    const fix = new Fix();
    let now = 1_700_000_000_000;
    let next = 0;
    let order = 1;
    const send = (s: Shard, d: number, lat: number, lon: number, orderLo: number): void => {
      fix.reset();
      fix.sessionHi = s.sessionHi(d);
      fix.sessionLo = s.sessionLo(d);
      fix.lat = lat;
      fix.lon = lon;
      fix.time = Math.max(s.time(d) + 1, Math.floor(now / 1000));
      fix.orderLo = orderLo;
      fix.cost = orderLo === 0 ? 0 : 100;
      const r = s.ingest(d, fix, now);
      if (r !== Reason.ok) throw new Error(`fix refused: ${r}`);
    };
    /** One round: a fleet arrives, drives with orders, half moves to the other shard, and all leave. */
    const round = (): void => {
      const fleet: Array<{ shard: number; d: number; lo: number; lat: number; lon: number }> = [];
      for (let i = 0; i < DRIVERS; i++) {
        const n = next++;
        const shard = n % 2;
        const d = shards[shard]!.add(`drv-${n}`, `CAB-${n}`, 0x1000_0000 + (n % 7), n >>> 0, now);
        fleet.push({
          shard,
          d,
          lo: n >>> 0,
          lat: 51_500_000 + rnd.int(-20_000, 20_000),
          lon: -120_000 + rnd.int(-30_000, 30_000),
        });
      }
      for (let step = 0; step < 6; step++) {
        now += 1000;
        for (const f of fleet) {
          // About 30 m a second, now and then out of the padded box (a re-index).
          f.lat += rnd.int(-300, 300);
          f.lon += rnd.int(-450, 450);
          const { lat, lon } = f;
          // A trip for the first four steps, then free: every trip starts and ends within the round.
          send(shards[f.shard]!, f.d, lat, lon, step < 4 ? order + (f.lo % 1000) : 0);
        }
        if (step === 2) {
          // Half the fleet moves to the other worker, ring and trip with it.
          for (const f of fleet) {
            if (f.lo % 2 !== 0) continue;
            const from = shards[f.shard]!;
            const state = from.exportState(f.d);
            from.remove(f.d, 'released');
            f.shard = 1 - f.shard;
            f.d = shards[f.shard]!.add(state.id, state.cab, state.sessionHi, state.sessionLo, now, state);
          }
        }
        publish();
      }
      order += 1000;
      // A third is revoked, a third deleted, the rest expire.
      for (const f of fleet) {
        const why = f.lo % 3;
        if (why === 0) shards[f.shard]!.remove(f.d, 'revoked');
        else if (why === 1) shards[f.shard]!.remove(f.d, 'deleted');
      }
      now += 61_000;
      for (const s of shards) s.expire(now);
      publish();
      if (shards[0]!.size + shards[1]!.size !== 0) throw new Error('drivers left over');
      if (replica.known !== 0) throw new Error(`${replica.known} drivers left over in the replica`);
    };

    // The heap does not see typed arrays (the shards' records, rings, names and indexes, the replica's
    // arrays): they must not grow either, and the slots must be reused rather than added.
    const arrays = (): number[] => [...shards.map((s) => s.byteLength), replica.byteLength];
    for (let r = 0; r < 5; r++) round();
    const warm = await liveHeap();
    const warmArrays = arrays();
    const warmSlots = shards.map((s) => s.slotLimit);
    for (let r = 5; r < ROUNDS; r++) round();
    const after = await liveHeap();
    t.same(arrays(), warmArrays, `typed arrays held: ${warmArrays.join(', ')} bytes, as after the warm-up`);
    t.same(
      shards.map((s) => s.slotLimit),
      warmSlots,
      `slots in use: ${warmSlots.join(', ')} of the shards, as after the warm-up`,
    );
    const grew = after - warm;
    t.comment(
      `${next} drivers, ${ended[0]} trips ended: live heap ${(warm / MB).toFixed(1)} MB after the warm-up, ` +
        `${(after / MB).toFixed(1)} MB after ${ROUNDS - 5} more rounds`,
    );
    t.equal(next, DRIVERS * ROUNDS);
    // 175,000 drivers passed through after the warm-up: 12 bytes kept per driver would be 2 MB.
    t.ok(grew < 2 * MB, `the heap grew by ${(grew / MB).toFixed(2)} MB`);
  },
);

t.test('a session registry fed random sessions keeps a flat heap', async (t) => {
  const rnd = new Prng(0xcafe);
  let now = 1_000_000;
  const answered: Resolved[] = [];
  const reg = new FetchingRegistry({
    hitOutcome: 'hit',
    now: () => now,
    cacheMax: 20_000,
    negativeMax: 20_000,
    lookupsPerSecond: 1e9,
    onResolved: (_hi, _lo, r) => {
      if (answered.length < 10) answered.push(r);
    },
    source: {
      up: () => true,
      // Half the sessions are known: an answer at once, as the primary or Redis would give it.
      fetch: (his, los, settle) => {
        for (let i = 0; i < his.length; i++) {
          settle(i, los[i]! % 2 === 0 ? { driverId: `d${los[i]}`, cab: 'C' } : undefined);
        }
      },
    },
  });
  const round = async (): Promise<void> => {
    for (let i = 0; i < 20_000; i++) {
      if (reg.lookup(rnd.int(0, 0xffffffff), rnd.int(0, 0xffffffff)) !== PENDING) continue;
    }
    await tick();
    // A minute on: every cached entry has expired by the next round.
    now += 61_000;
  };
  for (let r = 0; r < 5; r++) await round();
  const warm = await liveHeap();
  for (let r = 0; r < 40; r++) await round();
  const after = await liveHeap();
  t.equal(answered.length, 10);
  t.ok(reg.cached.known + reg.cached.unknown <= 40_000, 'the caches stay within their bounds');
  t.ok(
    after - warm < 2 * MB,
    `800,000 lookups later the heap grew by ${((after - warm) / MB).toFixed(2)} MB`,
  );
});
