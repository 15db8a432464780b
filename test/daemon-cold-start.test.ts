import type dgram from 'node:dgram';
import { Redis } from 'ioredis';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';
import {
  connectedSocket,
  hex,
  Pacer,
  type Samples,
  safeWindow,
  scrape,
  settle,
} from './support/hostile-net.ts';
import { startRedis } from './support/redis.ts';

/**
 * A fleet coming back at once, as after a restart (issue 12, part 4): every driver's first fix within
 * moments. Without Redis no registered driver is refused; with Redis the per-worker lookup cap
 * (CABTRACK_SESSION_LOOKUPS_PER_S) refuses the excess as `throttled`, never as `unknown_session`, and
 * the drivers it refused are taken at their next fix.
 */

const SOCKETS = 16;
const first = Math.floor(Date.now() / 1000) - 300;
const session = (i: number): bigint => 0xc01d_0000_0000_0000n + BigInt(i + 1);

/** One round: every driver's next fix, from 16 phones' sockets, paced to what the kernel holds. */
async function round(d: Daemon, sockets: dgram.Socket[], drivers: number, r: number): Promise<Samples> {
  const before = await scrape(d);
  const pacer = new Pacer(d, await safeWindow(d), before.received);
  for (let i = 0; i < drivers; i += 100) {
    const n = Math.min(100, drivers - i);
    await pacer.room(n);
    for (let j = i; j < i + n; j++) {
      const lat = 41_390_000 + (j % 1000) * 100 + r * 50;
      const lon = 2_150_000 + Math.floor(j / 1000) * 100;
      sockets[j % SOCKETS]!.send(encodeTrack({ session: session(j), lat, lon, time: first + r }));
    }
    pacer.note(n);
  }
  await pacer.drain();
  return settle(d);
}

async function phones(d: Daemon, t: { teardown(fn: () => unknown): void }): Promise<dgram.Socket[]> {
  const s: dgram.Socket[] = [];
  for (let i = 0; i < SOCKETS; i++) s.push(await connectedSocket(d.udpPort));
  t.teardown(() => {
    for (const x of s) x.close();
  });
  return s;
}

t.test('without Redis, no registered driver is refused when the fleet comes back at once', async (t) => {
  const DRIVERS = 15_000;
  // One worker: with the old cap of 10,000 lookups a second it refused a third of these.
  const d = await startDaemon({ CABTRACK_WORKERS: '1' });
  t.teardown(() => d.stop());
  for (let i = 0; i < DRIVERS; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, DRIVERS - i) }, (_, k) =>
        d.request('PUT', `/v1/sessions/${hex(session(i + k))}`, {
          body: { driverId: `cold-${i + k}`, cab: `C-${i + k}` },
        }),
      ),
    );
  }
  const sockets = await phones(d, t);
  const t0 = performance.now();
  const s = await round(d, sockets, DRIVERS, 0);
  t.comment(`${DRIVERS} first fixes handled in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  t.equal(s.received, DRIVERS);
  t.equal(s.accepted, DRIVERS, 'every first fix accepted');
  t.equal(s.rejectedFor('unknown_session'), 0);
  t.equal(s.rejectedFor('throttled'), 0);
  t.equal(s.get('cabtrack_drivers'), DRIVERS, 'every driver live after one round');
});

t.test(
  'with Redis, the lookup cap refuses the excess as throttled and the next fixes catch up',
  async (t) => {
    const DRIVERS = 3000;
    const CAP = 500;
    const redis = await startRedis(t);
    const dispatch = new Redis(redis.url);
    t.teardown(() => dispatch.disconnect());
    const p = dispatch.pipeline();
    for (let i = 0; i < DRIVERS; i++) {
      p.hset(`cabtrack:session:${hex(session(i))}`, { driverId: `cold-${i}`, cab: `C-${i}` });
    }
    await p.exec();
    const d = await startDaemon({
      CABTRACK_WORKERS: '1',
      CABTRACK_REDIS_URL: redis.url,
      CABTRACK_SESSION_LOOKUPS_PER_S: String(CAP),
    });
    t.teardown(() => d.stop());
    const sockets = await phones(d, t);
    const s0 = await round(d, sockets, DRIVERS, 0);
    const throttled = s0.rejectedFor('throttled');
    t.ok(throttled > 0, `over the cap: ${throttled} first fixes throttled`);
    t.equal(s0.rejectedFor('unknown_session'), 0, 'none of them called unknown');
    t.equal(s0.accepted + throttled, DRIVERS, 'each fix accepted or throttled');
    t.equal(s0.get('cabtrack_session_lookups_total', { outcome: 'rate_limited' }), throttled);
    // The cap's arithmetic: 500 a second, so about 6 rounds a second apart bring every driver back.
    let live = s0.get('cabtrack_drivers');
    let rounds = 1;
    while (live < DRIVERS && rounds < 12) {
      await new Promise((r) => setTimeout(r, 1000));
      live = (await round(d, sockets, DRIVERS, rounds)).get('cabtrack_drivers');
      rounds++;
    }
    t.equal(live, DRIVERS, `every driver live after ${rounds} rounds a second apart`);
    t.ok(rounds <= Math.ceil(DRIVERS / CAP) + 2, `within the cap's arithmetic (${rounds} rounds)`);
    const s = await scrape(d);
    t.equal(s.rejectedFor('unknown_session'), 0);
  },
);
