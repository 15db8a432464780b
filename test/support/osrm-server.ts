/**
 * A stand-in for osrm-routed's map-matching service, for tests: a real HTTP server on 127.0.0.1, port 0,
 * that speaks OSRM's HTTP API v5 /match the way osrm-routed v26 does, over a synthetic street grid instead
 * of OpenStreetMap data, plus failure modes (slow, down, error, garbage) for the client's fallback paths.
 *
 * What is ported from Project-OSRM/osrm-backend, and checked against the recorded answers in
 * test/fixtures/osrm (see test/osrm-fixtures.test.ts):
 * - URL parsing (src/server/api/url_parser.cpp, request_handler.cpp): `/{service}/v{version}/{profile}/
 *   {query}`, InvalidUrl "URL string malformed close to position N: "ctx"" with 3 characters either side,
 *   InvalidService and InvalidVersion (both "Service X not found!").
 * - Query parsing (server/api/*_parameters_grammar.hpp): every /match option, Spirit's expectation
 *   semantics (`lit("name=") > value` fails hard at the value, an unknown option stops the `&`-list at its
 *   `&`), so InvalidQuery positions match osrm-routed's.
 * - Validation and errors in osrm-routed's order (match_service.cpp, plugins/match.cpp): InvalidOptions
 *   (size mismatches, fewer than 2 coordinates), TooBig (> max-matching-size, default 100), InvalidValue
 *   (coordinate out of range, decreasing timestamps), NoSegment, NoMatch.
 * - tidy (api/match_parameters_tidy.hpp): keep a fix once 15 m and 5 s have passed since the last kept one.
 * - Candidate search within 3 x radius (5 m when no radius is given): OSRM takes the radius as the GPS
 *   standard deviation and searches 3 sigma. Nothing beyond that: the match-outlier-200m fixture shows a
 *   fix 200 m off the road gets no candidate at radius 10. (The search is not widened to a 30 m minimum:
 *   osrm-routed does not do that, and a smaller radius really does drop more fixes.)
 * - The HMM of routing_algorithms/map_matching.cpp: emission and transition log-probabilities, transitions
 *   pruned when |road distance - great-circle distance| >= step seconds x 50 m/s (car.lua's 180 km/h
 *   max_speed_for_map_matching; 2000 m without timestamps), breakage handling that drops both ends of a
 *   break, splits on gaps > 10 x the median sampling interval with gaps=split, sub-matchings of fewer than
 *   two fixes dropped, alternatives_count from viterbi reachability, and the Bayes-classifier confidence.
 *
 * What differs, on purpose:
 * - The map: streets of constant latitude ("Street k", y = k x spacing) and of constant longitude
 *   ("Avenue k", x = k x spacing) around an origin, both ways open, within `extentM`. A fix has at most two
 *   candidates (the nearest street and the nearest avenue); OSRM's split of two-way segments into one
 *   candidate per direction is not modelled. Routes run along the grid: between crossing streets through
 *   their crossing, between parallel ones through the connecting avenue (or street) nearest the first fix.
 * - Durations and weights are distance / `speedMps`; `weight_name` is "routability" like car.lua.
 * - steps=true still gives `steps: []`, annotations are not produced, overview=simplified only drops
 *   vertices where the path goes straight on; hints are opaque 112-character strings that mean nothing.
 * - The waypoints option and the flatbuffers format answer 400 NotImplemented rather than a wrong answer;
 *   the other services (route, nearest, table, trip, tile) too.
 *
 * The default grid (MONACO_GRID) is laid over the recorded Monaco traces: its crossing (0, 0) is the corner
 * of Rue Suffren Reymond and Boulevard Albert 1er, and with streets every 120 m every recorded fix that OSRM
 * matched has a street within its search radius, the harbour outlier has none, and the fix across the
 * harbour lands on Avenue 2 and Street -1, so the recorded requests replay with the same structure.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { decodePolyline, encodePolyline } from '../../src/osrm/polyline.ts';

// ---------------------------------------------------------------------------------------------------------
// Public surface

export interface Grid {
  /** `[lon, lat]` of the crossing of Street 0 and Avenue 0. */
  origin: [number, number];
  /** Distance between neighbouring parallel streets, in metres. */
  spacingM: number;
  /** Streets exist within this distance of the origin along both axes, in metres. */
  extentM: number;
}

export const MONACO_GRID: Readonly<Grid> = Object.freeze({
  origin: [7.421385, 43.734428] as [number, number],
  spacingM: 120,
  extentM: 5000,
});

export interface StandInOptions {
  grid?: Partial<Grid>;
  /** Travel speed used for durations, m/s; 50 km/h by default. */
  speedMps?: number;
  /** osrm-routed's --max-matching-size. */
  maxMatchingSize?: number;
}

export type OsrmServerMode =
  | { kind: 'normal' }
  /** Answer normally, but only after `delayMs`. */
  | { kind: 'slow'; delayMs: number }
  /** Destroy every connection as soon as it is made, and the open ones now. */
  | { kind: 'down' }
  /** Answer every request with an OSRM error body (status 400 unless given). */
  | { kind: 'error'; code: string; message?: string; status?: number }
  /**
   * Answer with a body that is not OSRM's (status 200 and a cut-off JSON unless given); `headers` are added
   * to or replace the defaults, and `transfer-encoding: chunked` drops the content-length.
   */
  | { kind: 'garbage'; status?: number; body?: string; headers?: Record<string, string> };

export interface OsrmServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** HTTP requests received so far (connections destroyed in 'down' mode never get that far). */
  readonly requests: number;
  /** Path and query of the last request, as sent. */
  readonly lastPath: string | undefined;
  setMode(mode: OsrmServerMode): void;
  close(): Promise<void>;
}

/** `[lon, lat]` of the point `x` metres east and `y` metres north of the grid's origin. */
export function gridPoint(x: number, y: number, grid: Readonly<Grid> = MONACO_GRID): [number, number] {
  const g = resolveGrid(grid);
  return toLonLat(g, x, y);
}

export async function startOsrmServer(options: StandInOptions = {}): Promise<OsrmServer> {
  const config = resolveConfig(options);
  let mode: OsrmServerMode = { kind: 'normal' };
  let requests = 0;
  let lastPath: string | undefined;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests++;
    lastPath = req.url;
    const current = mode;
    if (current.kind === 'down') {
      req.socket.destroy();
      return;
    }
    if (current.kind === 'error') {
      send(
        res,
        current.status ?? 400,
        errorBody(current.code, current.message ?? `Stand-in error ${current.code}`),
      );
      return;
    }
    if (current.kind === 'garbage') {
      const body =
        current.body ?? '{"code":"Ok","matchings":[{"confidence":0.9,"geometry":"qajlrAoy}cM_Eh@gFp@';
      const headers: Record<string, string | number> = {
        'content-type': 'application/json; charset=UTF-8',
        'content-length': Buffer.byteLength(body),
        ...current.headers,
      };
      // A streamed body has no length.
      if (headers['transfer-encoding'] === 'chunked') delete headers['content-length'];
      res.writeHead(current.status ?? 200, headers);
      res.end(body);
      return;
    }
    let reply: OsrmAnswer;
    try {
      reply = answer(req.url ?? '/', config);
    } catch (err) {
      // osrm-routed answers an exception with a stock 500; a bug here should fail a test, not the process.
      console.error('stand-in OSRM failed on', req.url, err);
      res.writeHead(500, { 'content-type': 'text/html' });
      res.end('<html><head><title>Internal Server Error</title></head></html>');
      return;
    }
    if (current.kind === 'slow') {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed) send(res, reply.status, reply.body);
      }, current.delayMs);
      timers.add(timer);
      res.on('close', () => {
        clearTimeout(timer);
        timers.delete(timer);
      });
      return;
    }
    send(res, reply.status, reply.body);
  });
  // osrm-routed closes idle keep-alive connections after 5 s (`keep-alive: timeout=5`).
  server.keepAliveTimeout = 5000;
  server.on('connection', (socket: Socket) => {
    if (mode.kind === 'down') {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get lastPath() {
      return lastPath;
    },
    setMode(next: OsrmServerMode): void {
      mode = next;
      if (next.kind === 'down') for (const s of sockets) s.destroy();
    },
    close(): Promise<void> {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  // The headers osrm-routed sends (request_handler.cpp); Node adds connection and keep-alive itself.
  res.writeHead(status, {
    'access-control-allow-origin': '*',
    'access-control-allow-methods': 'GET',
    'access-control-allow-headers': 'X-Requested-With, Content-Type',
    'content-type': 'application/json; charset=UTF-8',
    'content-disposition': 'inline; filename="response.json"',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

// ---------------------------------------------------------------------------------------------------------
// Constants ported from osrm-backend

/** util/coordinate_calculation.hpp: the radius OSRM's haversine distance uses, in metres. */
const OSRM_EARTH_RADIUS = 6372797.560856;
const RAD = Math.PI / 180;
/** routing_algorithms/map_matching.hpp: default GPS standard deviation, metres. */
const DEFAULT_GPS_PRECISION = 5;
/** plugins/match.cpp: candidates are searched within 3 sigma. */
const RADIUS_MULTIPLIER = 3;
/** map_matching.cpp */
const MAX_BROKEN_STATES = 10;
const MATCHING_BETA = 10;
const MAX_DISTANCE_DELTA = 2000;
/** profiles/car.lua: max_speed_for_map_matching = 180/3.6. */
const MAX_MATCHING_SPEED_MPS = 180 / 3.6;
/** engine/hint.hpp: a base64-encoded hint is 112 characters in this release (see the fixtures). */
const ENCODED_HINT_SIZE = 112;
/** The services osrm-routed registers, all at version 1. */
const SERVICES = new Set(['route', 'nearest', 'table', 'match', 'trip', 'tile']);
const INVALID = -1;

// ---------------------------------------------------------------------------------------------------------
// Request handling: a pure function of the request path, so tests can also call it without HTTP.

interface Config {
  grid: ResolvedGrid;
  speedMps: number;
  maxMatchingSize: number;
}

interface ResolvedGrid extends Grid {
  /** Index of the outermost street on each side: streets are k = -n .. n. */
  n: number;
  /** Metres per degree of longitude at the origin. */
  mPerDegLon: number;
  mPerDegLat: number;
}

function resolveGrid(grid: Partial<Grid>): ResolvedGrid {
  const origin = grid.origin ?? MONACO_GRID.origin;
  const spacingM = grid.spacingM ?? MONACO_GRID.spacingM;
  const extentM = grid.extentM ?? MONACO_GRID.extentM;
  if (!(spacingM > 0) || !(extentM >= 0)) throw new RangeError('stand-in OSRM: bad grid');
  const mPerDegLat = OSRM_EARTH_RADIUS * RAD;
  return {
    origin: [origin[0], origin[1]],
    spacingM,
    extentM,
    n: Math.floor(extentM / spacingM),
    mPerDegLat,
    mPerDegLon: mPerDegLat * Math.cos(origin[1] * RAD),
  };
}

function resolveConfig(options: StandInOptions): Config {
  return {
    grid: resolveGrid(options.grid ?? {}),
    speedMps: options.speedMps ?? 50 / 3.6,
    maxMatchingSize: options.maxMatchingSize ?? 100,
  };
}

export interface OsrmAnswer {
  status: number;
  body: Record<string, unknown>;
}

function errorBody(code: string, message: string): Record<string, unknown> {
  // osrm-routed renders errors as { message, code } (see the fixtures).
  return { message, code };
}

function fail(code: string, message: string): OsrmAnswer {
  return { status: 400, body: errorBody(code, message) };
}

/** Answers one request path (with its query) like osrm-routed would, over the stand-in grid. */
export function handleOsrmRequest(rawPath: string, options: StandInOptions = {}): OsrmAnswer {
  return answer(rawPath, resolveConfig(options));
}

function answer(rawPath: string, config: Config): OsrmAnswer {
  // request_handler.cpp URI-decodes the whole request before parsing it.
  const request = uriDecode(rawPath);
  const url = parseUrl(request);
  if ('errorAt' in url) {
    const pos = url.errorAt;
    const context = request.slice(Math.max(0, pos - 3), Math.min(pos + 3, request.length));
    return fail('InvalidUrl', `URL string malformed close to position ${pos}: "${context}"`);
  }
  if (!SERVICES.has(url.service)) return fail('InvalidService', `Service ${url.service} not found!`);
  if (url.version !== 1) return fail('InvalidVersion', `Service ${url.service} not found!`);
  if (url.service !== 'match') {
    return fail('NotImplemented', `The stand-in OSRM serves only the match service, not ${url.service}.`);
  }
  return handleMatch(url.query, url.prefixLength, config);
}

function uriDecode(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

// ---------------------------------------------------------------------------------------------------------
// URL grammar (url_parser.cpp): '/' > service > '/' > 'v' > version > '/' > profile > '/' > query

function isIdentifierChar(c: string): boolean {
  return /^[A-Za-z0-9_.~:-]$/.test(c);
}

/**
 * The characters osrm-routed takes in the query part: its polyline characters plus `=,;:&().` and
 * percent-escapes. `-` is listed explicitly: negative coordinates are everyday input.
 */
function isQueryChar(c: string): boolean {
  return /^[A-Za-z0-9_.\-[\]{}@?|\\~`^=,;:&()]$/.test(c);
}

type ParsedUrl = { service: string; version: number; profile: string; query: string; prefixLength: number };

function parseUrl(s: string): ParsedUrl | { errorAt: number } {
  // The first element failing is a soft failure: the parser stays at 0.
  if (s[0] !== '/') return { errorAt: 0 };
  let i = 1;
  const identifier = (): string | null => {
    const start = i;
    while (i < s.length && isIdentifierChar(s[i]!)) i++;
    return i > start ? s.slice(start, i) : null;
  };
  const service = identifier();
  if (service === null) return { errorAt: i };
  if (s[i] !== '/') return { errorAt: i };
  i++;
  if (s[i] !== 'v') return { errorAt: i };
  i++;
  const versionStart = i;
  while (i < s.length && s[i]! >= '0' && s[i]! <= '9') i++;
  const version = Number(s.slice(versionStart, i));
  if (i === versionStart || version > 0xffff_ffff) return { errorAt: versionStart };
  if (s[i] !== '/') return { errorAt: i };
  i++;
  const profile = identifier();
  if (profile === null) return { errorAt: i };
  if (s[i] !== '/') return { errorAt: i };
  i++;
  const prefixLength = i;
  let query = '';
  while (i < s.length) {
    const c = s[i]!;
    if (c === '%') {
      // percent_encoding = '%' > 2 hex digits
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { errorAt: i + 1 };
      query += String.fromCharCode(Number.parseInt(hex, 16));
      i += 3;
      continue;
    }
    if (!isQueryChar(c)) break;
    query += c;
    i++;
  }
  if (i === prefixLength) return { errorAt: i };
  // The grammar matched a prefix only: the rest is the error.
  if (i !== s.length) return { errorAt: i };
  return { service, version: Number(version), profile, query, prefixLength };
}

// ---------------------------------------------------------------------------------------------------------
// Match parameter grammar (base_, route_ and match_parameters_grammar.hpp), with Spirit Qi's semantics:
// a parser either matches and advances, fails softly (the caller tries something else from the same
// place), or, after `>`, fails hard with the position of the part that did not match.

class Expectation {
  readonly at: number;
  constructor(at: number) {
    this.at = at;
  }
}

type Geometries = 'polyline' | 'polyline6' | 'geojson';
type Overview = 'simplified' | 'full' | 'false';

interface MatchParams {
  coordinates: Array<[number, number]>;
  hints: Array<string | null>;
  radiuses: Array<number | null>;
  bearings: Array<[number, number] | null>;
  approaches: Array<string | null>;
  exclude: string[];
  generateHints: boolean;
  skipWaypoints: boolean;
  waypoints: number[];
  steps: boolean;
  annotations: boolean;
  geometries: Geometries;
  overview: Overview;
  timestamps: number[];
  gaps: 'split' | 'ignore';
  tidy: boolean;
  format: 'json' | 'flatbuffers';
}

class QueryParser {
  readonly s: string;
  i = 0;
  readonly p: MatchParams = {
    coordinates: [],
    hints: [],
    radiuses: [],
    bearings: [],
    approaches: [],
    exclude: [],
    generateHints: true,
    skipWaypoints: false,
    waypoints: [],
    steps: false,
    annotations: false,
    geometries: 'polyline',
    overview: 'simplified',
    timestamps: [],
    gaps: 'split',
    tidy: false,
    format: 'json',
  };

  constructor(s: string) {
    this.s = s;
  }

  /** root = query_rule > format > -('?' > option % '&'); returns false for a soft failure at 0. */
  parse(): boolean {
    const coordinates = this.coordinates();
    if (coordinates === null) return false;
    this.p.coordinates = coordinates;
    const format = this.symbol(['.json', '.flatbuffers']);
    if (format !== null) this.p.format = format === '.json' ? 'json' : 'flatbuffers';
    if (this.s[this.i] === '?') {
      this.i++;
      if (!this.list(() => this.option(), '&')) throw new Expectation(this.i);
    }
    return true;
  }

  #regex(re: RegExp): string | null {
    re.lastIndex = this.i;
    const m = re.exec(this.s);
    if (m === null) return null;
    this.i += m[0].length;
    return m[0];
  }

  lit(text: string): boolean {
    if (!this.s.startsWith(text, this.i)) return false;
    this.i += text.length;
    return true;
  }

  /** qi::symbols: the longest entry that matches here. */
  symbol<T extends string>(entries: readonly T[]): T | null {
    let best: T | null = null;
    for (const e of entries)
      if (this.s.startsWith(e, this.i) && (best === null || e.length > best.length)) best = e;
    if (best !== null) this.i += best.length;
    return best;
  }

  /** `a % sep`: one or more, a failed `a` after a separator gives the separator back. */
  list(element: () => boolean, sep: string): boolean {
    if (!element()) return false;
    for (;;) {
      const save = this.i;
      if (this.s[this.i] !== sep) return true;
      this.i++;
      if (!element()) {
        this.i = save;
        return true;
      }
    }
  }

  expect(ok: boolean, at: number): void {
    if (!ok) throw new Expectation(at);
  }

  /**
   * OSRM's coordinate double: no exponent, no nan/inf, and a trailing dot is not taken when `json`
   * follows it (no_trailing_dot_policy), so `43.json` is 43 then `.json`.
   */
  jsonDouble(): number | null {
    const m = this.#regex(/[+-]?(?:\d+(?:\.(?!json)\d*)?|\.\d+)/y);
    return m === null ? null : Number(m);
  }

  /** qi::double_ (radiuses): exponents and nan/inf allowed. */
  double(): number | null {
    const m = this.#regex(/[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf(?:inity)?)/iy);
    if (m === null) return null;
    const lower = m.toLowerCase().replace(/^[+]/, '');
    if (lower.endsWith('nan')) return Number.NaN;
    if (lower.endsWith('inf') || lower.endsWith('infinity'))
      return lower.startsWith('-') ? -Infinity : Infinity;
    return Number(m);
  }

  uint32(): number | null {
    const save = this.i;
    const m = this.#regex(/\d+/y);
    if (m === null) return null;
    const v = Number(m);
    if (v > 0xffff_ffff) {
      this.i = save;
      return null;
    }
    return v;
  }

  short(): number | null {
    const save = this.i;
    const m = this.#regex(/[+-]?\d+/y);
    if (m === null) return null;
    const v = Number(m);
    if (v < -32768 || v > 32767) {
      this.i = save;
      return null;
    }
    return v;
  }

  bool(): boolean | null {
    if (this.lit('true')) return true;
    if (this.lit('false')) return false;
    return null;
  }

  coordinates(): Array<[number, number]> | null {
    const coords: Array<[number, number]> = [];
    const location = (): boolean => {
      const lon = this.jsonDouble();
      if (lon === null) return false;
      this.expect(this.lit(','), this.i);
      const at = this.i;
      const lat = this.jsonDouble();
      this.expect(lat !== null, at);
      coords.push([lon, lat!]);
      return true;
    };
    if (this.list(location, ';')) return coords;
    for (const [prefix, precision] of [
      ['polyline6(', 6],
      ['polyline(', 5],
    ] as const) {
      if (!this.lit(prefix)) continue;
      const at = this.i;
      const encoded = this.#regex(/[A-Za-z0-9_.\-[\]{}@?|\\%~`^]+/y);
      this.expect(encoded !== null, at);
      this.expect(this.lit(')'), this.i);
      try {
        return decodePolyline(encoded!, precision);
      } catch {
        // osrm-routed decodes whatever it gets; a broken polyline leaves too few coordinates here.
        return [];
      }
    }
    return null;
  }

  /** `lit(name=) > value`: soft failure if the name does not match, hard failure if the value does not. */
  #named(name: string, value: () => boolean): boolean {
    if (!this.lit(`${name}=`)) return false;
    const at = this.i;
    this.expect(value(), at);
    return true;
  }

  option(): boolean {
    const p = this.p;
    return (
      this.#named('timestamps', () => {
        const values: number[] = [];
        const ok = this.list(() => this.#push(values, this.uint32()), ';');
        if (ok) p.timestamps = values;
        return ok;
      }) ||
      this.#named('radiuses', () => {
        const values: Array<number | null> = [];
        this.list(() => {
          const v = this.double();
          values.push(v ?? (this.lit('unlimited') ? Infinity : null));
          return true;
        }, ';');
        p.radiuses = values;
        return true;
      }) ||
      this.#named('hints', () => {
        const values: Array<string | null> = [];
        this.list(() => {
          values.push(this.#regex(new RegExp(`[A-Za-z0-9_=-]{${ENCODED_HINT_SIZE}}`, 'y')));
          return true;
        }, ';');
        p.hints = values;
        return true;
      }) ||
      this.#named('bearings', () => {
        const values: Array<[number, number] | null> = [];
        this.list(() => {
          const bearing = this.short();
          if (bearing === null) {
            values.push(null);
            return true;
          }
          this.expect(this.lit(','), this.i);
          const at = this.i;
          const range = this.short();
          this.expect(range !== null, at);
          values.push([bearing, range!]);
          return true;
        }, ';');
        p.bearings = values;
        return true;
      }) ||
      this.#named('generate_hints', () =>
        this.#flag(this.bool(), (v) => {
          p.generateHints = v;
        }),
      ) ||
      this.#named('approaches', () => {
        const values: Array<string | null> = [];
        this.list(() => {
          values.push(this.symbol(['unrestricted', 'curb', 'opposite']));
          return true;
        }, ';');
        p.approaches = values;
        return true;
      }) ||
      this.#named('exclude', () => {
        const values: string[] = [];
        const ok = this.list(() => this.#push(values, this.#regex(/[A-Za-z0-9]+/y)), ',');
        if (ok) p.exclude = values;
        return ok;
      }) ||
      this.#named('snapping', () => this.symbol(['default', 'any']) !== null) ||
      this.#named('skip_waypoints', () =>
        this.#flag(this.bool(), (v) => {
          p.skipWaypoints = v;
        }),
      ) ||
      this.#named('waypoints', () => {
        const values: number[] = [];
        const ok = this.list(() => this.#push(values, this.uint32()), ';');
        if (ok) p.waypoints = values;
        return ok;
      }) ||
      this.#named('steps', () =>
        this.#flag(this.bool(), (v) => {
          p.steps = v;
        }),
      ) ||
      this.#named('geometries', () => {
        const g = this.symbol(['geojson', 'polyline', 'polyline6'] as const);
        if (g !== null) p.geometries = g;
        return g !== null;
      }) ||
      this.#named('overview', () => {
        const o = this.symbol(['simplified', 'full', 'false'] as const);
        if (o !== null) p.overview = o;
        return o !== null;
      }) ||
      this.#named('annotations', () => {
        if (this.lit('true')) {
          p.annotations = true;
          return true;
        }
        if (this.lit('false')) return true;
        const kinds = ['duration', 'nodes', 'distance', 'weight', 'datasources', 'speed'];
        const ok = this.list(() => this.symbol(kinds) !== null, ',');
        if (ok) p.annotations = true;
        return ok;
      }) ||
      this.#named('gaps', () => {
        const g = this.symbol(['split', 'ignore'] as const);
        if (g !== null) p.gaps = g;
        return g !== null;
      }) ||
      this.#named('tidy', () =>
        this.#flag(this.bool(), (v) => {
          p.tidy = v;
        }),
      )
    );
  }

  #push<T>(values: T[], v: T | null): boolean {
    if (v === null) return false;
    values.push(v);
    return true;
  }

  #flag(v: boolean | null, set: (v: boolean) => void): boolean {
    if (v === null) return false;
    set(v);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The match service and plugin

function sizeMismatch(name: string, size: number, coordinates: number): string | null {
  return size > 0 && size !== coordinates
    ? `Number of elements in ${name} size ${size} does not match coordinate size ${coordinates}`
    : null;
}

function handleMatch(query: string, prefixLength: number, config: Config): OsrmAnswer {
  const parser = new QueryParser(query);
  let position: number | null = null;
  try {
    if (!parser.parse()) position = 0;
    else if (parser.i !== query.length) position = parser.i;
  } catch (err) {
    if (!(err instanceof Expectation)) throw err;
    position = err.at;
  }
  if (position !== null)
    return fail('InvalidQuery', `Query string malformed close to position ${prefixLength + position}`);
  const p = parser.p;

  // engine::api::Coordinate keeps fixed-point 1e-6 degrees.
  const coords = p.coordinates.map(
    ([lon, lat]) => [Math.round(lon * 1e6) / 1e6, Math.round(lat * 1e6) / 1e6] as [number, number],
  );
  const n = coords.length;

  // MatchParameters::IsValid, and getWrongOptionHelp for the message (match_service.cpp).
  const bearingsOk = p.bearings.every(
    (b) => b === null || (b[0] >= 0 && b[0] <= 360 && b[1] >= 0 && b[1] <= 180),
  );
  const valid =
    n >= 2 &&
    (p.hints.length === 0 || p.hints.length === n) &&
    (p.bearings.length === 0 || p.bearings.length === n) &&
    (p.radiuses.length === 0 || p.radiuses.length === n) &&
    (p.approaches.length === 0 || p.approaches.length === n) &&
    (p.timestamps.length === 0 || p.timestamps.length === n) &&
    bearingsOk &&
    p.waypoints.every((w) => w < n);
  if (!valid) {
    const help =
      sizeMismatch('hints', p.hints.length, n) ??
      sizeMismatch('bearings', p.bearings.length, n) ??
      sizeMismatch('radiuses', p.radiuses.length, n) ??
      sizeMismatch('timestamps', p.timestamps.length, n) ??
      (n < 2 ? 'Number of coordinates needs to be at least two.' : '');
    return fail('InvalidOptions', help);
  }
  if (p.waypoints.length > 0)
    return fail('NotImplemented', 'The stand-in OSRM does not implement waypoints.');
  if (p.format !== 'json') return fail('NotImplemented', 'The stand-in OSRM answers only in JSON.');

  // plugins/match.cpp, in its order.
  if (config.maxMatchingSize > 0 && n > config.maxMatchingSize)
    return fail('TooBig', 'Too many trace coordinates');
  if (!coords.every(([lon, lat]) => lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90)) {
    return fail('InvalidValue', 'Invalid coordinate value.');
  }
  for (let i = 1; i < p.timestamps.length; i++) {
    if (p.timestamps[i]! < p.timestamps[i - 1]!) {
      return fail('InvalidValue', 'Timestamps need to be monotonically increasing.');
    }
  }

  const tidied = p.tidy ? tidy(coords, p.timestamps) : keepAll(n);
  const tCoords = tidied.kept.map((i) => coords[i]!);
  const tTimes = p.timestamps.length > 0 ? tidied.kept.map((i) => p.timestamps[i]!) : [];
  const tRadiuses = p.radiuses.length > 0 ? tidied.kept.map((i) => p.radiuses[i]!) : [];

  const grid = config.grid;
  const candidates = tCoords.map((c, t) => {
    const r = tRadiuses[t];
    return findCandidates(grid, c, (r ?? DEFAULT_GPS_PRECISION) * RADIUS_MULTIPLIER);
  });
  if (candidates.every((c) => c.length === 0)) {
    return fail('NoSegment', 'Could not find a matching segment for any coordinate.');
  }
  const subMatchings = mapMatching(grid, candidates, tCoords, tTimes, tRadiuses, p.gaps === 'split');
  if (subMatchings.length === 0) return fail('NoMatch', 'Could not match the trace.');

  return { status: 200, body: makeResponse(config, p, n, tidied, subMatchings) };
}

// ---------------------------------------------------------------------------------------------------------
// Geometry: haversine as OSRM computes it, and the grid's local metric frame

function haversine(a: readonly [number, number], b: readonly [number, number]): number {
  const dLat = (b[1] - a[1]) * RAD;
  const dLon = (b[0] - a[0]) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a[1] * RAD) * Math.cos(b[1] * RAD) * Math.sin(dLon / 2) ** 2;
  return 2 * OSRM_EARTH_RADIUS * Math.atan2(Math.sqrt(h), Math.sqrt(1 - h));
}

function toLocal(g: ResolvedGrid, c: readonly [number, number]): [number, number] {
  return [(c[0] - g.origin[0]) * g.mPerDegLon, (c[1] - g.origin[1]) * g.mPerDegLat];
}

function toLonLat(g: ResolvedGrid, x: number, y: number): [number, number] {
  return [g.origin[0] + x / g.mPerDegLon, g.origin[1] + y / g.mPerDegLat];
}

function fixed6(c: readonly [number, number]): [number, number] {
  return [Math.round(c[0] * 1e6) / 1e6, Math.round(c[1] * 1e6) / 1e6];
}

/** Axis 0: a street of constant latitude (y = k x spacing); axis 1: an avenue of constant longitude. */
interface Candidate {
  axis: 0 | 1;
  k: number;
  /** Snapped position in the grid's local frame, metres. */
  x: number;
  y: number;
  /** Snapped position, 1e-6 degree. */
  location: [number, number];
  /** Great-circle distance from the fix to `location`, metres. */
  distance: number;
}

function streetName(axis: 0 | 1, k: number): string {
  return axis === 0 ? `Street ${k}` : `Avenue ${k}`;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** The nearest point of the nearest street and of the nearest avenue, those within `radius`, nearest first. */
function findCandidates(g: ResolvedGrid, c: readonly [number, number], radius: number): Candidate[] {
  const [x, y] = toLocal(g, c);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return [];
  const s = g.spacingM;
  const edge = g.n * s;
  const out: Candidate[] = [];
  const kStreet = clamp(Math.round(y / s), -g.n, g.n);
  const kAvenue = clamp(Math.round(x / s), -g.n, g.n);
  const options: Array<[0 | 1, number, number, number]> = [
    [0, kStreet, clamp(x, -edge, edge), kStreet * s],
    [1, kAvenue, kAvenue * s, clamp(y, -edge, edge)],
  ];
  for (const [axis, k, sx, sy] of options) {
    const location = fixed6(toLonLat(g, sx, sy));
    const distance = haversine(c, location);
    if (distance <= radius) out.push({ axis, k, x: sx, y: sy, location, distance });
  }
  return out.sort((a, b) => a.distance - b.distance);
}

/** The shortest way along the grid from `a` to `b`, as local vertices; length in metres. */
function gridRoute(
  g: ResolvedGrid,
  a: Candidate,
  b: Candidate,
): { length: number; path: Array<[number, number]> } {
  const path: Array<[number, number]> = [[a.x, a.y]];
  if (a.axis === b.axis && a.k === b.k) {
    // Same street.
  } else if (a.axis !== b.axis) {
    // Crossing streets: through the crossing.
    path.push(a.axis === 0 ? [b.x, a.y] : [a.x, b.y]);
  } else {
    // Parallel streets: along a connecting one, the one nearest `a` among those between the two.
    const s = g.spacingM;
    const ua = a.axis === 0 ? a.x : a.y;
    const ub = a.axis === 0 ? b.x : b.y;
    const lo = clamp(Math.ceil(Math.min(ua, ub) / s), -g.n, g.n);
    const hi = clamp(Math.floor(Math.max(ua, ub) / s), -g.n, g.n);
    let j: number;
    if (lo <= hi) {
      j = clamp(Math.round(ua / s), lo, hi);
    } else {
      const below = clamp(Math.floor(Math.min(ua, ub) / s), -g.n, g.n);
      const above = clamp(Math.ceil(Math.max(ua, ub) / s), -g.n, g.n);
      const cost = (k: number) => Math.abs(ua - k * s) + Math.abs(ub - k * s);
      j = cost(below) <= cost(above) ? below : above;
    }
    const u = j * s;
    if (a.axis === 0) path.push([u, a.y], [u, b.y]);
    else path.push([a.x, u], [b.x, u]);
  }
  path.push([b.x, b.y]);
  let length = 0;
  for (let i = 1; i < path.length; i++) {
    length += Math.abs(path[i]![0] - path[i - 1]![0]) + Math.abs(path[i]![1] - path[i - 1]![1]);
  }
  return { length, path };
}

// ---------------------------------------------------------------------------------------------------------
// tidy (api/match_parameters_tidy.hpp)

interface Tidied {
  /** Original indices of the fixes kept, in order. */
  kept: number[];
  removed: boolean[];
}

function keepAll(n: number): Tidied {
  return { kept: Array.from({ length: n }, (_, i) => i), removed: new Array<boolean>(n).fill(false) };
}

function tidy(coords: ReadonlyArray<[number, number]>, timestamps: readonly number[]): Tidied {
  const n = coords.length;
  const removed = new Array<boolean>(n).fill(false);
  const kept = [0];
  let distance = 0;
  let duration = 0;
  for (let current = 0, next = 1; next < n - 1; current++, next++) {
    distance += haversine(coords[current]!, coords[next]!);
    const overDistance = distance >= 15;
    let keep = overDistance;
    if (timestamps.length > 0) {
      duration += timestamps[next]! - timestamps[current]!;
      keep = overDistance && duration >= 5;
    }
    if (keep) {
      kept.push(next);
      distance = 0;
      duration = 0;
    } else {
      removed[next] = true;
    }
  }
  if (n > 1) kept.push(n - 1);
  return { kept, removed };
}

// ---------------------------------------------------------------------------------------------------------
// The hidden Markov model (routing_algorithms/map_matching.cpp, map_matching/hidden_markov_model.hpp)

const LOG_2_PI = Math.log(2 * Math.PI);

function emissionLogProbability(sigma: number, distance: number): number {
  return -0.5 * (LOG_2_PI + (distance / sigma) * (distance / sigma)) - Math.log(sigma);
}

function transitionLogProbability(dt: number): number {
  return -Math.log(MATCHING_BETA) - dt / MATCHING_BETA;
}

/** map_matching/matching_confidence.hpp: Laplace fits of log(matched / trace length), Bayes-combined. */
function matchingConfidence(traceLength: number, matchedLength: number): number {
  const feature = -Math.log(traceLength) + Math.log(matchedLength);
  if (!Number.isFinite(feature)) return 0;
  const laplace = (location: number, scale: number) =>
    (1 / (2 * scale)) * Math.exp(-Math.abs(feature - location) / scale);
  const positive = 0.696774 * laplace(0.005986, 0.016646);
  const negative = (1 - 0.696774) * laplace(0.054385, 0.458432);
  const norm = positive + negative;
  return positive > negative ? positive / norm : 1 - negative / norm;
}

interface SubMatching {
  /** Indices into the tidied trace. */
  indices: number[];
  nodes: Candidate[];
  alternativesCount: number[];
  confidence: number;
}

function mapMatching(
  g: ResolvedGrid,
  candidates: Candidate[][],
  coords: ReadonlyArray<[number, number]>,
  timestamps: readonly number[],
  radiuses: ReadonlyArray<number | null>,
  allowSplitting: boolean,
): SubMatching[] {
  const n = candidates.length;
  const useTimestamps = timestamps.length > 1;
  let medianSampleTime = 1;
  if (useTimestamps) {
    const diffs: number[] = [];
    for (let i = 1; i < n; i++) diffs.push(timestamps[i]! - timestamps[i - 1]!);
    diffs.sort((a, b) => a - b);
    medianSampleTime = Math.max(1, diffs[Math.floor(diffs.length / 2)]!);
  }
  const maxBrokenTime = medianSampleTime * MAX_BROKEN_STATES;

  const emission = candidates.map((list, t) => {
    const sigma = radiuses[t] ?? DEFAULT_GPS_PRECISION;
    return list.map((c) => emissionLogProbability(sigma, c.distance));
  });

  const viterbi = candidates.map((l) => new Array<number>(l.length).fill(-Infinity));
  const reachable = candidates.map((l) => new Array<boolean>(l.length).fill(false));
  const parents = candidates.map((l) => Array.from({ length: l.length }, () => [0, 0] as [number, number]));
  const pathDistances = candidates.map((l) => new Array<number>(l.length).fill(0));
  const pruned = candidates.map((l) => new Array<boolean>(l.length).fill(true));
  const breakage = new Array<boolean>(n).fill(true);

  const clear = (from: number): void => {
    for (let t = from; t < n; t++) {
      viterbi[t]!.fill(-Infinity);
      reachable[t]!.fill(false);
      for (const p of parents[t]!) p.fill(0);
      pathDistances[t]!.fill(0);
      pruned[t]!.fill(true);
      breakage[t] = true;
    }
  };
  const initialize = (from: number): number => {
    let t = from;
    do {
      for (let s = 0; s < viterbi[t]!.length; s++) {
        viterbi[t]![s] = emission[t]![s]!;
        parents[t]![s] = [t, s];
        pruned[t]![s] = viterbi[t]![s]! < -Number.MAX_VALUE;
        breakage[t] = breakage[t]! && pruned[t]![s]!;
      }
      t++;
    } while (t < n && breakage[t - 1]);
    // Like the original, a start found only at the last fix is no start.
    if (t >= n) return INVALID;
    return t - 1;
  };

  clear(0);
  const initial = initialize(0);
  if (initial === INVALID) return [];

  let breakageBegin = INVALID;
  const splitPoints: number[] = [];
  let prevUnbroken: number[] = [initial];
  for (let t = initial + 1; t < n; t++) {
    const last = prevUnbroken[prevUnbroken.length - 1]!;
    const stepTime = useTimestamps ? timestamps[t]! - timestamps[last]! : 1;
    const maxDistanceDelta = useTimestamps ? stepTime * MAX_MATCHING_SPEED_MPS : MAX_DISTANCE_DELTA;
    const gapInTrace =
      useTimestamps && allowSplitting ? stepTime > maxBrokenTime : t - last > MAX_BROKEN_STATES;

    if (!gapInTrace) {
      const prev = last;
      const straight = haversine(coords[prev]!, coords[t]!);
      for (let s = 0; s < viterbi[prev]!.length; s++) {
        if (pruned[prev]![s]) continue;
        for (let s2 = 0; s2 < viterbi[t]!.length; s2++) {
          let value = viterbi[prev]![s]! + emission[t]![s2]!;
          if (viterbi[t]![s2]! > value) continue;
          const network = gridRoute(g, candidates[prev]![s]!, candidates[t]![s2]!).length;
          const dt = Math.abs(network - straight);
          if (dt >= maxDistanceDelta) continue;
          value += transitionLogProbability(dt);
          if (value > viterbi[t]![s2]!) {
            viterbi[t]![s2] = value;
            parents[t]![s2] = [prev, s];
            pathDistances[t]![s2] = network;
            pruned[t]![s2] = false;
            breakage[t] = false;
          }
        }
      }
      if (breakage[t]) {
        if (breakageBegin === INVALID || t < breakageBegin) breakageBegin = t;
        // Remove both ends of the breakage.
        prevUnbroken.pop();
      } else {
        prevUnbroken.push(t);
      }
    }

    const traceSplit = prevUnbroken.length === 0;
    if (traceSplit || gapInTrace) {
      let splitIndex = t;
      if (breakageBegin !== INVALID) {
        splitIndex = breakageBegin;
        breakageBegin = INVALID;
      }
      splitPoints.push(splitIndex);
      clear(splitIndex);
      const newStart = initialize(splitIndex);
      if (newStart === INVALID) {
        prevUnbroken = [];
        break;
      }
      prevUnbroken = [newStart];
      // The loop's t++ resumes at newStart + 1: this may go back in the trace, as in the original.
      t = newStart;
    }
  }
  if (prevUnbroken.length > 0) splitPoints.push(prevUnbroken[prevUnbroken.length - 1]! + 1);

  const subMatchings: SubMatching[] = [];
  let begin = initial;
  for (const end of splitPoints) {
    let parentT = end - 1;
    while (parentT >= begin && parentT >= 0 && breakage[parentT]) parentT--;
    while (begin < end && breakage[begin]) begin++;
    const lastT = parentT;
    if (parentT - begin + 1 < 2) {
      begin = end;
      continue;
    }
    const column = viterbi[parentT]!;
    let parentS = 0;
    for (let s = 1; s < column.length; s++) if (column[s]! > column[parentS]!) parentS = s;

    const reconstructed: Array<[number, number]> = [];
    while (parentT > begin) {
      reconstructed.unshift([parentT, parentS]);
      reachable[parentT]![parentS] = true;
      const next = parents[parentT]![parentS]!;
      if (parentT === next[0]) break;
      parentT = next[0];
      parentS = next[1];
    }
    reconstructed.unshift([parentT, parentS]);
    reachable[parentT]![parentS] = true;
    if (reconstructed.length < 2) {
      begin = end;
      continue;
    }

    for (let sLast = 0; sLast < viterbi[lastT]!.length; sLast++) {
      let pt = lastT;
      let ps = sLast;
      while (pt > begin) {
        if (reachable[pt]![ps] || pruned[pt]![ps]) break;
        reachable[pt]![ps] = true;
        const next = parents[pt]![ps]!;
        pt = next[0];
        ps = next[1];
      }
      reachable[pt]![ps] = true;
    }

    const m: SubMatching = { indices: [], nodes: [], alternativesCount: [], confidence: 0 };
    let matchingDistance = 0;
    let traceDistance = 0;
    for (let i = 0; i < reconstructed.length; i++) {
      const [t, s] = reconstructed[i]!;
      m.indices.push(t);
      m.nodes.push(candidates[t]![s]!);
      m.alternativesCount.push(reachable[t]!.filter(Boolean).length - 1);
      matchingDistance += pathDistances[t]![s]!;
      if (i > 0) traceDistance += haversine(coords[reconstructed[i - 1]![0]]!, coords[t]!);
    }
    m.confidence = matchingConfidence(traceDistance, matchingDistance);
    subMatchings.push(m);
    begin = end;
  }
  return subMatchings;
}

// ---------------------------------------------------------------------------------------------------------
// The response (api/match_api.hpp, route_api.hpp, waypoint JSON of base_api.hpp)

/** osrm-routed prints doubles with 10 significant digits. */
function sig10(x: number): number {
  return Number(x.toPrecision(10));
}

/** Route, leg and matching distances, durations and weights are rounded to 0.1. */
function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

function makeHint(c: Candidate): string {
  const buf = Buffer.alloc((ENCODED_HINT_SIZE / 4) * 3);
  buf.writeInt32LE(c.axis, 0);
  buf.writeInt32LE(c.k, 4);
  buf.writeInt32LE(Math.round((c.axis === 0 ? c.x : c.y) * 100), 8);
  return buf.toString('base64url');
}

function makeResponse(
  config: Config,
  p: MatchParams,
  n: number,
  tidied: Tidied,
  subMatchings: SubMatching[],
): Record<string, unknown> {
  const g = config.grid;
  const matchings = subMatchings.map((sm) => {
    const legs: Array<Record<string, unknown>> = [];
    const vertices: Array<[number, number]> = [];
    let distance = 0;
    for (let i = 1; i < sm.nodes.length; i++) {
      const route = gridRoute(g, sm.nodes[i - 1]!, sm.nodes[i]!);
      for (const v of route.path) vertices.push(v);
      const duration = route.length / config.speedMps;
      legs.push({
        steps: [],
        weight: round1(duration),
        summary: '',
        duration: round1(duration),
        distance: round1(route.length),
      });
      distance += route.length;
    }
    const duration = distance / config.speedMps;
    const matching: Record<string, unknown> = {
      confidence: sig10(sm.confidence),
      legs,
      weight_name: 'routability',
    };
    if (p.overview !== 'false') matching.geometry = geometryOf(g, vertices, p.overview, p.geometries);
    matching.weight = round1(duration);
    matching.duration = round1(duration);
    matching.distance = round1(distance);
    return matching;
  });

  const body: Record<string, unknown> = { code: 'Ok', matchings };
  if (!p.skipWaypoints) {
    const where: Array<[number, number] | undefined> = new Array(tidied.kept.length);
    subMatchings.forEach((sm, mi) => {
      sm.indices.forEach((t, wi) => {
        where[t] = [mi, wi];
      });
    });
    const tracepoints: unknown[] = [];
    let tidiedIndex = 0;
    for (let i = 0; i < n; i++) {
      if (tidied.removed[i]) {
        tracepoints.push(null);
        continue;
      }
      const at = where[tidiedIndex++];
      if (at === undefined) {
        tracepoints.push(null);
        continue;
      }
      const sm = subMatchings[at[0]]!;
      const node = sm.nodes[at[1]]!;
      const tp: Record<string, unknown> = {
        alternatives_count: sm.alternativesCount[at[1]],
        waypoint_index: at[1],
        distance: sig10(node.distance),
        name: streetName(node.axis, node.k),
        location: node.location,
      };
      if (p.generateHints) tp.hint = makeHint(node);
      tp.matchings_index = at[0];
      tracepoints.push(tp);
    }
    body.tracepoints = tracepoints;
  }
  return body;
}

function geometryOf(
  g: ResolvedGrid,
  local: Array<[number, number]>,
  overview: Overview,
  format: Geometries,
): unknown {
  let path = local.filter((v, i) => i === 0 || v[0] !== local[i - 1]![0] || v[1] !== local[i - 1]![1]);
  if (overview === 'simplified') {
    // Grid paths only turn at crossings: drop the vertices where the path goes straight on.
    path = path.filter((v, i) => {
      if (i === 0 || i === path.length - 1) return true;
      const a = path[i - 1]!;
      const b = path[i + 1]!;
      return !((a[0] === v[0] && v[0] === b[0]) || (a[1] === v[1] && v[1] === b[1]));
    });
  }
  const coordinates = path.map((v) => fixed6(toLonLat(g, v[0], v[1])));
  // A LineString has two vertices even when the matching does not move.
  if (coordinates.length === 1) coordinates.push(coordinates[0]!);
  if (format === 'geojson') return { coordinates, type: 'LineString' };
  return encodePolyline(coordinates, format === 'polyline6' ? 6 : 5);
}
