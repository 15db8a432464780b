import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';

/** Deleting a session, a driver or a cab removes the driver at once and refuses its datagrams from then on. */

let daemon: Daemon;
let phone: Phone;
const now = Math.floor(Date.now() / 1000) - 100;
let time = now;

t.before(async () => {
  daemon = await startDaemon();
  phone = new Phone(daemon.udpPort);
  await phone.open();
});
t.teardown(async () => {
  phone.close();
  await daemon.stop();
});

async function register(hex: string, driverId: string, cab: string): Promise<void> {
  const r = await daemon.request('PUT', `/v1/sessions/${hex}`, { body: { driverId, cab } });
  if (r.status !== 201) throw new Error(`${r.status} ${r.text}`);
}

/** Sends one fix and waits until the daemon has counted it, accepted or refused. */
async function send(hex: string): Promise<void> {
  const before = (await daemon.metric('cabtrack_datagrams_accepted_total')) + (await rejected());
  time += 1;
  await phone.send(encodeTrack({ session: BigInt(`0x${hex}`), lat: 40_416_800, lon: -3_703_800, time }));
  await daemon.waitFor(
    async () => (await daemon.metric('cabtrack_datagrams_accepted_total')) + (await rejected()) > before,
    'datagram counted',
  );
}

const rejected = () => daemon.metric('cabtrack_datagrams_rejected_total', { reason: 'unknown_session' });

for (const [kind, path] of [
  ['session', '/v1/sessions/00000000000000a1'],
  ['driver', '/v1/drivers/drv-a1'],
  ['cab', '/v1/cabs/CAB-A1'],
] as const) {
  t.test(`DELETE ${kind}: the driver goes at once and its datagrams are refused after`, async (t) => {
    await register('00000000000000a1', 'drv-a1', 'CAB-A1');
    await send('00000000000000a1');
    t.equal((await daemon.get('/v1/drivers/drv-a1')).status, 200);
    const refusedBefore = await rejected();
    const del = await daemon.request('DELETE', path);
    t.equal(del.status, 204);
    t.equal((await daemon.get('/v1/drivers/drv-a1')).status, 404, 'gone at once');
    t.equal((await daemon.get('/v1/cabs/CAB-A1')).status, 404);
    // The read replicas: the owner publishes the deletion at once, and every replica has it within a tick.
    await daemon.caughtUp();
    t.same((await daemon.get('/v1/drivers/nearest?lat=40.4168&lon=-3.7038')).body.drivers, []);
    await send('00000000000000a1');
    t.equal(await rejected(), refusedBefore + 1, 'the next datagram is refused as unknown_session');
    t.equal((await daemon.get('/v1/drivers/drv-a1')).status, 404, 'and does not bring the driver back');
    t.equal((await daemon.request('DELETE', path)).status, 404, 'a second delete finds nothing');
    // The primary's directory of owners lets the driver go too (the worker reports a revocation within
    // a second): otherwise it would keep an entry for every driver that logs out and never returns.
    await daemon.waitFor(
      async () => (await daemon.metric('cabtrack_directory_drivers')) === 0,
      'the directory to let the driver go',
    );
  });
}

t.test('a revoked driver logging in again with a new session comes back', async (t) => {
  await register('00000000000000b2', 'drv-b2', 'CAB-B2');
  await send('00000000000000b2');
  t.equal((await daemon.request('DELETE', '/v1/sessions/00000000000000b2')).status, 204);
  await register('00000000000000b3', 'drv-b2', 'CAB-B2');
  await send('00000000000000b3');
  const d = await daemon.get('/v1/drivers/drv-b2');
  t.equal(d.status, 200);
  t.equal(d.body.time, time);
  // Back within the second in which the revocation is reported: the new claim cancels the report, so
  // the directory does not forget an owner that holds the driver again. (Read after the report's tick.)
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await daemon.metric('cabtrack_directory_drivers'), 1, 'the directory still has its owner');
  t.equal(await daemon.metric('cabtrack_drivers'), 1);
});
