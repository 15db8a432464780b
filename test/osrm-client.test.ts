/**
 * OsrmClient against the stand-in OSRM (test/support/osrm-server.ts) over real loopback sockets: what it
 * sends, what it makes of each kind of answer, its deadline, and its circuit breaker on an injected clock.
 */
import { Clock } from '@tapjs/clock';
import t, { type Test } from 'tap';
import {
  type MatchPoint,
  type MatchResult,
  OSRM_MATCH_ERROR_CODES,
  OSRM_OUTCOMES,
  OsrmClient,
  type OsrmClientOptions,
  type OsrmOutcome,
} from '../src/osrm/client.ts';
import { gridPoint, handleOsrmRequest, type OsrmServer, startOsrmServer } from './support/osrm-server.ts';

const T0 = 1_700_000_000;

/** Fixes at grid positions (metres east and north of the crossing of Street 0 and Avenue 0), 1 s apart. */
function trace(local: Array<[number, number]>, start = T0): MatchPoint[] {
  return local.map(([x, y], i) => {
    const [lon, lat] = gridPoint(x, y);
    return { lon, lat, time: start + i };
  });
}

/** East along Street 0 with a few metres of GPS noise, left at the crossing, north along Avenue 0. */
const CORNER = trace([
  [-100, 2],
  [-80, -1],
  [-60, 2],
  [-40, -2],
  [-20, 1],
  [-4, 3],
  [2, 15],
  [-2, 35],
  [2, 55],
  [-1, 75],
]);
const CROSSING: [number, number] = [7.421385, 43.734428];

interface Harness {
  server: OsrmServer;
  client: OsrmClient;
  outcomes: Array<[OsrmOutcome, number]>;
}

async function setup(t: Test, options: Partial<OsrmClientOptions> = {}): Promise<Harness> {
  const server = await startOsrmServer();
  const outcomes: Array<[OsrmOutcome, number]> = [];
  const client = new OsrmClient({
    url: server.url,
    onOutcome: (outcome, seconds) => outcomes.push([outcome, seconds]),
    ...options,
  });
  t.teardown(async () => {
    await client.close();
    await server.close();
  });
  return { server, client, outcomes };
}

function expectMatched(t: Test, r: MatchResult): Extract<MatchResult, { kind: 'matched' }> {
  if (r.kind !== 'matched') throw new Error(`expected matched, got ${JSON.stringify(r)}`);
  t.pass('matched');
  return r;
}

t.test('a car turning a corner is matched along both streets, through the crossing', async (t) => {
  const { server, client, outcomes } = await setup(t);
  const r = expectMatched(t, await client.match(CORNER));
  t.equal(r.matchings.length, 1);
  const path = r.matchings[0]!.coordinates;
  const corner = path.findIndex(([lon, lat]) => lon === CROSSING[0] && lat === CROSSING[1]);
  t.ok(corner > 0 && corner < path.length - 1, 'the path passes the crossing');
  t.ok(
    path.slice(0, corner).every(([, lat]) => lat === CROSSING[1]),
    'before it, every vertex is on Street 0',
  );
  t.ok(
    path.slice(corner).every(([lon]) => lon === CROSSING[0]),
    'after it, every vertex is on Avenue 0',
  );
  for (let i = 1; i < path.length; i++) {
    const [a, b] = [path[i - 1]!, path[i]!];
    t.ok(a[0] === b[0] || a[1] === b[1], `segment ${i} runs along a street, not across the block`);
  }
  t.same(path[0], [7.420141, 43.734428]);
  t.same(path[path.length - 1], [7.421385, 43.735102]);
  t.same(
    r.tracepoints.map((tp) => tp && [tp.matchingsIndex, tp.waypointIndex]),
    CORNER.map((_, i) => [0, i]),
  );
  t.same(r.tracepoints[6]!.location, [7.421385, 43.734563], 'the first fix past the corner is on Avenue 0');
  t.equal(server.requests, 1);
  t.equal(outcomes.length, 1);
  t.equal(outcomes[0]![0], 'matched');
  t.ok(outcomes[0]![1] > 0 && outcomes[0]![1] < 0.8, 'took a real, bounded time');
});

t.test('the request: at most 6 decimals, whole seconds, the chosen options', async (t) => {
  const { server, client } = await setup(t);
  const points: MatchPoint[] = [
    { lon: 7.4213851234, lat: 43.7344281999, time: T0 + 0.7 },
    { lon: 7.42139, lat: 43.7346, time: T0 + 2 },
    { lon: 7.4213849999, lat: 43.73475, time: T0 + 3.999 },
  ];
  expectMatched(t, await client.match(points));
  t.equal(
    server.lastPath,
    '/match/v1/driving/7.421385,43.734428;7.42139,43.7346;7.421385,43.73475' +
      `?timestamps=${T0};${T0 + 2};${T0 + 3}&radiuses=10;10;10` +
      '&overview=full&geometries=polyline6&gaps=ignore&tidy=false&generate_hints=false',
  );
});

t.test('a path prefix and the profile are kept in the URL', async (t) => {
  const { server, client, outcomes } = await setup(t, { profile: 'car', radiusM: 12.5 });
  const prefixed = new OsrmClient({ url: `${server.url}/osrm/`, profile: 'car', radiusM: 12.5 });
  t.teardown(() => prefixed.close());
  expectMatched(t, await client.match(CORNER.slice(0, 2)));
  t.match(server.lastPath, /^\/match\/v1\/car\/[^?]+\?timestamps=[0-9;]+&radiuses=12\.5;12\.5&/);
  // Sent as given: the stand-in, like osrm-routed, takes `osrm` for the service and wants `/v1` after it.
  t.same(await prefixed.match(CORNER.slice(0, 2)), {
    kind: 'nomatch',
    code: 'InvalidUrl',
    message: 'URL string malformed close to position 6: "rm/mat"',
  });
  t.match(server.lastPath, /^\/osrm\/match\/v1\/car\//);
  t.same(outcomes, [['matched', outcomes[0]![1]]]);
});

t.test('fixes that cannot be sent are null in the result; the most recent maxPoints are kept', async (t) => {
  const { server, client, outcomes } = await setup(t);

  t.test('150 fixes: the oldest 50 are left out, and OSRM is not asked for more than 100', async (t) => {
    const points = trace(Array.from({ length: 150 }, (_, i): [number, number] => [1, -740 + 10 * i]));
    const r = expectMatched(t, await client.match(points));
    t.equal(r.tracepoints.length, 150);
    t.equal((server.lastPath ?? '').split('?')[0]!.split(';').length, 100);
    t.match(server.lastPath, `timestamps=${T0 + 50};`);
    t.ok(r.tracepoints.slice(0, 50).every((tp) => tp === null));
    t.same(
      r.tracepoints.slice(50).map((tp) => tp?.waypointIndex),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  t.test('bad coordinates and times that do not move forward are not sent', async (t) => {
    const good = trace([
      [1, 0],
      [1, 10],
      [1, 20],
      [1, 30],
      [1, 40],
    ]);
    const points: MatchPoint[] = [
      good[0]!,
      { ...good[1]!, lat: Number.NaN },
      good[1]!,
      { ...good[2]!, lat: 91 },
      { ...good[2]!, lon: -180.5 },
      good[2]!,
      { ...good[3]!, time: good[2]!.time }, // same second as the fix before
      { ...good[3]!, time: good[1]!.time }, // back in time
      { ...good[3]!, time: Number.POSITIVE_INFINITY },
      good[4]!,
    ];
    const r = expectMatched(t, await client.match(points));
    t.same(
      r.tracepoints.map((tp) => (tp === null ? null : tp.waypointIndex)),
      [0, null, 1, null, null, 2, null, null, null, 3],
    );
    t.equal((server.lastPath ?? '').split('?')[0]!.split(';').length, 4);
  });

  t.test('fewer than two usable fixes are refused here, without a request', async (t) => {
    const before = server.requests;
    const seen = outcomes.length;
    const refused = {
      kind: 'nomatch',
      code: 'InvalidOptions',
      message: 'Number of coordinates needs to be at least two.',
    };
    t.same(await client.match([]), refused);
    t.same(await client.match(CORNER.slice(0, 1)), refused);
    t.same(await client.match([CORNER[0]!, { ...CORNER[1]!, time: CORNER[0]!.time }]), refused);
    t.equal(server.requests, before);
    t.same(outcomes.slice(seen), [
      ['rejected', 0],
      ['rejected', 0],
      ['rejected', 0],
    ]);
  });
});

t.test('a maxPoints above the server limit gets TooBig', async (t) => {
  const { client, outcomes } = await setup(t, { maxPoints: 150 });
  const points = trace(Array.from({ length: 101 }, (_, i): [number, number] => [1, 5 * i]));
  t.same(await client.match(points), {
    kind: 'nomatch',
    code: 'TooBig',
    message: 'Too many trace coordinates',
  });
  t.equal(outcomes[0]![0], 'rejected');
});

t.test("OSRM's errors are nomatch with their code, and do not trip the breaker", async (t) => {
  const { server, client, outcomes } = await setup(t, { failureThreshold: 1 });

  t.same(
    await client.match(
      trace([
        [20_000, 0],
        [20_000, 10],
      ]),
    ),
    {
      kind: 'nomatch',
      code: 'NoSegment',
      message: 'Could not find a matching segment for any coordinate.',
    },
  );
  // 1 s apart, 300 m as the crow flies but 420 m along the grid: no plausible transition.
  t.same(
    await client.match(
      trace([
        [0, 60],
        [240, -120],
      ]),
    ),
    {
      kind: 'nomatch',
      code: 'NoMatch',
      message: 'Could not match the trace.',
    },
  );
  // The same jump with a minute to do it is fine.
  const slowJump = [...trace([[0, 60]]), ...trace([[240, -120]], T0 + 60)];
  expectMatched(t, await client.match(slowJump));

  for (const code of [...OSRM_MATCH_ERROR_CODES, 'NotImplemented']) {
    server.setMode({ kind: 'error', code, message: `says ${code}` });
    t.same(await client.match(CORNER), { kind: 'nomatch', code, message: `says ${code}` }, code);
  }
  t.equal(client.breakerState, 'closed');
  t.same(
    outcomes.map(([o]) => o),
    [
      'nomatch',
      'nomatch',
      'matched',
      'nomatch',
      'nomatch',
      ...Array.from({ length: OSRM_MATCH_ERROR_CODES.length - 1 }, () => 'rejected'),
    ],
  );
  t.ok(outcomes.every(([o]) => OSRM_OUTCOMES.includes(o)));
});

t.test('a slow OSRM is a timeout at the deadline', async (t) => {
  const timeoutMs = 500;
  const delayMs = 2000;
  const { server, client, outcomes } = await setup(t, { timeoutMs });
  server.setMode({ kind: 'slow', delayMs });
  const start = performance.now();
  const r = await client.match(CORNER);
  const elapsed = performance.now() - start;
  t.same(r, { kind: 'unavailable', reason: 'timeout' });
  // Not a speed bound: the call ends at its deadline, however late a loaded machine runs the timer,
  // and not when OSRM answers.
  t.ok(elapsed >= timeoutMs - 20, `not before the deadline: ${elapsed.toFixed(0)} ms`);
  t.ok(elapsed < delayMs, 'and before OSRM answered');
  t.equal(outcomes[0]![0], 'timeout');
  t.equal(server.requests, 1);

  server.setMode({ kind: 'normal' });
  expectMatched(t, await client.match(CORNER));
});

t.test("the caller's signal ends the call early and is not held against OSRM", async (t) => {
  const { server, client, outcomes } = await setup(t, { failureThreshold: 1, timeoutMs: 2000 });
  server.setMode({ kind: 'slow', delayMs: 1500 });
  const start = performance.now();
  const r = await client.match(CORNER, AbortSignal.timeout(100));
  const elapsed = performance.now() - start;
  t.same(r, { kind: 'unavailable', reason: 'timeout' });
  // Ended by the signal: before OSRM answered (1.5 s) and before the client's own timeout (2 s).
  t.ok(elapsed < 1500, `returned after ${elapsed.toFixed(0)} ms`);
  t.equal(client.breakerState, 'closed');

  const aborted = AbortSignal.abort();
  const before = server.requests;
  t.same(await client.match(CORNER, aborted), { kind: 'unavailable', reason: 'timeout' });
  t.equal(server.requests, before, 'an already aborted call sends nothing');
  t.same(
    outcomes.map(([o]) => o),
    ['aborted', 'aborted'],
  );
  t.equal(outcomes[1]![1], 0);
});

t.test('an OSRM that is down is a connection failure', async (t) => {
  const { server, client } = await setup(t);
  expectMatched(t, await client.match(CORNER)); // leaves a keep-alive socket open
  server.setMode({ kind: 'down' });
  t.same(await client.match(CORNER), { kind: 'unavailable', reason: 'connection' });
  t.same(await client.match(CORNER), { kind: 'unavailable', reason: 'connection' });
  t.equal(server.requests, 1);

  t.test('and so is nothing listening', async (t) => {
    const gone = await startOsrmServer();
    await gone.close();
    const client = new OsrmClient({ url: gone.url });
    t.teardown(() => client.close());
    t.same(await client.match(CORNER), { kind: 'unavailable', reason: 'connection' });
  });
});

t.test('answers that are not OSRM answers', async (t) => {
  const { server, client, outcomes } = await setup(t, { failureThreshold: 100 });
  const check = async (mode: Parameters<OsrmServer['setMode']>[0], reason: string, name: string) => {
    server.setMode(mode);
    t.same(await client.match(CORNER), { kind: 'unavailable', reason }, name);
  };
  await check({ kind: 'garbage' }, 'bad_response', 'JSON cut off');
  await check(
    { kind: 'garbage', body: '{"code":"Ok","matchings":[],"tracepoints":[]}' },
    'bad_response',
    'Ok without matchings',
  );
  // A well-formed answer, but for another trace: 2 tracepoints for the 10 fixes sent.
  const other = handleOsrmRequest(
    `/match/v1/driving/${CORNER.slice(0, 2)
      .map((p) => `${p.lon.toFixed(6)},${p.lat.toFixed(6)}`)
      .join(';')}?overview=full&geometries=polyline6`,
  );
  t.equal(other.status, 200);
  await check(
    { kind: 'garbage', body: JSON.stringify(other.body) },
    'bad_response',
    'tracepoints for another trace',
  );
  await check(
    { kind: 'garbage', body: JSON.stringify(other.body), headers: { 'content-encoding': 'gzip' } },
    'bad_response',
    'compressed although not asked to',
  );
  const huge = `"${'x'.repeat(1 << 20)}"`;
  await check({ kind: 'garbage', body: huge }, 'bad_response', 'larger than any answer');
  await check(
    { kind: 'garbage', body: huge, headers: { 'transfer-encoding': 'chunked' } },
    'bad_response',
    'larger than any answer, without a length',
  );
  await check(
    {
      kind: 'garbage',
      status: 502,
      body: '<html>Bad Gateway</html>',
      headers: { 'content-type': 'text/html' },
    },
    'http_status',
    "a proxy's 502",
  );
  await check({ kind: 'garbage', status: 400, body: 'Bad Request' }, 'http_status', 'a 400 that is not OSRM');
  await check({ kind: 'error', status: 503, code: 'Busy' }, 'http_status', 'a 503 even in OSRM form');
  t.same(
    outcomes.map(([o]) => o),
    [...Array.from({ length: 6 }, () => 'bad_response'), 'http_status', 'http_status', 'http_status'],
  );
  server.setMode({ kind: 'normal' });
  expectMatched(t, await client.match(CORNER));
});

t.test('the breaker opens after the threshold, then lets one trial through per cool-down', async (t) => {
  const clock = new Clock();
  const { server, client, outcomes } = await setup(t, {
    failureThreshold: 3,
    coolDownMs: 10_000,
    now: () => clock.now(),
  });
  server.setMode({ kind: 'garbage' });
  const unavailable = (reason: string) => ({ kind: 'unavailable', reason });

  t.same(await client.match(CORNER), unavailable('bad_response'));
  t.same(await client.match(CORNER), unavailable('bad_response'));
  t.equal(client.breakerState, 'closed');
  t.same(await client.match(CORNER), unavailable('bad_response'));
  t.equal(client.breakerState, 'open');
  t.equal(server.requests, 3);

  t.same(await client.match(CORNER), unavailable('breaker_open'));
  clock.advance(9_999);
  t.same(await client.match(CORNER), unavailable('breaker_open'));
  t.equal(server.requests, 3, 'nothing reaches OSRM while open');

  clock.advance(1);
  t.same(await client.match(CORNER), unavailable('bad_response'), 'the trial fails');
  t.equal(server.requests, 4);
  t.equal(client.breakerState, 'open');
  t.same(await client.match(CORNER), unavailable('breaker_open'), 'and the cool-down starts again');
  clock.advance(9_999);
  t.same(await client.match(CORNER), unavailable('breaker_open'));
  t.equal(server.requests, 4);

  clock.advance(1);
  server.setMode({ kind: 'normal' });
  expectMatched(t, await client.match(CORNER));
  t.equal(client.breakerState, 'closed', 'a successful trial closes it');
  expectMatched(t, await client.match(CORNER));
  t.equal(server.requests, 6);

  // The fake clock stands still during requests, so every duration is exactly 0.
  t.same(outcomes, [
    ['bad_response', 0],
    ['bad_response', 0],
    ['bad_response', 0],
    ['breaker_open', 0],
    ['breaker_open', 0],
    ['bad_response', 0],
    ['breaker_open', 0],
    ['breaker_open', 0],
    ['matched', 0],
    ['matched', 0],
  ]);

  t.test('a success resets the count of consecutive failures', async (t) => {
    server.setMode({ kind: 'garbage' });
    await client.match(CORNER);
    await client.match(CORNER);
    server.setMode({ kind: 'normal' });
    expectMatched(t, await client.match(CORNER));
    server.setMode({ kind: 'garbage' });
    await client.match(CORNER);
    await client.match(CORNER);
    t.equal(client.breakerState, 'closed');
    await client.match(CORNER);
    t.equal(client.breakerState, 'open');
  });
});

t.test('half-open: one trial at a time, and a trial the caller abandons is given back', async (t) => {
  const clock = new Clock();
  const { server, client } = await setup(t, {
    failureThreshold: 1,
    coolDownMs: 1000,
    now: () => clock.now(),
  });
  server.setMode({ kind: 'down' });
  t.same(await client.match(CORNER), { kind: 'unavailable', reason: 'connection' });
  t.equal(client.breakerState, 'open');

  clock.advance(1000);
  server.setMode({ kind: 'slow', delayMs: 300 });
  const abandoned = client.match(CORNER, AbortSignal.timeout(50));
  t.equal(client.breakerState, 'half_open');
  t.same(
    await client.match(CORNER),
    { kind: 'unavailable', reason: 'breaker_open' },
    'a second caller waits',
  );
  t.same(await abandoned, { kind: 'unavailable', reason: 'timeout' });
  t.equal(client.breakerState, 'open', 'no verdict either way');

  const trial = client.match(CORNER);
  t.equal(client.breakerState, 'half_open', 'the next call takes the trial at once');
  expectMatched(t, await trial);
  t.equal(client.breakerState, 'closed');
});

t.test('options are checked once, naming the bad one', async (t) => {
  const url = 'http://127.0.0.1:5000';
  t.throws(() => new OsrmClient({ url: 'not a url' }), { name: 'TypeError', message: /url/ });
  t.throws(() => new OsrmClient({ url: 'ftp://127.0.0.1' }), { name: 'TypeError', message: /http/ });
  t.throws(() => new OsrmClient({ url: `${url}?x=1` }), { name: 'TypeError', message: /query/ });
  t.throws(() => new OsrmClient({ url, profile: 'dri ving' }), { name: 'TypeError', message: /profile/ });
  t.throws(() => new OsrmClient({ url, connections: 0 }), { name: 'RangeError', message: /connections/ });
  t.throws(() => new OsrmClient({ url, timeoutMs: 0 }), { name: 'RangeError', message: /timeoutMs/ });
  t.throws(() => new OsrmClient({ url, timeoutMs: 2 ** 31 }), { name: 'RangeError', message: /timeoutMs/ });
  t.throws(() => new OsrmClient({ url, radiusM: Number.NaN }), { name: 'RangeError', message: /radiusM/ });
  t.throws(() => new OsrmClient({ url, maxPoints: 1 }), { name: 'RangeError', message: /maxPoints/ });
  t.throws(() => new OsrmClient({ url, failureThreshold: 1.5 }), {
    name: 'RangeError',
    message: /failureThreshold/,
  });
  t.throws(() => new OsrmClient({ url, coolDownMs: -1 }), { name: 'RangeError', message: /coolDownMs/ });
  const ok = new OsrmClient({ url });
  t.equal(ok.breakerState, 'closed');
  await ok.close();
});

t.test('after close(), calls fail as connection errors instead of throwing', async (t) => {
  const server = await startOsrmServer();
  t.teardown(() => server.close());
  const client = new OsrmClient({ url: server.url });
  expectMatched(t, await client.match(CORNER));
  await client.close();
  t.same(await client.match(CORNER), { kind: 'unavailable', reason: 'connection' });
});
