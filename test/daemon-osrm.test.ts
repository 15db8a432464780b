import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { CLIENT, type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { gridPoint, type OsrmServer, startOsrmServer } from './support/osrm-server.ts';

/**
 * Paths along roads for the client app, through the real daemon and a stand-in OSRM that speaks the v5
 * /match protocol over a street grid (streets every 120 m; the crossing at grid (0, 0)).
 */

let osrm: OsrmServer;
let daemon: Daemon;
let phone: Phone;
const session = 0x0505n;
let time = Math.floor(Date.now() / 1000) - 200;
const PATH_DEADLINE_MS = 300;
let sent = 0;

t.before(async () => {
  osrm = await startOsrmServer();
  daemon = await startDaemon({
    CABTRACK_OSRM_URL: osrm.url,
    CABTRACK_WORKERS: '1',
    CABTRACK_PATH_DEADLINE_MS: String(PATH_DEADLINE_MS),
    CABTRACK_OSRM_TIMEOUT_MS: '1000',
  });
  phone = new Phone(daemon.udpPort);
  await phone.open();
  await daemon.request('PUT', '/v1/sessions/0000000000000505', {
    body: { driverId: 'corner', cab: 'CAB-C' },
  });
});
t.teardown(async () => {
  phone.close();
  await daemon.stop();
  await osrm.close();
});

/** Sends a fix at grid metres (x east, y north) and waits until the daemon has it. */
async function at(x: number, y: number): Promise<[number, number]> {
  const [lon, lat] = gridPoint(x, y);
  time += 1;
  await phone.send(
    encodeTrack({ session, lat: Math.round(lat * 1e6), lon: Math.round(lon * 1e6), time, speed: 50 }),
  );
  // Waits on the counters, not on GET /v1/drivers/corner, which would match the track with OSRM; then
  // on nearest without paths, which answers from the read replicas, a tick behind.
  sent++;
  await daemon.waitForAccepted(sent, 'fix applied');
  await daemon.caughtUp();
  return [Math.round(lon * 1e6) / 1e6, Math.round(lat * 1e6) / 1e6];
}

const nearest = async () => {
  const [lon, lat] = gridPoint(0, 0);
  const res = await daemon.get(`/v1/drivers/nearest?lat=${lat}&lon=${lon}&radius=2000&path=1`, CLIENT);
  return res.body.drivers[0] as { path: Array<[number, number, number]>; matched: boolean };
};

t.test('a car turning a corner gets a path along both streets, not the diagonal', async (t) => {
  for (const x of [-90, -75, -60, -45, -30, -15]) await at(x, 0);
  const before = osrm.requests;
  const cur = await at(0, 15);
  const d = await nearest();
  t.equal(osrm.requests, before + 1, 'one OSRM call');
  t.equal(d.matched, true);
  const [cx, cy] = gridPoint(0, 0);
  t.ok(
    d.path.some(([lon, lat]) => Math.abs(lon - cx) < 2e-6 && Math.abs(lat - cy) < 2e-6),
    'the path goes through the crossing',
  );
  const last = d.path[d.path.length - 1]!;
  t.ok(Math.abs(last[0] - cur[0]) < 5e-5 && Math.abs(last[1] - cur[1]) < 5e-5, 'and ends at the current fix');
  t.equal(d.path[0]![2], time - 1, 'starting at the previous fix time');
  t.equal(last[2], time, 'arriving at the current fix time');
});

t.test('two clients viewing the same car cause one OSRM call', async (t) => {
  await at(0, 35);
  const before = osrm.requests;
  const [a, b] = await Promise.all([nearest(), nearest()]);
  t.same(a, b);
  t.equal(osrm.requests, before + 1);
  await nearest();
  t.equal(osrm.requests, before + 1, 'a later viewer is served from the cache');
  t.ok((await daemon.metric('cabtrack_path_cache_total', { outcome: 'hit' })) >= 1);
});

t.test('a standstill with GPS jitter makes no OSRM call', async (t) => {
  const before = osrm.requests;
  const cur = await at(2, 37);
  const d = await nearest();
  t.equal(osrm.requests, before, 'no call');
  t.same(d, { ...d, matched: false, path: [[cur[0], cur[1], time]] });
});

for (const [name, mode] of [
  ['down', { kind: 'down' }],
  ['slow (2 s)', { kind: 'slow', delayMs: 2000 }],
  ['answering NoMatch', { kind: 'error', code: 'NoMatch' }],
] as const) {
  t.test(`OSRM ${name}: a straight path within the deadline`, async (t) => {
    osrm.setMode(mode);
    t.teardown(() => osrm.setMode({ kind: 'normal' }));
    const prev = await at(0, 80);
    const cur = await at(0, 110);
    const started = Date.now();
    const d = await nearest();
    const elapsed = Date.now() - started;
    t.equal(d.matched, false);
    t.same(d.path, [
      [prev[0], prev[1], time - 1],
      [cur[0], cur[1], time],
    ]);
    // Not a speed target: the answer must not wait for OSRM (2 s when slow).
    t.ok(elapsed < 1500, `answered in ${elapsed} ms without waiting for OSRM`);
  });
}

t.test('OSRM outcomes are counted', async (t) => {
  t.ok((await daemon.metric('cabtrack_osrm_requests_total', { outcome: 'matched' })) >= 2);
  t.ok((await daemon.metric('cabtrack_osrm_requests_total', { outcome: 'nomatch' })) >= 1);
  t.ok((await daemon.metric('cabtrack_osrm_request_duration_seconds_count')) >= 3);
});

t.test('the driver detail carries its recent track along the roads', async (t) => {
  const d = await daemon.get('/v1/drivers/corner');
  t.equal(d.status, 200);
  t.equal(d.body.track.matched, true);
  const [cx, cy] = gridPoint(0, 0);
  t.ok(
    d.body.track.path.some(
      ([lon, lat]: number[]) => Math.abs(lon! - cx) < 2e-6 && Math.abs(lat! - cy) < 2e-6,
    ),
    'the track turns the corner at the crossing',
  );
  const before = osrm.requests;
  await daemon.get('/v1/drivers/corner');
  t.equal(osrm.requests, before, 'polling the same driver again makes no new call');
});
