/**
 * Client for OSRM's map-matching service (`GET /match/v1/{profile}/{coordinates}`, HTTP API v5), used to
 * lay a driver's recent fixes on the road network so client apps can animate cars along streets.
 *
 * Contract: `match()` never throws for network or protocol problems and never takes longer than
 * `timeoutMs`. Every outcome is a value of `MatchResult`; the caller falls back to straight paths for
 * anything but `matched`. A circuit breaker stops sending while OSRM is failing, so a dead or drowning
 * OSRM costs one failed request per cool-down instead of one timeout per driver.
 *
 * Protocol facts this module relies on (checked against recorded osrm-routed v26.4.1 answers in
 * test/fixtures/osrm and the HTTP API docs, https://project-osrm.org/docs/v26.4.0/http):
 * - Success is HTTP 200 `{ code: 'Ok', matchings: [...], tracepoints: [...] }`, one tracepoint per input
 *   coordinate, `null` for a fix OSRM dropped (no road within 3 x radius, or an implausible transition).
 * - Every error is HTTP 400 with just `{ code, message }`: NoMatch and NoSegment say the trace cannot be
 *   matched; TooBig and the Invalid* codes say OSRM refused our request (a bug here, or an OSRM started
 *   with a smaller --max-matching-size than `maxPoints`).
 * - Compression: osrm-routed gzips only when asked (`accept-encoding`); undici asks for nothing, and we
 *   send `accept-encoding: identity` so that a proxy in between knows not to either. A compressed body
 *   anyway is `bad_response`: handling it would put zlib on this path for a case that means a broken hop.
 */
import type { Pool } from 'undici';
import { undici } from '../lazy-undici.ts';
import { decodePolyline } from './polyline.ts';

/** One GPS fix: degrees, and unix seconds (whole seconds are sent; fractions are dropped). */
export interface MatchPoint {
  lon: number;
  lat: number;
  time: number;
}

export interface Matching {
  /** OSRM's confidence in [0, 1] that the matching is right (its Bayes classifier on path lengths). */
  confidence: number;
  /** The matched path along the roads, `[lon, lat]`, at 1e-6 degree. */
  coordinates: Array<[number, number]>;
}

export interface Tracepoint {
  /** Which matching this fix was snapped into. */
  matchingsIndex: number;
  /** Position of this fix among the fixes of its matching (0 = where that matching starts). */
  waypointIndex: number;
  /** The snapped position, `[lon, lat]`. */
  location: [number, number];
}

export type UnavailableReason =
  | 'breaker_open'
  | 'busy'
  | 'timeout'
  | 'connection'
  | 'http_status'
  | 'bad_response';

export type MatchResult =
  | { kind: 'matched'; matchings: Matching[]; tracepoints: Array<Tracepoint | null> }
  | { kind: 'nomatch'; code: string; message: string }
  | { kind: 'unavailable'; reason: UnavailableReason };

/**
 * What `onOutcome` reports, one per `match()` call; a small fixed set, so it can be a metric label.
 * - matched: OSRM matched the trace.
 * - nomatch: OSRM answered NoMatch or NoSegment: the trace itself cannot be matched.
 * - rejected: OSRM (or this client, for a trace of fewer than 2 usable fixes) refused the request: TooBig,
 *   an Invalid* code or a code this client does not know. Worth an alert: it is a bug or a config mismatch.
 * - breaker_open, timeout, connection, http_status, bad_response: as `UnavailableReason`.
 * - aborted: the caller's signal fired first (returned as `unavailable`/`timeout`, but not held against
 *   OSRM by the breaker).
 */
export type OsrmOutcome = 'matched' | 'nomatch' | 'rejected' | UnavailableReason | 'aborted';

/** Every outcome label, for a metrics module that wants to initialise its counters at start-up. */
export const OSRM_OUTCOMES: readonly OsrmOutcome[] = Object.freeze([
  'matched',
  'nomatch',
  'rejected',
  'breaker_open',
  'busy',
  'timeout',
  'connection',
  'http_status',
  'bad_response',
  'aborted',
]);

/** The error codes OSRM documents for /match (plus the general ones), for callers that switch on them. */
export const OSRM_MATCH_ERROR_CODES: readonly string[] = Object.freeze([
  'NoMatch',
  'NoSegment',
  'TooBig',
  'InvalidValue',
  'InvalidOptions',
  'InvalidQuery',
  'InvalidUrl',
  'InvalidService',
  'InvalidVersion',
]);

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface OsrmClientOptions {
  /** Base URL of osrm-routed, e.g. `http://127.0.0.1:5000`; a path prefix (a proxy mount) is kept. */
  url: string;
  /** Profile segment of the URL. osrm-routed does not check it, but a proxy routing by it may. */
  profile?: string;
  /** Most sockets open to OSRM at once; more concurrent calls queue, and the queue eats their timeout. */
  connections?: number;
  /** Deadline of one `match()` call, queueing included, in ms. */
  timeoutMs?: number;
  /** GPS accuracy sent as every fix's radius, in metres; OSRM searches roads within 3x this. */
  radiusM?: number;
  /** Most fixes sent in one request; older ones are left out. OSRM's default max-matching-size is 100. */
  maxPoints?: number;
  /** Consecutive failures (timeouts, connection errors, bad status or body) that open the breaker. */
  failureThreshold?: number;
  /** How long the breaker stays open before one trial request may go through, in ms. */
  coolDownMs?: number;
  /** Monotonic clock in ms, for the breaker and the durations reported; injectable for tests. */
  now?: () => number;
  /** Called once per `match()` call with its outcome and duration (0 when nothing was sent). */
  onOutcome?: (outcome: OsrmOutcome, seconds: number) => void;
}

/**
 * What the daemon asks OSRM for, beyond coordinates, timestamps and radiuses:
 * - overview=full: the path through every road node. `simplified` (the default) thins it for a zoom level
 *   we do not know, cutting corners the app should drive round.
 * - geometries=polyline6: 1e-6 degree, OSRM's own storage precision, so lossless, and ~5x smaller than
 *   geojson's `[7.421352,43.734569]` text per vertex. `polyline` (precision 5) would round to ~1.1 m.
 * - gaps=ignore: with `split`, any pause longer than 10x the median sampling interval splits the trace
 *   (src/engine/routing_algorithms/map_matching.cpp), and taxis pause all the time. Implausible jumps still
 *   break it: OSRM prunes a transition whose road distance exceeds the straight one by more than
 *   step seconds x the profile's max matching speed (180 km/h for car.lua).
 * - tidy=false: tidy drops every fix until 15 m and 5 s have passed since the last kept one
 *   (match-10pts-tidy fixture), exactly the fixes of a car crawling in traffic that the app animates.
 * - generate_hints=false: hints are 112 bytes of base64 per tracepoint, about half of the body, and we
 *   never send them back.
 */
const QUERY_OPTIONS = '&overview=full&geometries=polyline6&gaps=ignore&tidy=false&generate_hints=false';

/** 100 tracepoints with full geometry and no hints come to ~20 KiB; anything near this is not OSRM. */
const MAX_BODY_BYTES = 1 << 20;

/**
 * Idle sockets are closed after this. osrm-routed closes a keep-alive connection after 5 s idle
 * (`keep-alive: timeout=5`); closing ours first avoids sending on a socket the server is closing.
 */
const KEEP_ALIVE_TIMEOUT_MS = 4000;

/** Node clamps a longer timer to 1 ms (with a warning), which would make every call time out at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The identifier characters osrm-routed's URL grammar accepts for service and profile names. */
const PROFILE_RE = /^[A-Za-z0-9_.~:-]+$/;

const ACCEPT_IDENTITY = { 'accept-encoding': 'identity' };

const UNAVAILABLE: Readonly<Record<UnavailableReason, MatchResult>> = Object.freeze({
  breaker_open: Object.freeze({ kind: 'unavailable', reason: 'breaker_open' }),
  busy: Object.freeze({ kind: 'unavailable', reason: 'busy' }),
  timeout: Object.freeze({ kind: 'unavailable', reason: 'timeout' }),
  connection: Object.freeze({ kind: 'unavailable', reason: 'connection' }),
  http_status: Object.freeze({ kind: 'unavailable', reason: 'http_status' }),
  bad_response: Object.freeze({ kind: 'unavailable', reason: 'bad_response' }),
});

/** What OSRM itself answers for fewer than two coordinates; given locally, without a request. */
const TOO_FEW_POINTS: MatchResult = Object.freeze({
  kind: 'nomatch',
  code: 'InvalidOptions',
  message: 'Number of coordinates needs to be at least two.',
});

const BREAKER_CLOSED = 0;
const BREAKER_OPEN = 1;
const BREAKER_HALF_OPEN = 2;

/** How one request ended before parsing: a body to parse, or why there is none. */
type Exchange =
  | { status: number; body: unknown }
  | Exclude<UnavailableReason, 'breaker_open'>
  | typeof ABORTED;

/** The caller's signal fired; not a verdict on OSRM. */
const ABORTED = 'aborted' as const;
const TIMED_OUT = 'timeout' as const;

function noop(): void {}

function defaultNow(): number {
  return performance.now();
}

function optionInt(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`osrm: ${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

function optionNumber(name: string, value: number | undefined, fallback: number, positive: boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (positive && value === 0)) {
    throw new RangeError(
      `osrm: ${name} must be a finite number ${positive ? '> 0' : '>= 0'}, got ${String(value)}`,
    );
  }
  return value;
}

/** At most 6 decimals (OSRM keeps 1e-6 degree), and never an exponent, which OSRM's grammar rejects. */
function formatDegrees(x: number): string {
  return String(Number(x.toFixed(6)));
}

export class OsrmClient {
  readonly #pool: Pool;
  readonly #pathPrefix: string;
  readonly #radius: string;
  readonly #timeoutMs: number;
  readonly #maxPoints: number;
  readonly #failureThreshold: number;
  readonly #coolDownMs: number;
  readonly #now: () => number;
  readonly #onOutcome: (outcome: OsrmOutcome, seconds: number) => void;

  readonly #connections: number;
  /** Calls sent and not yet settled: at most 2 x `connections` (the rest answered 'busy'). */
  #inFlight = 0;
  #breaker = BREAKER_CLOSED;
  #failures = 0;
  #openedAt = 0;

  constructor(options: OsrmClientOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new TypeError(`osrm: url is not a URL: ${String(options.url)}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new TypeError(`osrm: url must be http: or https:, got ${base.protocol}`);
    }
    if (base.search !== '' || base.hash !== '' || base.username !== '' || base.password !== '') {
      throw new TypeError('osrm: url must be a plain base URL, without query, fragment or credentials');
    }
    const profile = options.profile ?? 'driving';
    if (!PROFILE_RE.test(profile)) {
      throw new TypeError(`osrm: profile has characters OSRM rejects: ${profile}`);
    }
    const connections = optionInt('connections', options.connections, 8, 1);
    this.#connections = connections;
    this.#timeoutMs = optionNumber('timeoutMs', options.timeoutMs, 800, true);
    if (this.#timeoutMs > MAX_TIMER_MS) throw new RangeError(`osrm: timeoutMs must be <= ${MAX_TIMER_MS}`);
    const radiusM = optionNumber('radiusM', options.radiusM, 10, true);
    this.#maxPoints = optionInt('maxPoints', options.maxPoints, 100, 2);
    this.#failureThreshold = optionInt('failureThreshold', options.failureThreshold, 5, 1);
    this.#coolDownMs = optionNumber('coolDownMs', options.coolDownMs, 10_000, false);
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new TypeError('osrm: now must be a function');
    }
    if (options.onOutcome !== undefined && typeof options.onOutcome !== 'function') {
      throw new TypeError('osrm: onOutcome must be a function');
    }
    this.#now = options.now ?? defaultNow;
    this.#onOutcome = options.onOutcome ?? noop;

    this.#pathPrefix = `${base.pathname.replace(/\/+$/, '')}/match/v1/${profile}/`;
    // OSRM's radiuses parser takes plain decimals; two decimals is far below GPS accuracy.
    this.#radius = String(Number(radiusM.toFixed(2)));
    this.#pool = new (undici().Pool)(base.origin, {
      connections,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // Backstops only: the per-call deadline below aborts first, since it starts earlier.
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      connect: { timeout: this.#timeoutMs },
    });
  }

  get breakerState(): BreakerState {
    if (this.#breaker === BREAKER_CLOSED) return 'closed';
    return this.#breaker === BREAKER_OPEN ? 'open' : 'half_open';
  }

  /**
   * Map-matches a trace, oldest fix first. The result's tracepoints line up with `points`: a fix that was
   * not sent is `null` there, like a fix OSRM dropped. Not sent: fixes with a non-finite or out-of-range
   * coordinate or time, fixes whose whole-second time is not after the previous sent one (OSRM allows equal
   * timestamps but then allows zero metres of movement between them, which breaks the trace and drops the
   * fix before too), and all but the most recent `maxPoints`.
   */
  async match(points: readonly MatchPoint[], signal?: AbortSignal): Promise<MatchResult> {
    const t0 = this.#now();
    if (signal?.aborted) return this.#report(UNAVAILABLE.timeout, 'aborted', t0, false);

    const sent = selectPoints(points, this.#maxPoints);
    if (sent.length < 2) return this.#report(TOO_FEW_POINTS, 'rejected', t0, false);
    if (!this.#acquire(t0)) return this.#report(UNAVAILABLE.breaker_open, 'breaker_open', t0, false);
    // A short queue behind a slow OSRM, not an unbounded one: past `connections` calls waiting for a
    // connection, a call is answered 'busy' at once (a straight path). This also bounds how many calls
    // queued before the breaker opened can still reach OSRM after it has.
    if (this.#inFlight >= 2 * this.#connections) return this.#report(UNAVAILABLE.busy, 'busy', t0, false);
    this.#inFlight++;
    try {
      return await this.#send(points, sent, signal, t0);
    } finally {
      this.#inFlight--;
    }
  }

  async #send(
    points: readonly MatchPoint[],
    sent: readonly number[],
    signal: AbortSignal | undefined,
    t0: number,
  ): Promise<MatchResult> {
    const path = this.#buildPath(points, sent);
    const controller = new AbortController();
    let settle: (exchange: Exchange) => void = noop;
    const stopped = new Promise<Exchange>((resolve) => {
      settle = resolve;
    });
    // The race below is what bounds the call: it settles at the deadline even if the abort has yet to
    // unwind undici's request or body stream, which then finishes in the background.
    const timer = setTimeout(() => {
      settle(TIMED_OUT);
      controller.abort();
    }, this.#timeoutMs);
    const onAbort = (): void => {
      settle(ABORTED);
      controller.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let exchange: Exchange;
    try {
      exchange = await Promise.race([this.#exchange(path, controller.signal), stopped]);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }

    if (exchange === ABORTED) {
      this.#release();
      return this.#report(UNAVAILABLE.timeout, 'aborted', t0, true);
    }
    if (typeof exchange === 'string') {
      this.#failed();
      return this.#report(UNAVAILABLE[exchange], exchange, t0, true);
    }
    let result = parseMatchResponse(exchange.status, exchange.body, 'polyline6');
    if (result.kind === 'matched') {
      result =
        result.tracepoints.length === sent.length
          ? {
              kind: 'matched',
              matchings: result.matchings,
              tracepoints: spread(result.tracepoints, sent, points.length),
            }
          : UNAVAILABLE.bad_response;
    }
    if (result.kind === 'unavailable') {
      this.#failed();
      return this.#report(result, result.reason, t0, true);
    }
    this.#succeeded();
    if (result.kind === 'matched') return this.#report(result, 'matched', t0, true);
    const dataError = result.code === 'NoMatch' || result.code === 'NoSegment';
    return this.#report(result, dataError ? 'nomatch' : 'rejected', t0, true);
  }

  /** Closes the pool, waiting for requests in flight. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  #buildPath(points: readonly MatchPoint[], sent: readonly number[]): string {
    const coords: string[] = [];
    const times: string[] = [];
    const radiuses: string[] = [];
    const radius = this.#radius;
    for (const i of sent) {
      const p = points[i]!;
      coords.push(`${formatDegrees(p.lon)},${formatDegrees(p.lat)}`);
      times.push(String(Math.floor(p.time)));
      radiuses.push(radius);
    }
    return `${this.#pathPrefix}${coords.join(';')}?timestamps=${times.join(';')}&radiuses=${radiuses.join(';')}${QUERY_OPTIONS}`;
  }

  async #exchange(path: string, signal: AbortSignal): Promise<Exchange> {
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      res = await this.#pool.request({ path, method: 'GET', signal, headers: ACCEPT_IDENTITY });
    } catch (err) {
      return isUndiciTimeout(err) ? 'timeout' : 'connection';
    }
    // Destroying an unfinished body makes undici emit an AbortError; reads see errors through their own
    // promises, and without a listener that one event would be an uncaught exception.
    res.body.on('error', noop);
    const status = res.statusCode;
    if (status !== 200 && status !== 400) {
      // Not OSRM speaking (a proxy's 502, osrm-routed's stock 500): read it off so the socket stays usable.
      res.body.dump().catch(noop);
      return 'http_status';
    }
    const encoding = res.headers['content-encoding'];
    const declared = Number(res.headers['content-length']);
    if ((encoding !== undefined && encoding !== 'identity') || declared > MAX_BODY_BYTES) {
      res.body.destroy();
      return 'bad_response';
    }
    let text: string | null;
    try {
      text = await readText(res.body, MAX_BODY_BYTES);
    } catch (err) {
      return isUndiciTimeout(err) ? 'timeout' : 'connection';
    }
    if (text === null) return 'bad_response';
    try {
      return { status, body: JSON.parse(text) as unknown };
    } catch {
      // A 400 that is not JSON did not come from osrm-routed, which always answers errors in JSON.
      return status === 200 ? 'bad_response' : 'http_status';
    }
  }

  /** True if a request may be sent now; moves an open breaker whose cool-down is over to half-open. */
  #acquire(now: number): boolean {
    if (this.#breaker === BREAKER_CLOSED) return true;
    if (this.#breaker === BREAKER_HALF_OPEN) return false;
    if (now - this.#openedAt < this.#coolDownMs) return false;
    this.#breaker = BREAKER_HALF_OPEN;
    return true;
  }

  #succeeded(): void {
    // Any sensible answer, even a late one from before the breaker opened, shows OSRM is serving.
    this.#breaker = BREAKER_CLOSED;
    this.#failures = 0;
  }

  #failed(): void {
    if (this.#breaker === BREAKER_HALF_OPEN) {
      this.#breaker = BREAKER_OPEN;
      this.#openedAt = this.#now();
    } else if (this.#breaker === BREAKER_CLOSED && ++this.#failures >= this.#failureThreshold) {
      this.#breaker = BREAKER_OPEN;
      this.#openedAt = this.#now();
    }
    // Already open: a late failure from before it opened says nothing new.
  }

  /** The caller gave up: no verdict on OSRM. A trial slot goes back so the next call can take it. */
  #release(): void {
    if (this.#breaker === BREAKER_HALF_OPEN) this.#breaker = BREAKER_OPEN;
  }

  #report(result: MatchResult, outcome: OsrmOutcome, t0: number, requested: boolean): MatchResult {
    this.#onOutcome(outcome, requested ? (this.#now() - t0) / 1000 : 0);
    return result;
  }
}

function isUndiciTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  );
}

async function readText(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  limit: number,
): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** Indices into `points` of the fixes to send, oldest first; see `OsrmClient.match`. */
function selectPoints(points: readonly MatchPoint[], maxPoints: number): number[] {
  const keep: number[] = [];
  let lastTime = -1;
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    const { lon, lat } = p;
    // OSRM's timestamps are unsigned 32-bit integers.
    const time = Math.floor(p.time);
    if (!(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90 && time >= 0 && time <= 0xffff_ffff)) continue;
    if (time <= lastTime) continue;
    keep.push(i);
    lastTime = time;
  }
  return keep.length > maxPoints ? keep.slice(keep.length - maxPoints) : keep;
}

/** Puts the tracepoints of the sent fixes back at their fixes' places in the caller's array. */
function spread(
  tracepoints: ReadonlyArray<Tracepoint | null>,
  sent: readonly number[],
  total: number,
): Array<Tracepoint | null> {
  const out = new Array<Tracepoint | null>(total).fill(null);
  for (let i = 0; i < sent.length; i++) out[sent[i]!] = tracepoints[i]!;
  return out;
}

/** How a body's `matchings[].geometry` is expected: as requested with `geometries`, or absent. */
export type GeometryFormat = 'polyline6' | 'polyline' | 'geojson' | false;

/**
 * Turns one OSRM /match answer into a `MatchResult`. Pure and total: it never throws, whatever `body` is
 * (the parsed JSON, or anything a broken proxy sent). `geometries` is what the request asked for; `false`
 * stands for overview=false, where matchings carry no geometry and `coordinates` is empty.
 *
 * 200 with a well-formed Ok body -> matched; 200 otherwise -> bad_response; 400 with `{ code, message }`
 * strings -> nomatch with that code, known or not; any other answer -> http_status.
 */
export function parseMatchResponse(
  status: number,
  body: unknown,
  geometries: GeometryFormat = 'polyline6',
): MatchResult {
  if (status === 400) {
    if (isRecord(body) && typeof body.code === 'string' && typeof body.message === 'string') {
      return { kind: 'nomatch', code: body.code, message: body.message };
    }
    return UNAVAILABLE.http_status;
  }
  if (status !== 200) return UNAVAILABLE.http_status;
  return parseOk(body, geometries) ?? UNAVAILABLE.bad_response;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isLonLat(x: unknown): x is [number, number] {
  if (!Array.isArray(x) || x.length !== 2) return false;
  const lon = x[0] as unknown;
  const lat = x[1] as unknown;
  return (
    typeof lon === 'number' && typeof lat === 'number' && lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90
  );
}

function isIndex(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function parseOk(body: unknown, geometries: GeometryFormat): MatchResult | null {
  if (!isRecord(body) || body.code !== 'Ok') return null;
  const rawMatchings = body.matchings;
  const rawTracepoints = body.tracepoints;
  // OSRM answers NoMatch rather than Ok with no matchings.
  if (!Array.isArray(rawMatchings) || rawMatchings.length === 0 || !Array.isArray(rawTracepoints)) {
    return null;
  }

  const matchings: Matching[] = [];
  for (const m of rawMatchings as unknown[]) {
    if (!isRecord(m)) return null;
    const confidence = m.confidence;
    if (typeof confidence !== 'number' || !(confidence >= 0 && confidence <= 1)) return null;
    const coordinates = parseGeometry(m.geometry, geometries);
    if (coordinates === null) return null;
    matchings.push({ confidence, coordinates });
  }

  const tracepoints: Array<Tracepoint | null> = [];
  for (const tp of rawTracepoints as unknown[]) {
    if (tp === null) {
      tracepoints.push(null);
      continue;
    }
    if (!isRecord(tp)) return null;
    const matchingsIndex = tp.matchings_index;
    const waypointIndex = tp.waypoint_index;
    const location = tp.location;
    if (!isIndex(matchingsIndex) || matchingsIndex >= matchings.length || !isIndex(waypointIndex)) {
      return null;
    }
    if (!isLonLat(location)) return null;
    tracepoints.push({ matchingsIndex, waypointIndex, location: [location[0], location[1]] });
  }
  return { kind: 'matched', matchings, tracepoints };
}

function parseGeometry(geometry: unknown, format: GeometryFormat): Array<[number, number]> | null {
  if (format === false) return geometry === undefined ? [] : null;
  let coordinates: Array<[number, number]>;
  if (format === 'geojson') {
    if (!isRecord(geometry) || geometry.type !== 'LineString' || !Array.isArray(geometry.coordinates)) {
      return null;
    }
    coordinates = [];
    for (const c of geometry.coordinates as unknown[]) {
      if (!isLonLat(c)) return null;
      coordinates.push([c[0], c[1]]);
    }
  } else {
    if (typeof geometry !== 'string') return null;
    try {
      coordinates = decodePolyline(geometry, format === 'polyline6' ? 6 : 5);
    } catch {
      return null;
    }
    for (const c of coordinates) if (!isLonLat(c)) return null;
  }
  // OSRM's LineStrings have at least two vertices, even for a zero-length matching.
  return coordinates.length >= 2 ? coordinates : null;
}
