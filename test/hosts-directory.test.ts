import { Cluster } from 'ioredis';
import t from 'tap';
import { Directory, ownerKey } from '../src/hosts/directory.ts';
import { startRedisCluster } from './support/redis.ts';

/**
 * The driver directory on a real 3-node Redis Cluster: claims, take-overs from a live host and from a
 * dead one, races between hosts, renewals that find a driver taken, drops.
 */

t.test('the directory on Redis Cluster', async (t) => {
  const cluster = await startRedisCluster(t);
  const clients: Cluster[] = [];
  const connect = (): Cluster => {
    const c = new Cluster(cluster.nodes, { enableOfflineQueue: true });
    clients.push(c);
    return c;
  };
  t.teardown(() => {
    for (const c of clients) c.disconnect();
  });
  let now = 1_000_000;
  const host = (id: string, leaseMs = 3000): Directory =>
    new Directory({
      redis: connect(),
      hostId: id,
      leaseMs,
      entryTtlMs: 60_000,
      aliveCacheMs: 0,
      now: () => now,
    });
  const a = host('a');
  const b = host('b');
  const c = host('c');
  await a.renewLease('http://10.0.0.11:8080');
  await b.renewLease('http://10.0.0.12:8080');

  t.same(await a.claim('d1'), { from: '', fromAlive: false, fromUrl: '' }, 'a new driver is the claimant’s');
  t.equal(await b.owner('d1'), 'a');
  t.same(await a.claim('d1'), { from: '', fromAlive: false, fromUrl: '' }, 'claiming one’s own driver again');
  t.same(
    await b.claim('d1'),
    { from: 'a', fromAlive: true, fromUrl: 'http://10.0.0.11:8080' },
    'taken over from a live host: ask it for the state',
  );
  t.equal(await a.owner('d1'), 'b');

  // A host with no lease (never had one, or killed and expired) is dead: its drivers come with no state.
  t.same(await c.claim('d1'), { from: 'b', fromAlive: true, fromUrl: 'http://10.0.0.12:8080' });
  await c.claim('d2');
  t.same(await a.claim('d2'), { from: 'c', fromAlive: false, fromUrl: '' }, 'from a host without a lease');

  // Two hosts take one driver from a third at the same moment: one wins, the other takes it from the
  // winner (a release request to a live host), and the driver has exactly one owner.
  await c.claim('race');
  const [x, y] = await Promise.all([a.claim('race'), b.claim('race')]);
  const owner = await a.owner('race');
  t.ok(owner === 'a' || owner === 'b', `one owner (${owner})`);
  // The final owner claimed second: it took the driver from the first, which had taken it from c.
  const last = owner === 'a' ? x : y;
  const first = owner === 'a' ? y : x;
  t.equal(first.from, 'c', 'the first to claim took it from c');
  t.equal(last.from, owner === 'a' ? 'b' : 'a', 'the second took it from the first');

  // Renewal: drivers still mine are renewed; one taken meanwhile is reported lost.
  await a.claim('r1');
  await a.claim('r2');
  await b.claim('r2');
  t.same(await a.renew(['r1', 'r2']), ['r2'], 'r2 was taken: a lets it go');
  const redis = connect();
  const ttl = await redis.pttl(ownerKey('r1'));
  t.ok(ttl > 50_000 && ttl <= 60_000, `renewed to the entry TTL (${ttl} ms)`);
  await redis.del(ownerKey('r1'));
  t.same(await a.renew(['r1']), [], 'an entry lost (a failover, an outage past its TTL) is made again');
  t.equal(await b.owner('r1'), 'a');

  // Many drivers at once: one pipeline per node, keys spread over the three nodes.
  const many = Array.from({ length: 500 }, (_, i) => `m${i}`);
  for (const id of many) await a.claim(id);
  t.same(await a.renew(many), [], 'all 500 renewed');
  await a.drop(many);
  t.same(
    (await Promise.all(many.slice(0, 20).map((id) => redis.exists(ownerKey(id))))).filter((e) => e === 1),
    [],
    'dropped',
  );
  await b.claim('keep');
  await a.drop(['keep']);
  t.equal(await a.owner('keep'), 'b', 'a drop does not delete another host’s entry');

  // A lease expires: the host is dead to the others within the lease.
  const short = host('s', 200);
  await short.renewLease('http://10.0.0.13:8080');
  t.equal(await a.hostUrl('s'), 'http://10.0.0.13:8080');
  await new Promise((r) => setTimeout(r, 400));
  t.equal(await a.hostUrl('s'), '', 'expired: dead');
  await b.dropLease();
  t.equal(await a.hostUrl('b'), '', 'a host that stops gives its lease up');
  now += 1;
  t.ok(a.ops.claim > 500 && a.ops.renew === 503 && a.ops.drop === 501, 'operations counted');
});
