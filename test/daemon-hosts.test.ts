import { Cluster } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, freePort, Phone, startDaemon } from './support/daemon.ts';
import { startRedisCluster } from './support/redis.ts';

/**
 * Two daemon hosts on one machine (loopback, each its own ports) sharing one live view through a real
 * 3-node Redis Cluster: each host answers nearest for the other's drivers; an operator route on one
 * host for the other's driver is answered by its owner; a driver whose fixes move to the other host
 * moves with its ring and trip; a host killed (kill -9) leaves its drivers to the other at their next
 * fix, their trips resumed from Redis and ended once. (test/hosts-netns.test.ts does the same across
 * network namespaces, with three hosts, the simulator and a Redis primary failing over.)
 */

const T0 = Math.floor(Date.now() / 1000) - 120;

interface Car {
  id: string;
  cab: string;
  session: bigint;
  hex: string;
  lat: number;
  lon: number;
  time: number;
  order: bigint;
  sent: number[];
}

function car(n: number, lat: number, lon: number, order: bigint): Car {
  const session = 0x7000_0000_0000_0000n + BigInt(n);
  return {
    id: `host-car-${n}`,
    cab: `HC-${n}`,
    session,
    hex: session.toString(16).padStart(16, '0'),
    lat,
    lon,
    time: T0,
    order,
    sent: [],
  };
}

async function drive(phone: Phone, c: Car, fixes: number): Promise<void> {
  for (let i = 0; i < fixes; i++) {
    c.time++;
    c.lat += 60;
    c.sent.push(c.time);
    await phone.send(
      encodeTrack({
        session: c.session,
        lat: c.lat,
        lon: c.lon,
        time: c.time,
        orderId: c.order,
        cost: 100 + c.sent.length,
      }),
    );
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ids = async (d: Daemon, lat: number, lon: number): Promise<string[]> => {
  const r = await d.get(`/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=50&radius=20000`);
  if (r.status !== 200) throw new Error(`nearest answered ${r.status}`);
  return r.body.drivers.map((x: { id: string }) => x.id).sort();
};

t.test('two hosts, one live view', async (t) => {
  const redis = await startRedisCluster(t);
  const seeds = redis.nodes.map((n) => `${n.host}:${n.port}`).join(',');
  const host = async (id: string): Promise<Daemon> => {
    const httpPort = await freePort();
    const d = await startDaemon({
      CABTRACK_HTTP_PORT: String(httpPort),
      CABTRACK_WORKERS: '1',
      CABTRACK_HTTP_WORKERS: '1',
      CABTRACK_REDIS_CLUSTER: seeds,
      CABTRACK_HOST_ID: id,
      CABTRACK_HOST_URL: `http://127.0.0.1:${httpPort}`,
      CABTRACK_LIVE_KEYFRAME_MS: '1000',
    });
    t.teardown(() => d.stop());
    return d;
  };
  const a = await host('a');
  const b = await host('b');

  // A third host given a's id: refused at start while a's lease is alive (it would take a's drivers).
  await t.rejects(
    host('a'),
    /cabtrack: cannot start: CABTRACK_HOST_ID a is in use by a live host at http:\/\/127\.0\.0\.1:\d+/,
    'a second host with the same id does not start',
  );
  const phones: Phone[] = [];
  const phone = async (d: Daemon): Promise<Phone> => {
    const p = new Phone(d.udpPort);
    phones.push(p);
    await p.open();
    return p;
  };
  t.teardown(() => {
    for (const p of phones) p.close();
  });

  // Barcelona and Madrid: two live cells apart at zoom 8.
  const bcn = car(1, 41_391_700, 2_164_900, 9001n);
  const mad = car(2, 40_416_800, -3_703_800, 9002n);
  for (const c of [bcn, mad]) {
    const r = await a.request('PUT', `/v1/sessions/${c.hex}`, { body: { driverId: c.id, cab: c.cab } });
    t.equal(r.status, 201, `session of ${c.id}`);
  }
  const bcnOnA = await phone(a);
  const madOnB = await phone(b);
  await drive(bcnOnA, bcn, 5);
  await drive(madOnB, mad, 5);

  await a.waitFor(async () => (await ids(b, 41.39, 2.165)).includes(bcn.id), "a's driver on b");
  await a.waitFor(async () => (await ids(a, 40.42, -3.7)).includes(mad.id), "b's driver on a");
  for (const d of [a, b]) {
    t.same(await ids(d, 41.39, 2.165), [bcn.id], 'Barcelona: the same answer on both hosts');
    t.same(await ids(d, 40.42, -3.7), [mad.id], 'Madrid: the same answer on both hosts');
  }

  // Operator routes for the other host's driver: answered by its owner.
  const detail = await b.get(`/v1/drivers/${bcn.id}`);
  t.equal(detail.status, 200, 'b answers for a’s driver');
  t.same(
    detail.body.points.map((p: { time: number }) => p.time),
    bcn.sent,
    'with its ring, from its owner',
  );
  const hopped = await a.request('GET', `/v1/drivers/${mad.id}`, { headers: { 'x-cabtrack-hop': 'b' } });
  t.equal(hopped.status, 404, 'a request from another host is not forwarded again');
  t.equal((await b.get(`/v1/cabs/${bcn.cab}`)).body.id, bcn.id, 'by cab too');

  // An operator deletes, on a, a driver whose fixes reach b: its session is revoked in Redis (and
  // announced to every host's workers), b drops it, and it leaves both hosts' live views.
  const gone = car(3, 40_420_000, -3_700_000, 0n);
  t.equal(
    (await a.request('PUT', `/v1/sessions/${gone.hex}`, { body: { driverId: gone.id, cab: gone.cab } }))
      .status,
    201,
  );
  const goneOnB = await phone(b);
  await drive(goneOnB, gone, 3);
  await a.waitFor(async () => (await ids(a, 40.42, -3.7)).includes(gone.id), "b's driver listed on a");
  t.equal((await a.request('DELETE', `/v1/drivers/${gone.id}`)).status, 204, 'deleted through a');
  await a.waitFor(
    async () =>
      !(await ids(a, 40.42, -3.7)).includes(gone.id) && !(await ids(b, 40.42, -3.7)).includes(gone.id),
    'the deleted driver to leave both hosts',
  );
  t.equal(
    (await b.request('GET', `/v1/drivers/${gone.id}`, { headers: { 'x-cabtrack-hop': 't' } })).status,
    404,
    'its owner let it go',
  );
  const refused = await b.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' });
  await drive(goneOnB, gone, 1);
  await b.waitFor(
    async () =>
      (await b.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' })) === refused + 1,
    'its next fix on b refused',
  );
  t.same(await ids(b, 40.42, -3.7), [mad.id], 'and it does not come back');
  await new Promise((r) => setTimeout(r, 1200)); // the trips' once-a-second write
  const trip = await b.get(`/v1/trips/${bcn.order}`);
  t.equal(trip.status, 200);
  t.equal(trip.body.points, bcn.sent.length, 'the trip, as its owner has it');
  t.equal(
    (await b.request('POST', `/internal/v1/handoff/${bcn.id}`)).status,
    400,
    'the handoff route is for hosts',
  );

  // Barcelona's fixes now reach b (the balancer moved its traffic): it moves, ring and trip.
  const bcnOnB = await phone(b);
  await drive(bcnOnB, bcn, 4);
  await b.waitFor(async () => {
    const r = await b.request('GET', `/v1/drivers/${bcn.id}`, { headers: { 'x-cabtrack-hop': 't' } });
    return r.status === 200 && r.body.points.length === bcn.sent.length;
  }, 'the driver on b with all its points');
  const moved = await b.request('GET', `/v1/drivers/${bcn.id}`, { headers: { 'x-cabtrack-hop': 't' } });
  t.same(
    moved.body.points.map((p: { time: number }) => p.time),
    bcn.sent,
    'its ring came from a',
  );
  t.equal(moved.body.trip.points, bcn.sent.length, 'its trip too, counting every fix on both hosts');
  t.equal(
    (await a.request('GET', `/v1/drivers/${bcn.id}`, { headers: { 'x-cabtrack-hop': 't' } })).status,
    404,
    'a let it go',
  );
  t.ok(
    (await b.metric('cabtrack_host_takeovers_total', { with: 'state' })) >= 1,
    'counted as a takeover with state',
  );
  await b.caughtUp();
  for (const d of [a, b]) t.same(await ids(d, 41.39, 2.165), [bcn.id], 'listed once on each host');

  // b is killed: its drivers' fixes go to a (the balancer), and a resumes their trips from Redis.
  await new Promise((r) => setTimeout(r, 1200)); // b's last trip write
  b.proc.kill('SIGKILL');
  const bcnBack = await phone(a);
  const madBack = await phone(a);
  await drive(bcnBack, bcn, 3);
  await drive(madBack, mad, 3);
  for (const c of [bcn, mad]) {
    await a.waitFor(async () => {
      const r = await a.request('GET', `/v1/drivers/${c.id}`, { headers: { 'x-cabtrack-hop': 't' } });
      return r.status === 200 && r.body.trip !== null && r.body.trip.points >= c.sent.length - 1;
    }, `${c.id} back on a with its trip`);
    const r = await a.request('GET', `/v1/drivers/${c.id}`, { headers: { 'x-cabtrack-hop': 't' } });
    t.equal(r.body.trip.startTime, c.sent[0], `${c.id}: the same trip, resumed`);
  }
  t.ok(
    (await a.metric('cabtrack_host_takeovers_total', { with: 'trip' })) >= 2,
    'taken over with the trips from Redis',
  );
  await a.waitFor(
    async () => (await ids(a, 41.39, 2.165)).length === 1 && (await ids(a, 40.42, -3.7)).length === 1,
    'each listed once',
  );

  // The trips end (the orders change): one stream entry each, however many hosts they crossed.
  for (const c of [bcn, mad]) {
    c.order = 0n;
    await drive(c === bcn ? bcnBack : madBack, c, 1);
  }
  const direct = new Cluster(redis.nodes);
  t.teardown(() => direct.disconnect());
  await a.waitFor(async () => (await direct.xlen('cabtrack:trips')) >= 2, 'the trips in the stream', 15_000);
  await new Promise((r) => setTimeout(r, 1500));
  const entries = await direct.xrange('cabtrack:trips', '-', '+');
  const orders = entries.map(([, f]) => f[f.indexOf('orderId') + 1]).sort();
  t.same(orders, ['9001', '9002'], 'each trip once in cabtrack:trips');
});
