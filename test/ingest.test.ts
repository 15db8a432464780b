import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { Ingest } from '../src/ingest/ingest.ts';
import { Reason } from '../src/reasons.ts';
import type { Resolved } from '../src/sessions/fetching-registry.ts';
import { FAILED, type Lookup, PENDING, THROTTLED } from '../src/sessions/registry.ts';
import { NO_SLOT, Shard } from '../src/store/shard.ts';
import { Prng } from './support/prng.ts';

/**
 * The ingest object without a process (issue 15): every datagram counted exactly once, in one place,
 * whatever happens to the fixes it holds (lookups answered late or failing, claims granted, dropped,
 * timed out, sessions revoked, drivers removed), and held fixes applied with their own values even when
 * an answer arrives while another is being applied.
 */

const NOW_S = 1_700_000_000;

interface World {
  ingest: Ingest;
  shard: Shard;
  /** Sessions the fake registry knows: lo -> driver id. */
  sessions: Map<number, string>;
  /** Lookups answered PENDING, waiting for the test to resolve them. */
  pending: number[];
  claims: string[];
  dropped: Array<[string, number]>;
  /** How the registry answers a lookup of an uncached session. */
  mode: { value: 'pending' | 'throttled' | 'failed' | 'cached' };
  clock: { nowMs: number; nowS: number };
}

/** `batched`: datagrams wait for flush() (the test calls it), as the worker's wait for setImmediate. */
function world(onClaim?: (w: World, id: string) => void, batched = false): World {
  const clock = { nowMs: NOW_S * 1000, nowS: NOW_S };
  const shard = new Shard({ trackPoints: 8, idleTimeoutS: 900 });
  const w = {
    shard,
    sessions: new Map<number, string>(),
    pending: [] as number[],
    claims: [] as string[],
    dropped: [] as Array<[string, number]>,
    mode: { value: 'pending' as World['mode']['value'] },
    clock,
  } as World;
  const registry = {
    lookup(_hi: number, lo: number): Lookup {
      const id = w.sessions.get(lo);
      if (w.mode.value === 'throttled') return THROTTLED;
      if (w.mode.value === 'failed') return FAILED;
      if (w.mode.value === 'cached') return id === undefined ? undefined : { driverId: id, cab: `C-${id}` };
      if (!w.pending.includes(lo)) w.pending.push(lo);
      return PENDING;
    },
  };
  w.ingest = new Ingest({
    shard,
    registry,
    clock,
    idleTimeoutS: 900,
    ...(batched ? { defer: () => {} } : {}),
    ports: {
      claim: (id) => {
        w.claims.push(id);
        onClaim?.(w, id);
      },
      dropped: (id, epoch) => w.dropped.push([id, epoch]),
    },
  });
  return w;
}

function resolve(w: World, lo: number, result?: Resolved): void {
  w.pending.splice(w.pending.indexOf(lo), 1);
  const id = w.sessions.get(lo);
  w.ingest.resolved(1, lo, result ?? (id === undefined ? undefined : { driverId: id, cab: `C-${id}` }));
}

const fixOf = (lo: number, time: number, lat = 10_000_000): Uint8Array =>
  encodeTrack({ session: (1n << 32n) | BigInt(lo), lat, lon: 20_000_000, time });

function balance(w: World): boolean {
  const c = w.ingest.counters;
  let rejected = 0;
  for (const n of c.rejected) rejected += n;
  return c.received === c.accepted + rejected + w.ingest.held;
}

for (const batched of [false, true]) {
  t.test(
    `received = accepted + rejected + held after every step of 20,000 random ones${batched ? ', in batches' : ''}`,
    async (t) => {
      const rnd = new Prng(15);
      const w = world(undefined, batched);
      for (let lo = 1; lo <= 200; lo++) if (lo % 5 !== 0) w.sessions.set(lo, `d${lo}`);
      let epoch = 0;
      let broken = 0;
      // Fix times move on a second every 40 steps, from 800 s ago: none stale or in the future.
      const timeAt = (step: number): number => NOW_S - 800 + Math.floor(step / 40) + rnd.int(0, 1);
      for (let step = 0; step < 20_000; step++) {
        const op = rnd.int(0, 99);
        const lo = rnd.int(1, 200);
        if (op < 50) {
          w.mode.value = rnd.chance(0.9) ? 'pending' : rnd.pick(['throttled', 'failed', 'cached'] as const);
          const kind = rnd.int(0, 9);
          if (kind === 0) w.ingest.datagram(new Uint8Array([0xff, 0xff, 0xff]));
          else if (kind === 1) w.ingest.datagram(new Uint8Array(80));
          else w.ingest.datagram(fixOf(lo, timeAt(step), 10_000_000 + rnd.int(-100, 100)));
        } else if (op < 70 && w.pending.length > 0) {
          const p = rnd.pick(w.pending);
          resolve(w, p, rnd.chance(0.1) ? FAILED : undefined);
        } else if (op < 85 && w.claims.length > 0) {
          const id = w.claims.splice(rnd.int(0, w.claims.length - 1), 1)[0]!;
          w.ingest.grant(id, ++epoch, null, null);
        } else if (op < 90) {
          w.ingest.revoke(1, lo);
        } else if (op < 95) {
          w.ingest.remove(`d${lo}`);
        } else if (op < 97) {
          w.clock.nowMs += 6000;
          w.ingest.expireClaims();
          w.claims.length = 0;
        } else if (w.shard.byId(`d${lo}`) !== NO_SLOT) {
          w.ingest.release(`d${lo}`);
        }
        // Batched: the staged datagrams are applied now and then (the worker: after each burst of reads).
        if (batched && rnd.chance(0.3)) w.ingest.flush();
        if (!balance(w)) broken++;
      }
      w.ingest.flush();
      t.equal(broken, 0, 'the balance held at every step');
      // Settle everything still held: lookups answered, claims granted.
      for (const lo of [...w.pending]) resolve(w, lo);
      for (const id of w.claims.splice(0)) w.ingest.grant(id, ++epoch, null, null);
      t.equal(w.ingest.held, 0, 'nothing left held');
      t.ok(balance(w), 'received = accepted + rejected');
      const c = w.ingest.counters;
      t.ok(
        c.accepted > 1000 && c.rejected[Reason.malformed]! > 0 && c.rejected[Reason.unknownSession]! > 0,
        'a mix',
      );
      t.comment(
        `received ${c.received}, accepted ${c.accepted}, by reason ${Array.from(c.rejected).join(',')}`,
      );
    },
  );
}

t.test(
  'a grant that arrives while held fixes are being applied: each fix once, with its own values',
  async (t) => {
    // The primary answers the claim at once, inside the claim call (a port that grants synchronously):
    // the grant applies the fixes held so far while resolved() is still walking its list.
    let epoch = 0;
    const w = world((w2, id) => w2.ingest.grant(id, ++epoch, null, null));
    w.sessions.set(7, 'd7');
    for (let i = 0; i < 5; i++) w.ingest.datagram(fixOf(7, NOW_S - 50 + i, 10_000_000 + i * 100));
    t.equal(w.ingest.held, 5, 'five fixes wait for the lookup');
    // Something else decodes meanwhile (the hot path's scratch fix is overwritten).
    w.sessions.set(8, 'd8');
    w.ingest.datagram(fixOf(8, NOW_S - 10, 55_000_000));
    resolve(w, 7);
    const d = w.shard.byId('d7');
    t.same(
      w.shard.points(d).filter((_, i) => i % 3 === 0),
      [10_000_000, 10_000_100, 10_000_200, 10_000_300, 10_000_400],
      'the five fixes, in order, each with its own position',
    );
    t.equal(w.ingest.counters.accepted, 5);
    t.ok(balance(w));
  },
);

for (const grantAtOnce of [false, true]) {
  t.test(
    `fixes that waited for a lookup go before a later fix staged when it is answered${grantAtOnce ? ' (granted inside the claim)' : ''}`,
    async (t) => {
      // The registry caches its answer before it tells the ingest (src/sessions/fetching-registry.ts),
      // so a fix of the same session staged meanwhile finds the session known. Applied first, it
      // claimed the driver ahead of the fix that waited, and that one was refused as stale.
      let epoch = 0;
      const w = world(grantAtOnce ? (w2, id) => w2.ingest.grant(id, ++epoch, null, null) : undefined, true);
      w.sessions.set(7, 'd7');
      w.ingest.datagram(fixOf(7, NOW_S - 50, 10_000_000));
      w.ingest.flush();
      t.same(w.pending, [7], 'the first fix waits for its lookup');
      w.ingest.datagram(fixOf(7, NOW_S - 49, 10_000_100));
      w.mode.value = 'cached';
      resolve(w, 7);
      t.same(w.claims, ['d7'], 'one claim');
      if (!grantAtOnce) w.ingest.grant('d7', ++epoch, null, null);
      const d = w.shard.byId('d7');
      t.same(
        w.shard.points(d).filter((_, i) => i % 3 === 0),
        [10_000_000, 10_000_100],
        'both fixes, in the order they arrived',
      );
      t.equal(w.ingest.counters.accepted, 2);
      t.equal(w.ingest.counters.rejected[Reason.stale], 0, 'none refused as stale');
      t.ok(balance(w));
    },
  );
}

t.test('fixes held for a claim: counted when it is granted, given up, revoked or removed', async (t) => {
  const w = world();
  w.mode.value = 'cached';
  for (const lo of [1, 2, 3, 4]) w.sessions.set(lo, `d${lo}`);
  for (const lo of [1, 2, 3, 4]) for (let i = 0; i < 3; i++) w.ingest.datagram(fixOf(lo, NOW_S - 50 + i));
  t.same(w.claims, ['d1', 'd2', 'd3', 'd4']);
  t.equal(w.ingest.held, 12);
  w.ingest.grant('d1', 1, null, null);
  w.ingest.revoke(1, 2);
  w.ingest.remove('d3');
  w.clock.nowMs += 6000;
  t.equal(w.ingest.expireClaims(), 1, 'd4 given up');
  const c = w.ingest.counters;
  t.equal(c.accepted, 3);
  t.equal(c.rejected[Reason.unknownSession], 6, 'revoked and removed');
  t.equal(c.rejected[Reason.lookupFailed], 3, 'never answered');
  t.equal(w.ingest.held, 0);
  // A grant for a claim given up: the directory is told to forget the driver.
  w.ingest.grant('d4', 9, null, null);
  t.same(w.dropped, [['d4', 9]]);
});

t.test('a batch gives what one datagram at a time gives', async (t) => {
  const rnd = new Prng(0xba7c);
  // Two worlds fed the same datagrams: one applies each at once, the other in batches of 1 to 40.
  const worlds = [world(), world(undefined, true)];
  for (const w of worlds) {
    w.mode.value = 'cached';
    for (let lo = 1; lo <= 80; lo++) w.sessions.set(lo, `d${lo}`);
    for (let lo = 1; lo <= 60; lo++) w.shard.add(`d${lo}`, `C-d${lo}`, 1, lo, NOW_S * 1000);
  }
  let batch = 0;
  for (let step = 0; step < 6000; step++) {
    const kind = rnd.int(0, 19);
    // Mostly fixes of known drivers, some twice in a batch, some stale, wild or malformed, some of
    // sessions without a driver (a claim each).
    const lo = kind === 0 ? rnd.int(61, 80) : rnd.int(1, 60);
    const buf =
      kind === 1
        ? new Uint8Array([0x0a, 0xff])
        : fixOf(lo, NOW_S - 500 + Math.floor(step / 60) + rnd.int(-1, 1), 10_000_000 + rnd.int(-2000, 2000));
    for (const w of worlds) w.ingest.datagram(buf);
    if (++batch >= rnd.int(1, 40)) {
      worlds[1]!.ingest.flush();
      batch = 0;
    }
  }
  worlds[1]!.ingest.flush();
  const [a, b] = worlds as [World, World];
  t.same([...b.ingest.counters.rejected], [...a.ingest.counters.rejected], 'the same refusals');
  t.equal(b.ingest.counters.accepted, a.ingest.counters.accepted, 'the same accepted');
  t.same(b.claims, a.claims, 'the same claims, in the same order');
  t.equal(a.claims.length, 20);
  t.equal(b.ingest.held, a.ingest.held, 'the same fixes held for the claims');
  for (let lo = 1; lo <= 60; lo++) {
    const sa = a.shard.byId(`d${lo}`);
    const sb = b.shard.byId(`d${lo}`);
    t.same(b.shard.points(sb), a.shard.points(sa), `d${lo}: the same ring`);
    t.same({ ...b.shard.view(sb), slot: 0 }, { ...a.shard.view(sa), slot: 0 }, `d${lo}: the same state`);
  }
  t.ok(balance(a) && balance(b));
});
