import type dgram from 'node:dgram';
import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';
import { connectedSocket, daemonPids, hex, redisUp, scrape, settle, sleep } from './support/hostile-net.ts';
import { readStream } from './support/hostile-trips.ts';
import { startRedis } from './support/redis.ts';

/**
 * Issue 15, risk 1: a worker dies while the trips are read back from Redis.
 *
 * After a worker's death the primary reads every active trip back before it grants its drivers again.
 * The replacement worker's bind reshuffles SO_REUSEPORT meanwhile, so one driver's next fixes can reach
 * both workers, and two claims for it are in flight during the read-back. Before the fix the second
 * claim asked the first claimant, which only had the driver pending, to release it: it answered with
 * no state, the second was granted nothing to resume and started the trip again (a new start, a few
 * points), while the Redis copy stayed resumable until it was ended once more as `expired`: one order,
 * two records in the billing stream.
 *
 * Here 3,000 drivers are on trips, and 150,000 more active trips sit in Redis (other hosts' drivers,
 * say) so that the read-back takes a second or two, as it would at scale. A worker is killed; every
 * driver then sends from two new source addresses (so roughly half of them land on both workers);
 * then each ends its trip. Every trip must be one record, ended once, that starts where it started.
 */

const DRIVERS = 3000;
const OTHERS = 150_000;
const POOL = 64;
const ORDER_BASE = 9_500_000_000n;
const now = Math.floor(Date.now() / 1000);
const T0 = now - 200;
const session = (i: number): bigint => 0xace0_0000_0000_0000n + BigInt(i + 1);
const order = (i: number): bigint => ORDER_BASE + BigInt(i);

let daemon: Daemon;
let dispatch: Redis;
const pools: dgram.Socket[][] = [];

t.before(async () => {
  const redis = await startRedis(t);
  dispatch = new Redis(redis.url);
  const p = dispatch.pipeline();
  for (let i = 0; i < DRIVERS; i++) {
    p.hset(`cabtrack:session:${hex(session(i))}`, { driverId: `race-${i}`, cab: `RACE-${i}` });
  }
  await p.exec();
  // Other drivers' active trips: what the read-back has to get through.
  for (let from = 0; from < OTHERS; from += 10_000) {
    const q = dispatch.pipeline();
    for (let i = from; i < from + 10_000; i++) {
      const id = String(9_600_000_000 + i);
      q.hset(`cabtrack:trip:${id}`, {
        orderId: id,
        driverId: `other-${i}`,
        cab: `OTHER-${i}`,
        cost: '100',
        distanceM: '10',
        startTime: String(now - 100),
        lastTime: String(now - 50),
        points: '3',
        active: '1',
        endReason: '',
      });
      q.sadd('cabtrack:trips:active', id);
    }
    await q.exec();
  }
  daemon = await startDaemon({ CABTRACK_REDIS_URL: redis.url, CABTRACK_WORKERS: '2' });
  await redisUp(daemon);
  for (let k = 0; k < 3; k++) {
    const pool: dgram.Socket[] = [];
    for (let i = 0; i < POOL; i++) pool.push(await connectedSocket(daemon.udpPort));
    pools.push(pool);
  }
});
t.teardown(async () => {
  for (const pool of pools) for (const s of pool) s.close();
  await daemon?.stop();
  dispatch?.disconnect();
});

/** Round r: every driver's fix at time T0 + r from pool `pool` (driver i from socket i % 64). */
async function round(r: number, pool: number, orderOf: (i: number) => bigint): Promise<void> {
  for (let i = 0; i < DRIVERS; i++) {
    pools[pool]![(i * 7 + pool) % POOL]!.send(
      encodeTrack({
        session: session(i),
        lat: 45_000_000 + i * 10,
        lon: 7_000_000 + r * 50,
        time: T0 + r,
        orderId: orderOf(i),
        cost: 100 + r,
      }),
    );
    if (i % 200 === 199) await sleep(2);
  }
}

t.test(
  'two claims during the read-back after a worker died: every trip resumed once, ended once',
  async (t) => {
    // Three fixes of every trip, then time for them to reach Redis (the worker's sync, the store's flush).
    for (let r = 0; r < 3; r++) await round(r, 0, order);
    await daemon.waitFor(async () => (await scrape(daemon)).get('cabtrack_drivers') === DRIVERS, 'all live');
    await sleep(2500);
    const readyBefore = daemon.logs.filter((l) => l.includes('"worker ready"')).length;

    const [victim] = daemonPids(daemon).workers;
    process.kill(victim!, 'SIGKILL');
    // The replacement binds while the trips are read back: from then on a new address may land on it.
    await daemon.waitFor(
      async () => daemon.logs.filter((l) => l.includes('"worker ready"')).length > readyBefore,
      'the replacement worker bound',
    );
    await round(3, 1, order);
    await round(4, 2, order);
    const readBack = daemon.logs.filter((l) => l.includes('active trips read back')).length;
    t.comment(`read-backs logged so far: ${readBack} (the kill's may still be running)`);
    await daemon.waitFor(
      async () => daemon.logs.filter((l) => l.includes('active trips read back')).length >= 2,
      'the read-back done',
      30_000,
    );
    await sleep(1500);
    // Every driver ends its trip (a new order), and its last fixes are flushed.
    await round(5, 2, (i) => order(i) + 1_000_000n);
    await settle(daemon);
    await sleep(2500);

    const entries = (await readStream(dispatch)).filter((e) => {
      const id = BigInt(e['orderId']!);
      return id >= ORDER_BASE && id < ORDER_BASE + BigInt(DRIVERS);
    });
    const byOrder = new Map<string, number>();
    for (const e of entries) byOrder.set(e['orderId']!, (byOrder.get(e['orderId']!) ?? 0) + 1);
    const twice = [...byOrder.values()].filter((n) => n > 1).length;
    const restarted = entries.filter((e) => Number(e['startTime']) !== T0);
    const s = await scrape(daemon);
    t.comment(
      `${entries.length} trips ended; written twice: ${twice}; started again after the kill: ${restarted.length}` +
        ` (e.g. ${JSON.stringify(restarted[0] ?? null)}); handoffs ${s.get('cabtrack_driver_handoffs_total')}`,
    );
    t.equal(byOrder.size, DRIVERS, 'every trip ended and was written');
    t.equal(twice, 0, 'none written twice');
    t.equal(restarted.length, 0, 'every trip kept its start: resumed, not started again');
    const active = await dispatch.smembers('cabtrack:trips:active');
    const ours = active.filter((id) => BigInt(id) >= ORDER_BASE && BigInt(id) < ORDER_BASE + BigInt(DRIVERS));
    t.same(ours, [], 'no ended trip left resumable in Redis');
    t.ok(s.get('cabtrack_driver_handoffs_total') > 0, 'drivers moved between the workers meanwhile');
  },
);
