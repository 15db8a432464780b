import t from 'tap';
import { Handoff, type HandoffPorts } from '../src/cluster/handoff.ts';
import type { DriverState, TripRecord } from '../src/store/driver.ts';
import { Prng } from './support/prng.ts';

/**
 * The directory and its handoffs without a process (issue 15). The "workers" here hold drivers in Maps
 * and answer releases when the test says, as IPC would; the read-back resolves when the test says.
 */

interface Grant {
  w: number;
  id: string;
  epoch: number;
  state: DriverState | null;
  resume: TripRecord | null;
}

function setup() {
  const grants: Grant[] = [];
  const releases: Array<{ w: number; id: string; done: (s: DriverState | null | undefined) => void }> = [];
  const alive = new Set([1, 2, 3]);
  const ended: TripRecord[] = [];
  let readBack: (m: Map<string, TripRecord>) => void = () => {};
  const ports: HandoffPorts = {
    grant: (w, id, epoch, state, resume) => grants.push({ w, id, epoch, state, resume }),
    release: (w, id, done) => releases.push({ w, id, done }),
    alive: (w) => alive.has(w),
    readBack: () =>
      new Promise((resolve) => {
        readBack = resolve;
      }),
    endTrip: (r) => ended.push(r),
  };
  const h = new Handoff(ports);
  return { h, grants, releases, alive, ended, finishReadBack: (m: Map<string, TripRecord>) => readBack(m) };
}

const trip = (id: string, start: number): TripRecord => ({
  orderId: `o-${id}`,
  driverId: id,
  cab: `c-${id}`,
  cost: 500,
  distanceM: 1000,
  startTime: start,
  lastTime: start + 60,
  points: 61,
  active: true,
});

const stateOf = (id: string, t: TripRecord | null): DriverState => ({
  id,
  cab: `c-${id}`,
  sessionHi: 0,
  sessionLo: 1,
  latE6: 1,
  lonE6: 2,
  time: 3,
  speed: 0,
  bearing: 0,
  orderHi: 0,
  orderLo: 1,
  cost: t?.cost ?? 0,
  points: [],
  trip:
    t === null
      ? null
      : {
          orderId: t.orderId,
          orderHi: 0,
          orderLo: 1,
          cost: t.cost,
          distanceM: t.distanceM,
          startTime: t.startTime,
          lastTime: t.lastTime,
          points: t.points,
        },
});

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test(
  'claims by two workers during a slow read-back: the trip resumed once, then handed over',
  async (t) => {
    const s = setup();
    const N = 5000;
    // Worker 1 owned them all and died; worker 2 claims each, then worker 3 (the replacement's bind
    // reshuffled SO_REUSEPORT), all while the trips are being read back.
    for (let i = 0; i < N; i++) s.h.claim(`d${i}`, 1);
    await tick();
    s.finishReadBack(new Map());
    await tick();
    await tick();
    t.equal(s.grants.length, N, 'worker 1 got every driver');
    s.grants.length = 0;
    s.alive.delete(1);
    t.equal(s.h.workerDied(1).length, N);
    for (let i = 0; i < N; i++) s.h.claim(`d${i}`, 2);
    for (let i = 0; i < N; i++) s.h.claim(`d${i}`, 3);
    await tick();
    t.equal(s.grants.length, 0, 'nothing granted before the read-back');
    const trips = new Map<string, TripRecord>();
    for (let i = 0; i < N; i++) trips.set(`d${i}`, trip(`d${i}`, 1000 + i));
    s.finishReadBack(trips);
    await tick();
    await tick();
    t.equal(s.grants.length, N, 'worker 2 granted each driver once, with its trip');
    t.ok(
      s.grants.every(
        (g) => g.w === 2 && g.resume !== null && g.resume.startTime === 1000 + Number(g.id.slice(1)),
      ),
    );
    t.equal(s.releases.length, N, 'then worker 2 is asked to release each to worker 3');
    t.ok(s.releases.every((r) => r.w === 2));
    for (const r of s.releases.splice(0)) r.done(stateOf(r.id, trips.get(r.id)!));
    t.equal(s.grants.length, 2 * N);
    const second = s.grants.slice(N);
    t.ok(
      second.every(
        (g) => g.w === 3 && g.resume === null && g.state?.trip?.startTime === trips.get(g.id)!.startTime,
      ),
      'worker 3 gets the state, the trip with it, from worker 2',
    );
    t.equal(s.h.resumable, 0, 'no trip left resumable');
    t.equal(s.h.owner('d7'), 3);
    t.equal(s.h.sweep(1e12, 1), 0, 'nothing to expire: every trip went on');
    t.same(s.ended, []);
  },
);

t.test('a drop is honoured only for the ownership it names (epochs), however late it comes', async (t) => {
  const s = setup();
  s.finishReadBack(new Map());
  s.h.claim('d', 1);
  await tick();
  await tick();
  const first = s.grants.at(-1)!;
  s.h.claim('d', 2);
  s.releases.shift()!.done(stateOf('d', null));
  const second = s.grants.at(-1)!;
  t.equal(second.w, 2);
  t.ok(second.epoch > first.epoch);
  // Worker 1's drop of its old ownership arrives late: ignored.
  s.h.drop('d', 1, first.epoch);
  t.equal(s.h.owner('d'), 2);
  // Worker 2's drop of a stale epoch: ignored; of its own: the directory forgets the driver.
  s.h.drop('d', 2, first.epoch);
  t.equal(s.h.owner('d'), 2);
  s.h.drop('d', 2, second.epoch);
  t.equal(s.h.owner('d'), undefined);
  t.equal(s.h.size, 0);
});

t.test('the releasing worker dies: its driver is resumed from the read-back', async (t) => {
  const s = setup();
  s.finishReadBack(new Map());
  s.h.claim('d', 1);
  await tick();
  await tick();
  s.h.claim('d', 2);
  t.equal(s.releases.length, 1);
  s.alive.delete(1);
  s.h.workerDied(1);
  s.releases.shift()!.done(undefined);
  await tick();
  s.finishReadBack(new Map([['d', trip('d', 77)]]));
  await tick();
  await tick();
  const g = s.grants.at(-1)!;
  t.same({ w: g.w, state: g.state, start: g.resume?.startTime }, { w: 2, state: null, start: 77 });
});

t.test('the claimant dies before its grant: the next claimant gets what it would have had', async (t) => {
  const s = setup();
  s.finishReadBack(new Map());
  s.h.claim('d', 1);
  await tick();
  await tick();
  s.h.claim('d', 2);
  s.alive.delete(2);
  s.releases.shift()!.done(stateOf('d', trip('d', 5)));
  t.equal(s.grants.length, 1, 'no grant to a dead worker');
  s.h.claim('d', 3);
  const g = s.grants.at(-1)!;
  t.equal(g.w, 3);
  t.equal(g.state?.trip?.startTime, 5, 'the ring and trip kept for the next claimant');
});

t.test('random claims, drops, deaths and forgets: one owner per driver, always a live one', async (t) => {
  const s = setup();
  s.finishReadBack(new Map());
  const rnd = new Prng(31);
  let bad = 0;
  for (let step = 0; step < 5000; step++) {
    const id = `d${rnd.int(0, 50)}`;
    const w = rnd.int(1, 3);
    const op = rnd.int(0, 9);
    if (op < 6) s.h.claim(id, w);
    else if (op < 8 && s.releases.length > 0) {
      const r = s.releases.splice(rnd.int(0, s.releases.length - 1), 1)[0]!;
      r.done(s.alive.has(r.w) ? stateOf(r.id, null) : undefined);
    } else if (op === 8) {
      const g = [...s.grants].reverse().find((x) => x.id === id);
      if (g !== undefined) s.h.drop(id, g.w, g.epoch);
    } else s.h.forget(id);
    if (step % 100 === 0) await tick();
    const o = s.h.owner(id);
    if (o !== undefined && !s.alive.has(o)) bad++;
  }
  t.equal(bad, 0);
  // Grants per driver come with strictly increasing epochs.
  const last = new Map<string, number>();
  let order = 0;
  for (const g of s.grants) {
    if ((last.get(g.id) ?? 0) >= g.epoch && g.epoch !== 1) order++;
    last.set(g.id, g.epoch);
  }
  t.equal(order, 0, 'epochs increase');
});

t.test('several hosts: a driver nobody here holds goes through the directory first', async (t) => {
  const s = setup();
  const asked: string[] = [];
  let answer: (v: { state: DriverState | null; trip: TripRecord | null } | null) => void = () => {};
  const h = new Handoff({
    ...portsOf(s, new Map([['d1', trip('d1', 100)]])),
    acquire: (id) => {
      asked.push(id);
      return new Promise((r) => {
        answer = r;
      });
    },
  });
  await h.readBack(null);
  t.equal(h.resumable, 1, 'a trip read back here at start-up');

  // Another host had it, alive: its state wins over the trip read back here.
  h.claim('d1', 1);
  await tick();
  t.same(asked, ['d1'], 'the directory was asked');
  t.equal(s.grants.length, 0, 'no grant before it answers');
  const fromB = stateOf('d1', trip('d1', 100));
  answer({ state: fromB, trip: null });
  await tick();
  t.same(
    s.grants.at(-1),
    { w: 1, id: 'd1', epoch: 1, state: fromB, resume: null },
    'granted with the other host’s state',
  );
  t.equal(h.resumable, 0, 'the trip read back here is not resumed a second time');

  // A dead host's driver: only its trip, from Redis.
  h.claim('d2', 2);
  await tick();
  const fromRedis = trip('d2', 200);
  answer({ state: null, trip: fromRedis });
  await tick();
  t.same(s.grants.at(-1), { w: 2, id: 'd2', epoch: 1, state: null, resume: fromRedis });

  // Nobody else had it: the local read-back decides (nothing here).
  h.claim('d3', 3);
  await tick();
  answer(null);
  await tick();
  t.same(s.grants.at(-1), { w: 3, id: 'd3', epoch: 1, state: null, resume: null });

  // A move between workers of this host does not ask the directory.
  asked.length = 0;
  h.claim('d1', 2);
  await tick();
  t.same(asked, [], 'a local handoff is the host’s own business');
  s.releases.at(-1)!.done(fromB);
  await tick();
  t.same(s.grants.at(-1), { w: 2, id: 'd1', epoch: 2, state: fromB, resume: null });
  t.same(h.owned().sort(), ['d1', 'd2', 'd3']);
});

t.test('several hosts: handing a driver over to another host', async (t) => {
  const s = setup();
  const h = new Handoff({ ...portsOf(s, new Map([['gone', trip('gone', 50)]])), acquire: async () => null });
  await h.readBack(null);
  t.equal(h.resumable, 1);
  h.claim('d1', 1);
  await tick();
  await tick();
  t.equal(h.owner('d1'), 1);

  // Worker 1 holds it: released, and its state goes to the other host.
  const given = h.handOver('d1');
  await tick();
  const st = stateOf('d1', trip('d1', 10));
  t.same(
    s.releases.map((r) => [r.w, r.id]),
    [[1, 'd1']],
    'its worker is asked to let it go',
  );
  // Asked twice meanwhile (the other host retried): one release, the repeat gets nothing.
  const again = h.handOver('d1');
  s.releases[0]!.done(st);
  t.same(await given, st, 'the state goes to the other host');
  t.equal(await again, null);
  t.equal(h.owner('d1'), undefined, 'nobody’s here any more');
  t.same(h.owned(), []);

  // A driver this host does not have: null at once; a trip read back for it is not ended here later.
  t.equal(await h.handOver('gone'), null);
  t.equal(h.sweep(1_000_000, 900), 0, 'the other host has its trip: not ended here');
  t.same(s.ended, []);

  // A hand-over waits for a handoff under way between this host's workers.
  h.claim('d4', 1);
  await tick();
  await tick();
  h.claim('d4', 2);
  const over = h.handOver('d4');
  await tick();
  const st4 = stateOf('d4', null);
  s.releases.at(-1)!.done(st4);
  await tick();
  t.same(s.grants.at(-1)?.w, 2, 'the local handoff completes first');
  s.releases.at(-1)!.done(st4);
  t.same(await over, st4, 'then the hand-over takes it from its new worker');
  t.equal(h.owner('d4'), undefined);
});

/** The setup's ports, with a read-back that finds `readBack`'s trips at once. */
function portsOf(s: ReturnType<typeof setup>, readBack = new Map<string, TripRecord>()): HandoffPorts {
  return {
    grant: (w, id, epoch, state, resume) => s.grants.push({ w, id, epoch, state, resume }),
    release: (w, id, done) => s.releases.push({ w, id, done }),
    alive: (w) => s.alive.has(w),
    readBack: () => Promise.resolve(readBack),
    endTrip: (r) => s.ended.push(r),
  };
}
