/**
 * The Redis trip store against a real redis-server: batching (counted with INFO commandstats), the
 * stream append exactly once through repeated ends and a lost reply, buffering through an outage, the
 * bounded buffer, and reading active trips back.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import type { TripRecord } from '../src/store/driver.ts';
import { ACTIVE_TRIPS_KEY, TRIP_STREAM, TripStore, type TripStoreOptions } from '../src/trips/trip-store.ts';
import { type RedisServer, startRedis, startReplyDropper } from './support/redis.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function client(t: Teardown, port: number): Promise<Redis> {
  const c = new Redis(port, '127.0.0.1', { retryStrategy: () => 50 });
  c.on('error', () => {});
  t.teardown(() => c.disconnect());
  await c.ping();
  return c;
}

/** A store that flushes only when told to, unless the test gives it an interval. */
function store(t: Teardown, redis: Redis, options: Partial<TripStoreOptions> = {}): TripStore {
  const s = new TripStore({ redis, flushIntervalMs: 3_600_000, ...options });
  t.teardown(() => s.close());
  return s;
}

function trip(orderId: string, over: Partial<TripRecord> = {}): TripRecord {
  return {
    orderId,
    driverId: `driver-${orderId}`,
    cab: `CAB-${orderId}`,
    cost: 350,
    distanceM: 0,
    startTime: 1_700_000_000,
    lastTime: 1_700_000_000,
    points: 1,
    active: true,
    ...over,
  };
}

function ended(r: TripRecord, endReason: TripRecord['endReason'] = 'order_changed'): TripRecord {
  return { ...r, active: false, endReason };
}

/** The hash as the store writes it. */
function hash(r: TripRecord): Record<string, string> {
  return {
    orderId: r.orderId,
    driverId: r.driverId,
    cab: r.cab,
    cost: String(r.cost),
    distanceM: String(r.distanceM),
    startTime: String(r.startTime),
    lastTime: String(r.lastTime),
    points: String(r.points),
    active: r.active ? '1' : '0',
    endReason: r.endReason ?? '',
  };
}

/** The stream entries' fields, as objects. */
async function stream(redis: Redis): Promise<Array<Record<string, string>>> {
  const entries = await redis.xrange(TRIP_STREAM, '-', '+');
  return entries.map(([, fields]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    return o;
  });
}

function streamEntry(r: TripRecord): Record<string, string> {
  const { active: _, ...rest } = hash(r);
  return rest;
}

async function calls(server: RedisServer, command: string): Promise<number> {
  return (await server.commandStats())[command] ?? 0;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('many updates of a trip within a flush interval cost one HSET per flush', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis);
  const before = await calls(server, 'hset');

  let a = trip('1001');
  for (let i = 1; i <= 100; i++) {
    a = { ...a, points: i, lastTime: a.startTime + i, distanceM: i * 8.5, cost: 350 + i };
    s.update(a);
  }
  const b = trip('1002');
  s.update(b);
  t.equal(s.buffered, 2, 'one buffered record per trip');
  await s.flush();
  t.equal((await calls(server, 'hset')) - before, 2, 'one HSET per trip');
  t.equal(await calls(server, 'sadd'), 2, 'added to the active set on its first write');
  t.same(await redis.hgetall('cabtrack:trip:1001'), hash(a), 'the latest record');
  t.same(await redis.hgetall('cabtrack:trip:1002'), hash(b));
  t.equal(await redis.ttl('cabtrack:trip:1001'), -1, 'no expiry while active');
  t.same((await redis.smembers(ACTIVE_TRIPS_KEY)).sort(), ['1001', '1002']);

  for (let i = 101; i <= 150; i++) {
    a = { ...a, points: i, lastTime: a.startTime + i };
    s.update(a);
  }
  await s.flush();
  t.equal((await calls(server, 'hset')) - before, 3, 'the next flush: one more HSET');
  t.equal(await calls(server, 'sadd'), 2, 'and no more SADD');
  t.same(await redis.hgetall('cabtrack:trip:1001'), hash(a));
  t.same(s.writes, { ok: 3, error: 0, dropped: 0 });
  t.equal(s.buffered, 0);
});

t.test('the timer flushes every flushIntervalMs', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis, { flushIntervalMs: 20 });
  s.update(trip('7'));
  await until(async () => (await redis.exists('cabtrack:trip:7')) === 1, 'the timer to write the trip');
  t.same(await redis.hgetall('cabtrack:trip:7'), hash(trip('7')));
});

t.test('an ended trip reaches the stream exactly once, however often it is ended and flushed', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis, { finishedTtlS: 3600 });
  const a = trip('2001', { points: 40, distanceM: 3120.5, lastTime: 1_700_000_400, cost: 1250 });
  s.update(a);
  await s.flush();
  const fin = ended(a, 'expired');
  s.end(fin);
  s.end(fin);
  t.equal(s.buffered, 1);
  await s.flush();
  s.end(fin);
  await s.flush();
  // A second store (another worker, or this one after a restart) ends it again.
  const other = store(t, redis, { finishedTtlS: 3600 });
  other.end(fin);
  await other.flush();

  t.same(await stream(redis), [streamEntry(fin)], 'one entry');
  t.equal(await calls(server, 'xadd'), 1);
  t.same(await redis.hgetall('cabtrack:trip:2001'), hash(fin));
  const ttl = await redis.ttl('cabtrack:trip:2001');
  t.ok(ttl > 3500 && ttl <= 3600, `finished trips expire (ttl ${ttl})`);
  t.same(await redis.smembers(ACTIVE_TRIPS_KEY), [], 'no longer active');

  // The order id comes back as a new trip: a new stream entry, and the hash is the new trip's.
  const again = trip('2001', { startTime: 1_700_001_000, lastTime: 1_700_001_000 });
  s.update(again);
  await s.flush();
  t.equal(await redis.ttl('cabtrack:trip:2001'), -1, 'active again: no expiry');
  t.same(await redis.smembers(ACTIVE_TRIPS_KEY), ['2001']);
  const fin2 = ended({ ...again, points: 3, lastTime: 1_700_001_060 });
  s.end(fin2);
  await s.flush();
  t.same(await stream(redis), [streamEntry(fin), streamEntry(fin2)]);
  t.same(await redis.hgetall('cabtrack:trip:2001'), hash(fin2));
});

t.test('a trip that starts and ends between two flushes is written once, final', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis);
  const a = trip('3001');
  s.update(a);
  s.update({ ...a, points: 2 });
  const fin = ended({ ...a, points: 3 });
  s.end(fin);
  t.equal(s.buffered, 1, 'the final record replaced the update');
  await s.flush();
  t.same(await redis.hgetall('cabtrack:trip:3001'), hash(fin));
  t.same(await stream(redis), [streamEntry(fin)]);
  t.equal(await calls(server, 'hset'), 1);
  t.equal(await calls(server, 'sadd'), 0, 'never in the active set');
});

t.test('a trip handed to another worker is written by that one only', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const here = store(t, redis);
  const there = store(t, redis);
  const a = trip('4500', { points: 5 });
  here.update(a);
  await here.flush();
  const later = { ...a, points: 6 };
  here.update(later);
  here.release('4500');
  t.equal(here.buffered, 0, 'the update waiting here is dropped');
  const newest = { ...a, points: 7 };
  there.update(newest);
  await there.flush();
  await here.flush();
  t.same(await redis.hgetall('cabtrack:trip:4500'), hash(newest));
  t.equal(await calls(server, 'hset'), 2);
});

t.test('a lost reply: the flush runs twice in Redis and the trip is still appended once', async (t) => {
  const server = await startRedis(t);
  const proxy = await startReplyDropper(t, server.port);
  const redis = await client(t, proxy.port);
  const direct = await client(t, server.port);
  const s = store(t, redis);
  const a = trip('4001', { points: 12 });
  s.update(a);
  await s.flush();
  const fin = ended(a, 'deleted');
  s.end(fin);
  proxy.dropNextReply();
  // Redis runs the flush, the reply is lost with the connection; ioredis connects again and sends the
  // commands that had no reply again.
  await s.flush();
  t.equal(proxy.dropped, 1);
  // If the resend failed instead, the store retries on the next flush: either way, nothing is left.
  await until(async () => {
    await s.flush();
    return s.buffered === 0;
  }, 'the final record to be written');

  const stats = await server.commandStats();
  t.equal((stats['eval'] ?? 0) + (stats['evalsha'] ?? 0), 2, 'the append script ran twice');
  t.equal(stats['xadd'], 1, 'and appended once');
  t.same(await stream(direct), [streamEntry(fin)]);
  t.same(await direct.hgetall('cabtrack:trip:4001'), hash(fin));
});

t.test('Redis down: records wait, and reach Redis after a restart with each ended trip once', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const errors: Error[] = [];
  const s = store(t, redis, { flushIntervalMs: 20, onError: (e) => errors.push(e) });
  s.update(trip('1'));
  await until(() => s.buffered === 0, 'the first write');

  await server.stop();
  await until(() => redis.status !== 'ready', 'the client to see Redis down');
  const active: TripRecord[] = [];
  const finished: TripRecord[] = [];
  for (let i = 0; i < 30; i++) {
    let r = trip(String(5000 + i), { startTime: 1_700_000_000 + i });
    for (let k = 2; k <= 5; k++) {
      r = { ...r, points: k, lastTime: r.startTime + k };
      s.update(r);
    }
    if (i % 3 === 0) {
      const fin = ended(r, 'order_changed');
      s.end(fin);
      s.end(fin);
      finished.push(fin);
    } else {
      active.push(r);
    }
  }
  t.equal(s.buffered, 30, 'one record per trip waits');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(s.buffered, 30, 'and keeps waiting while Redis is down');

  await server.restart();
  await until(() => s.buffered === 0, 'the buffer to drain after the restart');
  // The new server started empty: what is in it now came from the buffer.
  for (const r of [...active, ...finished]) {
    t.same(await redis.hgetall(`cabtrack:trip:${r.orderId}`), hash(r), `trip ${r.orderId}`);
  }
  const entries = await stream(redis);
  t.same(
    entries.map((e) => e['orderId']).sort(),
    finished.map((r) => r.orderId).sort(),
    'each ended trip in the stream once',
  );
  t.same(entries, finished.map(streamEntry), 'in the order they ended');
  t.same((await redis.smembers(ACTIVE_TRIPS_KEY)).sort(), active.map((r) => r.orderId).sort());
  t.same(s.writes, { ok: 31, error: 0, dropped: 0 });
  t.same(errors, []);
});

t.test('a full buffer: active updates give way to final records, and what is lost is counted', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis, { maxBuffered: 3 });
  await server.stop();
  await until(() => redis.status !== 'ready', 'the client to see Redis down');

  const [a, b, c, d, e] = ['1', '2', '3', '4', '5'].map((id) => trip(id));
  s.update(a!);
  s.update(b!);
  s.update(c!);
  s.update(d!);
  t.same(s.writes, { ok: 0, error: 0, dropped: 1 }, 'a new trip does not fit');
  s.update({ ...a!, points: 9 });
  t.equal(s.writes.dropped, 1, 'a newer update of a buffered trip replaces it');
  s.end(ended(b!));
  t.equal(s.writes.dropped, 1, "a trip's final record takes the place of its update");
  s.end(ended(e!));
  t.equal(s.writes.dropped, 2, 'a final record pushes out the oldest active update');
  s.end(ended(d!));
  t.equal(s.writes.dropped, 3, 'and the next one the last active update');
  s.end(ended(trip('6')));
  t.equal(s.writes.dropped, 4, 'a buffer full of final records drops the new one');
  t.equal(s.buffered, 3);

  await server.restart();
  await until(async () => {
    await s.flush();
    return s.buffered === 0;
  }, 'the buffer to drain');
  t.same(
    (await stream(redis)).map((x) => x['orderId']),
    ['2', '5', '4'],
  );
  t.equal(await redis.exists('cabtrack:trip:1', 'cabtrack:trip:3', 'cabtrack:trip:6'), 0);
});

t.test('activeTrips() reads back exactly the active trips, for a restarted worker', async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis);
  const trips = Array.from({ length: 8 }, (_, i) =>
    trip(String(9000 + i), { points: i + 1, distanceM: i * 100.5, cost: 1000 + i }),
  );
  for (const r of trips) s.update(r);
  await s.flush();
  s.end(ended(trips[2]!));
  s.end(ended(trips[5]!, 'expired'));
  s.update({ ...trips[0]!, points: 50 });
  await s.flush();
  // One more update not yet flushed: a crash now loses it, and the restarted worker resumes from the last flush.
  s.update({ ...trips[1]!, points: 60 });

  const resumed = store(t, redis);
  const got = (await resumed.activeTrips()).sort((x, y) => x.orderId.localeCompare(y.orderId));
  const want = [{ ...trips[0]!, points: 50 }, trips[1]!, trips[3]!, trips[4]!, trips[6]!, trips[7]!];
  t.same(got, want);
  t.same(await resumed.get('9005'), ended(trips[5]!, 'expired'), 'a finished trip by order id');
  t.equal(await resumed.get('123'), undefined);
  t.same(await s.get('9001'), { ...trips[1]!, points: 60 }, 'the buffered record first');
});

t.test("a driver's active trip is found by driver (a host taking over a dead host's driver)", async (t) => {
  const server = await startRedis(t);
  const redis = await client(t, server.port);
  const s = store(t, redis);
  const first = trip('7001', { driverId: 'dx' });
  t.equal(await s.activeTripOf('dx'), undefined, 'none before its first write');
  s.update(first);
  await s.flush();
  t.same(await s.activeTripOf('dx'), first, 'its active trip, as written');
  const later = { ...first, points: 9, lastTime: first.lastTime + 8 };
  s.update(later);
  await s.flush();
  t.same(await s.activeTripOf('dx'), later, 'as of the last flush');
  s.end(ended(later, 'order_changed'));
  await s.flush();
  t.equal(await s.activeTripOf('dx'), undefined, 'an ended trip is not resumed');
  const next = trip('7002', {
    driverId: 'dx',
    startTime: first.startTime + 100,
    lastTime: first.startTime + 100,
  });
  s.update(next);
  await s.flush();
  t.same(await s.activeTripOf('dx'), next, 'the next trip');
  t.equal(await s.activeTripOf('nobody'), undefined);
  const ttl = await redis.ttl('cabtrack:trip-of:dx');
  t.ok(ttl > 0, `the pointer expires (${ttl} s)`);
});
