import t from 'tap';
import { Fix } from '../src/codec/fix.ts';
import { Reason } from '../src/reasons.ts';
import type { TripRecord } from '../src/store/driver.ts';
import { Shard } from '../src/store/shard.ts';

const ids = (shard: Shard): string[] => {
  const out: string[] = [];
  shard.forEach((slot) => {
    out.push(shard.id(slot));
  });
  return out.sort();
};

/** Idle expiry on a controlled clock: the shard never reads a clock, so time is whatever we pass. */

const T0 = 1_700_000_000_000;
const IDLE_S = 900;

function fixAt(session: number, timeS: number, order = 0): Fix {
  const f = new Fix();
  f.sessionHi = 1;
  f.sessionLo = session;
  f.lat = 48_000_000 + session;
  f.lon = 2_000_000;
  f.time = timeS;
  f.orderLo = order;
  return f;
}

t.test('drivers expire exactly when idle for the timeout, and only they are touched', async (t) => {
  const ended: TripRecord[] = [];
  const removed: string[] = [];
  const shard = new Shard({
    trackPoints: 4,
    idleTimeoutS: IDLE_S,
    onTripEnd: (r) => ended.push(r),
    onDriverRemoved: (id, _epoch, why) => removed.push(`${id}:${why}`),
  });
  for (let i = 1; i <= 3; i++) {
    const d = shard.add(`d${i}`, `c${i}`, 1, i, T0 + i * 1000);
    t.equal(shard.ingest(d, fixAt(i, T0 / 1000 + i, i === 2 ? 77 : 0), T0 + i * 1000), Reason.ok);
  }
  // d1 sends again later: it moves to the back of the expiry order.
  t.equal(shard.ingest(shard.byId('d1'), fixAt(1, T0 / 1000 + 10), T0 + 10_000), Reason.ok);

  t.equal(shard.expire(T0 + 2000 + IDLE_S * 1000 - 1), 0, 'd2 is idle 1 ms short of the timeout');
  t.equal(shard.expire(T0 + 2000 + IDLE_S * 1000), 1, 'd2 expires at the timeout');
  t.same(removed, ['d2:expired']);
  t.equal(ended.length, 1);
  t.match(ended[0], { orderId: '77', driverId: 'd2', active: false, endReason: 'expired' });
  t.same(ids(shard), ['d1', 'd3']);
  t.equal(shard.expire(T0 + 3000 + IDLE_S * 1000), 1);
  t.same(ids(shard), ['d1']);
  t.equal(shard.expire(T0 + 10_000 + IDLE_S * 1000), 1);
  t.equal(shard.size, 0);
  t.equal(shard.size, 0, 'expired drivers leave the shard');
  t.equal(shard.trip('77')?.active, false, 'the ended trip is still answered from the finished trips');
});

t.test('a sweep stops at the first driver that is not due: it never walks the fleet', async (t) => {
  let removed = 0;
  const shard = new Shard({ trackPoints: 2, idleTimeoutS: IDLE_S, onDriverRemoved: () => removed++ });
  for (let i = 1; i <= 10_000; i++) {
    const d = shard.add(`d${i}`, `c${i}`, 1, i, T0 + i);
    shard.ingest(d, fixAt(i, T0 / 1000), T0 + i);
  }
  // d12 is seen again with a clock that went back (the list keeps the order drivers were seen in):
  // it is now behind d10,000 though due with the first ten. A sweep that walked past the first driver
  // not due (d11) would find it; the sweep due for the ten oldest looks at d11, stops, and leaves it.
  shard.ingest(shard.byId('d12'), fixAt(12, T0 / 1000 + 1), T0 + 1);
  t.equal(shard.expire(T0 + 10 + IDLE_S * 1000), 10);
  t.equal(removed, 10);
  t.equal(shard.size, 9990);
  t.ok(shard.live(shard.byId('d12')), 'd12, due but behind the first driver not due, is not reached');
  const order = shard.inspect().expiryOrder;
  t.equal(shard.id(order[0]!), 'd11');
  t.equal(shard.id(order.at(-1)!), 'd12');
});
