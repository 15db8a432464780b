import t from 'tap';
import { CLIENT, type Daemon, startDaemon } from './support/daemon.ts';

/** Every endpoint's bad input: the right status, a JSON error that names what is wrong, and no harm done. */

type Row = [
  method: string,
  path: string,
  token: string | null | undefined,
  status: number,
  code: string,
  parameter?: string,
  body?: unknown,
];

const rows: Row[] = [
  // Authentication and authorisation.
  ['GET', '/v1/drivers/nearest?lat=1&lon=1', null, 401, 'unauthorized'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1', 'wrong-token-wrong-token', 401, 'unauthorized'],
  ['GET', '/v1/drivers?bbox=0,0,1,1', CLIENT, 403, 'forbidden'],
  ['GET', '/v1/drivers/abc', CLIENT, 403, 'forbidden'],
  ['GET', '/v1/cabs/abc', CLIENT, 403, 'forbidden'],
  ['GET', '/v1/trips/1', CLIENT, 403, 'forbidden'],
  ['PUT', '/v1/sessions/0000000000000001', CLIENT, 403, 'forbidden', undefined, { driverId: 'a', cab: 'b' }],
  ['DELETE', '/v1/drivers/abc', CLIENT, 403, 'forbidden'],
  ['DELETE', '/v1/cabs/abc', null, 401, 'unauthorized'],
  // nearest
  ['GET', '/v1/drivers/nearest?lon=1', undefined, 400, 'invalid_parameter', 'lat'],
  ['GET', '/v1/drivers/nearest?lat=abc&lon=1', undefined, 400, 'invalid_parameter', 'lat'],
  ['GET', '/v1/drivers/nearest?lat=91&lon=1', undefined, 400, 'invalid_parameter', 'lat'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=180.5', undefined, 400, 'invalid_parameter', 'lon'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=NaN', undefined, 400, 'invalid_parameter', 'lon'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=Infinity', undefined, 400, 'invalid_parameter', 'lon'],
  ['GET', '/v1/drivers/nearest?lat=1&lat=2&lon=1', undefined, 400, 'invalid_parameter', 'lat'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&k=0', undefined, 400, 'invalid_parameter', 'k'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&k=101', undefined, 400, 'invalid_parameter', 'k'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&k=2.5', undefined, 400, 'invalid_parameter', 'k'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&k=1e9', undefined, 400, 'invalid_parameter', 'k'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&radius=0', undefined, 400, 'invalid_parameter', 'radius'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&radius=50001', undefined, 400, 'invalid_parameter', 'radius'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&radius=-5', undefined, 400, 'invalid_parameter', 'radius'],
  ['GET', '/v1/drivers/nearest?lat=1&lon=1&free=maybe', undefined, 400, 'invalid_parameter', 'free'],
  // bbox
  ['GET', '/v1/drivers', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=1,2,3', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=a,b,c,d', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=0,10,1,5', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=-200,0,1,1', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=0,-95,1,1', undefined, 400, 'invalid_parameter', 'bbox'],
  ['GET', '/v1/drivers?bbox=0,0,1,1&limit=0', undefined, 400, 'invalid_parameter', 'limit'],
  ['GET', '/v1/drivers?bbox=0,0,1,1&limit=1001', undefined, 400, 'invalid_parameter', 'limit'],
  ['GET', '/v1/drivers?bbox=0,0,1,1&cursor=!!!', undefined, 400, 'invalid_parameter', 'cursor'],
  // ids, cabs, trips, sessions
  ['GET', '/v1/drivers/nobody', undefined, 404, 'not_found'],
  ['GET', `/v1/drivers/${'x'.repeat(65)}`, undefined, 400, 'invalid_parameter', 'id'],
  ['GET', '/v1/drivers/%E0%A4%A', undefined, 400, 'invalid_parameter', 'id'],
  ['GET', '/v1/drivers/a%20b', undefined, 400, 'invalid_parameter', 'id'],
  ['GET', '/v1/cabs/none', undefined, 404, 'not_found'],
  ['GET', '/v1/trips/abc', undefined, 400, 'invalid_parameter', 'orderId'],
  ['GET', '/v1/trips/0', undefined, 400, 'invalid_parameter', 'orderId'],
  ['GET', '/v1/trips/18446744073709551616', undefined, 400, 'invalid_parameter', 'orderId'],
  ['GET', '/v1/trips/12345', undefined, 404, 'not_found'],
  ['PUT', '/v1/sessions/XYZ', undefined, 400, 'invalid_parameter', 'session', { driverId: 'a', cab: 'b' }],
  [
    'PUT',
    '/v1/sessions/00000000000000AB',
    undefined,
    400,
    'invalid_parameter',
    'session',
    { driverId: 'a', cab: 'b' },
  ],
  [
    'PUT',
    '/v1/sessions/0000000000000000',
    undefined,
    400,
    'invalid_parameter',
    'session',
    { driverId: 'a', cab: 'b' },
  ],
  ['PUT', '/v1/sessions/0000000000000001', undefined, 400, 'invalid_json', undefined, '{"driverId":'],
  ['PUT', '/v1/sessions/0000000000000001', undefined, 400, 'invalid_json', undefined, '[1,2]'],
  ['PUT', '/v1/sessions/0000000000000001', undefined, 400, 'invalid_parameter', 'driverId', { cab: 'b' }],
  [
    'PUT',
    '/v1/sessions/0000000000000001',
    undefined,
    400,
    'invalid_parameter',
    'driverId',
    { driverId: 7, cab: 'b' },
  ],
  [
    'PUT',
    '/v1/sessions/0000000000000001',
    undefined,
    400,
    'invalid_parameter',
    'cab',
    { driverId: 'a', cab: '' },
  ],
  [
    'PUT',
    '/v1/sessions/0000000000000001',
    undefined,
    400,
    'invalid_parameter',
    'cab',
    { driverId: 'a', cab: 'a/b' },
  ],
  [
    'PUT',
    '/v1/sessions/0000000000000001',
    undefined,
    413,
    'payload_too_large',
    undefined,
    { driverId: 'a', cab: 'b', pad: 'x'.repeat(5000) },
  ],
  ['DELETE', '/v1/sessions/00000000000000ff', undefined, 404, 'not_found'],
  // Routes and methods.
  ['GET', '/v2/drivers', undefined, 404, 'not_found'],
  ['POST', '/v1/drivers/nearest', undefined, 405, 'method_not_allowed'],
  ['PATCH', '/v1/sessions/0000000000000001', undefined, 405, 'method_not_allowed'],
  ['POST', '/metrics', undefined, 405, 'method_not_allowed'],
];

let daemon: Daemon;
t.before(async () => {
  daemon = await startDaemon();
});
t.teardown(() => daemon.stop());

t.test('each bad request gets its status and a JSON error naming the problem', async (t) => {
  for (const [method, path, token, status, code, parameter, body] of rows) {
    const res = await daemon.request(method, path, { token, body });
    const label = `${method} ${path.slice(0, 60)}${body === undefined ? '' : ` ${JSON.stringify(body).slice(0, 30)}`}`;
    t.equal(res.status, status, `${label}: status`);
    t.equal(res.headers.get('content-type'), 'application/json', `${label}: JSON`);
    t.equal(res.body?.error?.code, code, `${label}: code`);
    t.equal(res.body?.error?.parameter, parameter, `${label}: parameter`);
    t.type(res.body?.error?.message, 'string');
    if (parameter !== undefined)
      t.match(res.body.error.message, parameter, `${label}: message names ${parameter}`);
  }
});

t.test('a body that is not JSON by content type gets 415', async (t) => {
  const res = await daemon.request('PUT', '/v1/sessions/0000000000000001', {
    body: 'driverId=a',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(res.status, 415);
  t.equal(res.body.error.code, 'unsupported_media_type');
});

t.test('405 says which methods are allowed', async (t) => {
  const res = await daemon.request('POST', '/v1/drivers/nearest');
  t.equal(res.headers.get('allow'), 'GET');
});

t.test('the daemon is unaffected: healthy, and a valid request still works', async (t) => {
  t.equal((await daemon.get('/healthz', null)).status, 200);
  t.equal((await daemon.get('/readyz', null)).status, 200);
  const ok = await daemon.get('/v1/drivers/nearest?lat=1&lon=1&k=100&radius=50000', CLIENT);
  t.equal(ok.status, 200);
  t.same(ok.body, { drivers: [] });
  t.equal(await daemon.metric('cabtrack_worker_restarts_total'), 0);
});

t.test('/metrics reports the live heap of every process, summed', async (t) => {
  const live = await daemon.metric('cabtrack_nodejs_heap_live_bytes');
  const used = await daemon.metric('cabtrack_nodejs_heap_size_used_bytes');
  // Three processes (the primary and two workers), each with at least a few megabytes live.
  t.ok(live > 3 * 2 * 1048576, `live heap ${live} B`);
  t.ok(live < 4 * used, 'of the order of the heap in use');
});
