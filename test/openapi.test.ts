import { Validator } from '@seriousme/openapi-schema-validator';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { openApiDocument } from '../src/http/openapi.ts';
import { CLIENT, type Daemon, Phone, startDaemon } from './support/daemon.ts';
import { daemonResponses, OpenApiMismatch, ResponseValidator } from './support/openapi.ts';

/**
 * GET /openapi.json: a valid OpenAPI 3.1 document, served as the module defines it, whose every
 * response schema compiles under strict JSON Schema 2020-12, that lists exactly the methods each path
 * takes, and whose response check (run on every answer of every daemon test) catches a wrong answer.
 */

const doc = openApiDocument as Record<string, any>;

let daemon: Daemon;
t.before(async () => {
  daemon = await startDaemon();
});
t.teardown(() => daemon.stop());

t.test('the document is valid OpenAPI 3.1', async (t) => {
  const v = new Validator();
  const r = await v.validate(structuredClone(doc));
  t.same(r.errors ?? [], [], 'no schema errors');
  t.equal(r.valid, true);
  t.equal(v.version, '3.1');
});

t.test('served publicly at /openapi.json, as the module defines it', async (t) => {
  const res = await daemon.get('/openapi.json', null);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'application/json');
  t.same(res.body, doc);
});

t.test('every response schema compiles in strict mode', async (t) => {
  // Compiling through the checker: an unknown keyword or a broken reference throws here.
  const v = new ResponseValidator(doc);
  let n = 0;
  for (const [template, item] of Object.entries(doc['paths'] as Record<string, any>)) {
    for (const [method, op] of Object.entries(item as Record<string, any>)) {
      if (method === 'parameters') continue;
      for (const status of Object.keys(op.responses)) {
        t.doesNotThrow(() => v.schemaFor(template, method, status), `${method} ${template} ${status}`);
        n++;
      }
    }
  }
  t.ok(n > 40, `${n} responses`);
});

t.test('each path takes exactly the methods the document lists', async (t) => {
  // Sample values for the templated segments; every method is tried on every path, and the check in
  // daemon.request() holds each answer to the document (a 405 must name exactly the listed methods).
  const sample: Record<string, string> = {
    '/v1/drivers/{id}': '/v1/drivers/nobody',
    '/v1/cabs/{cab}': '/v1/cabs/none',
    '/v1/trips/{orderId}': '/v1/trips/404',
    '/v1/sessions/{session}': '/v1/sessions/00000000000000ff',
    '/assets/{file}': '/assets/style.css',
    '/assets/leaflet/{file}': '/assets/leaflet/leaflet.css',
    '/assets/leaflet/images/{file}': '/assets/leaflet/images/layers.png',
  };
  for (const template of Object.keys(doc['paths'])) {
    const path = sample[template] ?? template;
    for (const method of ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await daemon.request(method, path, { body: method === 'PUT' ? {} : undefined });
      t.not(res.status, 500, `${method} ${path}: ${res.status}`);
    }
  }
  t.equal(daemonResponses.pathTemplate('/v1/drivers/nearest'), '/v1/drivers/nearest', 'concrete first');
  t.equal(daemonResponses.pathTemplate('/v1/drivers/x'), '/v1/drivers/{id}');
  t.equal(daemonResponses.pathTemplate('/v1/drivers/x/y'), null);
});

t.test('real answers of every documented shape validate', async (t) => {
  // A driver with a trip, seen through each route (more in the daemon-* tests, all checked the same way).
  const put = await daemon.request('PUT', '/v1/sessions/00000000000c0001', {
    body: { driverId: 'api-1', cab: 'API-1' },
  });
  t.equal(put.status, 201);
  t.equal(
    (
      await daemon.request('PUT', '/v1/sessions/00000000000c0001', {
        body: { driverId: 'api-1', cab: 'API-1' },
      })
    ).status,
    200,
  );
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  const t0 = Math.floor(Date.now() / 1000) - 5;
  const fix = (time: number, lon: number) =>
    encodeTrack({ session: 0xc0001n, lat: 41_390_000, lon, time, orderId: 123n, cost: 700, speed: 30 });
  await phone.send(fix(t0, 2_170_000));
  await phone.send(fix(t0 + 1, 2_170_300));
  await daemon.waitFor(async () => (await daemon.get('/v1/drivers/api-1')).status === 200, 'driver');
  await daemon.caughtUp();
  const answers = [
    await daemon.get('/v1/drivers/nearest?lat=41.39&lon=2.17&path=1', CLIENT),
    await daemon.get('/v1/drivers/nearest?lat=41.39&lon=2.17&free=1', CLIENT),
    await daemon.get('/v1/drivers?bbox=2,41,3,42&limit=1'),
    await daemon.get('/v1/drivers/api-1'),
    await daemon.get('/v1/cabs/API-1'),
    await daemon.get('/v1/trips/123'),
    await daemon.get('/metrics', null),
    await daemon.get('/healthz', null),
    await daemon.get('/readyz', null),
    await daemon.request('HEAD', '/readyz', { token: null }),
  ];
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
  );
  t.equal(answers[0]!.body.drivers[0].matched, false, 'a straight path without OSRM');
  t.equal(answers[3]!.body.trip.orderId, '123', 'the trip in the detail');
  t.equal((await daemon.request('DELETE', '/v1/cabs/API-1')).status, 204);
  t.equal((await daemon.get('/v1/trips/123')).body.endReason, 'deleted', 'a finished trip');
});

/** A plausible answer, as the daemon would send it. */
function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return { status, headers: new Headers({ 'content-type': 'application/json', ...headers }), text };
}

const driver = { id: 'a', cab: 'A', lat: 1, lon: 2, time: 3, speed: 4, bearing: 5, free: true };

t.test('the check bites: wrong answers are refused, naming the route and the schema path', async (t) => {
  const v = daemonResponses;
  const ok = (method: string, path: string, a: ReturnType<typeof answer>, label: string) =>
    t.doesNotThrow(() => v.check(method, path, a), label);
  const bad = (method: string, path: string, a: ReturnType<typeof answer>, re: RegExp, label: string) => {
    try {
      v.check(method, path, a);
      t.fail(`${label}: accepted`);
    } catch (err) {
      t.type(err, OpenApiMismatch, `${label}: refused`);
      t.match((err as Error).message, re, `${label}: says why`);
    }
  };

  ok(
    'GET',
    '/v1/drivers/nearest?lat=1&lon=2',
    answer(200, { drivers: [{ ...driver, distance: 1 }] }),
    'good',
  );
  bad(
    'GET',
    '/v1/drivers/nearest?lat=1&lon=2',
    answer(200, { drivers: [{ ...driver, distance: 1, speed: 'fast' }] }),
    /GET \/v1\/drivers\/nearest answered 200.*\/drivers\/0\/speed must be integer.*#\/components\/schemas\/Driver\/properties\/speed\/type/s,
    'a field of the wrong type',
  );
  bad(
    'GET',
    '/v1/drivers/nearest',
    answer(200, { drivers: [{ ...driver, distance: 1, colour: 'red' }] }),
    /unevaluated properties/,
    'a field the document does not have',
  );
  bad(
    'GET',
    '/v1/drivers/nearest',
    answer(200, { drivers: [{ ...driver, distance: 1, path: [[2, 1, 3]] }] }),
    /matched/,
    'path without matched',
  );
  bad(
    'GET',
    '/v1/drivers?bbox=0,0,1,1',
    answer(200, { drivers: [driver] }),
    /must have required property 'next'/,
    'a page without next',
  );
  bad(
    'GET',
    '/v1/drivers/a',
    answer(418, { error: { code: 'teapot', message: 'x' } }),
    /status 418 is not in/,
    'status',
  );
  bad(
    'GET',
    '/v1/drivers/a',
    answer(404, { error: { code: 'forbidden', message: 'x' } }),
    /must be equal to one of the allowed values/,
    'an error code the status does not have',
  );
  bad(
    'GET',
    '/v1/drivers/a',
    answer(200, 'hello', { 'content-type': 'text/plain' }),
    /content type text\/plain is not in/,
    'a content type',
  );
  bad('DELETE', '/v1/drivers/a', answer(204, 'x'), /has no content, but a body came/, 'a body on a 204');
  bad(
    'POST',
    '/v1/drivers/a',
    answer(405, { error: { code: 'method_not_allowed', message: 'x' } }, { allow: 'GET' }),
    /Allow: GET is not the methods the document lists/,
    'an Allow header that forgets a method',
  );
  bad(
    'GET',
    '/v2/nothing',
    answer(200, {}),
    /not in the document, so the answer must be its 404/,
    'no route',
  );
  ok('GET', '/v2/nothing', answer(404, { error: { code: 'not_found', message: 'no route' } }), 'its 404');
});
