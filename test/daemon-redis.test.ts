import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

/**
 * The daemon with a real Redis: sessions written by the dispatch system, revocation, the negative cache
 * under a flood, trips that survive SIGKILL, the billing stream, and Redis going away under traffic.
 */

let redisServer: RedisServer;
let dispatch: Redis;
const now = () => Math.floor(Date.now() / 1000);

t.before(async () => {
  redisServer = await startRedis(t);
  dispatch = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await dispatch.connect();
});
t.teardown(() => dispatch.disconnect());

/** Sends fixes and waits until the daemon has counted that many datagrams in all. */
async function sendAndWait(d: Daemon, phone: Phone, bufs: Uint8Array[]): Promise<void> {
  const before = await d.metric('cabtrack_datagrams_received_total');
  for (const b of bufs) await phone.send(b);
  await d.waitFor(
    async () => (await d.metric('cabtrack_datagrams_received_total')) >= before + bufs.length,
    'datagrams received',
  );
}

const fixOf = (session: bigint, time: number, extra: Record<string, unknown> = {}) =>
  encodeTrack({ session, lat: 50_110_900, lon: 8_682_100, time, ...extra });

async function daemonWithRedis(): Promise<Daemon> {
  return startDaemon({ CABTRACK_REDIS_URL: redisServer.url });
}

t.test('sessions from the dispatch system, and revocation through the key and the channel', async (t) => {
  const d = await daemonWithRedis();
  t.teardown(() => d.stop());
  const phone = new Phone(d.udpPort);
  await phone.open();
  t.teardown(() => phone.close());

  await dispatch.hset('cabtrack:session:00000000000a0001', 'driverId', 'fra-1', 'cab', 'F-1');
  const t0 = now() - 30;
  await sendAndWait(d, phone, [fixOf(0xa0001n, t0)]);
  await d.waitFor(async () => (await d.get('/v1/drivers/fra-1')).status === 200, 'driver listed');
  t.equal(await d.metric('cabtrack_session_lookups_total', { outcome: 'redis_hit' }), 1);

  // More fixes: the driver is held, so no lookup at all.
  await sendAndWait(d, phone, [fixOf(0xa0001n, t0 + 1), fixOf(0xa0001n, t0 + 2)]);
  t.equal(await d.metric('cabtrack_session_lookups_total', { outcome: 'redis_hit' }), 1);
  t.equal(await d.metric('cabtrack_datagrams_accepted_total'), 3);

  // The dispatch system revokes: DEL, then PUBLISH on cabtrack:revoke.
  await dispatch.del('cabtrack:session:00000000000a0001');
  await dispatch.publish('cabtrack:revoke', '00000000000a0001');
  await d.waitFor(async () => (await d.get('/v1/drivers/fra-1')).status === 404, 'driver removed');
  await sendAndWait(d, phone, [fixOf(0xa0001n, t0 + 3)]);
  t.equal(await d.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' }), 1);
  t.equal((await d.get('/v1/drivers/fra-1')).status, 404);

  // The API writes the same hash, and its DELETE does DEL + PUBLISH.
  const put = await d.request('PUT', '/v1/sessions/00000000000a0002', {
    body: { driverId: 'fra-2', cab: 'F-2' },
  });
  t.equal(put.status, 201);
  t.same(await dispatch.hgetall('cabtrack:session:00000000000a0002'), { driverId: 'fra-2', cab: 'F-2' });
  t.equal((await d.request('DELETE', '/v1/sessions/00000000000a0002')).status, 204);
  t.equal(await dispatch.exists('cabtrack:session:00000000000a0002'), 0);
});

t.test(
  'a session that expires in Redis, or is deleted without a publish, removes its live driver',
  async (t) => {
    const d = await startDaemon({ CABTRACK_REDIS_URL: redisServer.url, CABTRACK_SESSION_RECHECK_S: '1' });
    t.teardown(() => d.stop());
    const phone = new Phone(d.udpPort);
    await phone.open();
    t.teardown(() => phone.close());

    // Dispatch gives one session a 2 s expiry and will delete another's key without publishing; a third
    // stays. All three drivers keep sending, so none idles out.
    await dispatch.hset('cabtrack:session:00000000000e0001', 'driverId', 'exp-1', 'cab', 'E-1');
    await dispatch.pexpire('cabtrack:session:00000000000e0001', 2000);
    await dispatch.hset('cabtrack:session:00000000000e0002', 'driverId', 'exp-2', 'cab', 'E-2');
    await dispatch.hset('cabtrack:session:00000000000e0003', 'driverId', 'exp-3', 'cab', 'E-3');
    const sessions = [0xe0001n, 0xe0002n, 0xe0003n];
    let time = now() - 60;
    const round = async (): Promise<void> => {
      time++;
      await sendAndWait(
        d,
        phone,
        sessions.map((s) => fixOf(s, time)),
      );
    };
    await round();
    for (const id of ['exp-1', 'exp-2', 'exp-3']) {
      await d.waitFor(async () => (await d.get(`/v1/drivers/${id}`)).status === 200, `${id} listed`);
    }
    await dispatch.del('cabtrack:session:00000000000e0002');

    const started = Date.now();
    while (
      (await d.get('/v1/drivers/exp-1')).status === 200 ||
      (await d.get('/v1/drivers/exp-2')).status === 200
    ) {
      if (Date.now() - started > 10_000) break;
      await round();
      await new Promise((r) => setTimeout(r, 200));
    }
    t.equal((await d.get('/v1/drivers/exp-1')).status, 404, 'the expired session took its driver away');
    t.equal((await d.get('/v1/drivers/exp-2')).status, 404, 'the deleted key took its driver away');
    t.equal((await d.get('/v1/drivers/exp-3')).status, 200, 'the valid one stays');
    t.equal(await d.metric('cabtrack_session_rechecks_total', { outcome: 'gone' }), 2);
    t.ok((await d.metric('cabtrack_session_rechecks_total', { outcome: 'valid' })) > 0);
    // And their next fixes are refused, not looked up into a new driver.
    const refused = await d.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' });
    await round();
    t.equal(await d.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' }), refused + 2);
    t.equal((await d.get('/v1/drivers/exp-3')).status, 200);
  },
);

t.test(
  'a flood of random sessions costs Redis a bounded number of lookups; the fleet is unharmed',
  async (t) => {
    const d = await daemonWithRedis();
    t.teardown(() => d.stop());
    const fleet = new Phone(d.udpPort);
    const attacker = new Phone(d.udpPort);
    await fleet.open();
    await attacker.open();
    t.teardown(() => {
      fleet.close();
      attacker.close();
    });
    await dispatch.hset('cabtrack:session:00000000000b0001', 'driverId', 'flood-ok', 'cab', 'F-OK');
    const before = (await redisServer.commandStats())['hgetall'] ?? 0;
    const started = Date.now();
    const t0 = now() - 60;
    // 3 rounds of 2,000 random sessions, each repeated twice (a replaying attacker), while the fleet
    // driver sends a fix per round.
    const rounds = 3;
    for (let r = 0; r < rounds; r++) {
      const junk: Uint8Array[] = [];
      for (let i = 0; i < 2000; i++) {
        const s = BigInt(0x1_0000_0000 + r * 10_000 + i);
        junk.push(fixOf(s, t0 + r), fixOf(s, t0 + r));
      }
      await sendAndWait(d, attacker, junk);
      await sendAndWait(d, fleet, [fixOf(0xb0001n, t0 + r)]);
    }
    const elapsedS = (Date.now() - started) / 1000;
    const lookups = ((await redisServer.commandStats())['hgetall'] ?? 0) - before;
    // At most one lookup per unknown session (the negative cache absorbs the repeats), and at most
    // 10,000 a second per worker (the cap); here the first bound is the tighter one.
    const distinct = rounds * 2000 + 1;
    t.ok(
      lookups <= distinct,
      `${lookups} HGETALL for ${distinct} distinct sessions and ${2 * distinct} datagrams`,
    );
    t.ok(lookups <= 2 * 10_000 * Math.ceil(elapsedS + 1), 'within the per-second cap of 2 workers');
    t.equal(
      (await d.get('/v1/drivers/flood-ok')).body.time,
      t0 + rounds - 1,
      "the fleet driver's fixes were all applied",
    );
    t.equal(await d.metric('cabtrack_datagrams_accepted_total'), rounds);
  },
);

t.test('a trip survives SIGKILL of the daemon, and reaches the billing stream exactly once', async (t) => {
  await dispatch.hset('cabtrack:session:00000000000c0001', 'driverId', 'trip-1', 'cab', 'T-1');
  const order = 777_000_001n;
  const t0 = now() - 120;
  let d = await daemonWithRedis();
  let phone = new Phone(d.udpPort);
  await phone.open();
  let lat = 50_110_900;
  const fixes: Uint8Array[] = [];
  for (let i = 0; i < 5; i++) {
    lat += 100; // 11 m a second
    fixes.push(fixOf(0xc0001n, t0 + i, { lat, orderId: order, cost: 100 + i }));
  }
  await sendAndWait(d, phone, fixes);
  // The trip is written at most a second behind.
  await d.waitFor(
    async () => (await dispatch.hget(`cabtrack:trip:${order}`, 'points')) === '5',
    'trip in redis',
    5000,
  );
  const before = await d.get(`/v1/trips/${order}`);
  t.equal(before.body.points, 5);

  const pids = d.logs
    .filter((l) => l.includes('"worker ready"'))
    .map((l) => (JSON.parse(l) as { pid: number }).pid);
  d.proc.kill('SIGKILL');
  await d.exited();
  phone.close();
  // The workers notice the primary is gone and leave; wait so that none still holds the UDP port.
  await d.waitFor(async () => pids.every((pid) => !alive(pid)), 'old workers gone');

  d = await daemonWithRedis();
  t.teardown(() => d.stop());
  phone = new Phone(d.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  lat += 100;
  await sendAndWait(d, phone, [fixOf(0xc0001n, t0 + 5, { lat, orderId: order, cost: 160 })]);
  await d.waitFor(async () => (await d.get(`/v1/trips/${order}`)).body?.points === 6, 'trip resumed');
  const resumed = (await d.get(`/v1/trips/${order}`)).body;
  t.match(resumed, {
    orderId: String(order),
    driverId: 'trip-1',
    active: true,
    points: 6,
    startTime: t0,
    lastTime: t0 + 5,
    cost: 160,
  });
  t.equal(resumed.distanceM, before.body.distanceM, 'the distance before the crash is kept');

  // The order ends: the final record goes to the stream once.
  await sendAndWait(d, phone, [fixOf(0xc0001n, t0 + 6, { lat })]);
  await d.waitFor(async () => (await dispatch.xlen('cabtrack:trips')) >= 1, 'stream entry', 5000);
  await new Promise((r) => setTimeout(r, 1500));
  const entries = await dispatch.xrange('cabtrack:trips', '-', '+');
  const mine = entries.filter(([, fields]) => fields[fields.indexOf('orderId') + 1] === String(order));
  t.equal(mine.length, 1, 'exactly one stream entry for the trip');
  const f = Object.fromEntries(chunk(mine[0]![1]));
  t.match(f, {
    orderId: String(order),
    driverId: 'trip-1',
    cab: 'T-1',
    points: '6',
    startTime: String(t0),
    endReason: 'order_changed',
  });
  t.equal((await d.get(`/v1/trips/${order}`)).body.active, false);
});

t.test(
  'Redis stopped under traffic: known drivers keep updating, new sessions wait for it, no crash',
  async (t) => {
    const d = await daemonWithRedis();
    t.teardown(() => d.stop());
    const phone = new Phone(d.udpPort);
    await phone.open();
    t.teardown(() => phone.close());
    await dispatch.hset('cabtrack:session:00000000000d0001', 'driverId', 'out-1', 'cab', 'O-1');
    const t0 = now() - 200;
    await sendAndWait(d, phone, [fixOf(0xd0001n, t0, { orderId: 5001n })]);
    await d.waitFor(async () => (await d.get('/v1/drivers/out-1')).status === 200, 'driver live');

    await redisServer.stop();
    await d.waitFor(
      async () => (await d.get('/readyz', null)).body.redis === 'down',
      'readyz reports redis down',
    );
    const ready = await d.get('/readyz', null);
    t.match(ready.body, { redis: 'down', degraded: /new sessions are refused/ });
    t.equal(await d.metric('cabtrack_redis_up'), 0);

    await sendAndWait(d, phone, [
      fixOf(0xd0001n, t0 + 1, { orderId: 5001n }),
      fixOf(0xd0001n, t0 + 2, { orderId: 5001n }),
    ]);
    t.equal((await d.get('/v1/drivers/out-1')).body.time, t0 + 2, 'the known driver keeps updating');
    await sendAndWait(d, phone, [fixOf(0xd0002n, t0 + 2)]);
    t.equal(
      await d.metric('cabtrack_datagrams_rejected_total', { reason: 'lookup_failed' }),
      1,
      'a new session is refused under its own reason',
    );
    t.equal(
      (await d.request('PUT', '/v1/sessions/00000000000d0003', { body: { driverId: 'x', cab: 'y' } })).status,
      503,
    );
    // The trip's ending waits in the buffer.
    await sendAndWait(d, phone, [fixOf(0xd0001n, t0 + 3)]);
    await d.waitFor(async () => (await d.metric('cabtrack_trip_buffer')) >= 1, 'trip record buffered');

    await redisServer.restart();
    await d.waitFor(async () => (await d.get('/readyz', null)).body.redis === 'up', 'redis back', 15_000);
    await dispatch.hset('cabtrack:session:00000000000d0002', 'driverId', 'out-2', 'cab', 'O-2');
    // The negative and failure caches are short: the new driver gets in without a restart.
    await d.waitFor(
      async () => {
        await phone.send(fixOf(0xd0002n, now()));
        return (await d.get('/v1/drivers/out-2')).status === 200;
      },
      'new session accepted again',
      15_000,
    );
    await d.waitFor(
      async () => (await dispatch.xlen('cabtrack:trips')) === 1,
      'buffered trip end flushed',
      10_000,
    );
    t.equal(await d.metric('cabtrack_trip_buffer'), 0);
    t.equal(await d.metric('cabtrack_worker_restarts_total'), 0, 'nothing crashed');
  },
);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function chunk(a: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < a.length; i += 2) out.push([a[i]!, a[i + 1]!]);
  return out;
}
