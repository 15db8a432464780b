import type dgram from 'node:dgram';
import { Agent, request } from 'node:http';
import t from 'tap';
import { decodeTrack } from '../src/codec/decode.ts';
import { Fix } from '../src/codec/fix.ts';
import { checkFix } from '../src/ingest/filter.ts';
import { MAX_DATAGRAM_BYTES, Reason, reasonNames } from '../src/reasons.ts';
import { CLIENT, type Daemon, OPERATOR, startDaemon } from './support/daemon.ts';
import { Fleet, tripRecordOf } from './support/hostile-fleet.ts';
import { FUZZ_KINDS, hostileCorpus } from './support/hostile-fuzz.ts';
import {
  connectedSocket,
  hex,
  Pacer,
  safeWindow,
  scrape,
  settle,
  udpCounters,
  yieldToLoop,
} from './support/hostile-net.ts';
import { Prng } from './support/prng.ts';

/**
 * A million hostile datagrams (random, and valid Tracks mutated every way the decoder has to survive)
 * into the running daemon, with a well-behaved fleet sending at the same time: no worker dies, every
 * datagram is counted under the reason it deserves, and the fleet ends exactly where it drove. Then the
 * query parameters of every GET endpoint, fuzzed the same way.
 */

const DATAGRAMS = 1_000_000;
const SEED = 0xf022_2026;
const IDLE_TIMEOUT_S = 900;
/** The sockets the hostile traffic comes from: a few source addresses, so it reaches both workers. */
const FUZZ_SOCKETS = 4;

/** Sessions the hostile traffic aims at that the daemon knows (fixes reach the shard's checks). */
const registered = Array.from({ length: 8 }, (_, i) => 0xfa22_0000_0000_0000n + BigInt(i) * 0x0101_0101n);
// Made before the daemon starts: a few seconds of synchronous work that must not sit between requests.
const genStarted = performance.now();
const nowS = Math.floor(Date.now() / 1000);
const corpus = hostileCorpus(new Prng(SEED), { registered, nowS }, DATAGRAMS);
const genMs = performance.now() - genStarted;

let daemon: Daemon;
const fleet = new Fleet({
  size: 40,
  seed: 7,
  prefix: 'fz-fleet',
  sessionBase: 0xf1ee_7000_0000_0000n,
  orderBase: 4_000_000_000n,
  startTime: Math.floor(Date.now() / 1000) - 400,
  centre: { lat: 48.8566, lon: 2.3522 },
  // One order for the whole run: the trip's record counts every fix the driver got accepted.
  orderRounds: [1000, 1000],
});

t.before(async () => {
  daemon = await startDaemon({ CABTRACK_IDLE_TIMEOUT_S: String(IDLE_TIMEOUT_S) });
  await fleet.open(daemon.udpPort);
  await fleet.register(daemon);
  for (const [i, s] of registered.entries()) {
    const r = await daemon.request('PUT', `/v1/sessions/${hex(s)}`, {
      body: { driverId: `fz-target-${i}`, cab: `FZ-T${i}` },
    });
    if (r.status !== 201) throw new Error(`PUT: ${r.status}`);
  }
});
t.teardown(async () => {
  fleet.close();
  await daemon.stop();
});

t.test('a million hostile datagrams: no crash, each counted under its reason, the fleet exact', async (t) => {
  // The oracle: what the stateless checks (decoder, size, src/ingest/filter.ts) must say of each
  // datagram. future and stale depend on the clock, so they are bounded by the clock now and two
  // minutes on (the test takes less than that); the rest is exact.
  const fix = new Fix();
  const exact = new Float64Array(reasonNames.length);
  let futureMin = 0;
  let futureMax = 0;
  let staleMin = 0;
  let staleMax = 0;
  let unknownMin = 0;
  let unknownMax = 0;
  let toShard = 0;
  const known = new Set(registered.map((s) => `${s >> 32n}:${s & 0xffff_ffffn}`));
  const kindCount = new Array<number>(FUZZ_KINDS.length).fill(0);
  let maxLen = 0;
  for (let i = 0; i < corpus.count; i++) {
    kindCount[corpus.kinds[i]!]!++;
    const len = corpus.lengths[i]!;
    maxLen = Math.max(maxLen, len);
    if (len > MAX_DATAGRAM_BYTES) {
      exact[Reason.oversize]!++;
      continue;
    }
    const view = corpus.slab.subarray(corpus.offsets[i]!, corpus.offsets[i]! + len);
    if (!decodeTrack(view, len, fix)) {
      exact[Reason.malformed]!++;
      continue;
    }
    const early = checkFix(fix, nowS, IDLE_TIMEOUT_S);
    const late = checkFix(fix, nowS + 120, IDLE_TIMEOUT_S);
    if (early === Reason.noSession || early === Reason.outOfRange || early === Reason.nullIsland) {
      exact[early]!++;
      continue;
    }
    if (early === Reason.future) futureMax++;
    if (late === Reason.future) futureMin++;
    if (early === Reason.stale) staleMin++;
    if (late === Reason.stale) staleMax++;
    const isKnown = known.has(`${fix.sessionHi}:${fix.sessionLo}`);
    if (isKnown) {
      if (early === Reason.ok || late === Reason.ok) toShard++;
    } else {
      if (early === Reason.ok && late === Reason.ok) unknownMin++;
      if (early === Reason.ok || late === Reason.ok) unknownMax++;
    }
  }
  t.comment(
    `corpus: ${DATAGRAMS} datagrams in ${Math.round(genMs)} ms, longest ${maxLen} B; ` +
      FUZZ_KINDS.map((k, i) => `${k} ${kindCount[i]}`).join(', '),
  );

  const sockets: dgram.Socket[] = [];
  for (let i = 0; i < FUZZ_SOCKETS; i++) sockets.push(await connectedSocket(daemon.udpPort));
  t.teardown(() => {
    for (const s of sockets) s.close();
  });

  const before = await scrape(daemon);
  const snmpBefore = udpCounters();
  const window = await safeWindow(daemon);
  const pacer = new Pacer(daemon, window, before.received);
  const rounds = 25;
  const every = Math.ceil(DATAGRAMS / rounds);
  const chunk = Math.max(32, Math.floor(window / 4));
  const slab = Buffer.from(corpus.slab.buffer, corpus.slab.byteOffset, corpus.slab.byteLength);
  const started = performance.now();
  for (let i = 0; i < DATAGRAMS; ) {
    if (i % every === 0) {
      // The fleet's fix of this round goes out among the hostile traffic.
      await pacer.room(fleet.drivers.length);
      pacer.note(await fleet.round());
    }
    const end = Math.min(DATAGRAMS, i + chunk, (Math.floor(i / every) + 1) * every);
    await pacer.room(end - i);
    for (let j = i; j < end; j++) {
      sockets[j % FUZZ_SOCKETS]!.send(slab, corpus.offsets[j]!, corpus.lengths[j]!);
    }
    pacer.note(end - i);
    i = end;
    await yieldToLoop();
  }
  const sendMs = performance.now() - started;
  const drained = await pacer.drain(30_000);
  const snmpAfter = udpCounters();
  const kernelDrops = snmpAfter.RcvbufErrors - snmpBefore.RcvbufErrors;
  t.comment(
    `sent ${pacer.sent} in ${Math.round(sendMs)} ms (${Math.round((pacer.sent / sendMs) * 1000)}/s), window ${window}, ` +
      `${pacer.waits} waits; RcvbufErrors +${kernelDrops} on this host during the run (all processes)`,
  );
  t.equal(
    drained.received - before.received,
    pacer.sent,
    `received = sent (${kernelDrops} kernel receive-buffer drops on the host meanwhile)`,
  );

  const s = await settle(daemon);
  t.equal(s.get('cabtrack_worker_restarts_total'), 0, 'no worker died');
  t.equal(s.get('cabtrack_workers_up'), 2, 'both workers up');
  t.equal(s.received, s.accepted + s.rejected, 'received = accepted + sum of rejected, exactly');
  const got = (r: number): number => s.rejectedFor(reasonNames[r]!) - before.rejectedFor(reasonNames[r]!);
  for (const r of [
    Reason.oversize,
    Reason.malformed,
    Reason.noSession,
    Reason.outOfRange,
    Reason.nullIsland,
  ]) {
    t.equal(got(r), exact[r], `${reasonNames[r]}: exactly as the decoder and the filter say`);
  }
  t.ok(
    got(Reason.future) >= futureMin && got(Reason.future) <= futureMax,
    `future ${got(Reason.future)} within [${futureMin}, ${futureMax}]`,
  );
  t.ok(
    got(Reason.unknownSession) >= unknownMin && got(Reason.unknownSession) <= unknownMax,
    `unknown_session ${got(Reason.unknownSession)} within [${unknownMin}, ${unknownMax}]`,
  );
  // Fixes of known sessions meet the shard: accepted, or refused as stale, too fast, or while their
  // driver was being handed between workers (the hostile traffic moves them from socket to socket).
  const shardPath =
    s.accepted -
    before.accepted +
    got(Reason.tooFast) +
    got(Reason.queueFull) +
    got(Reason.lookupFailed) +
    (got(Reason.stale) - staleMin);
  t.ok(
    got(Reason.stale) >= staleMin &&
      shardPath >= fleet.sent &&
      shardPath <= fleet.sent + toShard + staleMax - staleMin,
    `the shard's outcomes (${shardPath}) cover the fleet (${fleet.sent}) and at most the ${toShard} hostile fixes that pass the filter`,
  );
  t.comment(
    `by reason: ${Object.entries(s.byLabel('cabtrack_datagrams_rejected_total', 'reason'))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; accepted ${s.accepted}; handoffs ${s.get('cabtrack_driver_handoffs_total')}`,
  );

  // The fleet: every driver exactly at its last fix, its ring the last points it sent, and its trip
  // counting every fix (so none was lost or refused).
  for (const d of fleet.drivers) {
    const r = await daemon.get(`/v1/drivers/${d.id}`);
    const last = d.last!;
    const trip = d.trip!;
    const ok =
      r.status === 200 &&
      r.body.lat === last.lat / 1e6 &&
      r.body.lon === last.lon / 1e6 &&
      r.body.time === last.time;
    t.ok(ok, `${d.id} at its last fix (${r.status} ${r.body?.lat},${r.body?.lon} @${r.body?.time})`);
    t.same(
      r.body.points,
      d.fixes.slice(-20).map((f) => ({ lat: f.lat / 1e6, lon: f.lon / 1e6, time: f.time })),
      `${d.id}: its last 20 points`,
    );
    t.same(r.body.trip, tripRecordOf(trip), `${d.id}: the trip counts all ${trip.points} fixes`);
  }
});

/** Values that have broken query parsers somewhere. */
const NASTY = [
  '',
  '0',
  '-0',
  '1',
  '-1',
  '90',
  '-90',
  '90.0000001',
  '180',
  '-180',
  '1e308',
  '-1e308',
  '1e309',
  '1e-400',
  '4.9e-324',
  '9007199254740993',
  '99999999999999999999999999999',
  '0x10',
  '0b1',
  '1_000',
  ' 1',
  '1 ',
  '+1',
  '.5',
  '5.',
  '1e',
  'e5',
  '--1',
  'NaN',
  'Infinity',
  '-Infinity',
  'null',
  'undefined',
  'true',
  '[]',
  '{}',
  '%',
  '%zz',
  '%00',
  '%FF%FE',
  '%C0%AF',
  '%ED%A0%80',
  '\u0000',
  'é',
  '日本',
  '🚕',
  '\u202e1',
  'a\u0301',
  "'; DROP TABLE drivers; --",
  '../../etc/passwd',
  '<script>',
  '1,2,3,4',
  '-180,-90,180,90',
  '180,-90,-180,90',
  '10,10,10,10',
  '1,2,3,4,5',
  ',,,',
  'x'.repeat(300),
  '9'.repeat(400),
];
const PARAMS = [
  'lat',
  'lon',
  'k',
  'radius',
  'free',
  'path',
  'bbox',
  'limit',
  'cursor',
  'x',
  '',
  'lat[]',
  'LAT',
];

function randomValue(rnd: Prng): string {
  const r = rnd.float();
  if (r < 0.5) return rnd.pick(NASTY);
  if (r < 0.7) return String((rnd.float() - 0.5) * 10 ** rnd.int(0, 12));
  if (r < 0.8) return String(rnd.int(-1000, 1000));
  // Random code points, including surrogate halves and control characters.
  let s = '';
  const n = rnd.int(0, 12);
  for (let i = 0; i < n; i++)
    s += String.fromCharCode(rnd.chance(0.7) ? rnd.int(0x20, 0x7e) : rnd.int(0, 0xffff));
  return s;
}

/** Percent-encodes what an HTTP client must (anything outside visible ASCII), and sometimes more. */
function encode(rnd: Prng, s: string): string {
  if (rnd.chance(0.2) && /^[\x21-\x7e]*$/.test(s) && !/[#?&]/.test(s)) return s;
  return encodeURIComponent(s.replace(/[\ud800-\udfff]/g, '\ufffd')).replace(
    /%25([0-9A-F]{2})/g,
    (m, h: string) =>
      // Half of the time a "%XX" the caller wrote stays raw, so invalid escapes reach the server.
      rnd.chance(0.5) ? `%${h}` : m,
  );
}

function fuzzPath(rnd: Prng): string {
  const route = rnd.int(0, 7);
  const seg = (): string =>
    encode(
      rnd,
      rnd.chance(0.3) ? rnd.pick(['fz-fleet-001', 'FZ-FLEET-002', '4000001001']) : randomValue(rnd),
    );
  let path: string;
  switch (route) {
    case 0:
    case 1:
      path = '/v1/drivers/nearest';
      break;
    case 2:
      path = '/v1/drivers';
      break;
    case 3:
      path = `/v1/drivers/${seg()}`;
      break;
    case 4:
      path = `/v1/cabs/${seg()}`;
      break;
    case 5:
      path = `/v1/trips/${seg()}`;
      break;
    case 6:
      path = rnd.pick(['/healthz', '/readyz']);
      break;
    default:
      path = '/metrics';
  }
  const parts: string[] = [];
  // A plausible nearest or bbox query with one or two values spoiled, or a pile of random parameters.
  if (route <= 2 && rnd.chance(0.5)) {
    const base: Array<[string, string]> =
      route === 2
        ? [
            ['bbox', '2.2,48.7,2.5,49.0'],
            ['limit', '50'],
          ]
        : [
            ['lat', '48.8566'],
            ['lon', '2.3522'],
            ['k', '10'],
            ['radius', '5000'],
          ];
    for (const [k, v] of base) parts.push(`${k}=${rnd.chance(0.3) ? encode(rnd, randomValue(rnd)) : v}`);
  }
  const n = rnd.int(0, 6);
  for (let i = 0; i < n; i++) {
    const name = rnd.chance(0.9) ? rnd.pick(PARAMS) : encode(rnd, randomValue(rnd));
    parts.push(rnd.chance(0.1) ? name : `${encode(rnd, name)}=${encode(rnd, randomValue(rnd))}`);
  }
  if (rnd.chance(0.2) && parts.length > 0) parts.push(parts[rnd.int(0, parts.length - 1)]!);
  return parts.length === 0 && rnd.chance(0.5) ? path : `${path}?${parts.join(rnd.chance(0.05) ? ';' : '&')}`;
}

t.test(
  'fuzzed query parameters on every GET endpoint: 200, 400, 401, 403 or 404 with JSON, never 500',
  async (t) => {
    const rnd = new Prng(SEED + 1);
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    t.teardown(() => agent.destroy());
    const statuses = new Map<number, number>();
    const bad: string[] = [];
    const REQUESTS = 2500;
    let next = 0;
    const one = (
      path: string,
      token: string | null,
    ): Promise<{ status: number; type: string; body: string }> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = {};
        if (token !== null) headers['authorization'] = `Bearer ${token}`;
        const req = request(
          { host: '127.0.0.1', port: daemon.httpPort, path, method: 'GET', agent, headers },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                type: String(res.headers['content-type'] ?? ''),
                body: Buffer.concat(chunks).toString('utf8'),
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    const worker = async (): Promise<void> => {
      while (next < REQUESTS) {
        next++;
        const path = fuzzPath(rnd);
        const r = rnd.float();
        const token =
          r < 0.6 ? OPERATOR : r < 0.85 ? CLIENT : rnd.pick([null, 'wrong-token-0123456789', `${OPERATOR}x`]);
        const res = await one(path, token);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const isMetrics = res.status === 200 && res.type.startsWith('text/plain');
        let json = false;
        try {
          JSON.parse(res.body);
          json = res.type === 'application/json';
        } catch {
          // not JSON
        }
        if (![200, 400, 401, 403, 404].includes(res.status) || !(json || isMetrics)) {
          bad.push(`${res.status} ${path.slice(0, 120)} -> ${res.body.slice(0, 120)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    t.comment(`statuses: ${[...statuses].map(([k, v]) => `${k}: ${v}`).join(', ')}`);
    t.same(
      bad.slice(0, 20),
      [],
      `every answer one of 200/400/401/403/404 with a JSON body (${bad.length} not)`,
    );
    t.ok(
      (statuses.get(400) ?? 0) > 100 && (statuses.get(200) ?? 0) > 100,
      'both valid and invalid queries were made',
    );
    t.equal((await daemon.get('/healthz', null)).status, 200, 'healthy after');
    t.equal((await daemon.get('/readyz', null)).status, 200, 'ready after');
    t.equal(await daemon.metric('cabtrack_worker_restarts_total'), 0, 'no worker died');
    t.same(
      daemon.logs.filter((l) => l.includes('"request failed"')).slice(0, 5),
      [],
      'no request failed inside the daemon',
    );
  },
);
