import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { Fleet, tripRecordOf } from './support/hostile-fleet.ts';
import { hex, redisUp, scrape, settle, sleep } from './support/hostile-net.ts';
import {
  countByTrip,
  readStream,
  readTripHash,
  type StreamEntry,
  streamEntryOf,
} from './support/hostile-trips.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

/**
 * Redis stopped for 10 s under traffic, then started again: no crash; the drivers the workers hold keep
 * updating; trips that end meanwhile wait in the buffer and reach the billing stream exactly once when
 * Redis is back; new sessions are refused while it is away and accepted again after; /readyz says so.
 *
 * The Redis that comes back is empty (test/support/redis.ts runs it without persistence, as a cache
 * node that lost its memory would be). What was in it before is gone, and that is not the daemon's to
 * restore: the billing consumer has read the stream entries written before the outage (the test keeps
 * them), and the dispatch system writes its sessions again after its own recovery, as the test does.
 * What the daemon must restore is its own state: each live trip's hash, and its place in the active set
 * that a restarted worker resumes trips from.
 */

const OUTAGE_MS = 10_000;
/** A round every 250 ms; fix times run 4x faster than the clock, which leaves them in the past. */
const ROUND_MS = 250;

let redis: RedisServer;
let dispatch: Redis;
let daemon: Daemon;
const now = Math.floor(Date.now() / 1000);
const common = { startTime: now - 400, centre: { lat: 45.4642, lon: 9.19 } };
// Short trips that end all the time, and long ones that run from before the outage to the end.
const shortTrips = new Fleet({
  ...common,
  size: 24,
  seed: 21,
  prefix: 'ro-short',
  sessionBase: 0xf1ee_7200_0000_0000n,
  orderBase: 6_000_000_000n,
  orderRounds: [6, 12],
  freeRounds: [0, 2],
});
const longTrips = new Fleet({
  ...common,
  size: 6,
  seed: 22,
  prefix: 'ro-long',
  sessionBase: 0xf1ee_7300_0000_0000n,
  orderBase: 7_000_000_000n,
  orderRounds: [100_000, 100_000],
});
const fleets = [shortTrips, longTrips];
const drivers = fleets.flatMap((f) => f.drivers);

async function writeSessions(ids: Array<{ session: bigint; id: string; cab: string }>): Promise<void> {
  for (const d of ids)
    await dispatch.hset(`cabtrack:session:${hex(d.session)}`, 'driverId', d.id, 'cab', d.cab);
}

t.before(async () => {
  redis = await startRedis(t);
  dispatch = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  // The dispatch client sees the outage too; its errors are expected.
  dispatch.on('error', () => {});
  await dispatch.connect();
  daemon = await startDaemon({ CABTRACK_REDIS_URL: redis.url });
  await writeSessions(drivers);
  for (const f of fleets) await f.open(daemon.udpPort);
  await redisUp(daemon);
});
t.teardown(async () => {
  for (const f of fleets) f.close();
  await daemon.stop();
  dispatch.disconnect();
});

t.test('Redis away for 10 s under traffic, and back empty', async (t) => {
  // /readyz, polled throughout: the story it tells.
  const story: string[] = [];
  let polling = true;
  t.teardown(() => {
    polling = false;
  });
  const poller = (async () => {
    while (polling) {
      const r = await daemon.get('/readyz', null).catch(() => null);
      const said =
        r === null
          ? 'no answer'
          : `${r.status} redis ${r.body?.redis}${r.body?.degraded ? ' (degraded)' : ''}`;
      if (story[story.length - 1] !== said) story.push(said);
      await sleep(100);
    }
  })();
  let rounds = 0;
  const round = async (): Promise<void> => {
    for (const f of fleets) await f.round();
    rounds++;
    await sleep(ROUND_MS);
  };
  const at = (): Record<string, number> => Object.fromEntries(drivers.map((d) => [d.id, d.last?.time ?? 0]));
  const positionsMatch = async (label: string): Promise<void> => {
    const want = at();
    await daemon.waitFor(async () => {
      const r = await daemon.get('/v1/drivers?bbox=-180,-90,180,90&limit=1000');
      return (
        r.body.drivers.every((d: { id: string; time: number }) => want[d.id] === d.time) &&
        r.body.drivers.length === drivers.length
      );
    }, label);
  };

  // Before: everything flows to Redis; the billing consumer reads the stream.
  for (let i = 0; i < 12; i++) await round();
  await positionsMatch('every driver at its latest fix');
  const endedBefore = fleets.flatMap((f) => f.allTrips()).filter((x) => x.endedAt !== null);
  await daemon.waitFor(
    async () => (await readStream(dispatch)).length === endedBefore.length,
    'trips ended so far in the stream',
    5000,
  );
  const streamBefore = await readStream(dispatch);

  // The outage.
  await redis.stop();
  const downAt = Date.now();
  await daemon.waitFor(
    async () => (await scrape(daemon)).get('cabtrack_redis_up') === 0,
    'redis down noticed',
  );
  const newcomer = { session: 0xf1ee_7400_0000_0001n, id: 'ro-new-1', cab: 'RO-NEW-1' };
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  let newcomerTime = now - 100;
  const newcomerFix = (): Uint8Array =>
    encodeTrack({ session: newcomer.session, lat: 45_460_000, lon: 9_190_000, time: ++newcomerTime });
  const lookupFailedBefore = (await scrape(daemon)).rejectedFor('lookup_failed');
  let buffered = 0;
  while (Date.now() - downAt < OUTAGE_MS) {
    await round();
    await phone.send(newcomerFix());
    buffered = Math.max(buffered, (await scrape(daemon)).get('cabtrack_trip_buffer'));
  }
  await positionsMatch('drivers held by the workers keep updating while Redis is away');
  const s = await scrape(daemon);
  t.ok(
    s.rejectedFor('lookup_failed') > lookupFailedBefore,
    'a new session is refused (lookup_failed) while Redis is away',
  );
  t.equal((await daemon.get(`/v1/drivers/${newcomer.id}`)).status, 404, 'and its driver is not listed');
  const put = await daemon.request('PUT', '/v1/sessions/f1ee740000000002', {
    body: { driverId: 'x', cab: 'y' },
  });
  t.equal(put.status, 503, 'PUT /v1/sessions answers 503 while Redis is away');
  t.match(put.body, { error: { code: 'unavailable', message: /redis is unavailable/ } });
  t.ok(buffered > 0, `trip records waited in the buffer (${buffered} at most)`);
  const endedDuring = fleets
    .flatMap((f) => f.allTrips())
    .filter((x) => x.endedAt !== null && !endedBefore.includes(x));
  t.ok(endedDuring.length > 10, `${endedDuring.length} trips ended during the outage`);

  // Redis is back, empty; the dispatch system writes its sessions again, the newcomer's among them.
  await redis.restart();
  const upAt = Date.now();
  await daemon.waitFor(async () => dispatch.status === 'ready', 'the dispatch client reconnected', 10_000);
  await writeSessions([...drivers, newcomer]);
  await daemon.waitFor(
    async () => (await scrape(daemon)).get('cabtrack_redis_up') === 1,
    'redis back',
    15_000,
  );
  t.comment(`redis up again after ${Date.now() - upAt} ms`);
  // New sessions are accepted again: the newcomer's next fixes bring it in.
  await daemon.waitFor(
    async () => {
      await phone.send(newcomerFix());
      return (await daemon.get(`/v1/drivers/${newcomer.id}`)).status === 200;
    },
    'the new session accepted',
    10_000,
  );
  t.comment(`new session accepted ${Date.now() - upAt} ms after Redis came back`);
  for (let i = 0; i < 8; i++) await round();
  polling = false;
  await poller;
  // Let the last trip updates reach Redis: a second for the worker's sync, a second for the flush.
  await daemon.waitFor(
    async () => (await scrape(daemon)).get('cabtrack_trip_buffer') === 0,
    'trip buffer empty',
    10_000,
  );
  await sleep(2500);

  // The story /readyz told: up, down (degraded, still 200: the workers serve), up.
  t.same(
    story,
    ['200 redis up', '200 redis down (degraded)', '200 redis up'],
    `/readyz: ${story.join(' -> ')}`,
  );

  // Every trip that ended is in the billing stream exactly once: before the outage in what the consumer
  // read then, since in the new stream. Each entry holds the trip as driven (no fix was lost).
  const allEnded = fleets.flatMap((f) => f.allTrips()).filter((x) => x.endedAt !== null);
  const streamAfter = await readStream(dispatch);
  const counts = countByTrip([...streamBefore, ...streamAfter]);
  const lost = allEnded.filter((x) => !counts.has(`${x.orderId}:${x.startTime}`)).map((x) => x.orderId);
  const twice = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
  t.same(lost, [], `no ended trip lost (${allEnded.length} ended, ${endedDuring.length} during the outage)`);
  t.same(twice, [], 'none in the stream twice');
  t.equal(counts.size, allEnded.length, 'and nothing else in it');
  const entries = new Map<string, StreamEntry>(
    [...streamBefore, ...streamAfter].map((e) => [`${e['orderId']}:${e['startTime']}`, e]),
  );
  let wrong = 0;
  for (const x of allEnded) {
    const e = entries.get(`${x.orderId}:${x.startTime}`);
    if (e !== undefined && JSON.stringify(e) !== JSON.stringify(streamEntryOf(x))) {
      if (wrong++ === 0) t.same(e, streamEntryOf(x), `stream entry of ${x.orderId}`);
    }
  }
  t.equal(wrong, 0, 'every stream entry exactly as the trip was driven');

  // Live trips: their hashes are written again in full, and they are back in the active set, so a
  // worker that dies now still has them resumed.
  const active = fleets.flatMap((f) => f.allTrips()).filter((x) => x.endedAt === null);
  const activeSet = new Set(await dispatch.smembers('cabtrack:trips:active'));
  const missingHash: string[] = [];
  const notIndexed: string[] = [];
  for (const x of active) {
    const h = await readTripHash(dispatch, x.orderId);
    if (JSON.stringify(h) !== JSON.stringify(tripRecordOf(x)))
      missingHash.push(`${x.orderId}: ${JSON.stringify(h)}`);
    if (!activeSet.has(x.orderId)) notIndexed.push(x.orderId);
  }
  t.same(missingHash, [], `every live trip's hash is current in Redis (${active.length} live)`);
  t.same(
    notIndexed,
    [],
    `every live trip is in cabtrack:trips:active (${notIndexed.length} of ${active.length} missing, those live since before the outage)`,
  );

  const end = await settle(daemon);
  t.equal(end.get('cabtrack_worker_restarts_total'), 0, 'no worker died');
  t.equal(end.received, end.accepted + end.rejected, 'received = accepted + rejected');
  t.comment(
    `${rounds} rounds, ${drivers.length} drivers; rejected ${JSON.stringify(end.byLabel('cabtrack_datagrams_rejected_total', 'reason'))}`,
  );
});
