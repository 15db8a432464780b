import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseOrderId, parseSessionHex } from '../codec/session.ts';
import { badParam, HttpError, notFound } from '../errors.ts';
import { HOP_HEADER } from '../hosts/peers.ts';
import { log } from '../log.ts';
import type { DriverView } from '../replica/replica.ts';
import type { TripRecord } from '../store/driver.ts';
import {
  CURSOR_PATTERN,
  DEFAULT_BBOX_LIMIT,
  DEFAULT_K,
  DEFAULT_RADIUS_M,
  DEFAULT_STREAM_CARS,
  DEFAULT_STREAM_RADIUS_M,
  MAX_BBOX_LIMIT,
  MAX_BODY_BYTES,
  MAX_K,
  MAX_RADIUS_M,
  MAX_STREAM_CARS,
} from './limits.ts';
import { openApiJson } from './openapi.ts';
import type { Pages } from './pages.ts';
import * as p from './params.ts';

/**
 * What the API needs from the daemon: src/cluster/http-worker.ts answers nearest and bbox from its read
 * replica and sends the operator routes to the drivers' owners through the primary.
 */
export interface Backend {
  nearest(
    lat: number,
    lon: number,
    k: number,
    radius: number,
    free: boolean,
    /** Add each driver's road path from its previous fix (`path`, `matched`). */
    path: boolean,
  ): Promise<Array<DriverView & { distance: number }> | JsonText>;
  bbox(box: [number, number, number, number], after: string, limit: number): Promise<DriverView[]>;
  /**
   * The operator routes for one driver. `hop`: the request came from another host (src/hosts/peers.ts),
   * so it is answered from this host alone, never forwarded again.
   */
  driver(id: string, hop: boolean): Promise<unknown>;
  cab(cab: string, hop: boolean): Promise<unknown>;
  trip(orderId: string, hop: boolean): Promise<TripRecord | null>;
  /**
   * Another host takes the driver over (its fixes now reach that host): this host lets it go and gives
   * its state (position, ring, trip), or null when it does not have it. Hosts only (POST /internal/v1/handoff).
   */
  handOver(id: string, to: string): Promise<unknown>;
  /** True when the session was new. */
  putSession(hi: number, lo: number, driverId: string, cab: string): Promise<boolean>;
  deleteSession(hi: number, lo: number): Promise<boolean>;
  deleteDriver(id: string): Promise<boolean>;
  deleteCab(cab: string): Promise<boolean>;
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): { ok: boolean; detail: Record<string, unknown> };
  ready(): Promise<{ ok: boolean; detail: Record<string, unknown> }>;
  /** A short-lived token that opens streams for this role (POST /v1/stream-tokens). */
  issueStreamToken(role: 'client' | 'operator'): { token: string; expiresAt: number };
  /** The role a stream token grants: null when it is not one, 'expired' when it was. */
  verifyStreamToken(token: string): 'client' | 'operator' | 'expired' | null;
  /**
   * Opens a stream of the cars in a view (src/stream/): it takes over the response; throws an
   * HttpError (503) when no more viewers are taken.
   */
  openStream(view: StreamView, req: IncomingMessage, res: ServerResponse): void;
}

/** What a stream shows: the cars near a point, or those in a box. */
export type StreamView =
  | { kind: 'nearby'; lat: number; lon: number; radius: number; free: boolean; limit: number }
  | { kind: 'bbox'; box: [number, number, number, number] };

/** The route took the response over (a stream): nothing more to send. */
const TAKEN = Symbol('taken');

/** A host id (CABTRACK_HOST_ID), as the hop header carries it. */
const HOST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export interface Tokens {
  operator: string;
  /** Empty: no client token; client routes then take the operator token only. */
  client: string;
}

export interface ApiOptions {
  backend: Backend;
  tokens: Tokens;
  /** The pages and their assets (src/http/pages.ts), served where no API route is. */
  pages?: Pages;
  observe?: (route: string, method: string, status: number, seconds: number) => void;
}

type Role = 'client' | 'operator' | 'public';

/**
 * A body already serialised as JSON, as UTF-8 bytes (the nearest route writes its answer straight from
 * the replica's arrays, without an object per driver or a string: src/replica/json-bytes.ts). Sent as
 * application/json.
 */
export class JsonText {
  readonly bytes: Buffer;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
}

const DRIVERS_OPEN = Buffer.from('{"drivers":');
const DRIVERS_CLOSE = Buffer.from('}');

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export function createApi(options: ApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { backend, tokens } = options;
  const operatorDigest = digest(tokens.operator);
  const clientDigest = tokens.client === '' ? null : digest(tokens.client);
  const observe = options.observe ?? (() => {});

  /**
   * The caller's role. Constant-time comparison: both sides hashed to the same length first. A keep-alive
   * connection sends the same header request after request: its last one and the role it gave are
   * remembered per connection (comparing a client's header with its own previous one tells it nothing
   * of the tokens), which saves a SHA-256 on every request of a polling client app.
   */
  const lastAuth = new WeakMap<object, { header: string; role: 'client' | 'operator' | null }>();
  const roleOf = (req: IncomingMessage): 'client' | 'operator' | null => {
    const h = req.headers.authorization;
    if (h === undefined || !h.startsWith('Bearer ')) return null;
    const seen = lastAuth.get(req.socket);
    if (seen !== undefined && seen.header === h) return seen.role;
    const d = digest(h.slice(7).trim());
    let role: 'client' | 'operator' | null = null;
    if (timingSafeEqual(d, operatorDigest)) role = 'operator';
    else if (clientDigest !== null && timingSafeEqual(d, clientDigest)) role = 'client';
    lastAuth.set(req.socket, { header: h, role });
    return role;
  };

  const authorize = (req: IncomingMessage, need: Role): 'client' | 'operator' | null => {
    if (need === 'public') return null;
    const role = roleOf(req);
    if (role === null) {
      throw new HttpError(401, 'unauthorized', 'a valid Authorization: Bearer <token> header is required');
    }
    if (need === 'operator' && role !== 'operator') {
      throw new HttpError(403, 'forbidden', 'this route needs the operator token');
    }
    return role;
  };

  /** Streams also take a stream token in `?token=` (EventSource cannot send headers). */
  const authorizeStream = (req: IncomingMessage, q: URLSearchParams, need: 'client' | 'operator'): void => {
    const token = p.single(q, 'token');
    if (token === null) {
      authorize(req, need);
      return;
    }
    const role = backend.verifyStreamToken(token);
    if (role === 'expired')
      throw new HttpError(401, 'unauthorized', 'the stream token has expired: ask for a new one');
    if (role === null)
      throw new HttpError(401, 'unauthorized', 'token is not a stream token this service gave out');
    if (need === 'operator' && role !== 'operator') {
      throw new HttpError(403, 'forbidden', 'this stream needs an operator stream token');
    }
  };

  const route = async (
    req: IncomingMessage,
    url: URL,
    res: ServerResponse,
  ): Promise<[string, unknown, number] | [string, typeof TAKEN]> => {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const q = url.searchParams;
    const seg = path.split('/');

    if (path === '/healthz' || path === '/readyz') {
      allow(method, ['GET', 'HEAD']);
      const r = path === '/healthz' ? backend.health() : await backend.ready();
      return [path.slice(1), { status: r.ok ? 'ok' : 'unavailable', ...r.detail }, r.ok ? 200 : 503];
    }
    if (path === '/metrics') {
      allow(method, ['GET']);
      const m = await backend.metrics();
      res.setHeader('content-type', m.contentType);
      return ['metrics', m.body, 200];
    }
    if (path === '/openapi.json') {
      allow(method, ['GET']);
      res.setHeader('content-type', 'application/json');
      return ['openapi', openApiJson, 200];
    }
    if (path === '/v1/stream-tokens') {
      allow(method, ['POST']);
      const role = authorize(req, 'client')!;
      // Any body is ignored (the token's role is the caller's); drain it.
      req.resume();
      return ['stream-tokens', backend.issueStreamToken(role), 201];
    }
    if (path === '/v1/stream/nearby') {
      allow(method, ['GET']);
      authorizeStream(req, q, 'client');
      const lat = p.number(q, 'lat', -90, 90);
      const lon = p.number(q, 'lon', -180, 180);
      const radius = p.number(q, 'radius', 1, MAX_RADIUS_M, DEFAULT_STREAM_RADIUS_M);
      const free = p.flag(q, 'free');
      const limit = p.integer(q, 'limit', 1, MAX_STREAM_CARS, DEFAULT_STREAM_CARS);
      backend.openStream({ kind: 'nearby', lat, lon, radius, free, limit }, req, res);
      return ['stream', TAKEN];
    }
    if (path === '/v1/stream') {
      allow(method, ['GET']);
      authorizeStream(req, q, 'operator');
      backend.openStream({ kind: 'bbox', box: p.bbox(q, 'bbox') }, req, res);
      return ['stream', TAKEN];
    }
    if (path === '/v1/drivers/nearest') {
      allow(method, ['GET']);
      authorize(req, 'client');
      const lat = p.number(q, 'lat', -90, 90);
      const lon = p.number(q, 'lon', -180, 180);
      const k = p.integer(q, 'k', 1, MAX_K, DEFAULT_K);
      const radius = p.number(q, 'radius', 1, MAX_RADIUS_M, DEFAULT_RADIUS_M);
      const free = p.flag(q, 'free');
      const path = p.flag(q, 'path');
      const drivers = await backend.nearest(lat, lon, k, radius, free, path);
      return [
        'nearest',
        drivers instanceof JsonText
          ? new JsonText(Buffer.concat([DRIVERS_OPEN, drivers.bytes, DRIVERS_CLOSE]))
          : { drivers },
        200,
      ];
    }
    if (path === '/v1/drivers') {
      allow(method, ['GET']);
      authorize(req, 'operator');
      const box = p.bbox(q, 'bbox');
      const limit = p.integer(q, 'limit', 1, MAX_BBOX_LIMIT, DEFAULT_BBOX_LIMIT);
      const cursor = p.single(q, 'cursor') ?? '';
      const after = cursor === '' ? '' : decodeCursor(cursor);
      const found = await backend.bbox(box, after, limit);
      const more = found.length > limit;
      const drivers = more ? found.slice(0, limit) : found;
      const next = more ? encodeCursor(drivers[drivers.length - 1]!.id) : null;
      return ['bbox', { drivers, next }, 200];
    }
    if (seg.length === 5 && seg[1] === 'internal' && seg[2] === 'v1' && seg[3] === 'handoff') {
      allow(method, ['POST']);
      authorize(req, 'operator');
      const id = p.id(seg[4]!, 'id');
      const to = hopOf(req);
      if (to === null) {
        throw new HttpError(400, 'bad_request', `only cabtrack hosts call this route (with ${HOP_HEADER})`);
      }
      req.resume();
      return ['handoff', { state: await backend.handOver(id, to) }, 200];
    }
    if (seg.length === 4 && seg[1] === 'v1' && seg[2] === 'drivers') {
      allow(method, ['GET', 'DELETE']);
      authorize(req, 'operator');
      const id = p.id(seg[3]!, 'id');
      if (method === 'DELETE') {
        if (!(await backend.deleteDriver(id))) throw notFound(`driver ${id}`);
        return ['driver', null, 204];
      }
      const d = await backend.driver(id, hopOf(req) !== null);
      if (d === null) throw notFound(`driver ${id}`);
      return ['driver', d, 200];
    }
    if (seg.length === 4 && seg[1] === 'v1' && seg[2] === 'cabs') {
      allow(method, ['GET', 'DELETE']);
      authorize(req, 'operator');
      const cab = p.id(seg[3]!, 'cab');
      if (method === 'DELETE') {
        if (!(await backend.deleteCab(cab))) throw notFound(`cab ${cab}`);
        return ['cab', null, 204];
      }
      const d = await backend.cab(cab, hopOf(req) !== null);
      if (d === null) throw notFound(`cab ${cab}`);
      return ['cab', d, 200];
    }
    if (seg.length === 4 && seg[1] === 'v1' && seg[2] === 'trips') {
      allow(method, ['GET']);
      authorize(req, 'operator');
      const raw = seg[3]!;
      if (parseOrderId(raw) === undefined)
        throw badParam('orderId', 'must be a decimal order id from 1 to 2^64-1');
      const trip = await backend.trip(raw.replace(/^0+/, ''), hopOf(req) !== null);
      if (trip === null) throw notFound(`trip ${raw}`);
      return ['trip', trip, 200];
    }
    if (seg.length === 4 && seg[1] === 'v1' && seg[2] === 'sessions') {
      allow(method, ['PUT', 'DELETE']);
      authorize(req, 'operator');
      const s = parseSessionHex(seg[3]!);
      if (s === undefined) throw badParam('session', 'must be 16 lowercase hex digits');
      if (s.hi === 0 && s.lo === 0) throw badParam('session', 'must not be zero');
      if (method === 'DELETE') {
        if (!(await backend.deleteSession(s.hi, s.lo))) throw notFound(`session ${seg[3]}`);
        return ['session', null, 204];
      }
      const body = await readJson(req);
      const driverId = p.plainId(field(body, 'driverId'), 'driverId');
      // `nearest` would be unreachable as GET /v1/drivers/{id}: that path is the nearest query.
      if (driverId === 'nearest') throw badParam('driverId', 'nearest is reserved (it is a route)');
      const cab = p.plainId(field(body, 'cab'), 'cab');
      const created = await backend.putSession(s.hi, s.lo, driverId, cab);
      return ['session', { session: seg[3], driverId, cab }, created ? 201 : 200];
    }
    const page = options.pages?.(req, url, res) ?? null;
    if (page !== null) return [page, TAKEN];
    throw new HttpError(404, 'not_found', `no route ${method} ${path}`);
  };

  return (req, res) => {
    const started = process.hrtime.bigint();
    let routeName = 'unknown';
    const finish = (status: number, body: unknown): void => {
      res.statusCode = status;
      if (status === 204) res.end();
      else if (typeof body === 'string') res.end(body);
      else if (body instanceof JsonText) {
        res.setHeader('content-type', 'application/json');
        res.end(body.bytes);
      } else {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(body));
      }
      observe(routeName, req.method ?? 'GET', status, Number(process.hrtime.bigint() - started) / 1e9);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://cabtrack');
    } catch {
      finish(400, new HttpError(400, 'bad_request', 'malformed request target').toJSON());
      return;
    }
    route(req, url, res).then(
      (r) => {
        routeName = r[0];
        if (r[1] === TAKEN) {
          const status = res.statusCode;
          observe(routeName, req.method ?? 'GET', status, Number(process.hrtime.bigint() - started) / 1e9);
          return;
        }
        finish(r[2]!, r[1]);
      },
      (err: unknown) => {
        if (err instanceof HttpError) {
          if (err.status === 405) res.setHeader('allow', err.parameter ?? '');
          const body = err.toJSON();
          if (err.status === 405) delete body.error.parameter;
          finish(err.status, body);
          return;
        }
        if (req.destroyed || (err as { code?: string }).code === 'ECONNRESET') {
          // The client hung up mid-request: nothing to answer, and not our error.
          log.debug('client went away', { url: redact(req.url) });
          finish(400, new HttpError(400, 'aborted', 'the client closed the request').toJSON());
          return;
        }
        log.error('request failed', {
          url: redact(req.url),
          err: err instanceof Error ? err.stack : String(err),
        });
        finish(500, new HttpError(500, 'internal', 'internal error').toJSON());
      },
    );
  };
}

/** A request target for the logs: a stream token in it is replaced (no token in any log). */
export function redact(url: string | undefined): string {
  return (url ?? '').replace(/([?&]token=)[^&#]*/g, '$1[redacted]');
}

/** The host a request came from (src/hosts/peers.ts), or null when it came from a client or an operator. */
function hopOf(req: IncomingMessage): string | null {
  const h = req.headers[HOP_HEADER];
  return typeof h === 'string' && HOST_ID.test(h) ? h : null;
}

function allow(method: string, methods: string[]): void {
  // 405 carries the allowed methods in `parameter` for the Allow header (and drops it from the body).
  if (!methods.includes(method)) {
    throw new HttpError(405, 'method_not_allowed', `method ${method} not allowed here`, methods.join(', '));
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', 'body must be application/json');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    req.resume();
    throw new HttpError(413, 'payload_too_large', `body must be at most ${MAX_BODY_BYTES} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, 'payload_too_large', `body must be at most ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_json', 'body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'invalid_json', 'body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (v === undefined) throw badParam(name, 'is required');
  if (typeof v !== 'string') throw badParam(name, `must be a string, got ${typeof v}`);
  return v;
}

const CURSOR = new RegExp(CURSOR_PATTERN);

/** Page cursors are opaque to clients: the last driver id of the page, base64url. */
function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  if (!CURSOR.test(cursor)) throw badParam('cursor', 'is not a cursor this API gave out');
  return Buffer.from(cursor, 'base64url').toString('utf8');
}
