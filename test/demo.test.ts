import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { launchChromium, until, watchErrors } from './support/browser.ts';
import { freePort } from './support/daemon.ts';
import { markerIds } from './support/pages.ts';

/**
 * `npm run demo` (`cabtrack demo`) prints the two pages' URLs with the run's tokens in their fragment,
 * ready to open: opened in headless Chromium, each page signs in by itself, takes the token off the
 * address bar, and shows the demo's cars.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));

t.test('the demo prints both pages, signed in and showing its fleet when opened', async (t) => {
  const udp = await freePort();
  let http = await freePort();
  while (http === udp) http = await freePort();
  // Its default fleet (200 cars over 6 x 6 km), so that the rider's 1 km has free cars.
  const demo = spawn(
    process.execPath,
    ['src/cli.ts', 'demo', '--udp-port', String(udp), '--http-port', String(http)],
    {
      cwd: ROOT,
      // Bound to loopback, with no tiles: the tests reach no other host.
      env: { PATH: process.env['PATH'] ?? '', CABTRACK_HOST: '127.0.0.1', CABTRACK_MAP_TILE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
  t.teardown(async () => {
    if (demo.exitCode === null) demo.kill('SIGINT');
    await exited;
  });
  let out = '';
  demo.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  demo.stderr!.resume();
  const base = `http://127.0.0.1:${http}`;
  await until(
    'the demo’s URLs',
    async () => out,
    (o) => o.includes("rider's screen:"),
    30_000,
  );
  const operatorUrl = /operator live map: (\S+)/.exec(out)?.[1] ?? '';
  const riderUrl = /rider's screen: +(\S+)/.exec(out)?.[1] ?? '';
  const operatorToken = /operator token: (\S+)/.exec(out)?.[1];
  const clientToken = /client token: +(\S+)/.exec(out)?.[1];
  t.match(
    operatorUrl,
    new RegExp(`^${base}/#token=${operatorToken}&at=41\\.3917,2\\.1649,14$`),
    'the operator map, the operator token in the fragment',
  );
  t.match(
    riderUrl,
    new RegExp(`^${base}/rider#token=${clientToken}&at=41\\.3917,2\\.1649,15$`),
    "the rider's screen, the client token in the fragment",
  );

  const browser = await launchChromium();
  t.teardown(() => browser.close());
  for (const url of [operatorUrl, riderUrl]) {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    const errors = watchErrors(page);
    await page.goto(url);
    await page.waitForSelector('.status.live');
    t.equal(
      page.url(),
      url.slice(0, url.indexOf('#')),
      `${url.split('#')[0]}: the token is off the address bar`,
    );
    t.ok(await page.locator('#login').isHidden(), 'signed in without the form');
    const ids = await until(
      'cars',
      () => markerIds(page),
      (ids) => ids.length > 0,
      20_000,
    );
    t.ok(
      ids.every((id) => id.startsWith('sim-')),
      `${ids.length} of the demo's cars shown`,
    );
    t.same(errors, [], 'no console error');
    await page.close();
  }
  demo.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C stops the demo');
});
