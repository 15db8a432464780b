import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { redisUp, settle } from './support/hostile-net.ts';
import { startRedis } from './support/redis.ts';

/**
 * Issue 15, risk 2: with Redis, DELETE /v1/drivers/{id} and /v1/cabs/{cab} for a driver that is not
 * live (logged in by dispatch, no fix yet, or gone quiet). Before, the primary searched its own session
 * map, which is empty with Redis: nothing was revoked and the answer was 404, so the driver's next fix
 * brought it straight back. Now its sessions are found in Redis and revoked.
 */

let daemon: Daemon;
let dispatch: Redis;

t.before(async () => {
  const redis = await startRedis(t);
  dispatch = new Redis(redis.url);
  daemon = await startDaemon({ CABTRACK_REDIS_URL: redis.url });
  await redisUp(daemon);
});
t.teardown(async () => {
  await daemon.stop();
  dispatch.disconnect();
});

const key = (hex: string): string => `cabtrack:session:${hex}`;

for (const [kind, path] of [
  ['driver', '/v1/drivers/off-1'],
  ['cab', '/v1/cabs/OFF-CAB'],
] as const) {
  t.test(`DELETE ${kind} of a driver that is not live revokes its sessions in Redis`, async (t) => {
    // Dispatch logged the driver in twice (two phones), and another driver of the same cab for the cab case.
    await dispatch.hset(key('00000000000f0001'), 'driverId', 'off-1', 'cab', 'OFF-CAB');
    await dispatch.hset(key('00000000000f0002'), 'driverId', 'off-1', 'cab', 'OFF-CAB');
    await dispatch.hset(key('00000000000f0003'), 'driverId', 'other', 'cab', 'OTHER-CAB');
    const sub = dispatch.duplicate();
    const revoked: string[] = [];
    await sub.subscribe('cabtrack:revoke');
    sub.on('message', (_c, m) => revoked.push(m));
    t.teardown(() => sub.disconnect());

    const del = await daemon.request('DELETE', path);
    t.equal(del.status, 204, 'found and removed');
    t.equal(
      await dispatch.exists(key('00000000000f0001'), key('00000000000f0002')),
      0,
      'both sessions deleted',
    );
    t.equal(await dispatch.exists(key('00000000000f0003')), 1, "another driver's session kept");
    await daemon.waitFor(async () => revoked.length >= 2, 'revocations published');
    t.same(revoked.sort(), ['00000000000f0001', '00000000000f0002'], 'announced on cabtrack:revoke');

    // The driver's phone comes online: refused, not brought back.
    const phone = new Phone(daemon.udpPort);
    await phone.open();
    t.teardown(() => phone.close());
    const before = await settle(daemon);
    const time = Math.floor(Date.now() / 1000) - 5;
    await phone.send(encodeTrack({ session: 0xf0001n, lat: 48_000_000, lon: 11_000_000, time }));
    const after = await settle(daemon);
    t.equal(
      after.rejectedFor('unknown_session') - before.rejectedFor('unknown_session'),
      1,
      'its fix is refused',
    );
    t.equal((await daemon.get('/v1/drivers/off-1')).status, 404);
    t.equal((await daemon.request('DELETE', path)).status, 404, 'a second delete finds nothing');
    await dispatch.del(key('00000000000f0003'));
  });
}
