import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { sessionToHex } from '../src/codec/session.ts';
import { haversineM } from '../src/geo/distance.ts';
import { CLIENT, type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { Prng } from './support/prng.ts';

/**
 * A fleet of drivers sends fixes to the real daemon (2 workers) over UDP; nearest, bbox, driver, cab
 * and trip answers are then checked exactly against what the test itself sent.
 */

interface Car {
  id: string;
  cab: string;
  session: bigint;
  phone: Phone;
  fixes: Array<{ lat: number; lon: number; time: number }>;
  order: bigint;
  cost: number;
}

const CENTRE = { lat: 59.9139, lon: 10.7522 }; // Oslo: 60 degrees north, where degrees of longitude are short
const N = 60;
const NOW = Math.floor(Date.now() / 1000);

let daemon: Daemon;
const cars: Car[] = [];

t.before(async () => {
  daemon = await startDaemon();
  const rnd = new Prng(99);
  for (let i = 0; i < N; i++) {
    const car: Car = {
      id: `drv-${String(i).padStart(3, '0')}`,
      cab: `CAB-${1000 + i}`,
      session: rnd.uint64() | 1n,
      phone: new Phone(daemon.udpPort),
      fixes: [],
      order: i % 3 === 0 ? BigInt(900_000 + i) : 0n,
      cost: 0,
    };
    await car.phone.open();
    const put = await daemon.request(
      'PUT',
      `/v1/sessions/${sessionToHex(Number(car.session >> 32n), Number(car.session & 0xffffffffn))}`,
      {
        body: { driverId: car.id, cab: car.cab },
      },
    );
    if (put.status !== 201) throw new Error(`PUT session: ${put.status} ${put.text}`);
    // Each car drives 5 fixes north-east, ~10 m a second, from a random start within ~5 km.
    const lat0 = CENTRE.lat + (rnd.float() - 0.5) * 0.09;
    const lon0 = CENTRE.lon + (rnd.float() - 0.5) * 0.18;
    for (let s = 0; s < 5; s++) {
      car.fixes.push({
        lat: Math.round((lat0 + s * 0.00006) * 1e6),
        lon: Math.round((lon0 + s * 0.00012) * 1e6),
        time: NOW - 10 + s,
      });
    }
    cars.push(car);
  }
  for (let s = 0; s < 5; s++) {
    for (const car of cars) {
      const f = car.fixes[s]!;
      car.cost = car.order === 0n ? 0 : 250 + s * 40;
      await car.phone.send(
        encodeTrack({
          session: car.session,
          lat: f.lat,
          lon: f.lon,
          time: f.time,
          orderId: car.order,
          cost: car.cost,
          speed: 36,
          bearing: 45,
        }),
      );
    }
    // A round at a time: the first round's fixes wait on their session lookups, and on a busy CI
    // machine later rounds sent on top of them could overfill the wait queue or the socket's buffer,
    // which is not what this test is about (test/hostile-overload.test.ts is).
    await daemon.waitFor(
      async () => (await daemon.metric('cabtrack_datagrams_received_total')) >= (s + 1) * N,
      `round ${s + 1} received`,
      20_000,
    );
  }
  await daemon.waitForAccepted(N * 5, 'all fixes accepted');
  await daemon.caughtUp();
});

t.teardown(async () => {
  for (const c of cars) c.phone.close();
  await daemon.stop();
});

const last = (c: Car) => c.fixes[c.fixes.length - 1]!;

t.test('every datagram was received and accepted, and the fleet is split across both workers', async (t) => {
  t.equal(await daemon.metric('cabtrack_datagrams_received_total'), N * 5);
  t.equal(await daemon.metric('cabtrack_datagrams_accepted_total'), N * 5);
  t.equal(await daemon.metric('cabtrack_drivers'), N);
});

t.test(
  'nearest: exactly the brute-force k nearest by great-circle distance, for a client token',
  async (t) => {
    for (const [k, radius] of [
      [10, 3000],
      [5, 500],
      [100, 50_000],
    ] as const) {
      const q = { lat: CENTRE.lat + 0.01, lon: CENTRE.lon - 0.02 };
      const res = await daemon.get(
        `/v1/drivers/nearest?lat=${q.lat}&lon=${q.lon}&k=${k}&radius=${radius}`,
        CLIENT,
      );
      t.equal(res.status, 200);
      const expected = cars
        .map((c) => ({ c, d: haversineM(q.lat, q.lon, last(c).lat / 1e6, last(c).lon / 1e6) }))
        .filter((x) => x.d <= radius)
        .sort((a, b) => a.d - b.d || (a.c.id < b.c.id ? -1 : 1))
        .slice(0, k);
      t.same(
        res.body.drivers.map((d: { id: string }) => d.id),
        expected.map((x) => x.c.id),
        `k=${k} radius=${radius}: ids in order`,
      );
      for (const [i, d] of (res.body.drivers as Array<Record<string, unknown>>).entries()) {
        const x = expected[i]!;
        t.same(d, {
          id: x.c.id,
          cab: x.c.cab,
          lat: last(x.c).lat / 1e6,
          lon: last(x.c).lon / 1e6,
          time: last(x.c).time,
          speed: 36,
          bearing: 45,
          free: x.c.order === 0n,
          distance: Math.round(x.d * 10) / 10,
        });
      }
    }
    const free = await daemon.get(
      `/v1/drivers/nearest?lat=${CENTRE.lat}&lon=${CENTRE.lon}&k=100&radius=50000&free=1`,
      CLIENT,
    );
    t.same(
      free.body.drivers.map((d: { id: string }) => d.id).sort(),
      cars
        .filter((c) => c.order === 0n)
        .map((c) => c.id)
        .sort(),
      'free=1 lists only the free cars',
    );
  },
);

t.test('bbox: every driver in the box, paged in id order with no repeats', async (t) => {
  const box = [CENTRE.lon - 0.05, CENTRE.lat - 0.03, CENTRE.lon + 0.06, CENTRE.lat + 0.02];
  const inBox = cars
    .filter((c) => {
      const f = last(c);
      return (
        f.lon / 1e6 >= box[0]! && f.lon / 1e6 <= box[2]! && f.lat / 1e6 >= box[1]! && f.lat / 1e6 <= box[3]!
      );
    })
    .map((c) => c.id)
    .sort();
  t.ok(inBox.length > 7, `the box holds ${inBox.length} drivers, enough for several pages`);
  const seen: string[] = [];
  let cursor = '';
  let pages = 0;
  for (;;) {
    const res = await daemon.get(
      `/v1/drivers?bbox=${box.join(',')}&limit=7${cursor ? `&cursor=${cursor}` : ''}`,
    );
    t.equal(res.status, 200);
    seen.push(...res.body.drivers.map((d: { id: string }) => d.id));
    pages++;
    if (res.body.next === null) break;
    cursor = res.body.next;
  }
  t.same(seen, inBox);
  t.equal(pages, Math.ceil(inBox.length / 7));
});

t.test('driver and cab: position, recent points oldest first, and the current trip', async (t) => {
  const car = cars[3]!; // order != 0
  const byId = await daemon.get(`/v1/drivers/${car.id}`);
  t.equal(byId.status, 200);
  t.same(
    byId.body.points,
    car.fixes.map((f) => ({ lat: f.lat / 1e6, lon: f.lon / 1e6, time: f.time })),
  );
  t.equal(byId.body.orderId, String(car.order));
  t.equal(byId.body.trip.orderId, String(car.order));
  const byCab = await daemon.get(`/v1/cabs/${car.cab}`);
  t.equal(byCab.status, 200);
  t.same(byCab.body, byId.body);
  const free = await daemon.get(`/v1/drivers/${cars[1]!.id}`);
  t.equal(free.body.trip, null);
  t.equal(free.body.free, true);
});

t.test('trip: cost as last reported, distance summed on the server from accepted fixes', async (t) => {
  const car = cars[6]!;
  const res = await daemon.get(`/v1/trips/${car.order}`);
  t.equal(res.status, 200);
  let distance = 0;
  for (let i = 1; i < car.fixes.length; i++) {
    const a = car.fixes[i - 1]!;
    const b = car.fixes[i]!;
    distance += haversineM(a.lat / 1e6, a.lon / 1e6, b.lat / 1e6, b.lon / 1e6);
  }
  t.same(res.body, {
    orderId: String(car.order),
    driverId: car.id,
    cab: car.cab,
    cost: car.cost,
    distanceM: Math.round(distance * 10) / 10,
    startTime: car.fixes[0]!.time,
    lastTime: last(car).time,
    points: 5,
    active: true,
  });

  // The order ends (order id 0): the trip is kept, inactive, with its final figures.
  const f = last(car);
  await car.phone.send(
    encodeTrack({ session: car.session, lat: f.lat, lon: f.lon, time: f.time + 1, cost: 0 }),
  );
  await daemon.waitFor(
    async () => (await daemon.get(`/v1/trips/${car.order}`)).body.active === false,
    'trip ended',
  );
  const ended = await daemon.get(`/v1/trips/${car.order}`);
  t.match(ended.body, {
    orderId: String(car.order),
    active: false,
    endReason: 'order_changed',
    points: 5,
    cost: car.cost,
  });
});
