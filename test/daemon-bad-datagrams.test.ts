import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { Phone, startDaemon } from './support/daemon.ts';

/** Every kind of bad datagram is dropped and shows up in /metrics under its reason; none crashes a worker. */
t.test('bad datagrams are counted by reason', async (t) => {
  const daemon = await startDaemon();
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  t.teardown(async () => {
    phone.close();
    await daemon.stop();
  });
  await daemon.request('PUT', '/v1/sessions/00000000000000c1', {
    body: { driverId: 'drv-c1', cab: 'CAB-C1' },
  });
  const now = Math.floor(Date.now() / 1000);
  const session = 0xc1n;
  const ok = { session, lat: 41_902_800, lon: 12_496_400 };
  const cases: Array<[string, Uint8Array]> = [
    ['oversize', new Uint8Array(65).fill(8)],
    ['malformed', new Uint8Array([0x0a, 0xff])],
    ['malformed', encodeTrack({ ...ok, time: now }).subarray(0, 6)],
    ['no_session', encodeTrack({ ...ok, session: 0n, time: now })],
    ['out_of_range', encodeTrack({ ...ok, lat: 91_000_000, time: now })],
    ['out_of_range', encodeTrack({ ...ok, lon: -181_000_000, time: now })],
    ['null_island', encodeTrack({ ...ok, lat: 0, lon: 0, time: now })],
    ['future', encodeTrack({ ...ok, time: now + 3600 })],
    ['unknown_session', encodeTrack({ ...ok, session: 0xdeadn, time: now })],
  ];
  for (const [, buf] of cases) await phone.send(buf);
  // Then a good fix, a duplicate of it, an older one, and an impossible jump 1 s later.
  await phone.send(encodeTrack({ ...ok, time: now - 5 }));
  await daemon.waitForAccepted(1, 'good fix accepted');
  const more: Array<[string, Uint8Array]> = [
    ['stale', encodeTrack({ ...ok, time: now - 5 })],
    ['stale', encodeTrack({ ...ok, time: now - 6 })],
    ['too_fast', encodeTrack({ ...ok, lat: ok.lat + 100_000, time: now - 4 })],
  ];
  for (const [, buf] of more) await phone.send(buf);
  const all = [...cases, ...more];
  await daemon.waitFor(
    async () => (await daemon.metric('cabtrack_datagrams_received_total')) === all.length + 1,
    'all datagrams received',
  );
  const expected = new Map<string, number>();
  for (const [reason] of all) expected.set(reason, (expected.get(reason) ?? 0) + 1);
  await daemon.waitFor(async () => {
    let n = 0;
    for (const reason of expected.keys())
      n += await daemon.metric('cabtrack_datagrams_rejected_total', { reason });
    return n === all.length;
  }, 'all rejections counted');
  for (const [reason, n] of expected) {
    t.equal(await daemon.metric('cabtrack_datagrams_rejected_total', { reason }), n, reason);
  }
  t.equal(await daemon.metric('cabtrack_datagrams_accepted_total'), 1);
  t.equal(await daemon.metric('cabtrack_worker_restarts_total'), 0, 'no worker died');
  t.equal((await daemon.get('/v1/drivers/drv-c1')).body.time, now - 5, 'the driver kept its good fix');
});
