import { createRequire } from 'node:module';
import { Cluster } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { Phone, startDaemon } from './support/daemon.ts';
import { startRedisCluster } from './support/redis.ts';

/** The cluster slot of a key, as ioredis computes it (its own dependency). */
const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

/**
 * The daemon with CABTRACK_REDIS_CLUSTER against a real 3-node Redis Cluster: sessions spread over the
 * nodes are found, revocation by channel reaches every worker, and trips reach the stream once.
 */
t.test('the daemon on a 3-node Redis Cluster', async (t) => {
  const c = await startRedisCluster(t, 3);
  const dispatch = new Cluster(c.nodes, { lazyConnect: true });
  await dispatch.connect();
  t.teardown(() => dispatch.disconnect());
  const d = await startDaemon({
    CABTRACK_REDIS_CLUSTER: c.nodes.map((n) => `${n.host}:${n.port}`).join(','),
  });
  t.teardown(() => d.stop());
  const phone = new Phone(d.udpPort);
  await phone.open();
  t.teardown(() => phone.close());

  // Twelve sessions: their keys hash to slots on all three nodes.
  const t0 = Math.floor(Date.now() / 1000) - 60;
  const hexes = Array.from({ length: 12 }, (_, i) => (0xe000 + i).toString(16).padStart(16, '0'));
  for (const [i, hex] of hexes.entries()) {
    await dispatch.hset(`cabtrack:session:${hex}`, 'driverId', `cl-${i}`, 'cab', `CL-${i}`);
  }
  const owners = new Set(hexes.map((h) => JSON.stringify(dispatch.slots[keySlot(`cabtrack:session:${h}`)])));
  t.equal(owners.size, 3, 'the sessions live on all three nodes');
  for (const [i, hex] of hexes.entries()) {
    await phone.send(
      encodeTrack({
        session: BigInt(`0x${hex}`),
        lat: 45_464_200 + i * 100,
        lon: 9_190_000,
        time: t0,
        orderId: BigInt(8800 + i),
        cost: 10,
      }),
    );
  }
  await d.waitFor(async () => (await d.metric('cabtrack_drivers')) === 12, 'all twelve drivers live');
  t.equal(await d.metric('cabtrack_redis_up'), 1);

  // Revocation through the channel (PUBLISH reaches every node's subscribers in a cluster).
  await dispatch.del(`cabtrack:session:${hexes[0]}`);
  await dispatch.publish('cabtrack:revoke', hexes[0]!);
  await d.waitFor(async () => (await d.get('/v1/drivers/cl-0')).status === 404, 'revoked driver removed');

  // Trips end (order 0): each reaches the stream once.
  for (const [i, hex] of hexes.entries()) {
    if (i === 0) continue;
    await phone.send(
      encodeTrack({ session: BigInt(`0x${hex}`), lat: 45_464_200 + i * 100, lon: 9_190_000, time: t0 + 1 }),
    );
  }
  await d.waitFor(
    async () => (await dispatch.xlen('cabtrack:trips')) === 12,
    'every trip in the stream',
    10_000,
  );
  const entries = await dispatch.xrange('cabtrack:trips', '-', '+');
  const orders = entries.map(([, f]) => f[f.indexOf('orderId') + 1]).sort();
  t.same(
    orders,
    hexes.map((_, i) => String(8800 + i)).sort(),
    'one entry per trip, the revoked driver’s included',
  );
  const revoked = entries.find(([, f]) => f[f.indexOf('orderId') + 1] === '8800')!;
  t.equal(revoked[1][revoked[1].indexOf('endReason') + 1], 'deleted');
});
