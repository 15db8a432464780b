import t from 'tap';
import { Client, Pool } from 'undici';
import { haversineM } from '../src/geo/distance.ts';
import { CLIENT, type Daemon, OPERATOR, startDaemon } from './support/daemon.ts';
import { Fleet, type FleetDriver } from './support/hostile-fleet.ts';
import { alive, connectedSocket, daemonPids, scrape, settle, sleep } from './support/hostile-net.ts';
import { Prng } from './support/prng.ts';

/**
 * The read path (issue 10) from outside: nearest and bbox, answered by the HTTP workers' read replicas,
 * against a great-circle brute force over what the fleet sent, while it moves and hands drivers between
 * workers (allowing one tick of lag); and an HTTP worker killed under query load: the other keeps
 * answering, and the replacement comes back with a full replica from a snapshot.
 */

const N = 300;
const CENTRE = { lat: 59.3293, lon: 18.0686 };
let daemon: Daemon;
const fleet = new Fleet({
  size: N,
  seed: 1010,
  prefix: 'rp',
  sessionBase: 0x5eed_1010_0000_0000n,
  orderBase: 1_010_000_000n,
  startTime: Math.floor(Date.now() / 1000) - 400,
  centre: CENTRE,
  orderRounds: [3, 8],
  freeRounds: [1, 4],
});

t.before(async () => {
  daemon = await startDaemon();
  await fleet.register(daemon);
  await fleet.open(daemon.udpPort);
});
t.teardown(async () => {
  fleet.close();
  await daemon.stop();
});

const last = (d: FleetDriver) => d.last!;

function bruteNearest(lat: number, lon: number, k: number, radius: number, freeOnly: boolean): string[] {
  return fleet.drivers
    .filter((d) => !freeOnly || last(d).orderId === 0n)
    .map((d) => ({ id: d.id, m: haversineM(lat, lon, last(d).lat / 1e6, last(d).lon / 1e6) }))
    .filter((x) => x.m <= radius)
    .sort((a, b) => a.m - b.m || (a.id < b.id ? -1 : 1))
    .slice(0, k)
    .map((x) => x.id);
}

t.test('nearest and bbox equal a brute force while the fleet moves and changes workers', async (t) => {
  const rnd = new Prng(77);
  let checked = 0;
  for (let round = 0; round < 6; round++) {
    // A tenth of the drivers change source address (a new NAT mapping): some change worker.
    if (round > 0) {
      for (const d of fleet.drivers) {
        if (!rnd.chance(0.1)) continue;
        d.socket.close();
        d.socket = await connectedSocket(daemon.udpPort);
      }
    }
    await fleet.round();
    const s = await settle(daemon);
    t.equal(s.accepted, fleet.sent, `round ${round}: every fix accepted`);
    await daemon.caughtUp();
    for (let q = 0; q < 20; q++) {
      const lat = CENTRE.lat + (rnd.float() - 0.5) * 0.08;
      const lon = CENTRE.lon + (rnd.float() - 0.5) * 0.16;
      const k = [1, 10, 100][q % 3]!;
      const radius = [500, 3000, 20_000][q % 3]!;
      const free = q % 4 === 0;
      const r = await daemon.get(
        `/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=${k}&radius=${radius}${free ? '&free=1' : ''}`,
        CLIENT,
      );
      const got = r.body.drivers.map((d: { id: string }) => d.id);
      if (got.join() !== bruteNearest(lat, lon, k, radius, free).join()) {
        t.fail(
          `round ${round} query ${q}: ${got.join()} vs ${bruteNearest(lat, lon, k, radius, free).join()}`,
        );
      }
      for (const d of r.body.drivers as Array<{ id: string; time: number; lat: number }>) {
        const f = last(fleet.drivers.find((x) => x.id === d.id)!);
        if (d.time !== f.time || d.lat !== f.lat / 1e6) t.fail(`${d.id} not at its last fix`);
      }
      checked++;
    }
    // The operators' box, paged through by id: every driver once, in id order.
    const seen: string[] = [];
    let cursor = '';
    for (let page = 0; page < 10; page++) {
      const r = await daemon.get(
        `/v1/drivers?bbox=17.9,59.2,18.3,59.5&limit=70${cursor === '' ? '' : `&cursor=${cursor}`}`,
      );
      seen.push(...r.body.drivers.map((d: { id: string }) => d.id));
      if (r.body.next === null) break;
      cursor = r.body.next;
    }
    const inBox = fleet.drivers
      .filter((d) => {
        const f = last(d);
        return f.lat >= 59_200_000 && f.lat <= 59_500_000 && f.lon >= 17_900_000 && f.lon <= 18_300_000;
      })
      .map((d) => d.id)
      .sort();
    t.same(seen, inBox, `round ${round}: the box, every driver once, in id order`);
  }
  t.equal(checked, 120);
  t.ok((await scrape(daemon)).get('cabtrack_driver_handoffs_total') > 0, 'drivers changed workers');
});

t.test(
  'an HTTP worker killed under query load: the other answers, the new one starts from a snapshot',
  async (t) => {
    const httpPids = (): number[] => daemonPids(daemon).http;
    t.equal(httpPids().length, 2, 'two HTTP workers');
    // Timeouts, so that a request lost with the killed worker fails (and is counted) instead of hanging.
    const pool = new Pool(daemon.url, { connections: 8, headersTimeout: 5000, bodyTimeout: 5000 });
    t.teardown(() => pool.close());
    let ok = 0;
    let failed = 0;
    let okAfter = 0;
    let failedAfter = 0;
    let killedAt = 0;
    let stop = false;
    const client = async (c: number): Promise<void> => {
      const rnd = new Prng(c);
      while (!stop) {
        const lat = CENTRE.lat + (rnd.float() - 0.5) * 0.05;
        const lon = CENTRE.lon + (rnd.float() - 0.5) * 0.1;
        try {
          const res = await pool.request({
            method: 'GET',
            path: `/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=10`,
            headers: { authorization: `Bearer ${CLIENT}` },
          });
          const body = (await res.body.json()) as { drivers: unknown[] };
          if (res.statusCode !== 200 || body.drivers.length !== 10) throw new Error(`${res.statusCode}`);
          ok++;
          if (killedAt > 0 && Date.now() - killedAt > 500) okAfter++;
        } catch {
          failed++;
          // Requests in flight on the dead worker's connections fail; a client retries on a new one.
          if (killedAt > 0 && Date.now() - killedAt > 500) failedAfter++;
        }
      }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    await sleep(1000);
    const [victim] = httpPids();
    killedAt = Date.now();
    process.kill(victim!, 'SIGKILL');
    await sleep(2500);
    stop = true;
    await Promise.all(clients);
    t.comment(
      `${ok} answered, ${failed} failed (in flight on the killed worker); after 0.5 s: ${okAfter} and ${failedAfter}`,
    );
    t.ok(ok > 500, 'queries kept being answered');
    t.ok(failed <= 16, 'only what was in flight on the killed worker failed');
    t.equal(failedAfter, 0, 'from half a second after the kill, every query answered');
    // The replacement: forked, given the feeds, and complete once every source's snapshot is in.
    await daemon.waitFor(
      async () => httpPids().length === 2 && !httpPids().includes(victim!),
      'a new HTTP worker',
    );
    await daemon.waitFor(async () => {
      const s = await scrape(daemon);
      return s.get('cabtrack_http_workers_up') === 2 && s.get('cabtrack_replica_drivers') === N;
    }, 'every replica complete (the fewest drivers of any HTTP worker is the fleet)');
    t.equal((await scrape(daemon)).get('cabtrack_worker_restarts_total'), 1);
    const ready = await daemon.get('/readyz', null);
    t.equal(ready.status, 200);
    t.equal(ready.body.replica, 'synced');
  },
);

t.test('a new HTTP worker takes connections only once its replica holds every snapshot', async (t) => {
  const everyone = async (): Promise<number> => {
    const r = await freshGet(daemon, '/v1/drivers?bbox=17.5,59.0,18.6,59.7&limit=1000', OPERATOR);
    if (r.status !== 200) throw new Error(`bbox answered ${r.status}`);
    return (JSON.parse(r.text) as { drivers: unknown[] }).drivers.length;
  };
  await daemon.waitFor(async () => (await everyone()) === N, 'the whole fleet listed');
  const [http] = daemonPids(daemon).http;
  const [stuck] = daemonPids(daemon).workers;
  // One ingest worker stopped: a new replica cannot have its snapshot until it goes on.
  process.kill(stuck!, 'SIGSTOP');
  t.teardown(() => {
    if (alive(stuck!)) process.kill(stuck!, 'SIGCONT');
  });
  const deaths = (): number =>
    daemon.logs.filter((l) => l.includes('"http worker died; forking a new one"')).length;
  const diedBefore = deaths();
  process.kill(http!, 'SIGKILL');
  await daemon.waitFor(async () => deaths() > diedBefore, 'the HTTP worker replaced');
  const counts = new Map<number, number>();
  for (const end = Date.now() + 2000; Date.now() < end; ) {
    const n = await everyone();
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  t.same([...counts.keys()], [N], `while the replica syncs, only whole answers: ${[...counts].join(' ')}`);
  t.equal(daemonPids(daemon).http.length, 1, 'the new HTTP worker is not on the port yet');
  process.kill(stuck!, 'SIGCONT');
  await daemon.waitFor(async () => daemonPids(daemon).http.length === 2, 'the new HTTP worker on the port');
  for (let i = 0; i < 40; i++) t.equal(await everyone(), N, 'every worker answers with the whole fleet');
  const ready = await daemon.get('/readyz', null);
  t.equal(ready.status, 200);
});

t.test('a replica that cannot sync: its HTTP worker takes connections after 10 s, and says so', async (t) => {
  // One HTTP worker, so the port has no other listener while it waits.
  const d = await startDaemon({ CABTRACK_HTTP_WORKERS: '1' });
  t.teardown(() => d.stop());
  const [stuck] = daemonPids(d).workers;
  const [http] = daemonPids(d).http;
  process.kill(stuck!, 'SIGSTOP');
  t.teardown(() => {
    if (alive(stuck!)) process.kill(stuck!, 'SIGCONT');
  });
  process.kill(http!, 'SIGKILL');
  await d.waitFor(
    async () => d.logs.some((l) => l.includes('"http worker died; forking a new one"')),
    'death',
  );
  const diedAt = Date.now();
  const health = async (): Promise<number | string> => {
    try {
      return (await freshGet(d, '/healthz')).status;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  };
  await sleep(2000);
  t.equal(await health(), 'ECONNREFUSED', 'while it waits for its snapshots, nobody is on the port');
  await d.waitFor(async () => (await health()) === 200, '/healthz served again', 20_000);
  t.ok(Date.now() - diedAt >= 10_000, `on the port ${Date.now() - diedAt} ms after the old one died`);
  t.ok(
    d.logs.some((l) => l.includes('"replica not synced: taking connections anyway"')),
    'the wait is logged',
  );
  const ready = await d.get('/readyz', null);
  t.equal(ready.status, 503, 'not ready');
  t.equal(ready.body.replica, 'syncing', 'and why');
  process.kill(stuck!, 'SIGCONT');
  await d.waitFor(async () => (await d.get('/readyz', null)).status === 200, 'ready once the snapshot is in');
});

/**
 * A GET on a connection of its own, so that the kernel picks the HTTP worker that takes it (a keep-alive
 * pool would stay with the workers its connections have). Throws when no connection is made.
 */
async function freshGet(d: Daemon, path: string, token?: string): Promise<{ status: number; text: string }> {
  const client = new Client(d.url, { headersTimeout: 5000, bodyTimeout: 5000 });
  try {
    const res = await client.request({
      method: 'GET',
      path,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.statusCode, text: await res.body.text() };
  } finally {
    await client.close();
  }
}
