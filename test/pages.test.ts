import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { acceptsGzip, matches } from '../src/http/pages.ts';
import { tileSource } from '../src/http/tile-url.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';

/**
 * The pages over HTTP (src/http/pages.ts): what each route serves, with which content type, caching
 * headers, ETag and 304, gzip, and the Content-Security-Policy built from CABTRACK_MAP_TILE_URL; /config.json
 * with and without tiles. Every answer is checked against the OpenAPI document (daemon.request()). What
 * the pages do in a browser is test/browser-*.test.ts.
 */

const TILES = 'https://{s}.tiles.example.org:8443/{z}/{x}/{y}{r}.png';
let daemon: Daemon;
t.before(async () => {
  daemon = await startDaemon({ CABTRACK_MAP_TILE_URL: TILES, CABTRACK_MAP_ATTRIBUTION: 'Example tiles' });
});
t.teardown(() => daemon.stop());

const leafletVersion = (
  JSON.parse(readFileSync(new URL('../node_modules/leaflet/package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

t.test('the two pages: HTML, public, revalidated, under a strict CSP', async (t) => {
  for (const [path, script] of [
    ['/', '/assets/operator.js'],
    ['/rider', '/assets/rider.js'],
  ] as const) {
    const res = await daemon.request('GET', path, { token: null });
    t.equal(res.status, 200, path);
    t.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    t.equal(res.headers.get('cache-control'), 'no-cache');
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
    t.equal(res.headers.get('referrer-policy'), 'strict-origin-when-cross-origin');
    t.match(res.text, `<script type="module" src="${script}"></script>`);
    t.notMatch(res.text, /<script>|<script type="module">|style=/, 'no inline script or style');
    t.notMatch(res.text, /https?:\/\//, 'nothing from another site (no CDN)');
    const csp = res.headers.get('content-security-policy')!.split('; ');
    t.same(
      csp,
      [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https://*.tiles.example.org:8443",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
      ],
      'images from the tile host only (its {s} subdomains), all else from here',
    );
  }
});

t.test('/config.json: the tiles for the pages, no token needed', async (t) => {
  const res = await daemon.request('GET', '/config.json', { token: null });
  t.equal(res.status, 200);
  t.same(res.body, { tileUrl: TILES, attribution: 'Example tiles', riderRadiusM: 1000 });
  t.equal(res.headers.get('cache-control'), 'no-cache');

  const bare = await startDaemon({ CABTRACK_MAP_TILE_URL: '', CABTRACK_HTTP_WORKERS: '1' });
  t.teardown(() => bare.stop());
  const none = await bare.request('GET', '/config.json', { token: null });
  t.same(none.body, { tileUrl: '', attribution: '', riderRadiusM: 1000 }, "'' : no tiles, no attribution");
  const page = await bare.request('GET', '/', { token: null });
  t.match(page.headers.get('content-security-policy'), /img-src 'self' data:; /, 'and images from here only');
});

t.test("assets: our modules and styles revalidated, Leaflet's kept a day", async (t) => {
  const cases: Array<[string, string, string]> = [
    ['/assets/operator.js', 'text/javascript; charset=utf-8', 'no-cache'],
    ['/assets/rider.js', 'text/javascript; charset=utf-8', 'no-cache'],
    ['/assets/stream.js', 'text/javascript; charset=utf-8', 'no-cache'],
    ['/assets/style.css', 'text/css; charset=utf-8', 'no-cache'],
    ['/assets/icon.svg', 'image/svg+xml', 'no-cache'],
    ['/assets/leaflet/leaflet.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
    ['/assets/leaflet/leaflet.css', 'text/css; charset=utf-8', 'public, max-age=86400'],
    ['/assets/leaflet/leaflet.js.map', 'application/json', 'public, max-age=86400'],
    ['/assets/leaflet/images/layers.png', 'image/png', 'public, max-age=86400'],
  ];
  for (const [path, type, cache] of cases) {
    const res = await daemon.request('GET', path, { token: null });
    t.equal(res.status, 200, path);
    t.equal(res.headers.get('content-type'), type, `${path}: ${type}`);
    t.equal(res.headers.get('cache-control'), cache, `${path}: ${cache}`);
    t.match(res.headers.get('etag'), /^"[A-Za-z0-9_-]{22}(-gz)?"$/);
    t.notOk(res.headers.has('content-security-policy'), 'the policy is the pages’');
  }
  const leaflet = await daemon.request('GET', '/assets/leaflet/leaflet.js', { token: null });
  t.match(leaflet.text, `Leaflet ${leafletVersion}`, `Leaflet ${leafletVersion} from node_modules`);
  t.equal(
    leaflet.text,
    readFileSync(new URL('../node_modules/leaflet/dist/leaflet.js', import.meta.url), 'utf8'),
  );
  const ours = await daemon.request('GET', '/assets/cars.js', { token: null });
  t.equal(
    ours.text,
    readFileSync(new URL('../src/web/cars.js', import.meta.url), 'utf8'),
    'served as written',
  );
});

t.test('ETag and If-None-Match: 304 with no body; gzip when asked, its own tag', async (t) => {
  const path = '/assets/leaflet/leaflet.js';
  const plain = await fetch(daemon.url + path, { headers: { 'accept-encoding': 'identity' } });
  const body = Buffer.from(await plain.arrayBuffer());
  t.equal(plain.headers.get('content-encoding'), null);
  t.equal(Number(plain.headers.get('content-length')), body.length);
  t.equal(plain.headers.get('vary'), 'accept-encoding');
  const tag = plain.headers.get('etag')!;

  // Raw bytes: undici's fetch would decode them.
  const { request } = await import('node:http');
  const gz = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    request(`${daemon.url}${path}`, { headers: { 'accept-encoding': 'br, gzip;q=0.8' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    })
      .on('error', reject)
      .end();
  });
  t.equal(gz.headers['content-encoding'], 'gzip');
  t.same(gunzipSync(gz.body), body, 'the same file');
  t.ok(gz.body.length < body.length / 2, `${gz.body.length} bytes gzipped, of ${body.length}`);
  t.equal(gz.headers['etag'], `${tag.slice(0, -1)}-gz"`, 'a tag per encoding');

  const again = await daemon.request('GET', path, {
    token: null,
    headers: { 'if-none-match': tag, 'accept-encoding': 'identity' },
  });
  t.equal(again.status, 304);
  t.equal(again.text, '');
  t.equal(again.headers.get('etag'), tag);
  const changed = await daemon.request('GET', path, {
    token: null,
    headers: { 'if-none-match': '"something-else"', 'accept-encoding': 'identity' },
  });
  t.equal(changed.status, 200, 'another tag: the file');
  const head = await daemon.request('HEAD', '/rider', { token: null });
  t.equal(head.status, 200);
  t.equal(head.text, '', 'HEAD: headers only');
  t.ok(head.headers.has('content-security-policy'));
});

t.test('unknown assets are 404, other methods 405, as the document says', async (t) => {
  for (const path of [
    '/assets/nope.js',
    '/assets/tsconfig.json',
    '/assets/operator.html',
    '/assets/leaflet/leaflet-src.js',
    '/assets/leaflet/images/nope.png',
    '/assets/../package.json',
    '/assets/',
  ]) {
    const res = await daemon.request('GET', path, { token: null });
    t.equal(res.status, 404, path);
    t.equal(res.body.error.code, 'not_found');
  }
  const post = await daemon.request('POST', '/', { token: null });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
  t.equal((await daemon.request('DELETE', '/assets/style.css', { token: null })).status, 405);
  t.equal((await daemon.request('GET', '/rider/', { token: null })).status, 404, 'no other spelling');
});

t.test('a page load is counted in the HTTP metrics, by route and status', async (t) => {
  await daemon.request('GET', '/', { token: null });
  t.ok((await daemon.metric('cabtrack_http_request_duration_seconds_count', { route: 'page' })) > 0);
  t.ok(
    (await daemon.metric('cabtrack_http_request_duration_seconds_count', { route: 'asset', status: '304' })) >
      0,
    '304s are counted as 304',
  );
});

t.test('header parsing', async (t) => {
  t.ok(acceptsGzip('gzip, deflate, br'));
  t.ok(acceptsGzip('br;q=1.0, gzip;q=0.5'));
  t.ok(acceptsGzip('*'));
  t.notOk(acceptsGzip('gzip;q=0'));
  t.notOk(acceptsGzip('identity'));
  t.notOk(acceptsGzip(undefined));
  t.ok(matches('"a", "b"', '"b"'));
  t.ok(matches('W/"b"', '"b"'), 'weak comparison');
  t.ok(matches('*', '"b"'));
  t.notOk(matches('"a"', '"b"'));
  t.equal(tileSource('https://tile.openstreetmap.org/{z}/{x}/{y}.png'), 'https://tile.openstreetmap.org');
  t.equal(tileSource('http://127.0.0.1:9000/t/{z}/{x}/{y}.png'), 'http://127.0.0.1:9000');
  t.equal(tileSource('https://{s}.example.org/{z}/{x}/{y}.png'), 'https://*.example.org');
  t.equal(tileSource(''), '');
});
