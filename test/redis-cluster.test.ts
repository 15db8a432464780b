/**
 * The session registry and the trip store against a real 3-node Redis Cluster, through ioredis's
 * Cluster client: lookups whose keys live on different nodes, revocation (PUBLISH reaches every node),
 * and a trip's final record reaching the one stream once although its hash lives in another slot.
 */
import { createRequire } from 'node:module';
import { Cluster } from 'ioredis';
import t from 'tap';
import { parseSessionHex, sessionToHex } from '../src/codec/session.ts';
import { REVOKE_CHANNEL, RedisRegistry, type Resolved } from '../src/sessions/redis-registry.ts';
import { PENDING } from '../src/sessions/registry.ts';
import type { TripRecord } from '../src/store/driver.ts';
import { ACTIVE_TRIPS_KEY, TRIP_STREAM, TripStore } from '../src/trips/trip-store.ts';
import { Prng } from './support/prng.ts';
import { type RedisCluster, startRedisCluster } from './support/redis.ts';

const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function cluster(t: Teardown, c: RedisCluster): Promise<Cluster> {
  const client = new Cluster(c.nodes, { clusterRetryStrategy: () => 50 });
  client.on('error', () => {});
  t.teardown(() => client.disconnect());
  await client.ping();
  return client;
}

/** How many nodes serve these keys. */
function nodesOf(client: Cluster, keys: string[]): number {
  return new Set(keys.map((k) => client.slots[keySlot(k)]?.join(';'))).size;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a 3-node cluster', async (t) => {
  const nodes = await startRedisCluster(t, 3);

  t.test('sessions: lookups across nodes, the cache, and revocation', async (t) => {
    const dispatch = await cluster(t, nodes);
    const rnd = new Prng(11);
    const sessions: string[] = [];
    for (let i = 0; i < 30; i++) {
      const hex = sessionToHex(rnd.uint32(), rnd.uint32());
      sessions.push(hex);
      await dispatch.hset(`cabtrack:session:${hex}`, 'driverId', `driver-${i}`, 'cab', `CAB-${i}`);
    }
    t.equal(
      nodesOf(
        dispatch,
        sessions.map((s) => `cabtrack:session:${s}`),
      ),
      3,
      'the sessions live on all 3 nodes',
    );

    const answers = new Map<string, Resolved>();
    const revoked: string[] = [];
    const reg = new RedisRegistry({
      redis: await cluster(t, nodes),
      onResolved: (hi, lo, r) => answers.set(sessionToHex(hi, lo), r),
      onRevoked: (hi, lo) => revoked.push(sessionToHex(hi, lo)),
    });
    t.teardown(() => reg.close());
    await reg.subscribed();
    t.equal(reg.up, true);

    const unknown = '0123456789abcdef';
    for (const hex of [...sessions, unknown]) {
      const s = parseSessionHex(hex)!;
      t.equal(reg.lookup(s.hi, s.lo), PENDING);
    }
    await until(() => answers.size === 31, 'every lookup to be answered');
    sessions.forEach((hex, i) => {
      t.same(answers.get(hex), { driverId: `driver-${i}`, cab: `CAB-${i}` });
    });
    t.equal(answers.get(unknown), undefined);
    const s0 = parseSessionHex(sessions[0]!)!;
    t.same(reg.lookup(s0.hi, s0.lo), { driverId: 'driver-0', cab: 'CAB-0' }, 'then from the cache');
    t.same(reg.outcomes, { cache_hit: 1, redis_hit: 30, unknown: 1, error: 0, rate_limited: 0 });

    // Revocation by the dispatch system: DEL, then PUBLISH (which reaches the subscriber's node).
    await dispatch.del(`cabtrack:session:${sessions[0]}`);
    await dispatch.publish(REVOKE_CHANNEL, sessions[0]!);
    await until(() => revoked.length === 1, 'the revocation');
    t.same(revoked, [sessions[0]]);
    t.equal(reg.lookup(s0.hi, s0.lo), undefined);

    // And through the API's revoke (DEL + PUBLISH in one MULTI) and put.
    const s1 = parseSessionHex(sessions[1]!)!;
    t.equal(await reg.revoke(s1.hi, s1.lo), true);
    await until(() => revoked.length === 2, 'the second revocation');
    t.equal(await dispatch.exists(`cabtrack:session:${sessions[1]}`), 0);
    t.equal(await reg.put(s1.hi, s1.lo, { driverId: 'driver-1', cab: 'CAB-1b' }), true);
    t.same(await dispatch.hgetall(`cabtrack:session:${sessions[1]}`), {
      driverId: 'driver-1',
      cab: 'CAB-1b',
    });
  });

  t.test('trips: updates, ends reaching the stream once, and active trips read back', async (t) => {
    const redis = await cluster(t, nodes);
    const errors: Error[] = [];
    const store = new TripStore({ redis, flushIntervalMs: 3_600_000, onError: (e) => errors.push(e) });
    t.teardown(() => store.close());
    const trips: TripRecord[] = Array.from({ length: 20 }, (_, i) => ({
      orderId: String(70_000 + i),
      driverId: `driver-${i}`,
      cab: `CAB-${i}`,
      cost: 500 + i,
      distanceM: i * 12.5,
      startTime: 1_700_000_000 + i,
      lastTime: 1_700_000_060 + i,
      points: 10 + i,
      active: true,
    }));
    t.equal(
      nodesOf(
        redis,
        trips.map((r) => `cabtrack:trip:${r.orderId}`),
      ),
      3,
      'the trips live on all 3 nodes',
    );
    for (const r of trips) store.update(r);
    await store.flush();
    const finished = trips
      .filter((_, i) => i % 4 === 0)
      .map((r): TripRecord => ({ ...r, active: false, endReason: 'order_changed' }));
    for (const r of finished) store.end(r);
    await store.flush();
    // Ended again (a retried flush, another worker): still one entry each.
    for (const r of finished) store.end(r);
    await store.flush();
    t.same(errors, []);
    t.same(store.writes, { ok: 20 + 2 * finished.length, error: 0, dropped: 0 });

    const entries = await redis.xrange(TRIP_STREAM, '-', '+');
    t.same(
      entries.map(([, f]) => f[1]),
      finished.map((r) => r.orderId),
      'each finished trip once, in order',
    );
    t.equal(
      await redis.call('CLUSTER', 'KEYSLOT', TRIP_STREAM),
      keySlot(`cabtrack:streamed:{${TRIP_STREAM}}:x`),
    );
    for (const r of finished) {
      t.same(await store.get(r.orderId), r);
      t.ok((await redis.ttl(`cabtrack:trip:${r.orderId}`)) > 0, 'finished trips expire');
    }
    const active = trips.filter((_, i) => i % 4 !== 0);
    const back = (await store.activeTrips()).sort((a, b) => a.orderId.localeCompare(b.orderId));
    t.same(back, active);
    t.equal(await redis.scard(ACTIVE_TRIPS_KEY), active.length);
  });
});
