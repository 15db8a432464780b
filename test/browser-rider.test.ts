import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import t from 'tap';
import { haversineM } from '../src/geo/distance.ts';
import { DEFAULT_CENTRE, DEFAULT_SPACING_M } from '../src/sim/city.ts';
import { runSimulation } from '../src/sim/run.ts';
import { cellAt, cellBox, distanceToBoxM, NEAR_ZOOM } from '../src/stream/cells.ts';
import { launchChromium, until, watchErrors } from './support/browser.ts';
import { CLIENT, type Daemon, OPERATOR, startDaemon } from './support/daemon.ts';
import { daemonPids } from './support/hostile-net.ts';
import { DOCS, markerIds, offset, TestCar } from './support/pages.ts';
import { SseClient } from './support/sse.ts';
import { startTileServer, type TileServer } from './support/tile-server.ts';

/**
 * The rider's screen (`/rider`) in headless Chromium against a real daemon: signed in through its form
 * with the client token, placed by the browser's geolocation, it shows exactly the free cars within its
 * radius of the pick-up point, though the stream also sends cars just outside it (whole map cells);
 * dragging the map moves the point and the cars shown follow; when its stream is cut and the stream
 * token has expired meanwhile, it asks for a new one and shows the cars again. No console error of the
 * page's own. The screenshot for the README (docs/rider.png) shows a simulated fleet on the test tile
 * server's streets.
 */

const CITY = { lat: DEFAULT_CENTRE.lat, lon: DEFAULT_CENTRE.lon, spacingM: DEFAULT_SPACING_M, radiusM: 600 };
const EXTENT_M = Math.floor(CITY.radiusM / CITY.spacingM) * CITY.spacingM;
/** The rider, 6 km south of the simulated fleet, among the test's own parked cars. */
const RIDER = offset(CITY, 6000, 180);
const RADIUS_M = 1000;
/**
 * Free cars around the rider: three within 1 km, two beyond it but inside the circle's bounding box (so
 * in the map cells the stream covers), one far; and a car on a trip within 1 km (riders see free cars).
 */
const PARKED: Array<{ id: string; m: number; bearing: number; orderId?: bigint }> = [
  { id: 'in-300', m: 300, bearing: 0 },
  { id: 'in-700', m: 700, bearing: 120 },
  { id: 'in-950', m: 950, bearing: 250 },
  { id: 'out-1100', m: 1100, bearing: 45 },
  { id: 'out-1300', m: 1300, bearing: 135 },
  { id: 'far-3000', m: 3000, bearing: 0 },
  { id: 'busy-500', m: 500, bearing: 300, orderId: 99n },
];

let tiles: TileServer;
let daemon: Daemon;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let errors: string[];
const cars: TestCar[] = [];
const fleet = new AbortController();
let fleetDone: Promise<unknown>;

t.before(async () => {
  tiles = await startTileServer({ lat: CITY.lat, lon: CITY.lon, spacingM: CITY.spacingM, extentM: EXTENT_M });
  daemon = await startDaemon({
    CABTRACK_MAP_TILE_URL: tiles.template,
    CABTRACK_MAP_ATTRIBUTION: 'Streets: the test tile server',
    // One HTTP worker, to cut every stream by killing it; tokens that expire within the test.
    CABTRACK_HTTP_WORKERS: '1',
    CABTRACK_STREAM_TOKEN_TTL_S: '3',
  });
  fleetDone = runSimulation({
    drivers: 40,
    rate: 1,
    durationS: 0,
    host: '127.0.0.1',
    udpPort: daemon.udpPort,
    http: daemon.url,
    token: OPERATOR,
    register: 'api',
    redisUrl: '',
    centreLat: CITY.lat,
    centreLon: CITY.lon,
    spacingM: CITY.spacingM,
    radiusM: CITY.radiusM,
    badShare: 0,
    offlineShare: 0,
    offlineMinS: 10,
    offlineMaxS: 20,
    seed: 5,
    carsPerSocket: 10,
    reportEveryS: 0,
    idPrefix: 'sim',
    print: () => {},
    signal: fleet.signal,
  });
  for (const p of PARKED) {
    // Parked: the same fix again every second (live, standing still).
    cars.push(await TestCar.start(daemon, p.id, offset(RIDER, p.m, p.bearing), [[0, 0]], p));
  }
  await daemon.waitFor(
    async () => (await daemon.metric('cabtrack_replica_drivers')) === 40 + PARKED.length,
    'the fleet and the parked cars listed',
    20_000,
  );
  browser = await launchChromium();
  // A phone's screen, and a rider who lets the page know where they are.
  context = await browser.newContext({
    viewport: { width: 430, height: 860 },
    geolocation: { latitude: RIDER.lat, longitude: RIDER.lon },
    permissions: ['geolocation'],
  });
  page = await context.newPage();
  errors = watchErrors(page);
});

t.teardown(async () => {
  await browser?.close();
  for (const c of cars) c.stop();
  fleet.abort();
  await fleetDone;
  await daemon?.stop();
  await tiles?.close();
});

/** The parked cars the page should show with its point at `point`: free ones within the radius. */
function expected(point: { lat: number; lng: number }): string[] {
  return cars
    .filter(
      (c) => !c.id.startsWith('busy') && haversineM(point.lat, point.lng, c.at.lat, c.at.lon) <= RADIUS_M,
    )
    .map((c) => c.id)
    .sort();
}

const pointOf = (p: Page): Promise<{ lat: number; lng: number }> =>
  p.evaluate(() => (globalThis as any).cabtrack.point());

t.test('signed in with the client token, at the rider’s place: only the free cars within 1 km', async (t) => {
  await page.goto(`${daemon.url}/rider`);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#login-token', CLIENT);
  await page.click('#login-form button');
  await page.waitForSelector('#login', { state: 'hidden' });
  t.equal(
    await page.evaluate(() => (globalThis as any).sessionStorage.getItem('cabtrack.clientToken')),
    CLIENT,
    'the token is kept in the tab’s sessionStorage',
  );
  // Geolocation puts the pick-up point where the rider is.
  await until(
    'the point at the rider',
    () => pointOf(page),
    (p) => haversineM(p.lat, p.lng, RIDER.lat, RIDER.lon) < 1,
  );
  const ids = await until(
    'the cars within the radius',
    () => markerIds(page),
    (ids) => ids.length === 3,
  );
  t.same(ids, ['in-300', 'in-700', 'in-950'], 'the three free cars within 1 km, nothing else');
  t.same(expected(await pointOf(page)), ids, 'as the great-circle distances say');
  // The stream itself sends more: whole map cells (every cell within the radius, since fewer cars than
  // its limit are there), so the free cars beyond 1 km in those cells come too.
  const sse = await SseClient.open(
    `${daemon.url}/v1/stream/nearby?lat=${RIDER.lat}&lon=${RIDER.lon}&radius=${RADIUS_M}&free=1`,
    { authorization: `Bearer ${CLIENT}` },
  );
  const [snap] = await sse.waitFrames(1);
  sse.close();
  const sent = snap!.cars.map((c) => c.id).sort();
  const inCells = cars
    .filter((c) => {
      if (c.id.startsWith('busy')) return false;
      const cell = cellBox(cellAt(c.at.lat, c.at.lon, NEAR_ZOOM));
      return distanceToBoxM(RIDER.lat, RIDER.lon, cell) <= RADIUS_M;
    })
    .map((c) => c.id)
    .sort();
  t.ok(inCells.length > ids.length, `cars beyond 1 km share cells within it (${inCells.join(', ')})`);
  t.same(sent, inCells, 'sent: the free cars of the cells within the radius');
  await new Promise((r) => setTimeout(r, 2000));
  t.same(await markerIds(page), ids, 'and it keeps to the three, frame after frame');
  t.equal(await page.textContent('#summary'), '3 free cars within 1 km · nearest 300 m');
  t.same(errors, [], 'no console error');
});

t.test('dragging the map moves the point: its stream follows, the cars shown follow', async (t) => {
  const streams: URL[] = [];
  const onRequest = (r: { url(): string }): void => {
    const url = new URL(r.url());
    if (url.pathname === '/v1/stream/nearby') streams.push(url);
  };
  page.on('request', onRequest);
  t.teardown(() => page.off('request', onRequest));
  const map = (await page.locator('#map').boundingBox())!;
  const cx = map.x + map.width / 2;
  const cy = map.y + map.height / 2;
  const metresPerPx: number = await page.evaluate(() => {
    const m = (globalThis as any).cabtrack.map;
    const c = m.getCenter();
    return m.distance(c, m.containerPointToLatLng(m.latLngToContainerPoint(c).add([0, 100]))) / 100;
  });
  // 2.2 km north in two drags: far-3000 comes within 1 km, out of the cells the first stream covered
  // (so only a stream for the new point can bring it); the others are left beyond 1 km.
  for (let i = 0; i < 2; i++) {
    await page.mouse.move(cx, cy - 300);
    await page.mouse.down();
    await page.mouse.move(cx, cy - 300 + 1100 / metresPerPx, { steps: 12 });
    await page.mouse.up();
  }
  // The map glides on a little after the drag (Leaflet's inertia): the point is where it stops.
  let point = await pointOf(page);
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await pointOf(page);
    if (now.lat === point.lat && now.lng === point.lng) break;
    point = now;
  }
  const moved = haversineM(point.lat, point.lng, RIDER.lat, RIDER.lon);
  t.ok(moved > 2100 && moved < 2600, `the point moved ${Math.round(moved)} m north`);
  const want = expected(point);
  t.ok(want.includes('far-3000') && !want.includes('in-300'), `${want.join(', ')} within 1 km of it`);
  const at = (u: URL): number =>
    haversineM(Number(u.searchParams.get('lat')), Number(u.searchParams.get('lon')), point.lat, point.lng);
  await until(
    'a stream at the new point',
    async () => streams.map(at),
    (d) => d.some((m) => m < 1),
  );
  const ids = await until(
    'the cars near the new point',
    () => markerIds(page),
    (ids) => ids.join() === want.join(),
  );
  t.same(ids, want, 'the page shows them, from a stream opened at the new point');
  const last = streams.at(-1)!;
  t.ok(at(last) < 1, 'its last stream is at the new point');
  t.equal(last.searchParams.get('free'), '1');
  t.equal(last.searchParams.get('radius'), '1000');
  t.match(last.searchParams.get('token'), /^v1\.c\./, 'with a client stream token in the URL');
  t.notOk(last.href.includes(CLIENT), 'never the API token');
  t.same(errors, [], 'no console error');
});

t.test('a cut stream whose token has expired: a new token, the stream again', async (t) => {
  const requests: string[] = [];
  page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  const refused: number[] = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/v1/stream/nearby' && r.status() !== 200) refused.push(r.status());
  });
  // The stream token (3 s) expires while the stream is open; then the HTTP worker dies.
  await new Promise((r) => setTimeout(r, 3500));
  const pid = httpWorkerPid();
  process.kill(pid, 'SIGKILL');
  await until(
    'the page to see it',
    () => page.textContent('#status'),
    (s) => s === 'reconnecting…',
  );
  await daemon.waitFor(async () => httpWorkerPid() !== pid, 'a new HTTP worker', 20_000);
  await page.waitForSelector('.status.live', { timeout: 20_000 });
  const want = expected(await pointOf(page));
  await until(
    'the cars again',
    () => markerIds(page),
    (ids) => ids.join() === want.join(),
  );
  t.ok(refused.includes(401), `the browser's own reconnect was refused (${refused.join(', ')})`);
  t.ok(requests.includes('POST /v1/stream-tokens'), 'the page asked for a new stream token');
  t.same(await markerIds(page), want, 'and shows the cars near its point again');
  // The browser logs the refused and failed loads itself; the page adds nothing of its own.
  // (the cut: ERR_INCOMPLETE_CHUNKED_ENCODING, the refusal: 401, both on the stream's URL).
  t.same(
    errors.filter(
      (e) =>
        !/^console: Failed to load resource: .*\(http:\/\/127\.0\.0\.1:\d+\/v1\/stream\/nearby\?/.test(e),
    ),
    [],
    'no console error of the page’s own',
  );
  errors.length = 0;
});

t.test('the screenshot: the rider in the simulated fleet', async (t) => {
  await page.evaluate(
    ([lat, lon]) => (globalThis as any).cabtrack.map.setView([lat, lon], 15, { animate: false }),
    [CITY.lat - 0.0015, CITY.lon + 0.001],
  );
  await until(
    'the fleet’s free cars',
    () => markerIds(page),
    (ids) => ids.some((id) => id.startsWith('sim-')),
  );
  await new Promise((r) => setTimeout(r, 2500));
  const ids = await markerIds(page);
  t.ok(ids.length > 0, `${ids.length} free simulated cars within 1 km`);
  const busy = await page.evaluate(() =>
    [...(globalThis as any).cabtrack.cars.cars.values()]
      .filter((c: any) => !c.fix.free)
      .map((c: any) => c.fix.id),
  );
  t.same(busy, [], 'none on a trip (the stream sends free cars only)');
  const png = await page.screenshot({ path: fileURLToPath(new URL('rider.png', DOCS)) });
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG written');
  t.same(errors, [], 'no console error');
});

/** The live HTTP worker's pid (the daemon runs one), 0 between its death and its replacement. */
function httpWorkerPid(): number {
  return daemonPids(daemon).http.at(-1) ?? 0;
}
