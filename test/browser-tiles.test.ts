import type { Browser, Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { launchChromium, until, watchErrors } from './support/browser.ts';
import { CLIENT, type Daemon, freePort, OPERATOR, startDaemon } from './support/daemon.ts';
import { markerIds, offset, TestCar } from './support/pages.ts';

/**
 * Both pages without map tiles, in headless Chromium: with CABTRACK_MAP_TILE_URL='' they draw the cars
 * on a plain background, ask for no tile and log nothing; with a tile server that cannot be reached they
 * work the same, say so in the map's corner, and the only console errors are the browser's own reports
 * of the tiles it could not load.
 */

const AT = { lat: 48.8566, lon: 2.3522 };

let browser: Browser;
t.before(async () => {
  browser = await launchChromium();
});
t.teardown(() => browser?.close());

/** A daemon with these tiles, one parked free car near AT, and both pages open on it. */
async function open(
  t: Test,
  tileUrl: string,
): Promise<{ daemon: Daemon; pages: Array<{ page: Page; errors: string[] }> }> {
  const daemon = await startDaemon({ CABTRACK_MAP_TILE_URL: tileUrl, CABTRACK_HTTP_WORKERS: '1' });
  t.teardown(() => daemon.stop());
  const car = await TestCar.start(daemon, 'parked', offset(AT, 200, 60), [[0, 0]]);
  t.teardown(() => car.stop());
  await daemon.waitFor(async () => (await daemon.metric('cabtrack_replica_drivers')) === 1, 'the car');
  const pages = [];
  for (const url of [
    `${daemon.url}/#token=${OPERATOR}&at=${AT.lat},${AT.lon},15`,
    `${daemon.url}/rider#token=${CLIENT}&at=${AT.lat},${AT.lon},15`,
  ]) {
    const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
    t.teardown(() => page.close());
    const errors = watchErrors(page);
    await page.goto(url);
    await page.waitForSelector('.status.live');
    await until(
      'the car',
      () => markerIds(page),
      (ids) => ids.length === 1,
    );
    pages.push({ page, errors });
  }
  return { daemon, pages };
}

t.test(
  "CABTRACK_MAP_TILE_URL='': the cars on a plain background, nothing asked of any tile server",
  async (t) => {
    const { daemon, pages } = await open(t, '');
    for (const { page, errors } of pages) {
      const requested: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(daemon.url)) requested.push(r.url());
      });
      await new Promise((r) => setTimeout(r, 1500));
      t.equal(await page.locator('.leaflet-tile').count(), 0, 'no tile');
      t.same(requested, [], 'nothing asked of another server');
      const background = await page.$eval(
        '#map',
        (el) => (globalThis as any).getComputedStyle(el).backgroundColor,
      );
      t.equal(background, 'rgb(238, 241, 236)', 'the plain background');
      t.same(await markerIds(page), ['parked'], 'the car is drawn on it');
      t.notMatch(
        await page.textContent('.leaflet-control-attribution'),
        /OpenStreetMap/,
        'no tile attribution',
      );
      t.same(errors, [], `${new URL(page.url()).pathname}: no console error`);
    }
    // The map still works: the operator can open the car's card.
    const operator = pages[0]!.page;
    await operator.locator('.car[data-id="parked"]').click({ force: true });
    await until(
      'the card',
      () => operator.textContent('#card-cab'),
      (text) => text === 'PARKED',
    );
    t.pass('a click on the car opens its card');
  },
);

t.test('a tile server that cannot be reached: the map works on its background, and says so', async (t) => {
  // A port nothing listens on: every tile is refused.
  const dead = `http://127.0.0.1:${await freePort()}/{z}/{x}/{y}.png`;
  const { pages } = await open(t, dead);
  for (const { page, errors } of pages) {
    await page.waitForSelector('.map-note');
    t.equal(
      await page.textContent('.map-note'),
      'Map tiles unavailable: cars are shown on a plain background.',
      'the map says the tiles are missing',
    );
    t.same(await markerIds(page), ['parked'], 'and draws the car');
    const tileErrors = errors.filter((e) =>
      /^console: Failed to load resource: net::ERR_CONNECTION_REFUSED \(http:\/\/127\.0\.0\.1:\d+\/\d+\/\d+\/\d+\.png\)$/.test(
        e,
      ),
    );
    t.ok(tileErrors.length > 0, `${tileErrors.length} tiles the browser reports it could not load`);
    t.same(
      errors.filter((e) => !tileErrors.includes(e)),
      [],
      `${new URL(page.url()).pathname}: no console error of the page's own`,
    );
  }
});
