import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { type ExpectedTrip, Fleet } from './support/hostile-fleet.ts';
import { alive, daemonPids, hex, redisUp, scrape, settle, sleep } from './support/hostile-net.ts';
import { readStream, readTripHash, type StreamEntry } from './support/hostile-trips.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

/**
 * A worker killed with SIGKILL under load, with Redis: it is replaced; its drivers are listed again with
 * their next fix; and no trip is lost or written twice: every trip has its record in Redis, every trip
 * that ended is in the billing stream exactly once, and a trip the dead worker had in progress goes on
 * where Redis last had it (its start, points and distance kept) instead of starting over.
 *
 * What a crash may cost is bounded and documented (src/cluster/ingest-worker.ts, src/trips/trip-store.ts):
 * trips reach Redis at most a second (the worker's sync) plus a second (the store's flush) behind, and
 * datagrams queued in the dead worker's socket are gone. So a trip active in the last ~2 s before the
 * kill may miss those seconds' fixes (a later start, an earlier end, fewer points), and no more; every
 * other trip's record is exact.
 */

const ROUND_MS = 200;
/** Fix times advance a second a round (the fleet's clock runs 5x). */
const FIX_S_PER_ROUND = 1;
/** The crash window in fix seconds: 2 s of sync and flush plus 1 s of slack, in rounds. */
const WINDOW_S = Math.ceil(3000 / ROUND_MS) * FIX_S_PER_ROUND;

let redis: RedisServer;
let dispatch: Redis;
let daemon: Daemon;
const now = Math.floor(Date.now() / 1000);
const common = { startTime: now - 500, centre: { lat: 41.3874, lon: 2.1686 } };
// Short trips (1-3 s of rounds), so some end just before the kill with their final record still in
// the dead worker's buffer; and long ones that started well before the crash window and span it.
const shortTrips = new Fleet({
  ...common,
  size: 30,
  seed: 31,
  prefix: 'wk-s',
  sessionBase: 0xf1ee_7500_0000_0000n,
  orderBase: 8_000_000_000n,
  orderRounds: [5, 15],
  freeRounds: [0, 2],
});
const longTrips = new Fleet({
  ...common,
  size: 20,
  seed: 32,
  prefix: 'wk-l',
  sessionBase: 0xf1ee_7510_0000_0000n,
  orderBase: 8_100_000_000n,
  orderRounds: [60, 90],
});
const fleets = [shortTrips, longTrips];
const drivers = fleets.flatMap((f) => f.drivers);

t.before(async () => {
  redis = await startRedis(t);
  dispatch = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  dispatch.on('error', () => {});
  await dispatch.connect();
  daemon = await startDaemon({ CABTRACK_REDIS_URL: redis.url, CABTRACK_WORKERS: '2' });
  for (const d of drivers) {
    await dispatch.hset(`cabtrack:session:${hex(d.session)}`, 'driverId', d.id, 'cab', d.cab);
  }
  for (const f of fleets) await f.open(daemon.udpPort);
  await redisUp(daemon);
});
t.teardown(async () => {
  for (const f of fleets) f.close();
  await daemon.stop();
  dispatch.disconnect();
});

/** Every driver listed once, at its latest fix. */
async function allListedAtLatest(): Promise<boolean> {
  const r = await daemon.get('/v1/drivers?bbox=-180,-90,180,90&limit=1000');
  if (r.status !== 200) return false;
  const want = new Map(drivers.map((d) => [d.id, d.last!.time]));
  const got = r.body.drivers as Array<{ id: string; time: number }>;
  return got.length === want.size && got.every((d) => want.get(d.id) === d.time);
}

/**
 * A trip that started inside the crash window and had no fix after the kill may be gone altogether, if
 * it was never synced: nothing outside the dead worker knew of it. (With the fleet's clock at 5x such
 * trips last a second or two; real ones last minutes.) A trip Redis has a record of is never excused.
 */
function mayVanish(x: ExpectedTrip, killAt: number, inRedis: boolean): boolean {
  return !inRedis && x.startTime >= killAt - WINDOW_S && x.lastTime <= killAt;
}

/**
 * What Redis holds of a trip (its stream entry or hash) against what was driven: exact, or, for a trip
 * active in the crash window, missing at most that window's fixes.
 */
function judge(
  x: ExpectedTrip,
  got: { startTime: number; lastTime: number; points: number },
  killAt: number,
): string | null {
  // The window reaches past killAt too: fixes sent while the signal lands, and those already queued in
  // the dead worker's socket buffer, die with it (the kernel received them; no worker ever will).
  const inWindow = x.startTime <= killAt + WINDOW_S && x.lastTime >= killAt - WINDOW_S;
  const ok = inWindow
    ? got.startTime >= x.startTime &&
      got.startTime <= Math.max(x.startTime, killAt - WINDOW_S) + WINDOW_S &&
      got.lastTime <= x.lastTime &&
      got.lastTime >= Math.min(x.lastTime, killAt - WINDOW_S) &&
      got.points <= x.points &&
      got.points >= x.points - WINDOW_S
    : got.startTime === x.startTime && got.lastTime === x.lastTime && got.points === x.points;
  return ok
    ? null
    : `${x.orderId} (${x.driverId}, fixes ${x.startTime}-${x.lastTime}, ${x.points} points${inWindow ? ', in the crash window' : ''}): ` +
        `Redis has ${got.startTime}-${got.lastTime}, ${got.points} points`;
}

t.test('SIGKILL of a worker under load: replaced, drivers back, no trip lost or duplicated', async (t) => {
  let rounds = 0;
  const round = async (): Promise<void> => {
    for (const f of fleets) await f.round();
    rounds++;
    await sleep(ROUND_MS);
  };
  // 20 rounds: the long trips start 20 fix seconds before the kill, more than the crash window.
  for (let i = 0; i < 20; i++) await round();
  await daemon.waitFor(allListedAtLatest, 'every driver live');

  // The kill comes right after a round was applied: some trips have just ended on the victim, and their
  // final records are (most likely) still in its write buffer.
  const [victim] = daemonPids(daemon).workers;
  t.ok(victim, 'a worker to kill');
  for (const f of fleets) await f.round();
  const sent = fleets.reduce((n, f) => n + f.sent, 0);
  await daemon.waitFor(async () => {
    const s = await scrape(daemon);
    return s.received === s.accepted + s.rejected && s.received >= sent;
  }, 'the round applied');
  const killAt = drivers[0]!.last!.time;
  process.kill(victim!, 'SIGKILL');
  await daemon.waitFor(async () => !alive(victim!), 'the worker gone');

  // The fleet goes on sending (its apps know nothing of it) while the worker is replaced.
  const killStarted = Date.now();
  while (Date.now() - killStarted < 4000) await round();
  const s = await scrape(daemon);
  t.equal(s.get('cabtrack_worker_restarts_total'), 1, 'the worker was replaced');
  t.equal(s.get('cabtrack_workers_up'), 2, 'two workers up');
  t.equal((await daemon.get('/readyz', null)).status, 200, 'ready');
  await daemon.waitFor(allListedAtLatest, "the dead worker's drivers listed again, at their latest fix");
  t.pass('every driver listed once, at its latest fix');

  // Quiet, then give Redis time to have everything: a second of sync, a second of flush, and slack.
  for (let i = 0; i < 3; i++) await round();
  await sleep(2500);
  const stream = await readStream(dispatch);
  const trips = fleets.flatMap((f) => f.allTrips());
  const ended = trips.filter((x) => x.endedAt !== null);
  const live = trips.filter((x) => x.endedAt === null);
  t.comment(
    `${rounds} rounds of ${drivers.length} drivers; ${trips.length} trips (${ended.length} ended, ${live.length} live); ` +
      `killed at fix time ${killAt}, crash window ${WINDOW_S} s`,
  );

  // Every ended trip in the stream exactly once, as the trip it was.
  const byOrder = new Map<string, StreamEntry[]>();
  for (const e of stream) byOrder.set(e['orderId']!, [...(byOrder.get(e['orderId']!) ?? []), e]);
  const lost: string[] = [];
  let vanished = 0;
  const twice: string[] = [];
  const wrong: string[] = [];
  for (const x of ended) {
    const es = byOrder.get(x.orderId) ?? [];
    byOrder.delete(x.orderId);
    if (es.length === 0) {
      if (mayVanish(x, killAt, (await readTripHash(dispatch, x.orderId)) !== null)) vanished++;
      else lost.push(`${x.orderId} (${x.driverId}, fixes ${x.startTime}-${x.lastTime})`);
    }
    if (es.length > 1) twice.push(x.orderId);
    const e = es[0];
    if (e === undefined) continue;
    const verdict = judge(
      x,
      { startTime: Number(e['startTime']), lastTime: Number(e['lastTime']), points: Number(e['points']) },
      killAt,
    );
    if (verdict !== null) wrong.push(verdict);
  }
  t.same(
    lost,
    [],
    `every ended trip in the stream (${ended.length} ended; ${vanished} never synced before the kill excused)`,
  );
  t.same(twice, [], 'none twice');
  t.same(wrong, [], 'each as the trip it was (start, end and points; the crash window aside)');
  t.same([...byOrder.keys()], [], 'nothing in the stream that did not end');

  // Every trip has its record in Redis: ended ones final, live ones current and in the active set.
  const active = new Set(await dispatch.smembers('cabtrack:trips:active'));
  const badHash: string[] = [];
  for (const x of trips) {
    const h = await readTripHash(dispatch, x.orderId);
    const isLive = x.endedAt === null;
    if (mayVanish(x, killAt, h !== null)) continue;
    if (h === null || h['active'] !== isLive) {
      badHash.push(`${x.orderId} ${isLive ? 'live' : 'ended'}: ${JSON.stringify(h)}`);
      continue;
    }
    const verdict = judge(
      x,
      {
        startTime: h['startTime'] as number,
        lastTime: h['lastTime'] as number,
        points: h['points'] as number,
      },
      killAt,
    );
    if (verdict !== null) badHash.push(verdict);
  }
  t.same(badHash.slice(0, 12), [], `every trip's record in Redis as it was driven (${badHash.length} not)`);
  t.same(
    live.filter((x) => !active.has(x.orderId)).map((x) => x.orderId),
    [],
    'every live trip in cabtrack:trips:active',
  );
  t.same(
    [...active].filter((id) => !live.some((x) => x.orderId === id)),
    [],
    'and no ended trip left in it (a trip left "active" there would be resumed, or expired, much later)',
  );
  const end = await settle(daemon);
  t.equal(end.received, end.accepted + end.rejected, 'received = accepted + rejected');
});

t.test('fixes held while a claim waits are counted, even when the driver is deleted meanwhile', async (t) => {
  // After a worker dies the primary holds claims until it has read the trips back from Redis (1.2 s and
  // a read): a new driver's first fixes wait in the claiming worker meanwhile.
  const newcomer = { session: 0xf1ee_7500_0000_1000n, id: 'wk-new', cab: 'WK-NEW' };
  await dispatch.hset(
    `cabtrack:session:${hex(newcomer.session)}`,
    'driverId',
    newcomer.id,
    'cab',
    newcomer.cab,
  );
  const [victim] = daemonPids(daemon).workers;
  const restarts = (await scrape(daemon)).get('cabtrack_worker_restarts_total');
  process.kill(victim!, 'SIGKILL');
  await daemon.waitFor(
    async () => (await scrape(daemon)).get('cabtrack_worker_restarts_total') === restarts + 1,
    'the worker replaced',
  );
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  const before = await scrape(daemon);
  for (let i = 0; i < 3; i++) {
    await phone.send(
      encodeTrack({ session: newcomer.session, lat: 41_380_000, lon: 2_170_000, time: now - 50 + i }),
    );
  }
  await daemon.waitFor(async () => (await scrape(daemon)).received >= before.received + 3, 'fixes received');
  const del = await daemon.request('DELETE', `/v1/drivers/${newcomer.id}`);
  // 404 is fair (no worker holds the driver yet); either way its held fixes must not vanish uncounted.
  t.ok(
    [204, 404].includes(del.status),
    `the operator deletes the driver while its claim waits (${del.status})`,
  );
  // The claim is answered 1.2 s and a Redis read after the death; then the counters must agree.
  await sleep(2000);
  const s = await settle(daemon, 3000);
  t.equal(
    (await daemon.get(`/v1/drivers/${newcomer.id}`)).status,
    404,
    'the deleted driver does not come back',
  );
  t.equal(
    s.received,
    s.accepted + s.rejected,
    `received = accepted + rejected (${s.received} vs ${s.accepted} + ${s.rejected}): the held fixes are counted`,
  );
});
