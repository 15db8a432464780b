import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { startDaemon } from './support/daemon.ts';

t.test('the documented defaults', async (t) => {
  const c = loadConfig({});
  t.match(c, {
    udpPort: 5005,
    httpPort: 8080,
    host: '0.0.0.0',
    idleTimeoutS: 900,
    trackPoints: 20,
    operatorToken: '',
    clientToken: '',
    redisUrl: '',
    osrmUrl: '',
  });
  t.ok(c.workers >= 1, 'workers 0 in the file means one per core');
  t.ok(Object.isFrozen(c));
});

t.test('environment variables override the defaults', async (t) => {
  const c = loadConfig({
    CABTRACK_UDP_PORT: '6000',
    CABTRACK_HTTP_PORT: '6001',
    CABTRACK_WORKERS: '3',
    CABTRACK_IDLE_TIMEOUT_S: '60',
    CABTRACK_TRACK_POINTS: '50',
    CABTRACK_OPERATOR_TOKEN: 'o'.repeat(20),
    CABTRACK_REDIS_URL: 'redis://127.0.0.1:6379',
    CABTRACK_OSRM_URL: 'http://osrm:5000',
  });
  t.match(c, {
    udpPort: 6000,
    httpPort: 6001,
    workers: 3,
    idleTimeoutS: 60,
    trackPoints: 50,
    osrmUrl: 'http://osrm:5000',
  });
});

t.test('a bad value is refused with a message naming it', async (t) => {
  const bad: Array<[string, string, RegExp]> = [
    ['CABTRACK_UDP_PORT', '70000', /CABTRACK_UDP_PORT: must be from 1 to 65535/],
    ['CABTRACK_UDP_PORT', 'abc', /CABTRACK_UDP_PORT: must be a whole number/],
    ['CABTRACK_HTTP_PORT', '5005', /CABTRACK_HTTP_PORT: must differ/],
    ['CABTRACK_WORKERS', '-1', /CABTRACK_WORKERS: must be a whole number/],
    ['CABTRACK_IDLE_TIMEOUT_S', '0', /CABTRACK_IDLE_TIMEOUT_S: must be from 1/],
    ['CABTRACK_TRACK_POINTS', '1.5', /CABTRACK_TRACK_POINTS/],
    ['CABTRACK_OPERATOR_TOKEN', 'short', /CABTRACK_OPERATOR_TOKEN: must be at least 16/],
    [
      'CABTRACK_REDIS_URL',
      'localhost:6379',
      /CABTRACK_REDIS_URL: must be an http\(s\):\/\/ or redis\(s\):\/\/ URL/,
    ],
    ['CABTRACK_OSRM_URL', 'ftp://x', /CABTRACK_OSRM_URL/],
    ['CABTRACK_LOG_LEVEL', 'loud', /CABTRACK_LOG_LEVEL/],
  ];
  for (const [key, value, message] of bad) {
    t.throws(() => loadConfig({ [key]: value }), message, `${key}=${value}`);
    try {
      loadConfig({ [key]: value });
    } catch (err) {
      t.ok(err instanceof ConfigError && err.key === key);
    }
  }
});

t.test('the map tiles: a {z}/{x}/{y} template, or empty for none', async (t) => {
  const osm = 'https://tile.openstreetmap.org/{z}/{x}/{y}.png';
  t.equal(loadConfig({}).mapTileUrl, osm, 'OpenStreetMap by default');
  t.match(loadConfig({}).mapAttribution, /OpenStreetMap<\/a> contributors/, 'with its attribution');
  t.equal(loadConfig({ CABTRACK_MAP_TILE_URL: '' }).mapTileUrl, '', "'' means no tiles, not the default");
  t.equal(loadConfig({ CABTRACK_MAP_ATTRIBUTION: '' }).mapAttribution, '');
  for (const ok of [
    'http://127.0.0.1:8081/{z}/{x}/{y}.png',
    'https://{s}.tile.example.org/{z}/{x}/{y}{r}.png?key=abc',
  ]) {
    t.equal(loadConfig({ CABTRACK_MAP_TILE_URL: ok }).mapTileUrl, ok, ok);
  }
  const bad: Array<[string, RegExp]> = [
    ['https://tiles.example.org/{z}/{x}.png', /CABTRACK_MAP_TILE_URL: must contain \{y\}/],
    ['https://tiles.example.org/{z}/{x}/{y}/{q}.png', /unknown placeholder \{q\}/],
    ['ftp://tiles.example.org/{z}/{x}/{y}.png', /must be an http\(s\):\/\/ URL template/],
    ['tiles/{z}/{x}/{y}.png', /must be an http\(s\):\/\/ URL template/],
    ['https://user:pw@tiles.example.org/{z}/{x}/{y}.png', /user name or password/],
    ['https://tiles.{s}.example.org/{z}/{x}/{y}.png', /only as the first label/],
  ];
  for (const [value, message] of bad) {
    t.throws(() => loadConfig({ CABTRACK_MAP_TILE_URL: value }), message, value);
  }
});

t.test('the daemon refuses to start on a bad value, naming it', async (t) => {
  const r = spawnSync(process.execPath, ['src/main.ts'], {
    cwd: fileURLToPath(new URL('../', import.meta.url)),
    env: { PATH: process.env['PATH'] ?? '', CABTRACK_IDLE_TIMEOUT_S: 'soon' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  t.equal(r.status, 2);
  t.match(
    r.stderr,
    'cabtrack: bad configuration: CABTRACK_IDLE_TIMEOUT_S: must be a whole number, got "soon"',
  );
});

t.test(
  'without tokens the daemon is not open for writes: it makes an operator token and logs it once',
  async (t) => {
    const daemon = await startDaemon({ CABTRACK_OPERATOR_TOKEN: '', CABTRACK_CLIENT_TOKEN: '' });
    t.teardown(() => daemon.stop());
    const lines = daemon.logs.filter((l) => l.includes('operatorToken'));
    t.equal(lines.length, 1, 'printed once');
    const token = (JSON.parse(lines[0]!) as { operatorToken: string }).operatorToken;
    t.ok(token.length >= 32);
    const body = { driverId: 'a', cab: 'b' };
    t.equal(
      (await daemon.request('PUT', '/v1/sessions/0000000000000001', { token: null, body })).status,
      401,
    );
    t.equal(
      (await daemon.request('PUT', '/v1/sessions/0000000000000001', { token: 'o'.repeat(20), body })).status,
      401,
    );
    t.equal((await daemon.request('PUT', '/v1/sessions/0000000000000001', { token, body })).status, 201);
    t.equal(
      (await daemon.get('/v1/drivers/nearest?lat=1&lon=1', token)).status,
      200,
      'client routes take the operator token',
    );
    t.ok(daemon.logs.some((l) => l.includes('CABTRACK_CLIENT_TOKEN is not set')));
  },
);

t.test('several hosts: a host id needs Redis and the URL the others reach it at', async (t) => {
  const single = loadConfig({});
  t.match(single, { hostId: '', hostUrl: '', region: [], liveZoom: 8, liveKeyframeMs: 5000 });
  const c = loadConfig({
    CABTRACK_HOST_ID: 'bcn-1',
    CABTRACK_HOST_URL: 'http://10.0.0.11:8080/',
    CABTRACK_REDIS_CLUSTER: '10.0.0.1:7000,10.0.0.1:7001',
    CABTRACK_REGION: '-9.5,36,3.4,43.8; 170,-10,-170,10',
    CABTRACK_LIVE_ZOOM: '7',
  });
  t.match(c, { hostId: 'bcn-1', hostUrl: 'http://10.0.0.11:8080', liveZoom: 7 });
  t.same(c.region, [
    [-9.5, 36, 3.4, 43.8],
    [170, -10, -170, 10],
  ]);
  const bad = (env: Record<string, string>, name: string, message: RegExp): void => {
    let err: unknown = null;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof ConfigError && err.key === name, `refused, naming ${name}`);
    t.match((err as Error).message, message);
  };

  bad({ CABTRACK_HOST_ID: 'a' }, 'CABTRACK_HOST_ID', /REDIS_CLUSTER/);
  bad({ CABTRACK_HOST_ID: 'a', CABTRACK_REDIS_URL: 'redis://r:6379' }, 'CABTRACK_HOST_URL', /must be set/);
  bad({ CABTRACK_HOST_ID: 'a b' }, 'CABTRACK_HOST_ID', /A-Z a-z 0-9/);
  bad({ CABTRACK_HOST_URL: 'redis://x:1' }, 'CABTRACK_HOST_URL', /http\(s\)/);
  bad({ CABTRACK_REGION: '1,2,3' }, 'CABTRACK_REGION', /minLon,minLat,maxLon,maxLat/);
  bad({ CABTRACK_REGION: '0,50,10,40' }, 'CABTRACK_REGION', /min first/);
  bad({ CABTRACK_LIVE_ZOOM: '17' }, 'CABTRACK_LIVE_ZOOM', /from 2 to 16/);
});
