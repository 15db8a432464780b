/**
 * The recorded answers of a real osrm-routed v26.4.1 (test/fixtures/osrm, Monaco extract) checked against
 * our three OSRM pieces:
 * - the polyline codec: OSRM's polyline6 geometry decodes to its geojson geometry of the same trace, and
 *   encoding that geojson gives back OSRM's string byte for byte;
 * - the client's pure parser, `parseMatchResponse`, on every recorded body, with exact expectations;
 * - the stand-in server (test/support/osrm-server.ts), replaying every recorded /match request and error.
 *
 * What the stand-in can reproduce: everything structural. Status, code, error messages (with osrm-routed's
 * parser positions), top-level keys, matching and leg counts, matching and tracepoint keys, which
 * tracepoints are null, and each tracepoint's matchings_index and waypoint_index: its default grid is laid
 * over Monaco so that every recorded fix that OSRM matched has a street within its search radius and the
 * harbour outlier has none (see MONACO_GRID). What it cannot: geometry, distances, names, confidence and
 * alternatives_count, which come from OpenStreetMap's Monaco, not from a grid; those are not compared.
 */
import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { request } from 'undici';
import { type GeometryFormat, type MatchResult, parseMatchResponse } from '../src/osrm/client.ts';
import { decodePolyline, encodePolyline } from '../src/osrm/polyline.ts';
import { handleOsrmRequest, startOsrmServer } from './support/osrm-server.ts';
import { Prng } from './support/prng.ts';

interface Fixture {
  request: { method: string; path: string };
  status: number;
  headers: { 'content-type': string };
  body: any;
}

const dir = new URL('./fixtures/osrm/', import.meta.url);
const names = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
const fixtures = new Map<string, Fixture>(
  names.map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Fixture]),
);

function fixture(name: string): Fixture {
  const f = fixtures.get(name);
  if (f === undefined) throw new Error(`no fixture ${name}`);
  return f;
}

/** What the recorded request asked for, in the parser's terms. */
function formatOf(path: string): GeometryFormat {
  const query = new URLSearchParams(path.split('?')[1] ?? '');
  if (query.get('overview') === 'false') return false;
  const g = query.get('geometries');
  return g === 'geojson' || g === 'polyline6' ? g : 'polyline';
}

function parsed(name: string): MatchResult {
  const f = fixture(name);
  return parseMatchResponse(f.status, f.body, formatOf(f.request.path));
}

function matched(name: string): Extract<MatchResult, { kind: 'matched' }> {
  const r = parsed(name);
  if (r.kind !== 'matched') throw new Error(`${name} did not parse as matched: ${JSON.stringify(r)}`);
  return r;
}

/** `matchings_index/waypoint_index` per tracepoint, `-` for null. */
function structure(r: Extract<MatchResult, { kind: 'matched' }>): string {
  return r.tracepoints
    .map((tp) => (tp === null ? '-' : `${tp.matchingsIndex}/${tp.waypointIndex}`))
    .join(' ');
}

const isMatchFixture = (f: Fixture) => f.request.path.startsWith('/match/') || f.status === 400;

t.test('the fixtures are all here, with their source and licence', async (t) => {
  t.equal(names.length, 32);
  const readme = readFileSync(new URL('README.md', dir), 'utf8');
  t.match(readme, 'osrm-routed');
  t.match(readme, 'v26.4.1 (commit 8a1258c5b1c3)');
  t.match(readme, 'Map data © OpenStreetMap contributors, available under the Open Database License (ODbL).');
  for (const name of names) t.match(readme, `(${name})`, `README lists ${name}`);
});

t.test('polyline codec', async (t) => {
  t.test('polyline6 of a trace decodes to the geojson of the same trace', async (t) => {
    const geojson = fixture('match-10pts-geojson').body.matchings[0].geometry.coordinates as Array<
      [number, number]
    >;
    const encoded = fixture('match-10pts-polyline6').body.matchings[0].geometry as string;
    const decoded = decodePolyline(encoded, 6);
    t.equal(decoded.length, 14);
    t.equal(decoded.length, geojson.length);
    for (let i = 0; i < decoded.length; i++) {
      t.ok(
        Math.abs(decoded[i]![0] - geojson[i]![0]) < 1e-6 && Math.abs(decoded[i]![1] - geojson[i]![1]) < 1e-6,
      );
    }
    // int / 1e6 is the same double JSON.parse makes of the decimal text, so it is in fact exact.
    t.same(decoded, geojson);
    t.equal(encodePolyline(geojson, 6), encoded);
  });

  t.test('polyline (precision 5) of the simplified overview lies on the full geometry', async (t) => {
    const full = fixture('match-10pts-geojson').body.matchings[0].geometry.coordinates as Array<
      [number, number]
    >;
    const simplified = decodePolyline(fixture('match-10pts-default-options').body.matchings[0].geometry, 5);
    t.same(simplified[0], [7.42135, 43.73457]);
    t.same(simplified[simplified.length - 1], [7.42122, 43.73552]);
    for (const [lon, lat] of simplified) {
      // Within half a unit of precision 5 (and float noise) of some full-precision vertex.
      const near = (x: number, y: number) =>
        Math.abs(x - lon) <= 5e-6 + 1e-12 && Math.abs(y - lat) <= 5e-6 + 1e-12;
      t.ok(full.some(([x, y]) => near(x, y)));
    }
  });

  t.test("Google's reference example", async (t) => {
    const points: Array<[number, number]> = [
      [-120.2, 38.5],
      [-120.95, 40.7],
      [-126.453, 43.252],
    ];
    t.equal(encodePolyline(points, 5), '_p~iF~ps|U_ulLnnqC_mqNvxq`@');
    t.same(decodePolyline('_p~iF~ps|U_ulLnnqC_mqNvxq`@', 5), points);
    t.same(decodePolyline('', 6), []);
    t.equal(encodePolyline([], 6), '');
  });

  t.test('random coordinates survive a round trip at both precisions', async (t) => {
    const rng = new Prng(0x05a1);
    for (const precision of [5, 6] as const) {
      const factor = precision === 5 ? 1e5 : 1e6;
      for (let run = 0; run < 200; run++) {
        const coords: Array<[number, number]> = [];
        const n = rng.int(0, 20);
        for (let i = 0; i < n; i++) coords.push([rng.float() * 360 - 180, rng.float() * 180 - 90]);
        const want = coords.map(([lon, lat]) => [
          Math.round(lon * factor) / factor,
          Math.round(lat * factor) / factor,
        ]);
        const got = decodePolyline(encodePolyline(coords, precision), precision);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          t.fail(`round trip ${precision}/${run}`, { coords, got, want });
          return;
        }
      }
      // The extremes: the longest differences the format has to carry.
      const extremes: Array<[number, number]> = [
        [-180, -90],
        [180, 90],
        [-180, 90],
        [180, -90],
      ];
      t.same(decodePolyline(encodePolyline(extremes, precision), precision), extremes);
    }
  });

  t.test('malformed strings throw a RangeError and nothing else', async (t) => {
    t.throws(() => decodePolyline('_p~iF', 5), RangeError, 'latitude without longitude');
    t.throws(() => decodePolyline('_p~iF~ps|', 5), RangeError, 'value cut off');
    t.throws(() => decodePolyline('_p~i F~ps|U', 5), RangeError, 'character below ?');
    t.throws(() => decodePolyline('\u00ff?', 6), RangeError, 'character above ~');
    t.throws(() => decodePolyline('~~~~~~~~?', 6), RangeError, 'overlong value');
    t.throws(() => encodePolyline([[Number.NaN, 0]], 6), RangeError);
    // @ts-expect-error: a precision OSRM does not have
    t.throws(() => decodePolyline('??', 7), RangeError);

    const rng = new Prng(0xbad);
    let returned = 0;
    let thrown = 0;
    for (let run = 0; run < 5000; run++) {
      const len = rng.int(0, 24);
      let s = '';
      // Mostly the format's own alphabet, so that some strings decode and the rest fail deep inside.
      for (let i = 0; i < len; i++)
        s += String.fromCharCode(rng.chance(0.95) ? rng.int(63, 126) : rng.int(0, 0x2ff));
      try {
        const out = decodePolyline(s, rng.chance(0.5) ? 5 : 6);
        if (!out.every((c) => c.length === 2 && Number.isFinite(c[0]) && Number.isFinite(c[1]))) {
          t.fail('decoded a non-finite coordinate', { s });
          return;
        }
        returned++;
      } catch (err) {
        if (!(err instanceof RangeError)) {
          t.fail('threw something other than a RangeError', { s, err });
          return;
        }
        thrown++;
      }
    }
    t.ok(
      returned > 100 && thrown > 100,
      `both outcomes are exercised (${returned} decoded, ${thrown} refused)`,
    );
  });
});

t.test('parseMatchResponse on the recorded bodies', async (t) => {
  t.test('the smallest trace, exactly', async (t) => {
    t.same(parsed('match-2pts-geojson'), {
      kind: 'matched',
      matchings: [
        {
          confidence: 0.07209738481,
          coordinates: [
            [7.421352, 43.734569],
            [7.421331, 43.734665],
          ],
        },
      ],
      tracepoints: [
        { matchingsIndex: 0, waypointIndex: 0, location: [7.421352, 43.734569] },
        { matchingsIndex: 0, waypointIndex: 1, location: [7.421331, 43.734665] },
      ],
    });
  });

  t.test('a gap with gaps=split gives two matchings', async (t) => {
    const r = matched('match-gap-split');
    t.equal(r.matchings.length, 2);
    t.same(
      r.matchings.map((m) => m.confidence),
      [0.4320753362, 0.8429608376],
    );
    t.same(
      r.matchings.map((m) => m.coordinates.length),
      [6, 8],
    );
    t.equal(structure(r), '0/0 0/1 0/2 0/3 0/4 1/0 1/1 1/2 1/3 1/4');
    t.same(r.tracepoints[5], { matchingsIndex: 1, waypointIndex: 0, location: [7.421261, 43.735108] });
    t.same(r.matchings[1]!.coordinates[0], [7.421261, 43.735108]);
  });

  t.test('the same trace with gaps=ignore is one matching', async (t) => {
    const r = matched('match-gap-ignore');
    t.equal(r.matchings.length, 1);
    t.equal(structure(r), '0/0 0/1 0/2 0/3 0/4 0/5 0/6 0/7 0/8 0/9');
  });

  t.test('the harbour outlier and its neighbour are null', async (t) => {
    const r = matched('match-outlier-200m');
    t.equal(r.matchings.length, 1);
    t.equal(r.matchings[0]!.confidence, 0.8594926653);
    t.equal(r.tracepoints[4], null);
    t.equal(r.tracepoints[5], null);
    t.equal(structure(r), '0/0 0/1 0/2 0/3 - - 0/4 0/5 0/6 0/7');
  });

  t.test('tidy=true nulls the fixes it drops', async (t) => {
    t.equal(structure(matched('match-10pts-tidy')), '0/0 - - - - 0/1 - - - 0/2');
    t.equal(structure(matched('match-standstill-tidy')), '0/0 - - - 0/1');
  });

  t.test('polyline6 and geojson answers for one trace parse to the same result', async (t) => {
    const fromPolyline = matched('match-10pts-polyline6');
    const fromGeojson = matched('match-10pts-geojson');
    t.equal(fromPolyline.matchings[0]!.coordinates.length, 14);
    t.same(fromPolyline, fromGeojson);
  });

  t.test('the corner trace turns onto Boulevard Albert 1er', async (t) => {
    const r = matched('match-corner-geojson');
    t.equal(r.matchings[0]!.coordinates.length, 14);
    // The vertex at the corner, where the path turns left.
    t.same(r.matchings[0]!.coordinates[9], [7.421385, 43.734428]);
    t.same(r.tracepoints[5], { matchingsIndex: 0, waypointIndex: 5, location: [7.421377, 43.734462] });
    // steps and annotations in the legs do not disturb the parse.
    t.same(matched('match-corner-steps-annotations').tracepoints, r.tracepoints);
  });

  t.test('overview=false gives matchings without coordinates', async (t) => {
    const r = matched('match-100pts-at-limit');
    t.same(r.matchings, [{ confidence: 0.9787859036, coordinates: [] }]);
    t.equal(r.tracepoints.length, 100);
    t.ok(r.tracepoints.every((tp, i) => tp !== null && tp.matchingsIndex === 0 && tp.waypointIndex === i));
    t.same(matched('match-across-harbour-60s').matchings, [{ confidence: 0, coordinates: [] }]);
  });

  t.test('every recorded error is a nomatch with its code and message', async (t) => {
    const errors: Array<[string, string, string]> = [
      ['error-malformed-url', 'InvalidUrl', 'URL string malformed close to position 17: "ing"'],
      ['error-unknown-service', 'InvalidService', 'Service matc not found!'],
      ['error-unknown-version', 'InvalidVersion', 'Service match not found!'],
      ['match-error-invalid-latitude', 'InvalidValue', 'Invalid coordinate value.'],
      ['match-error-malformed-coordinates', 'InvalidQuery', 'Query string malformed close to position 45'],
      ['match-error-outside-map', 'NoSegment', 'Could not find a matching segment for any coordinate.'],
      ['match-error-single-coordinate', 'InvalidOptions', 'Number of coordinates needs to be at least two.'],
      [
        'match-error-timestamps-count',
        'InvalidOptions',
        'Number of elements in timestamps size 2 does not match coordinate size 3',
      ],
      [
        'match-error-timestamps-decreasing',
        'InvalidValue',
        'Timestamps need to be monotonically increasing.',
      ],
      ['match-error-too-many-points', 'TooBig', 'Too many trace coordinates'],
      ['match-error-unknown-option', 'InvalidQuery', 'Query string malformed close to position 103'],
      ['match-nomatch-impossible-jump', 'NoMatch', 'Could not match the trace.'],
    ];
    t.equal(errors.length, names.filter((n) => fixture(n.replace(/\.json$/, '')).status === 400).length);
    for (const [name, code, message] of errors)
      t.same(parsed(name), { kind: 'nomatch', code, message }, name);
  });

  t.test('every recorded /match success parses as matched, one tracepoint per coordinate', async (t) => {
    for (const [name, f] of fixtures) {
      if (!f.request.path.startsWith('/match/') || f.status !== 200) continue;
      const r = matched(name);
      const coordinates = f.request.path.split('?')[0]!.split('/')[4]!.split(';').length;
      t.equal(r.tracepoints.length, coordinates, name);
      t.equal(r.matchings.length, f.body.matchings.length, name);
    }
  });

  t.test('with overview=full, every tracepoint is a vertex of its matching', async (t) => {
    // What lets the daemon cut a matching into the stretches between consecutive fixes. Not with
    // steps=true: there OSRM trims the start of the overview to the first maneuver (the first fix of
    // match-corner-steps-annotations is not in its geometry), but the client never asks for steps.
    let checked = 0;
    for (const [name, f] of fixtures) {
      if (!f.request.path.startsWith('/match/') || f.status !== 200) continue;
      if (!f.request.path.includes('overview=full') || f.request.path.includes('steps=true')) continue;
      const r = matched(name);
      for (const tp of r.tracepoints) {
        if (tp === null) continue;
        const path = r.matchings[tp.matchingsIndex]!.coordinates;
        t.ok(
          path.some(([lon, lat]) => lon === tp.location[0] && lat === tp.location[1]),
          name,
        );
        checked++;
      }
    }
    t.equal(checked, 81);
  });

  t.test('other services are not match answers', async (t) => {
    for (const name of ['route-geojson', 'nearest', 'nearest-number-3']) {
      t.same(parsed(name), { kind: 'unavailable', reason: 'bad_response' }, name);
    }
  });
});

t.test('parseMatchResponse on bodies OSRM never sends', async (t) => {
  const ok = () => structuredClone(fixture('match-gap-split').body);
  const bad = { kind: 'unavailable', reason: 'bad_response' };
  const cases: Array<[string, number, unknown, unknown]> = [
    ['not JSON at all', 200, undefined, bad],
    ['null', 200, null, bad],
    ['an array', 200, [], bad],
    ['a number', 200, 42, bad],
    ['no code', 200, { ...ok(), code: undefined }, bad],
    ['an error body with 200', 200, { code: 'NoMatch', message: 'Could not match the trace.' }, bad],
    ['no matchings', 200, { ...ok(), matchings: [] }, bad],
    ['matchings not an array', 200, { ...ok(), matchings: {} }, bad],
    ['no tracepoints', 200, { ...ok(), tracepoints: undefined }, bad],
    ['a 502 from a proxy', 502, undefined, { kind: 'unavailable', reason: 'http_status' }],
    ['a 500 stock reply', 500, { code: 'Ok' }, { kind: 'unavailable', reason: 'http_status' }],
    ['a 400 that is not OSRM', 400, '<html>', { kind: 'unavailable', reason: 'http_status' }],
    [
      'a 400 with a code but no message',
      400,
      { code: 'NoMatch' },
      { kind: 'unavailable', reason: 'http_status' },
    ],
    [
      'a code this client does not know',
      400,
      { message: 'Map matching is not implemented for the chosen search algorithm.', code: 'NotImplemented' },
      {
        kind: 'nomatch',
        code: 'NotImplemented',
        message: 'Map matching is not implemented for the chosen search algorithm.',
      },
    ],
  ];
  const mutate = (name: string, edit: (body: ReturnType<typeof ok>) => void) => {
    const body = ok();
    edit(body);
    cases.push([name, 200, body, bad]);
  };
  mutate('confidence above 1', (b) => {
    b.matchings[0].confidence = 1.5;
  });
  mutate('confidence a string', (b) => {
    b.matchings[0].confidence = '0.5';
  });
  mutate('geometry missing', (b) => {
    delete b.matchings[0].geometry;
  });
  mutate('geometry of one vertex', (b) => {
    b.matchings[0].geometry.coordinates.length = 1;
  });
  mutate('a vertex off the globe', (b) => {
    b.matchings[1].geometry.coordinates[2] = [7.4, 95];
  });
  mutate('a vertex with three numbers', (b) => {
    b.matchings[1].geometry.coordinates[2] = [7.4, 43.7, 0];
  });
  mutate('a LineString that is not one', (b) => {
    b.matchings[0].geometry.type = 'Point';
  });
  mutate('matchings_index past the matchings', (b) => {
    b.tracepoints[9].matchings_index = 2;
  });
  mutate('a negative waypoint_index', (b) => {
    b.tracepoints[0].waypoint_index = -1;
  });
  mutate('a fractional waypoint_index', (b) => {
    b.tracepoints[0].waypoint_index = 0.5;
  });
  mutate('a tracepoint without location', (b) => {
    delete b.tracepoints[3].location;
  });
  mutate('a tracepoint that is a string', (b) => {
    b.tracepoints[3] = 'x';
  });
  for (const [name, status, body, want] of cases)
    t.same(parseMatchResponse(status, body, 'geojson'), want, name);

  t.test('polyline geometry that does not decode, or was asked as something else', async (t) => {
    const body = structuredClone(fixture('match-10pts-polyline6').body);
    t.equal(parseMatchResponse(200, body, 'polyline6').kind, 'matched');
    t.same(parseMatchResponse(200, body, 'geojson'), bad);
    t.same(parseMatchResponse(200, body, false), bad);
    body.matchings[0].geometry = `${body.matchings[0].geometry}_`;
    t.same(parseMatchResponse(200, body, 'polyline6'), bad);
    body.matchings[0].geometry = '??';
    t.same(parseMatchResponse(200, body, 'polyline6'), bad, 'a single vertex');
  });

  t.test('random damage never throws', async (t) => {
    const rng = new Prng(0xf00d);
    const sources = [...fixtures.values()].map((f) => ({ status: f.status, text: JSON.stringify(f.body) }));
    const junk = [null, 0, -1, 1e300, '', 'x', [], {}, true, [7, 43], [Number.NaN, 0]];
    const damage = (x: any): void => {
      if (x === null || typeof x !== 'object') return;
      const keys = Object.keys(x);
      if (keys.length === 0) return;
      const k = rng.pick(keys);
      if (rng.chance(0.4)) damage(x[k]);
      else if (rng.chance(0.3)) delete x[k];
      else x[k] = structuredClone(rng.pick(junk));
    };
    const kinds = new Set<string>();
    for (let run = 0; run < 3000; run++) {
      const src = rng.pick(sources);
      const body = JSON.parse(src.text);
      for (let d = rng.int(1, 3); d > 0; d--) damage(body);
      const format = rng.pick<GeometryFormat>(['polyline6', 'polyline', 'geojson', false]);
      let r: MatchResult;
      try {
        r = parseMatchResponse(rng.chance(0.9) ? src.status : rng.pick([200, 400, 404, 503]), body, format);
      } catch (err) {
        t.fail('parseMatchResponse threw', { err, body });
        return;
      }
      kinds.add(r.kind === 'unavailable' ? r.reason : r.kind);
    }
    t.same([...kinds].sort(), ['bad_response', 'http_status', 'matched', 'nomatch']);
  });
});

t.test('the stand-in server replays every recorded /match request and error', async (t) => {
  const server = await startOsrmServer();
  t.teardown(() => server.close());
  let replayed = 0;
  for (const [name, f] of fixtures) {
    if (!isMatchFixture(f)) continue;
    replayed++;
    const res = await request(`${server.url}${f.request.path}`);
    const body = (await res.body.json()) as any;
    const want = f.body;
    t.equal(res.statusCode, f.status, `${name}: status`);
    t.equal(res.headers['content-type'], f.headers['content-type'], `${name}: content-type`);
    t.equal(body.code, want.code, `${name}: code`);
    t.same(Object.keys(body).sort(), Object.keys(want).sort(), `${name}: top-level keys`);
    if (f.status !== 200) {
      // Errors are fully reproducible, message and key order included.
      t.same(Object.keys(body), Object.keys(want), `${name}: key order`);
      t.equal(body.message, want.message, `${name}: message`);
      continue;
    }
    t.equal(body.matchings.length, want.matchings.length, `${name}: matchings`);
    for (let m = 0; m < want.matchings.length; m++) {
      const got = body.matchings[m];
      const exp = want.matchings[m];
      t.same(Object.keys(got), Object.keys(exp), `${name}: matching ${m} keys`);
      t.equal(typeof got.geometry, typeof exp.geometry, `${name}: matching ${m} geometry form`);
      if (typeof exp.geometry === 'object') t.equal(got.geometry.type, 'LineString');
      t.equal(got.legs.length, exp.legs.length, `${name}: matching ${m} legs`);
      // The stand-in leaves steps empty and gives no annotations: compare legs only where OSRM did too.
      if (exp.legs[0].steps.length === 0 && exp.legs[0].annotation === undefined) {
        t.same(Object.keys(got.legs[0]), Object.keys(exp.legs[0]), `${name}: leg keys`);
      }
      t.equal(got.weight_name, 'routability');
    }
    t.equal(body.tracepoints.length, want.tracepoints.length, `${name}: tracepoints`);
    for (let i = 0; i < want.tracepoints.length; i++) {
      const got = body.tracepoints[i];
      const exp = want.tracepoints[i];
      if (exp === null) {
        t.equal(got, null, `${name}: tracepoint ${i} is null`);
        continue;
      }
      t.same(Object.keys(got), Object.keys(exp), `${name}: tracepoint ${i} keys`);
      t.equal(got.matchings_index, exp.matchings_index, `${name}: tracepoint ${i} matchings_index`);
      t.equal(got.waypoint_index, exp.waypoint_index, `${name}: tracepoint ${i} waypoint_index`);
    }
    // And the client parses the stand-in's answer to the same structure as OSRM's.
    const ours = parseMatchResponse(200, body, formatOf(f.request.path));
    if (ours.kind !== 'matched') {
      t.fail(`${name}: stand-in answer does not parse`, { ours });
      continue;
    }
    t.equal(structure(ours), structure(matched(name)), `${name}: parsed structure`);
    if (f.request.path.includes('overview=full')) {
      t.ok(
        ours.tracepoints.every(
          (tp) =>
            tp === null ||
            ours.matchings[tp.matchingsIndex]!.coordinates.some(
              ([lon, lat]) => lon === tp.location[0] && lat === tp.location[1],
            ),
        ),
        `${name}: every tracepoint is a vertex of its matching`,
      );
    }
  }
  t.equal(replayed, 29);
  t.equal(server.requests, 29);
});

t.test('the stand-in refuses what it does not implement instead of answering wrongly', async (t) => {
  const server = await startOsrmServer();
  t.teardown(() => server.close());
  for (const name of ['route-geojson', 'nearest', 'nearest-number-3']) {
    const res = await request(`${server.url}${fixture(name).request.path}`);
    const body = (await res.body.json()) as { code: string };
    t.equal(res.statusCode, 400, name);
    t.equal(body.code, 'NotImplemented', name);
  }
  const waypoints = await request(
    `${server.url}/match/v1/driving/7.421379,43.734572;7.421293,43.734661?waypoints=0;1`,
  );
  t.same(await waypoints.body.json(), {
    message: 'The stand-in OSRM does not implement waypoints.',
    code: 'NotImplemented',
  });
});

t.test('the stand-in takes the other spellings of a request that osrm-routed takes', async (t) => {
  // Not recorded, so checked against the recorded answer to the plain spelling of the same request.
  const plain = fixture('match-10pts-geojson');
  const [path, query] = plain.request.path.split('?') as [string, string];
  const coordinates = path
    .split('/')[4]!
    .split(';')
    .map((c) => c.split(',').map(Number) as [number, number]);
  const spellings = [
    `${path}.json?${query}`,
    `/match/v1/driving/polyline6(${encodePolyline(coordinates, 6)})?${query}`,
    `/match/v1/driving/polyline(${encodePolyline(coordinates, 5)})?${query}`,
    `${path}?${query.replace(/radiuses=[^&]+/, `radiuses=${coordinates.map(() => '').join(';')}`)}`,
    `${path.replace('driving', 'car')}?${query}&steps=false&annotations=false&generate_hints=true`,
  ];
  const want = structure(matched('match-10pts-geojson'));
  for (const spelling of spellings) {
    const answer = handleOsrmRequest(spelling);
    const r = parseMatchResponse(answer.status, answer.body, 'geojson');
    t.equal(r.kind === 'matched' ? structure(r) : JSON.stringify(r), want, spelling.slice(0, 80));
  }
  t.same(handleOsrmRequest(`${path}?${query.replace(/radiuses=[^&]+/, 'radiuses=10;10')}`).body, {
    message: 'Number of elements in radiuses size 2 does not match coordinate size 10',
    code: 'InvalidOptions',
  });
  t.same(handleOsrmRequest(`${path}?geometries=polyline7`).body, {
    message: `Query string malformed close to position ${path.length + 1 + 'geometries=polyline'.length}`,
    code: 'InvalidQuery',
  });
  t.same(handleOsrmRequest(`${path}?`).body, {
    message: `Query string malformed close to position ${path.length + 1}`,
    code: 'InvalidQuery',
  });
  t.same(handleOsrmRequest('/match/v1/driving/7.42,43.73;7.42,43.74 ').body, {
    message: 'URL string malformed close to position 39: ".74 "',
    code: 'InvalidUrl',
  });
});
