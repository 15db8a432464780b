import type dgram from 'node:dgram';
import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';
import { Fleet, tripRecordOf } from './support/hostile-fleet.ts';
import {
  connectedSocket,
  hex,
  Pacer,
  redisUp,
  safeWindow,
  scrape,
  settle,
  sleep,
  udpCounters,
  yieldToLoop,
} from './support/hostile-net.ts';
import { Prng } from './support/prng.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

/**
 * A flood of well-formed fixes from random sessions at tens of thousands a second, with Redis holding
 * the sessions: Redis sees a bounded number of lookups (one per unknown session per negative-cache
 * period, and at most the per-worker rate cap), and a fleet sending at the same time has every fix
 * accepted. Then replays: an old datagram of a live driver, sent again, is refused as stale and changes
 * nothing, from the driver's own address or from another one.
 */

const WORKERS = 2;
/** src/sessions/redis-registry.ts defaults: Redis lookups per second per worker, and the bucket size. */
const LOOKUPS_PER_SECOND = 10_000;
const LOOKUP_BURST = 10_000;
/** The flood: distinct random sessions, each sent twice (the second time within the negative cache). */
const DISTINCT = 150_000;
const RATE = 60_000;

let redis: RedisServer;
let dispatch: Redis;
let daemon: Daemon;
const now = Math.floor(Date.now() / 1000);
const fleet = new Fleet({
  size: 30,
  seed: 11,
  prefix: 'fl-fleet',
  sessionBase: 0xf1ee_7100_0000_0000n,
  orderBase: 5_000_000_000n,
  startTime: now - 300,
  centre: { lat: 52.52, lon: 13.405 },
  orderRounds: [1000, 1000],
});

t.before(async () => {
  redis = await startRedis(t);
  dispatch = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  // Redis is stopped at teardown, maybe before this client is.
  dispatch.on('error', () => {});
  await dispatch.connect();
  daemon = await startDaemon({ CABTRACK_REDIS_URL: redis.url, CABTRACK_WORKERS: String(WORKERS) });
  // The dispatch system logs the fleet in: the session hashes in Redis.
  for (const d of fleet.drivers) {
    await dispatch.hset(`cabtrack:session:${hex(d.session)}`, 'driverId', d.id, 'cab', d.cab);
  }
  await fleet.open(daemon.udpPort);
  await redisUp(daemon);
  await fleet.round();
  await daemon.waitFor(
    async () => (await scrape(daemon)).accepted === fleet.drivers.length,
    'the fleet is live',
  );
});
t.teardown(async () => {
  fleet.close();
  await daemon.stop();
  dispatch.disconnect();
});

t.test('a flood of random sessions: bounded Redis lookups, and every fleet fix accepted', async (t) => {
  // Pre-generated: fixes that pass every check but the session, from sessions nobody registered.
  const rnd = new Prng(0xf100d);
  const bufs: Uint8Array[] = [];
  for (let i = 0; i < DISTINCT; i++) {
    bufs.push(
      encodeTrack({
        session: rnd.uint64() | 1n,
        lat: rnd.int(52_400_000, 52_600_000),
        lon: rnd.int(13_300_000, 13_500_000),
        time: now - rnd.int(10, 200),
        speed: 30,
      }),
    );
  }
  // Each session comes back a second later: what a replaying attacker, or an app retrying, does.
  const order: number[] = [];
  const back = Math.floor(RATE / 2);
  for (let i = 0; i < DISTINCT; i++) {
    order.push(i);
    if (i >= back) order.push(i - back);
  }
  for (let i = DISTINCT - back; i < DISTINCT; i++) order.push(i);

  const sockets: dgram.Socket[] = [];
  for (let i = 0; i < 4; i++) sockets.push(await connectedSocket(daemon.udpPort));
  t.teardown(() => {
    for (const s of sockets) s.close();
  });
  const before = await scrape(daemon);
  const statsBefore = await redis.commandStats();
  const snmpBefore = udpCounters();
  const pacer = new Pacer(daemon, await safeWindow(daemon), before.received);
  const fleetBefore = fleet.sent;
  const started = performance.now();
  const chunk = 400;
  for (let i = 0; i < order.length; i += chunk) {
    // Paced to RATE, and never ahead of the daemon by more than its socket buffers hold: the kernel
    // drops nothing, so a fleet fix that is not accepted was refused by the daemon.
    const due = started + (i / RATE) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if ((i / chunk) % 25 === 0) {
      await pacer.room(fleet.drivers.length);
      pacer.note(await fleet.round());
    }
    const end = Math.min(order.length, i + chunk);
    await pacer.room(end - i);
    // A session always comes from the same address (so the same worker, whose negative cache knows
    // it); from many addresses, each worker would look it up once.
    for (let j = i; j < end; j++) sockets[order[j]! % sockets.length]!.send(bufs[order[j]!]!);
    pacer.note(end - i);
    await yieldToLoop();
  }
  const elapsedS = (performance.now() - started) / 1000;
  await pacer.drain();
  const s = await settle(daemon);
  const lookups = ((await redis.commandStats())['hgetall'] ?? 0) - (statsBefore['hgetall'] ?? 0);
  const fleetSent = fleet.sent - fleetBefore;
  const rate = Math.round(pacer.sent / elapsedS);
  t.comment(
    `flood: ${pacer.sent} datagrams (${DISTINCT} random sessions, each twice, and ${fleetSent} fleet fixes) in ` +
      `${elapsedS.toFixed(1)} s = ${rate}/s; ${lookups} HGETALL; lookups by outcome ${JSON.stringify(
        s.byLabel('cabtrack_session_lookups_total', 'outcome'),
      )}; RcvbufErrors +${udpCounters().RcvbufErrors - snmpBefore.RcvbufErrors} on the host`,
  );
  t.equal(s.received - before.received, pacer.sent, 'every datagram received');
  t.equal(s.received, s.accepted + s.rejected, 'received = accepted + rejected');
  // The bound: at most one lookup per distinct session (the repeats hit the negative cache), and at
  // most what the per-worker token buckets allow over the flood (a full bucket to start with).
  const cap = WORKERS * (LOOKUP_BURST + LOOKUPS_PER_SECOND * Math.ceil(elapsedS + 1));
  t.ok(
    lookups <= DISTINCT,
    `${lookups} lookups for ${DISTINCT} distinct sessions sent ${order.length} times`,
  );
  t.ok(lookups <= cap, `${lookups} lookups within the rate cap of ${WORKERS} workers (${cap})`);
  t.equal(s.accepted - before.accepted, fleetSent, 'the fleet, and only the fleet, was accepted');
  t.equal(
    s.rejectedFor('unknown_session') +
      s.rejectedFor('lookup_failed') +
      s.rejectedFor('queue_full') +
      s.rejectedFor('throttled') -
      before.rejectedFor('unknown_session') -
      before.rejectedFor('lookup_failed') -
      before.rejectedFor('queue_full') -
      before.rejectedFor('throttled'),
    order.length,
    'every flood datagram refused for its session',
  );
  for (const d of fleet.drivers) {
    const r = await daemon.get(`/v1/drivers/${d.id}`);
    t.same(
      { lat: r.body?.lat, lon: r.body?.lon, time: r.body?.time, trip: r.body?.trip },
      { lat: d.last!.lat / 1e6, lon: d.last!.lon / 1e6, time: d.last!.time, trip: tripRecordOf(d.trip!) },
      `${d.id}: at its last fix, its trip counting all ${d.trip!.points} fixes`,
    );
  }
  t.equal(s.get('cabtrack_worker_restarts_total'), 0, 'no worker died');
});

t.test('a replayed datagram is refused as stale and changes nothing, from any address', async (t) => {
  const d = fleet.drivers[0]!;
  // A few more fixes, keeping the bytes, so there is an old one and the latest one to replay.
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    const b = fleet.next(d);
    sent.push(b);
    await new Promise<void>((resolve, reject) => d.socket.send(b, (err) => (err ? reject(err) : resolve())));
  }
  await daemon.waitFor(
    async () => (await daemon.get(`/v1/drivers/${d.id}`)).body?.time === d.last!.time,
    'fixes in',
  );
  const state = async (): Promise<unknown> => {
    const r = await daemon.get(`/v1/drivers/${d.id}`);
    return { ...r.body, seenAt: undefined };
  };
  const before = await state();
  const replays = [
    sent[0]!,
    sent[1]!,
    sent[2]!,
    encodeTrack({ session: d.session, lat: d.lat + 500, lon: d.lon, time: d.time - 30 }),
  ];
  const s0 = await scrape(daemon);
  // From the driver's own socket: its worker holds the driver.
  for (const b of replays) d.socket.send(b);
  // From other addresses: until one lands on the other worker, which must take the driver over (its
  // state, ring and trip) before it can judge the fix.
  const others: dgram.Socket[] = [];
  t.teardown(() => {
    for (const o of others) o.close();
  });
  let handoffs = 0;
  for (let i = 0; i < 20 && handoffs === 0; i++) {
    const o = await connectedSocket(daemon.udpPort);
    others.push(o);
    for (const b of replays) o.send(b);
    await daemon.waitFor(
      async () =>
        (await scrape(daemon)).rejectedFor('stale') === s0.rejectedFor('stale') + replays.length * (2 + i),
      'replays refused',
    );
    handoffs =
      (await scrape(daemon)).get('cabtrack_driver_handoffs_total') - s0.get('cabtrack_driver_handoffs_total');
  }
  const s1 = await settle(daemon);
  const n = replays.length * (1 + others.length);
  t.equal(s1.rejectedFor('stale') - s0.rejectedFor('stale'), n, `all ${n} replays refused as stale`);
  t.equal(s1.accepted - s0.accepted, 0, 'none accepted');
  t.ok(handoffs > 0, `replayed from the other worker's side too (${others.length} addresses tried)`);
  t.same(await state(), before, "the driver's position, points and trip are unchanged");
  // The driver's next real fix is still taken.
  await fleet.round([d]);
  await daemon.waitFor(
    async () => (await daemon.get(`/v1/drivers/${d.id}`)).body?.time === d.last!.time,
    'next fix',
  );
  t.equal(
    (await daemon.get(`/v1/drivers/${d.id}`)).body.trip.points,
    d.trip!.points,
    'and counted in its trip',
  );
});
