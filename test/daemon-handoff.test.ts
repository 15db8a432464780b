import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { Phone, startDaemon } from './support/daemon.ts';

/**
 * A driver whose NAT mapping changes (a new source port) lands on whichever worker the kernel hashes
 * the new address to. When that is the other worker, the driver moves there with its ring and trip,
 * and no query lists it twice.
 */
t.test('a driver moving between workers keeps its ring and trip and is listed once', async (t) => {
  const daemon = await startDaemon();
  t.teardown(() => daemon.stop());
  const session = 0x0123_4567_89ab_cdefn;
  t.equal(
    (
      await daemon.request('PUT', '/v1/sessions/0123456789abcdef', {
        body: { driverId: 'mover', cab: 'CAB-M' },
      })
    ).status,
    201,
  );
  const now = Math.floor(Date.now() / 1000) - 60;
  let time = now;
  let lat = 52_520_000;
  const sent: number[] = [];
  const phones: Phone[] = [];
  t.teardown(() => {
    for (const p of phones) p.close();
  });
  // Each new phone socket is a new source port; with two workers, each has an even chance of moving
  // the driver. Keep changing ports until the daemon has counted 3 handoffs (or give up after 40).
  for (
    let attempt = 0;
    attempt < 40 && (await daemon.metric('cabtrack_driver_handoffs_total')) < 3;
    attempt++
  ) {
    const phone = new Phone(daemon.udpPort);
    phones.push(phone);
    await phone.open();
    for (let i = 0; i < 2; i++) {
      lat += 50;
      time += 1;
      sent.push(time);
      await phone.send(
        encodeTrack({ session, lat, lon: 13_405_000, time, orderId: 42n, cost: 100 + time - now }),
      );
    }
    await daemon.waitForAccepted(sent.length, `fixes accepted after phone ${attempt + 1}`);
  }
  const handoffs = await daemon.metric('cabtrack_driver_handoffs_total');
  t.ok(handoffs >= 3, `handoffs seen: ${handoffs}`);
  t.equal(await daemon.metric('cabtrack_drivers'), 1, 'exactly one worker holds the driver');
  await daemon.caughtUp();

  const near = await daemon.get('/v1/drivers/nearest?lat=52.52&lon=13.405&k=10&radius=5000');
  t.same(
    near.body.drivers.map((d: { id: string }) => d.id),
    ['mover'],
    'listed once',
  );
  const box = await daemon.get('/v1/drivers?bbox=13,52,14,53');
  t.same(
    box.body.drivers.map((d: { id: string }) => d.id),
    ['mover'],
    'listed once in a box',
  );

  const detail = await daemon.get('/v1/drivers/mover');
  t.same(
    detail.body.points.map((p: { time: number }) => p.time),
    sent.slice(-20),
    'the ring travelled with the driver: its last 20 points, across workers',
  );
  const trip = await daemon.get('/v1/trips/42');
  t.equal(trip.body.active, true);
  t.equal(trip.body.points, sent.length, 'the trip counted every fix across all workers');
  t.equal(trip.body.startTime, sent[0]);
  t.equal(trip.body.lastTime, sent[sent.length - 1]);
});
