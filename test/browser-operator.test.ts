import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import t from 'tap';
import { DEFAULT_CENTRE, DEFAULT_SPACING_M } from '../src/sim/city.ts';
import { cabOf, driverId, runSimulation } from '../src/sim/run.ts';
import { launchChromium, until, watchErrors } from './support/browser.ts';
import { CLIENT, type Daemon, OPERATOR, startDaemon } from './support/daemon.ts';
import { DOCS, markerIds, offset, squareLoop, TestCar } from './support/pages.ts';
import { startTileServer, type TileServer } from './support/tile-server.ts';

/**
 * The operator's live map (`/`) in headless Chromium against a real daemon: signed in from the address's
 * fragment, with N simulated cars it draws N markers and counts them; a marker's positions on screen,
 * sampled over 2 s, lie on the path its car was sent; a click opens the car's card with its cab and
 * trip; the cab search finds a car; the sign-in form refuses a client token. No console error or
 * uncaught exception throughout. Tiles come from a local tile server drawing the simulator's streets,
 * so the screenshot saved for the README (docs/operator-map.png) shows the cars on them.
 */

const N = 60;
const CITY = { lat: DEFAULT_CENTRE.lat, lon: DEFAULT_CENTRE.lon, spacingM: DEFAULT_SPACING_M, radiusM: 600 };
/** 4 blocks each way: the grid the simulator drives (src/sim/city.ts), drawn by the tile server. */
const EXTENT_M = Math.floor(CITY.radiusM / CITY.spacingM) * CITY.spacingM;
/**
 * The test's own cars, 2.2 km north of the fleet (out of its view), each round a square: `fast` at 25 m/s
 * (90 km/h), whose frames carry its path from the previous fix (2 points); `probe` at 15 m/s, under the
 * stream's 20 m standstill rule (src/stream/frames.ts), whose frames carry its fix alone: the page
 * replays the straight path from the previous fix itself.
 */
const PROBE_AT = offset(CITY, 2200, 0);
const FAST_AT = offset(PROBE_AT, 30, 90);

let tiles: TileServer;
let daemon: Daemon;
let browser: Browser;
let page: Page;
let errors: string[];
let probe: TestCar;
let fast: TestCar;
const fleet = new AbortController();
let fleetDone: Promise<unknown>;

t.before(async () => {
  tiles = await startTileServer({ lat: CITY.lat, lon: CITY.lon, spacingM: CITY.spacingM, extentM: EXTENT_M });
  daemon = await startDaemon({
    CABTRACK_MAP_TILE_URL: tiles.template,
    CABTRACK_MAP_ATTRIBUTION: 'Streets: the test tile server',
  });
  let started!: () => void;
  const running = new Promise<void>((r) => {
    started = r;
  });
  fleetDone = runSimulation({
    drivers: N,
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
    // Every car live and every datagram good: the map must show exactly N.
    badShare: 0,
    offlineShare: 0,
    offlineMinS: 10,
    offlineMaxS: 20,
    seed: 11,
    carsPerSocket: 10,
    reportEveryS: 0,
    idPrefix: 'sim',
    print: () => {},
    signal: fleet.signal,
    onStart: () => started(),
  });
  await running;
  probe = await TestCar.start(daemon, 'probe', PROBE_AT, squareLoop(60, 15, 20), { orderId: 4242n });
  fast = await TestCar.start(daemon, 'fast', FAST_AT, squareLoop(100, 25, -35));
  await daemon.waitFor(
    async () => (await daemon.metric('cabtrack_replica_drivers')) === N + 2,
    'the fleet and the probe listed',
    20_000,
  );
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  errors = watchErrors(page);
});

t.teardown(async () => {
  await browser?.close();
  probe?.stop();
  fast?.stop();
  fleet.abort();
  await fleetDone;
  await daemon?.stop();
  await tiles?.close();
});

const simIds = Array.from({ length: N }, (_, i) => driverId('sim', i)).sort();

t.test('signed in from the fragment: N simulated cars, N markers, counted', async (t) => {
  await page.goto(`${daemon.url}/#token=${OPERATOR}&at=${CITY.lat},${CITY.lon},16`);
  t.equal(page.url(), `${daemon.url}/`, 'the token is taken off the address bar at once');
  t.equal(
    await page.evaluate(() => (globalThis as any).sessionStorage.getItem('cabtrack.operatorToken')),
    OPERATOR,
    'and kept in the tab’s sessionStorage',
  );
  await page.waitForSelector('.status.live');
  t.ok(await page.locator('#login').isHidden(), 'no sign-in form');
  const ids = await until(
    `${N} markers`,
    () => markerIds(page),
    (ids) => ids.length === N,
  );
  t.same(ids, simIds, `${N} markers, one for each simulated car`);
  // Held over 3 s of frames: no car drawn twice, none lost between frames.
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 500));
    t.equal((await markerIds(page)).length, N, `still ${N} markers after ${(i + 1) * 0.5} s`);
  }
  const [live, free, busy] = await Promise.all(
    ['#n-live', '#n-free', '#n-busy'].map(async (s) => Number(await page.textContent(s))),
  );
  t.equal(live, N, `counts: ${live} live`);
  t.equal(free! + busy!, N, `${free} free + ${busy} on a trip`);
  t.equal(await page.locator('.car.free').count(), free, 'as many green markers as free cars');
  t.equal(await page.locator('.car.busy').count(), busy, 'as many orange as on a trip');
  t.ok(free! > 0 && busy! > 0, 'both kinds in the fleet');
  t.ok(tiles.served() > 0, `${tiles.served()} tiles loaded from the tile server`);
  t.same(errors, [], 'no console error');
});

t.test('a click on a car opens its card: driver, cab, speed, trip, its track', async (t) => {
  // A car on a trip, for a full card.
  const busy = await page.$eval('.car.busy', (e) => (e as unknown as { dataset: { id: string } }).dataset.id);
  const i = Number(busy.slice('sim-'.length));
  await page.locator(`.car[data-id="${busy}"]`).click({ force: true });
  await until(
    'the card',
    () => page.textContent('#card-cab'),
    (text) => text === cabOf('sim', i),
  );
  t.equal(await page.textContent('#card-cab'), cabOf('sim', i), `the card of ${cabOf('sim', i)}`);
  t.equal(await page.textContent('#card-driver'), busy);
  t.equal(await page.textContent('#card-state'), 'on a trip');
  t.match(await page.textContent('#card-speed'), /^\d+ km\/h$/);
  t.ok(await page.locator('#card-trip').isVisible(), 'its trip');
  t.match(await page.textContent('#card-cost'), /^\d+\.\d\d$/);
  t.match(await page.textContent('#card-distance'), /^\d+(\.\d\d)? k?m$/);
  t.match(await page.textContent('#card-duration'), /^\d+ (s|min \d+ s)$/);
  await page.waitForSelector('path.track');
  t.ok(await page.locator('.car.selected').count(), 'the car is marked as selected');
  // Let the replays settle mid-second for the picture.
  await new Promise((r) => setTimeout(r, 1500));
  const png = await page.screenshot({ path: fileURLToPath(new URL('operator-map.png', DOCS)) });
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG written');
  await page.keyboard.press('Escape');
  t.ok(await page.locator('#card').isHidden(), 'Escape closes it');
  t.same(errors, [], 'no console error');
});

t.test('a marker replays the path it was sent: on screen, within a few pixels, smoothly', async (t) => {
  // Zoom 17 (0.9 m a pixel here): the probe drives 17 px a second, the fast car 28.
  await page.evaluate(
    ([lat, lon]) => (globalThis as any).cabtrack.map.setView([lat, lon], 17, { animate: false }),
    [offset(PROBE_AT, 40, 0).lat, offset(FAST_AT, 40, 90).lon - 0.0003],
  );
  await until(
    'the two test cars',
    () => markerIds(page),
    (ids) => ids.includes('probe') && ids.includes('fast'),
  );
  // Replays under way (deltas, not the view's first snapshot).
  await new Promise((r) => setTimeout(r, 2500));
  const sampled: Record<string, Array<{ x: number; y: number }>> = await page.evaluate(async () => {
    const doc = (globalThis as any).document;
    const raf = (globalThis as any).requestAnimationFrame as (f: () => void) => void;
    const out: Record<string, Array<{ x: number; y: number }>> = { probe: [], fast: [] };
    const box = doc.getElementById('map').getBoundingClientRect();
    const end = performance.now() + 2000;
    await new Promise<void>((resolve) => {
      const sample = (): void => {
        for (const id of ['probe', 'fast']) {
          const el = doc.querySelector(`.car[data-id="${id}"]`);
          if (el === null) continue;
          const r = el.getBoundingClientRect();
          out[id]!.push({ x: r.left + r.width / 2 - box.left, y: r.top + r.height / 2 - box.top });
        }
        if (performance.now() < end) raf(sample);
        else resolve();
      };
      raf(sample);
    });
    return out;
  });
  const paths = await page.evaluate(
    () =>
      Object.fromEntries(
        ['probe', 'fast'].map((id) => [id, (globalThis as any).cabtrack.cars.cars.get(id).fix.path.length]),
      ) as Record<string, number>,
  );
  t.equal(paths['fast'], 2, 'the fast car came with its path from the previous fix');
  t.equal(paths['probe'], 1, 'the probe with its fix alone (under 20 m a second)');
  for (const car of [probe, fast]) {
    const samples = sampled[car.id]!;
    // Every fix sent, on the same screen (the map has not moved), unrounded (latLngToContainerPoint
    // rounds to whole pixels, as Leaflet places markers).
    const route: Array<{ x: number; y: number }> = await page.evaluate((fixes) => {
      const map = (globalThis as any).cabtrack.map;
      const origin = map.getPixelOrigin().add(map.containerPointToLayerPoint([0, 0]));
      return fixes.map((f) => map.project([f.lat, f.lon], map.getZoom()).subtract(origin));
    }, car.sent);
    const worst = Math.max(...samples.map((s) => distanceToRoute(s, route)));
    const distinct = new Set(samples.map((s) => `${Math.round(s.x)},${Math.round(s.y)}`)).size;
    const xs = samples.map((s) => s.x);
    const ys = samples.map((s) => s.y);
    const travel = Math.hypot(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
    t.comment(
      `${car.id}: ${samples.length} samples in 2 s, ${distinct} distinct positions, moved across ` +
        `${travel.toFixed(1)} px; farthest from the path sent: ${worst.toFixed(2)} px`,
    );
    t.ok(samples.length >= 30, `${car.id}: ${samples.length} animation frames sampled`);
    t.ok(worst <= 3, `${car.id}: every position within 3 px of the path sent (worst ${worst.toFixed(2)} px)`);
    t.ok(travel >= 20, `${car.id}: it moved (${travel.toFixed(1)} px)`);
    t.ok(distinct >= 20, `${car.id}: smoothly, not a jump a second (${distinct} distinct positions)`);
  }

  await page.locator('.car[data-id="probe"]').click({ force: true });
  await until(
    'the probe card',
    () => page.textContent('#card-cab'),
    (text) => text === probe.cab,
  );
  t.equal(await page.textContent('#card-cab'), 'PROBE', 'a click shows its cab');
  t.equal(await page.textContent('#card-order'), '4242', 'and its trip');
  t.same(errors, [], 'no console error');
});

t.test('the cab search centres the map on the cab and opens its card', async (t) => {
  await page.fill('#search-cab', cabOf('sim', 7));
  await page.press('#search-cab', 'Enter');
  await until(
    'the card of SIM-7',
    () => page.textContent('#card-cab'),
    (text) => text === cabOf('sim', 7),
  );
  const centre = await page.evaluate(() => (globalThis as any).cabtrack.map.getCenter());
  const car = (await daemon.get(`/v1/cabs/${cabOf('sim', 7)}`)).body as { lat: number; lon: number };
  t.ok(Math.abs(centre.lat - car.lat) < 0.002 && Math.abs(centre.lng - car.lon) < 0.002, 'the map is on it');
  await page.fill('#search-cab', 'NO-SUCH-CAB');
  await page.press('#search-cab', 'Enter');
  await until(
    'the message',
    () => page.textContent('#search-message'),
    (text) => text === 'No live cab NO-SUCH-CAB.',
  );
  t.pass('an unknown cab is said to be unknown');
  // A 404 from the API is the answer, not a page error; the browser still logs the failed fetch.
  t.same(
    errors.filter((e) => !/Failed to load resource: the server responded with a status of 404/.test(e)),
    [],
    'no console error of the page’s own',
  );
  errors.length = 0;
});

t.test('the sign-in form: a client token is refused, the operator token signs in', async (t) => {
  const other = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  t.teardown(() => other.close());
  const otherErrors = watchErrors(other);
  await other.goto(`${daemon.url}/`);
  await other.waitForSelector('#login:not([hidden])');
  await other.fill('#login-token', CLIENT);
  await other.click('#login-form button');
  await until(
    'the refusal',
    () => other.textContent('#login-error'),
    (text) => (text ?? '') !== '',
  );
  t.match(await other.textContent('#login-error'), /client token: the live map needs the operator token/);
  await other.fill('#login-token', OPERATOR);
  await other.click('#login-form button');
  await other.waitForSelector('#login', { state: 'hidden' });
  await other.waitForSelector('.status.live');
  t.pass('signed in');
  // The refused token's 403 is logged by the browser as a failed load, not by the page.
  t.same(
    otherErrors.filter((e) => !/Failed to load resource: the server responded with a status of 403/.test(e)),
    [],
  );
});

/** Pixels from a point to the polyline through `route`. */
function distanceToRoute(p: { x: number; y: number }, route: Array<{ x: number; y: number }>): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 1; i < route.length; i++) {
    const a = route[i - 1]!;
    const b = route[i]!;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len2 = dx * dx + dy * dy;
    const k = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((p.x - a.x) * dx + (p.y - a.y) * dy) / len2));
    best = Math.min(best, Math.hypot(p.x - a.x - k * dx, p.y - a.y - k * dy));
  }
  return best;
}
