import type dgram from 'node:dgram';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';
import { connectedSocket, scrape, settle, sleep } from './support/hostile-net.ts';

/**
 * A driver whose datagrams reach the daemon from two source addresses at once, hashed to different
 * workers (a NAT that flaps between two mappings, a phone on Wi-Fi and mobile data at the same time):
 * the driver is handed back and forth between the workers, and whatever the order of the claims, it
 * must keep its trip. Every fix it gets accepted is in the trip's record, the trip keeps its start, and
 * no fix waits for a grant that never comes.
 */

let daemon: Daemon;
const sockets: dgram.Socket[] = [];
const SESSION = 0xf1a9_0000_0000_0001n;
const ORDER = 9_100_000_001n;
const first = Math.floor(Date.now() / 1000) - 500;
let time = first - 1;
let lat = 48_850_000;

t.before(async () => {
  daemon = await startDaemon();
  const r = await daemon.request('PUT', '/v1/sessions/f1a9000000000001', {
    body: { driverId: 'flap', cab: 'FLAP' },
  });
  if (r.status !== 201) throw new Error(`PUT ${r.status}`);
});
t.teardown(async () => {
  for (const s of sockets) s.close();
  await daemon.stop();
});

const send = (s: dgram.Socket): void => {
  time++;
  lat += 40; // 4.4 m a second: never too fast
  s.send(
    encodeTrack({ session: SESSION, lat, lon: 2_350_000, time, orderId: ORDER, cost: 100 + time - first }),
  );
};

t.test('a driver flapping between two workers keeps its trip', async (t) => {
  // Two sockets on different workers: a new source port lands on either; the handoff counter says when
  // the driver moved.
  sockets.push(await connectedSocket(daemon.udpPort));
  send(sockets[0]!);
  await daemon.waitFor(async () => (await scrape(daemon)).accepted === 1, 'first fix');
  for (let i = 0; i < 30 && sockets.length < 2; i++) {
    const s = await connectedSocket(daemon.udpPort);
    const before = (await scrape(daemon)).get('cabtrack_driver_handoffs_total');
    send(s);
    await daemon.waitFor(async () => (await scrape(daemon)).received === i + 2, 'fix received');
    await sleep(50);
    if ((await scrape(daemon)).get('cabtrack_driver_handoffs_total') > before) sockets.push(s);
    else s.close();
  }
  t.equal(sockets.length, 2, 'two addresses on two workers');
  // Alternate, in bursts: every fix makes the other worker claim the driver.
  for (let i = 0; i < 300; i++) {
    send(sockets[i % 2]!);
    if (i % 10 === 9) await sleep(1);
  }
  // Claims that get no answer are given up after 5 s (CLAIM_TIMEOUT_MS in src/ingest/ingest.ts).
  await sleep(5500);
  const s = await settle(daemon, 3000);
  t.equal(s.received, s.accepted + s.rejected, 'every fix counted');
  const trip = (await daemon.get(`/v1/trips/${ORDER}`)).body;
  t.comment(
    `accepted ${s.accepted}, refused ${JSON.stringify(s.byLabel('cabtrack_datagrams_rejected_total', 'reason'))}, ` +
      `handoffs ${s.get('cabtrack_driver_handoffs_total')}; trip ${JSON.stringify(trip)}`,
  );
  t.equal(trip.startTime, first, 'the trip keeps its start');
  t.equal(trip.points, s.accepted, 'every accepted fix is in the trip');
  t.equal(s.rejectedFor('lookup_failed'), 0, 'no claim was left without an answer');
});
