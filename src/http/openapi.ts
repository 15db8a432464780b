import { HOP_HEADER } from '../hosts/peers.ts';
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
import { ID_PATTERN } from './params.ts';

/**
 * The HTTP API as an OpenAPI 3.1 document, served at GET /openapi.json. Its limits come from the same
 * constants the handlers use (src/http/limits.ts), and the daemon tests validate every response they get
 * against it (test/support/openapi.ts), so a response the document does not describe fails a test.
 *
 * Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect) and closed (`additionalProperties` or
 * `unevaluatedProperties` false): a field the API starts sending has to be documented here first.
 */

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });
const response = (name: string): { $ref: string } => ({ $ref: `#/components/responses/${name}` });
const json = (schema: object): { 'application/json': { schema: object } } => ({
  'application/json': { schema },
});

const UINT32 = { type: 'integer', minimum: 0, maximum: 4_294_967_295 } as const;
const UNIX_S = { ...UINT32, description: 'Unix seconds (the fix time the app reported).' };

/** An error answer whose `code` is one of these (the status says which family). */
function errorResponse(description: string, codes: string[], headers?: object): object {
  return {
    description,
    ...(headers === undefined ? {} : { headers }),
    content: json({
      type: 'object',
      allOf: [ref('Error')],
      properties: { error: { type: 'object', properties: { code: { enum: codes } } } },
    }),
  };
}

/** 400 for any malformed parameter, plus a request target that is not a URL or a client that hung up. */
const BAD_REQUEST_CODES = ['invalid_parameter', 'invalid_json', 'bad_request', 'aborted'];

const idParam = (name: string, what: string): object => ({
  name,
  in: 'path',
  required: true,
  description: `${what}: 1-64 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit (percent-decoded).`,
  schema: ref('Id'),
});

const sessionParam = {
  name: 'session',
  in: 'path',
  required: true,
  description: "The session token as 16 lowercase hex digits (the Track datagram's fixed64), not zero.",
  schema: ref('Session'),
};

const CLIENT = [{ clientToken: [] }, { operatorToken: [] }];
const STREAM_CLIENT = [{ clientToken: [] }, { operatorToken: [] }, { streamToken: [] }];
const STREAM_OPERATOR = [{ operatorToken: [] }, { streamToken: [] }];

const streamTokenParam = {
  name: 'token',
  in: 'query',
  description:
    'A stream token from POST /v1/stream-tokens, for EventSource, which cannot send an Authorization ' +
    'header (never the API token itself in a URL). An operator stream token opens both streams, a client ' +
    'one the nearby stream. Once open, a stream outlives its token; a reconnect after it expired is 401.',
  schema: { type: 'string', pattern: '^v1\\.[co]\\.[0-9]{1,12}\\.[A-Za-z0-9_-]{43}$' },
};

const streamAnswer = (view: string): object => ({
  '200': {
    description:
      `Server-Sent Events: once a second a frame of the cars in ${view} (\`id:\` the frame number; ` +
      '`data:` a StreamFrame); the first frame, and the first after the stream fell behind, is a snapshot ' +
      '(every car in view), the others deltas (the cars that moved, and the ids of those that left: apply ' +
      '`left` first, then `cars`, since a car moving between two cells of the view is in both). A reconnect ' +
      '(with or without Last-Event-ID) starts again from a snapshot. A comment line every 15 s on a quiet ' +
      'stream. The view is whole map cells (Web Mercator tiles: zoom 15 or coarser covering a box; for a ' +
      'rider, the zoom-17 cells nearest it that hold its `limit` cars): a car slightly outside may be sent; ' +
      'clients draw what is inside.',
    content: { 'text/event-stream': { schema: { type: 'string' } } },
  },
  '400': response('BadRequest'),
  '401': response('Unauthorized'),
  '403': response('Forbidden'),
  '500': response('InternalError'),
  '503': errorResponse(
    'This HTTP worker has as many stream viewers as it takes (CABTRACK_STREAM_MAX_VIEWERS).',
    ['unavailable'],
    {
      'Retry-After': {
        description: 'Seconds to wait before trying again.',
        schema: { type: 'string' },
        required: true,
      },
    },
  ),
});
const OPERATOR = [{ operatorToken: [] }];
const PUBLIC: object[] = [];

/** The headers every page, asset and the config answer with (src/http/pages.ts). */
const staticHeaders = {
  ETag: {
    description: 'A tag of the content (of this encoding): send it back in If-None-Match to get a 304.',
    schema: { type: 'string' },
    required: true,
  },
  'Cache-Control': {
    description:
      '`no-cache` (revalidate on every load) for the pages, their scripts and the config; ' +
      "`public, max-age=86400` for Leaflet's files.",
    schema: { type: 'string' },
    required: true,
  },
};

/** GET and HEAD of a page, an asset or the config: the file, or 304 when If-None-Match matches. */
const staticFile = (
  summary: string,
  operationId: string,
  content: object,
  extra: { headers?: object; notFound?: boolean } = {},
): object => {
  const headers = { ...staticHeaders, ...extra.headers };
  const responses = {
    '200': {
      description: 'The file (gzip-encoded when the client accepts it, for text files over 1 KiB).',
      headers,
      content,
    },
    '304': { description: 'Not modified: If-None-Match names its ETag.', headers: staticHeaders },
    ...(extra.notFound === true ? { '404': response('NotFound') } : {}),
    '500': response('InternalError'),
  };
  // HEAD: the same answers without a body (the 200's headers still say what GET would send).
  const { content: _, ...headOk } = responses['200'];
  return {
    get: { operationId, summary, security: PUBLIC, responses },
    head: {
      operationId: `${operationId}Head`,
      summary: `${summary} (headers only)`,
      security: PUBLIC,
      responses: { ...responses, '200': headOk },
    },
  };
};

const html = { 'text/html': { schema: { type: 'string' } } };
const pageHeaders = {
  'Content-Security-Policy': {
    description:
      'Scripts, styles and connections from this origin only (no inline script or style); images from ' +
      'this origin, data: URLs and the tile server of CABTRACK_MAP_TILE_URL.',
    schema: { type: 'string' },
    required: true,
  },
};
const assetFile = { in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._-]+$' } };

/** The errors every operator route can answer: auth, then its parameters, then a bug. */
const operatorErrors = {
  '400': response('BadRequest'),
  '401': response('Unauthorized'),
  '403': response('Forbidden'),
  '500': response('InternalError'),
};

const driverDetail = {
  '200': { description: 'The driver.', content: json(ref('DriverDetail')) },
  ...operatorErrors,
  '404': response('NotFound'),
};

const removed = {
  '204': { description: 'Removed; its sessions are revoked, so its next datagram does not bring it back.' },
  ...operatorErrors,
  '404': response('NotFound'),
  '503': response('Unavailable'),
};

const healthBody = (name: string, description: string, extra: object): object => ({
  type: 'object',
  description,
  required: ['status', 'workers'],
  properties: {
    status: { enum: ['ok', 'unavailable'] },
    workers: { type: 'integer', minimum: 0, description: 'Workers running and bound to the UDP port.' },
    ...extra,
  },
  additionalProperties: false,
  title: name,
});

const health = (summary: string, schema: string, ok: string, down: string): object => {
  const responses = {
    '200': { description: ok, content: json(ref(schema)) },
    '503': { description: down, content: json(ref(schema)) },
  };
  return {
    get: { operationId: schema.toLowerCase(), summary, security: PUBLIC, responses },
    head: {
      operationId: `${schema.toLowerCase()}Head`,
      summary: `${summary} (status only)`,
      security: PUBLIC,
      responses: { '200': { description: ok }, '503': { description: down } },
    },
  };
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'cabtrack',
    version: '0.1.0',
    summary: 'Live positions of taxi and delivery fleets.',
    description:
      'Driver apps send one protobuf `Track` datagram a second over UDP (see proto/track.proto); this API ' +
      'answers client apps (nearest cars) and operators (drivers in a box, by id or cab, trips, sessions).\n\n' +
      'Errors are `{"error":{"code","message","parameter"?}}`. Checks run in this order: the method (405, ' +
      'with an `Allow` header), the token (401 missing or wrong, 403 a client token on an operator route), ' +
      'then the parameters (400, naming the one at fault in `parameter`). A path not listed here answers ' +
      '404 `not_found`, and a method a path does not list answers 405 `method_not_allowed`, both with the ' +
      'Error body. A request target that is not a URL answers 400 `bad_request`.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  servers: [{ url: '/' }],
  security: PUBLIC,
  paths: {
    '/v1/stream-tokens': {
      post: {
        operationId: 'streamToken',
        summary: 'A short-lived token that opens streams, for EventSource',
        description:
          'Valid for 300 s (CABTRACK_STREAM_TOKEN_TTL_S) on every HTTP worker (and every host with the same ' +
          'operator token), for the role of the token that asked: a client token gets a token for the nearby ' +
          'stream, the operator token one for both. A body, if any, is ignored.',
        security: CLIENT,
        responses: {
          '201': {
            description: 'The token, and when it stops opening streams.',
            content: json({
              type: 'object',
              required: ['token', 'expiresAt'],
              properties: {
                token: { type: 'string', minLength: 40 },
                expiresAt: { ...UNIX_S, description: 'Unix seconds.' },
              },
              additionalProperties: false,
            }),
          },
          '401': response('Unauthorized'),
          '500': response('InternalError'),
        },
      },
    },
    '/v1/stream/nearby': {
      get: {
        operationId: 'streamNearby',
        summary: 'A live stream of the cars near a point (the rider view)',
        security: STREAM_CLIENT,
        parameters: [
          {
            name: 'lat',
            in: 'query',
            required: true,
            description: 'Latitude of the point, degrees.',
            schema: { type: 'number', minimum: -90, maximum: 90 },
          },
          {
            name: 'lon',
            in: 'query',
            required: true,
            description: 'Longitude of the point, degrees.',
            schema: { type: 'number', minimum: -180, maximum: 180 },
          },
          {
            name: 'radius',
            in: 'query',
            description: 'The view: cars within this many metres.',
            schema: { type: 'number', minimum: 1, maximum: MAX_RADIUS_M, default: DEFAULT_STREAM_RADIUS_M },
          },
          {
            name: 'free',
            in: 'query',
            description: 'Free cars only: a car that takes an order leaves the view.',
            schema: ref('Flag'),
          },
          {
            name: 'limit',
            in: 'query',
            description:
              'The cars to follow, nearest first. The view is whole map cells, nearest first, until they hold this many cars (or every cell within the radius is in): every car nearer than the cells left out is shown, and a few more. The cells are chosen again as cars come and go, and the frame after is a snapshot.',
            schema: { type: 'integer', minimum: 1, maximum: MAX_STREAM_CARS, default: DEFAULT_STREAM_CARS },
          },
          streamTokenParam,
        ],
        responses: streamAnswer('the circle'),
      },
    },
    '/v1/stream': {
      get: {
        operationId: 'streamBox',
        summary: 'A live stream of the cars in a box (the operator map)',
        security: STREAM_OPERATOR,
        parameters: [
          {
            name: 'bbox',
            in: 'query',
            required: true,
            description:
              '`minLon,minLat,maxLon,maxLat`, degrees; minLon > maxLon is a box across the date line.',
            schema: { type: 'string' },
          },
          streamTokenParam,
        ],
        responses: streamAnswer('the box'),
      },
    },
    '/v1/drivers/nearest': {
      get: {
        operationId: 'nearestDrivers',
        summary: 'The nearest drivers to a point, nearest first by great-circle distance',
        security: CLIENT,
        parameters: [
          {
            name: 'lat',
            in: 'query',
            required: true,
            description: 'Latitude of the point, degrees.',
            schema: { type: 'number', minimum: -90, maximum: 90 },
          },
          {
            name: 'lon',
            in: 'query',
            required: true,
            description: 'Longitude of the point, degrees.',
            schema: { type: 'number', minimum: -180, maximum: 180 },
          },
          {
            name: 'k',
            in: 'query',
            description: 'At most this many drivers.',
            schema: { type: 'integer', minimum: 1, maximum: MAX_K, default: DEFAULT_K },
          },
          {
            name: 'radius',
            in: 'query',
            description: 'Only drivers within this many metres.',
            schema: { type: 'number', minimum: 1, maximum: MAX_RADIUS_M, default: DEFAULT_RADIUS_M },
          },
          {
            name: 'free',
            in: 'query',
            description: 'Free cars only (order id 0).',
            schema: ref('Flag'),
          },
          {
            name: 'path',
            in: 'query',
            description:
              "Add each driver's `path` along the roads from its previous fix to its current one, and " +
              '`matched` (true when OSRM matched it; without OSRM, or past the deadline, a straight path).',
            schema: ref('Flag'),
          },
        ],
        responses: {
          '200': {
            description: 'The drivers, nearest first (ties by id).',
            content: json({
              type: 'object',
              required: ['drivers'],
              properties: { drivers: { type: 'array', maxItems: MAX_K, items: ref('NearestDriver') } },
              additionalProperties: false,
            }),
          },
          '400': response('BadRequest'),
          '401': response('Unauthorized'),
          '500': response('InternalError'),
        },
      },
    },
    '/v1/drivers': {
      get: {
        operationId: 'driversInBox',
        summary: 'The drivers in a box, in id order, a page at a time',
        security: OPERATOR,
        parameters: [
          {
            name: 'bbox',
            in: 'query',
            required: true,
            style: 'form',
            explode: false,
            description:
              '`minLon,minLat,maxLon,maxLat`, degrees. minLat must not be greater than maxLat; ' +
              'minLon greater than maxLon is a box across the date line.',
            schema: {
              type: 'array',
              minItems: 4,
              maxItems: 4,
              prefixItems: [
                { type: 'number', minimum: -180, maximum: 180 },
                { type: 'number', minimum: -90, maximum: 90 },
                { type: 'number', minimum: -180, maximum: 180 },
                { type: 'number', minimum: -90, maximum: 90 },
              ],
              items: false,
            },
          },
          {
            name: 'limit',
            in: 'query',
            description: 'Drivers a page.',
            schema: { type: 'integer', minimum: 1, maximum: MAX_BBOX_LIMIT, default: DEFAULT_BBOX_LIMIT },
          },
          {
            name: 'cursor',
            in: 'query',
            description: 'The `next` of the previous page; absent or empty for the first.',
            schema: { anyOf: [{ const: '' }, { type: 'string', pattern: CURSOR_PATTERN }] },
          },
        ],
        responses: {
          '200': {
            description: 'A page of drivers.',
            content: json({
              type: 'object',
              required: ['drivers', 'next'],
              properties: {
                drivers: { type: 'array', maxItems: MAX_BBOX_LIMIT, items: ref('Driver') },
                next: {
                  description: 'The cursor of the next page; null on the last one.',
                  oneOf: [{ type: 'string', pattern: CURSOR_PATTERN }, { type: 'null' }],
                },
              },
              additionalProperties: false,
            }),
          },
          ...operatorErrors,
        },
      },
    },
    '/v1/drivers/{id}': {
      parameters: [idParam('id', 'The driver id')],
      get: {
        operationId: 'getDriver',
        summary: 'A driver, its recent points, its track along the roads and its current trip',
        security: OPERATOR,
        responses: driverDetail,
      },
      delete: {
        operationId: 'deleteDriver',
        summary: 'Removes the driver at once and revokes its sessions',
        security: OPERATOR,
        responses: removed,
      },
    },
    '/v1/cabs/{cab}': {
      parameters: [idParam('cab', 'The cab number')],
      get: {
        operationId: 'getCab',
        summary: 'The driver of a cab, as GET /v1/drivers/{id}',
        security: OPERATOR,
        responses: driverDetail,
      },
      delete: {
        operationId: 'deleteCab',
        summary: "Removes the cab's driver at once and revokes its sessions",
        security: OPERATOR,
        responses: removed,
      },
    },
    '/v1/trips/{orderId}': {
      parameters: [
        {
          name: 'orderId',
          in: 'path',
          required: true,
          description: 'The order id, decimal, 1 to 2^64-1 (leading zeros allowed).',
          schema: ref('OrderId'),
        },
      ],
      get: {
        operationId: 'getTrip',
        summary: 'An active or finished trip (from Redis when no worker has it in memory)',
        security: OPERATOR,
        responses: {
          '200': { description: 'The trip.', content: json(ref('Trip')) },
          ...operatorErrors,
          '404': response('NotFound'),
          '503': response('Unavailable'),
        },
      },
    },
    '/internal/v1/handoff/{id}': {
      parameters: [idParam('id', 'The driver id')],
      post: {
        operationId: 'handOver',
        summary: 'Another cabtrack host takes the driver over: this host lets it go and answers its state',
        description:
          'Called by the host whose directory claim (Redis, `cabtrack:owner:<id>`) took the driver from this ' +
          `one, with the \`${HOP_HEADER}\` header naming it; not for clients or operators. No body.`,
        security: OPERATOR,
        responses: {
          '200': {
            description: 'Released: its state, or null when this host did not have the driver.',
            content: json({
              type: 'object',
              required: ['state'],
              properties: { state: { oneOf: [ref('DriverState'), { type: 'null' }] } },
              additionalProperties: false,
            }),
          },
          ...operatorErrors,
          '503': response('Unavailable'),
        },
      },
    },
    '/v1/sessions/{session}': {
      parameters: [sessionParam],
      put: {
        operationId: 'putSession',
        summary: 'Registers a session: the driver and cab whose datagrams carry it',
        security: OPERATOR,
        requestBody: {
          required: true,
          description: `At most ${MAX_BODY_BYTES} bytes. Other fields are ignored.`,
          content: json({
            type: 'object',
            required: ['driverId', 'cab'],
            properties: {
              driverId: {
                allOf: [ref('Id')],
                not: { const: 'nearest' },
                description: '`nearest` is refused: it is a route.',
              },
              cab: ref('Id'),
            },
          }),
        },
        responses: {
          '200': { description: 'Replaced an existing session.', content: json(ref('SessionAnswer')) },
          '201': { description: 'A new session.', content: json(ref('SessionAnswer')) },
          ...operatorErrors,
          '413': errorResponse(`The body is larger than ${MAX_BODY_BYTES} bytes.`, ['payload_too_large']),
          '415': errorResponse('The body is not application/json.', ['unsupported_media_type']),
          '503': response('Unavailable'),
        },
      },
      delete: {
        operationId: 'deleteSession',
        summary: 'Revokes the session and removes its driver at once',
        security: OPERATOR,
        responses: removed,
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics, every process of the cluster aggregated',
        security: PUBLIC,
        responses: {
          '200': {
            description: 'The Prometheus text exposition format, version 0.0.4.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          '500': response('InternalError'),
        },
      },
    },
    '/healthz': health('Liveness', 'Health', 'Alive: at least one worker is up.', 'No worker is up.'),
    '/readyz': health(
      'Readiness',
      'Readiness',
      'Every worker is up and bound (with Redis down it stays 200 but says so: degraded, not down).',
      'Not every worker is up yet, or one is being replaced.',
    ),
    '/': staticFile(
      'The operator live map: a page that asks for the operator token, then shows every car in view',
      'operatorPage',
      html,
      { headers: pageHeaders },
    ),
    '/rider': staticFile(
      "The rider's screen: a page that asks for the client token, then shows the free cars near a point",
      'riderPage',
      html,
      { headers: pageHeaders },
    ),
    '/config.json': staticFile('What the pages need to draw the map', 'pageConfig', json(ref('PageConfig'))),
    '/assets/{file}': {
      parameters: [{ ...assetFile, name: 'file', description: "A page's script, stylesheet or icon." }],
      ...staticFile(
        'A script (browser ES module), stylesheet or icon of the pages (src/web/)',
        'pageAsset',
        {
          'text/javascript': { schema: { type: 'string' } },
          'text/css': { schema: { type: 'string' } },
          'image/svg+xml': { schema: { type: 'string' } },
        },
        { notFound: true },
      ),
    },
    '/assets/leaflet/{file}': {
      parameters: [{ ...assetFile, name: 'file', description: 'leaflet.js, leaflet.js.map or leaflet.css.' }],
      ...staticFile(
        "Leaflet's script, its source map and its stylesheet (the leaflet package's dist/)",
        'leafletAsset',
        {
          'text/javascript': { schema: { type: 'string' } },
          'text/css': { schema: { type: 'string' } },
          'application/json': { schema: { type: 'object' } },
        },
        { notFound: true },
      ),
    },
    '/assets/leaflet/images/{file}': {
      parameters: [{ ...assetFile, name: 'file', description: "An image Leaflet's stylesheet names." }],
      ...staticFile(
        "An image of Leaflet's stylesheet",
        'leafletImage',
        { 'image/png': { schema: {} } },
        {
          notFound: true,
        },
      ),
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document',
        security: PUBLIC,
        responses: {
          '200': {
            description: 'The OpenAPI 3.1 document of this API.',
            content: json({
              type: 'object',
              required: ['openapi', 'info', 'paths'],
              properties: {
                openapi: { const: '3.1.0' },
                info: { type: 'object' },
                paths: { type: 'object' },
              },
            }),
          },
        },
      },
    },
  },
  components: {
    securitySchemes: {
      clientToken: {
        type: 'http',
        scheme: 'bearer',
        description: 'The client token (CABTRACK_CLIENT_TOKEN): client routes only.',
      },
      operatorToken: {
        type: 'http',
        scheme: 'bearer',
        description: 'The operator token (CABTRACK_OPERATOR_TOKEN): every route.',
      },
      streamToken: {
        type: 'apiKey',
        in: 'query',
        name: 'token',
        description: 'A stream token (POST /v1/stream-tokens): the streams only.',
      },
    },
    schemas: {
      StreamFrame: {
        type: 'object',
        description: 'The `data:` of a stream event (JSON, one line).',
        required: ['frame', 'time', 'snapshot', 'cars', 'left'],
        properties: {
          frame: { type: 'integer', minimum: 1, description: 'The frame number, also the event id.' },
          time: { type: 'number', description: 'Server time the frame was made, Unix seconds.' },
          snapshot: {
            type: 'boolean',
            description: 'Every car in view (else: the changes since the previous frame).',
          },
          cars: {
            type: 'array',
            description:
              'A snapshot: every car in view, each a StreamCar. A delta: a car new to its map cell is a ' +
              'StreamCar; one that moved within its cell, which the viewer shows already, a StreamMove.',
            items: { oneOf: [ref('StreamCar'), ref('StreamMove')] },
          },
          left: {
            type: 'array',
            items: ref('Id'),
            description: 'Cars that left the view (moved away, or gone).',
          },
        },
        additionalProperties: false,
      },
      StreamCar: {
        type: 'object',
        required: ['id', 'cab', 'lat', 'lon', 'time', 'speed', 'bearing', 'free', 'path'],
        properties: {
          id: ref('Id'),
          cab: ref('Id'),
          lat: { type: 'number' },
          lon: { type: 'number' },
          time: UNIX_S,
          speed: UINT32,
          bearing: UINT32,
          free: { type: 'boolean' },
          path: ref('StreamPath'),
        },
        additionalProperties: false,
      },
      StreamMove: {
        type: 'object',
        description:
          "A car's new fix, for a viewer that shows it already: its cab is unchanged, and its position and " +
          "fix time are the path's last point (on the road when the path was matched).",
        required: ['id', 'speed', 'bearing', 'free', 'path'],
        properties: {
          id: ref('Id'),
          speed: UINT32,
          bearing: UINT32,
          free: { type: 'boolean' },
          path: ref('StreamPath'),
        },
        additionalProperties: false,
      },
      StreamPath: {
        type: 'array',
        minItems: 1,
        description:
          'From the previous fix to this one: `[lon, lat, t]` points, t in Unix seconds, along the roads ' +
          'when OSRM matched it, else straight; the current point alone when the car moved under 20 m ' +
          '(or is new to the view).',
        items: {
          type: 'array',
          prefixItems: [{ type: 'number' }, { type: 'number' }, { type: 'number' }],
          minItems: 3,
          maxItems: 3,
        },
      },
      PageConfig: {
        type: 'object',
        description: 'The map settings of the pages (public: no token).',
        required: ['tileUrl', 'attribution', 'riderRadiusM'],
        properties: {
          tileUrl: {
            type: 'string',
            description: 'CABTRACK_MAP_TILE_URL: a `{z}/{x}/{y}` URL template of map tiles; empty for none.',
          },
          attribution: {
            type: 'string',
            description: 'CABTRACK_MAP_ATTRIBUTION (HTML); empty without tiles.',
          },
          riderRadiusM: {
            type: 'number',
            minimum: 1,
            maximum: MAX_RADIUS_M,
            description: "The rider's view: cars within this many metres of the pick-up point.",
          },
        },
        additionalProperties: false,
      },
      Id: { type: 'string', pattern: ID_PATTERN },
      Session: { type: 'string', pattern: '^[0-9a-f]{16}$', not: { const: '0000000000000000' } },
      OrderId: {
        type: 'string',
        pattern: '^[0-9]{1,20}$',
        description: 'A uint64 order id in decimal (a string: it does not fit a double).',
      },
      Flag: { type: 'string', enum: ['', '0', '1', 'false', 'true'], default: '0' },
      Latitude: { type: 'number', minimum: -90, maximum: 90 },
      Longitude: { type: 'number', minimum: -180, maximum: 180 },
      Driver: {
        type: 'object',
        description: 'A driver at its last accepted fix.',
        required: ['id', 'cab', 'lat', 'lon', 'time', 'speed', 'bearing', 'free'],
        properties: {
          id: ref('Id'),
          cab: ref('Id'),
          lat: ref('Latitude'),
          lon: ref('Longitude'),
          time: UNIX_S,
          speed: { ...UINT32, description: 'km/h, as the app sent it.' },
          bearing: {
            ...UINT32,
            description: 'Degrees clockwise from north, as the app sent it (0-359 by the contract).',
          },
          free: { type: 'boolean', description: 'No current order (order id 0).' },
        },
      },
      PathPoint: {
        type: 'array',
        description: '`[lon, lat, t]`, t in Unix seconds (fractional), spread over the interval by distance.',
        prefixItems: [ref('Longitude'), ref('Latitude'), { type: 'number', minimum: 0 }],
        minItems: 3,
        maxItems: 3,
        items: false,
      },
      Path: {
        type: 'object',
        required: ['path', 'matched'],
        properties: {
          path: { type: 'array', minItems: 1, items: ref('PathPoint') },
          matched: { type: 'boolean', description: 'True when OSRM matched it; false for a straight path.' },
        },
        additionalProperties: false,
      },
      NearestDriver: {
        type: 'object',
        allOf: [ref('Driver')],
        required: ['distance'],
        properties: {
          distance: { type: 'number', minimum: 0, description: 'Great-circle metres from the point.' },
          path: { type: 'array', minItems: 1, items: ref('PathPoint'), description: 'With `path=1`.' },
          matched: { type: 'boolean', description: 'With `path=1`.' },
        },
        dependentRequired: { path: ['matched'], matched: ['path'] },
        unevaluatedProperties: false,
      },
      DriverDetail: {
        type: 'object',
        allOf: [ref('Driver')],
        required: ['orderId', 'seenAt', 'points', 'track', 'trip'],
        properties: {
          orderId: { oneOf: [ref('OrderId'), { type: 'null' }], description: 'The current order.' },
          seenAt: {
            type: 'string',
            format: 'date-time',
            description: 'Server time its last fix was accepted (what idle expiry goes by).',
          },
          points: {
            type: 'array',
            description: 'Its recent accepted fixes, oldest first.',
            items: {
              type: 'object',
              required: ['lat', 'lon', 'time'],
              properties: { lat: ref('Latitude'), lon: ref('Longitude'), time: UNIX_S },
              additionalProperties: false,
            },
          },
          track: { allOf: [ref('Path')], description: 'The recent points along the roads.' },
          trip: { oneOf: [ref('Trip'), { type: 'null' }], description: 'The trip in progress.' },
        },
        unevaluatedProperties: false,
      },
      DriverState: {
        type: 'object',
        description:
          'What a driver carries between hosts (and between workers): position, recent points as ' +
          '(latE6, lonE6, time) triples oldest first, session and its trip.',
        required: [
          'id',
          'cab',
          'sessionHi',
          'sessionLo',
          'latE6',
          'lonE6',
          'time',
          'speed',
          'bearing',
          'orderHi',
          'orderLo',
          'cost',
          'points',
          'trip',
        ],
        properties: {
          id: ref('Id'),
          cab: ref('Id'),
          sessionHi: UINT32,
          sessionLo: UINT32,
          latE6: { type: 'integer', minimum: -90_000_000, maximum: 90_000_000 },
          lonE6: { type: 'integer', minimum: -180_000_000, maximum: 180_000_000 },
          time: UNIX_S,
          speed: UINT32,
          bearing: UINT32,
          orderHi: UINT32,
          orderLo: UINT32,
          cost: UINT32,
          points: { type: 'array', items: { type: 'integer' } },
          trip: {
            oneOf: [
              { type: 'null' },
              {
                type: 'object',
                required: [
                  'orderId',
                  'orderHi',
                  'orderLo',
                  'cost',
                  'distanceM',
                  'startTime',
                  'lastTime',
                  'points',
                ],
                properties: {
                  orderId: ref('OrderId'),
                  orderHi: UINT32,
                  orderLo: UINT32,
                  cost: UINT32,
                  distanceM: { type: 'number', minimum: 0 },
                  startTime: UNIX_S,
                  lastTime: UNIX_S,
                  points: { type: 'integer', minimum: 0 },
                },
                additionalProperties: false,
              },
            ],
          },
        },
        additionalProperties: false,
      },
      Trip: {
        type: 'object',
        required: [
          'orderId',
          'driverId',
          'cab',
          'cost',
          'distanceM',
          'startTime',
          'lastTime',
          'points',
          'active',
        ],
        properties: {
          orderId: ref('OrderId'),
          driverId: ref('Id'),
          cab: ref('Id'),
          cost: { ...UINT32, description: 'Trip cost as last reported, minor currency units.' },
          distanceM: { type: 'number', minimum: 0, description: 'Metres, summed on the server.' },
          startTime: UNIX_S,
          lastTime: UNIX_S,
          points: { type: 'integer', minimum: 0, description: 'Accepted fixes.' },
          active: { type: 'boolean' },
          endReason: {
            enum: ['order_changed', 'expired', 'deleted'],
            description: 'Once the trip has ended.',
          },
        },
        additionalProperties: false,
      },
      SessionAnswer: {
        type: 'object',
        required: ['session', 'driverId', 'cab'],
        properties: { session: ref('Session'), driverId: ref('Id'), cab: ref('Id') },
        additionalProperties: false,
      },
      Health: healthBody('Health', 'Liveness.', {
        remoteCells: {
          type: 'integer',
          minimum: 0,
          description:
            "Several hosts: the other hosts' live cells (host, cell) this HTTP worker's replica has.",
        },
      }),
      Readiness: healthBody('Readiness', 'Readiness.', {
        expected: { type: 'integer', minimum: 1, description: 'Workers configured.' },
        replica: {
          enum: ['synced', 'syncing'],
          description: "This HTTP worker's read replica: synced once it has every ingest worker's snapshot.",
        },
        redis: { enum: ['up', 'down'], description: 'With Redis configured.' },
        degraded: { type: 'string', description: 'While Redis is down: what does not work.' },
        live: {
          enum: ['synced', 'syncing'],
          description:
            "Several hosts: the other hosts' drivers, synced one keyframe interval (CABTRACK_LIVE_KEYFRAME_MS) after this HTTP worker began following the live cells.",
        },
      }),
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: {
                enum: [
                  ...BAD_REQUEST_CODES,
                  'unauthorized',
                  'forbidden',
                  'not_found',
                  'method_not_allowed',
                  'payload_too_large',
                  'unsupported_media_type',
                  'unavailable',
                  'internal',
                ],
              },
              message: { type: 'string', minLength: 1, description: 'For people; may change.' },
              parameter: { type: 'string', description: 'The parameter at fault (400 invalid_parameter).' },
            },
            additionalProperties: false,
          },
        },
        additionalProperties: false,
      },
    },
    responses: {
      BadRequest: errorResponse('A malformed parameter or body.', BAD_REQUEST_CODES),
      Unauthorized: errorResponse('No `Authorization: Bearer` header, or a wrong token.', ['unauthorized']),
      Forbidden: errorResponse('A client token on an operator route.', ['forbidden']),
      NotFound: errorResponse('No such thing (or no such route).', ['not_found']),
      MethodNotAllowed: errorResponse('A method this path does not list.', ['method_not_allowed'], {
        Allow: { description: 'The methods the path takes.', schema: { type: 'string' }, required: true },
      }),
      Unavailable: errorResponse('Redis is down or too slow.', ['unavailable']),
      InternalError: errorResponse('A bug: reported in the log.', ['internal']),
    },
  },
};

/** What GET /openapi.json answers, serialised once. */
export const openApiJson = JSON.stringify(openApiDocument);
