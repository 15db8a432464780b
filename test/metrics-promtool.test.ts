import t, { type Test } from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { promtool } from './support/promtool.ts';
import { startRedis } from './support/redis.ts';

/**
 * /metrics as Prometheus' own linter sees it: `promtool check metrics` on the page of a real daemon
 * after some traffic (so the labelled series exist), without Redis and with a real redis-server (so the
 * Redis metrics are on the page too). Any complaint fails.
 */

const now = (): number => Math.floor(Date.now() / 1000);

/** A little of everything: a session, good and bad datagrams, a trip, queries, an error answer. */
async function traffic(t: Test, d: Daemon): Promise<void> {
  const put = await d.request('PUT', '/v1/sessions/00000000000b0001', {
    body: { driverId: 'lint-1', cab: 'L-1' },
  });
  t.equal(put.status, 201, 'session registered');
  const phone = new Phone(d.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  const t0 = now() - 10;
  const fix = (time: number) =>
    encodeTrack({ session: 0xb0001n, lat: 41_390_000, lon: 2_170_000, time, orderId: 77n, cost: 500 });
  await phone.send(fix(t0));
  await phone.send(fix(t0 + 1));
  await phone.send(Uint8Array.of(0xff, 0xff, 0xff));
  await d.waitFor(async () => (await d.metric('cabtrack_datagrams_received_total')) >= 3, 'datagrams');
  t.equal((await d.get('/v1/drivers/nearest?lat=41.39&lon=2.17')).status, 200, 'nearest');
  t.equal((await d.get('/v1/drivers/nobody')).status, 404, 'a 404');
}

/** The page, checked to be a real one first: promtool passes an empty page. */
async function lint(t: Test, d: Daemon): Promise<string> {
  const page = (await d.get('/metrics', null)).text;
  t.match(page, /^cabtrack_datagrams_rejected_total\{reason="malformed"\} 1$/m, 'labelled series present');
  t.match(page, /^cabtrack_http_request_duration_seconds_bucket\{/m, 'HTTP histogram present');
  const r = await promtool(['check', 'metrics'], page);
  t.equal(r.output, '', 'promtool says nothing');
  t.equal(r.code, 0, 'promtool exits 0');
  return page;
}

t.test('without Redis', async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.stop());
  await traffic(t, d);
  await lint(t, d);
});

t.test('with Redis', async (t) => {
  const redis = await startRedis(t);
  const d = await startDaemon({ CABTRACK_REDIS_URL: redis.url });
  t.teardown(() => d.stop());
  await traffic(t, d);
  const page = await lint(t, d);
  t.match(page, /^cabtrack_redis_up 1$/m, 'Redis metrics on the page');
  t.match(page, /^cabtrack_trip_writes_total\{outcome="ok"\} /m, 'trip writes on the page');
});

t.test('the check bites: a gauge named _total is refused', async (t) => {
  const r = await promtool(
    ['check', 'metrics'],
    '# HELP x_things_total Things.\n# TYPE x_things_total gauge\nx_things_total 1\n',
  );
  t.equal(r.code, 3, 'promtool exits 3 for a lint problem');
  t.match(r.output, /x_things_total non-counter metrics should not have "_total" suffix/);
});
