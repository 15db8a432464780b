import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { ConfigError } from './errors.ts';
import { MAX_LIVE_ZOOM, parseRegion, type Region } from './hosts/live-cells.ts';
import { tileUrlProblem } from './http/tile-url.ts';

/**
 * Configuration: the documented defaults in config/default.json, overridden by CABTRACK_* environment
 * variables. Validated once at start-up and frozen; a bad value throws a ConfigError naming the
 * variable, so the daemon never starts half-configured.
 */
export interface Config {
  /** UDP port the driver apps send to (every worker binds it with SO_REUSEPORT). */
  readonly udpPort: number;
  readonly httpPort: number;
  /** Address both sockets bind. */
  readonly host: string;
  /** Ingest worker processes; 0 in the file means one per core. */
  readonly workers: number;
  /** HTTP worker processes (each with a read replica); 0 in the file means one per core. */
  readonly httpWorkers: number;
  /** How often each ingest worker publishes its batch of changes to the read replicas, ms. */
  readonly publishMs: number;
  /** Stream viewers each HTTP worker takes at most; past it a stream is answered 503. */
  readonly streamMaxViewers: number;
  /** How long a stream token (POST /v1/stream-tokens) opens streams, s. */
  readonly streamTokenTtlS: number;
  /** A stream viewer that has skipped every frame this long (its socket full) is cut off, ms. */
  readonly streamMaxBehindMs: number;
  readonly idleTimeoutS: number;
  /** Points kept per driver. */
  readonly trackPoints: number;
  /** Empty means none set: the daemon then generates one (see resolveTokens). */
  readonly operatorToken: string;
  readonly clientToken: string;
  readonly redisUrl: string;
  /** Redis Cluster seed nodes (`host:port`, comma-separated); switches ioredis to cluster mode. */
  readonly redisCluster: string;
  readonly osrmUrl: string;
  /** SO_RCVBUF asked for (the kernel doubles it and caps it at net.core.rmem_max). */
  readonly recvBufferBytes: number;
  readonly maxSpeedKmh: number;
  readonly finishedTrips: number;
  /** With Redis: session lookups a second per worker, at most (past it fixes are refused as throttled). */
  readonly sessionLookupsPerS: number;
  /** With Redis: how long a live driver's session goes without being checked against Redis, s. */
  readonly sessionRecheckS: number;
  /** How long the primary waits for workers' answers to a query. */
  readonly queryTimeoutMs: number;
  /** How long a nearest query waits for map-matched paths before answering with straight ones. */
  readonly pathDeadlineMs: number;
  /** Per-request timeout of OSRM calls. */
  readonly osrmTimeoutMs: number;
  /**
   * The pages' map tiles, a `{z}/{x}/{y}` URL template (src/http/tile-url.ts); '' draws no tiles (the map
   * is then a plain background).
   */
  readonly mapTileUrl: string;
  /** What the map says about the tiles' source (HTML, shown in the map's corner). */
  readonly mapAttribution: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /**
   * This host's id among several sharing one live view over Redis (src/hosts/); '' for a single host.
   * Needs Redis (CABTRACK_REDIS_CLUSTER, or CABTRACK_REDIS_URL) and CABTRACK_HOST_URL.
   */
  readonly hostId: string;
  /** How the other hosts reach this host's HTTP API (http://address:port). */
  readonly hostUrl: string;
  /** The live cells this host follows: boxes (src/hosts/live-cells.ts); empty, the whole world. */
  readonly region: Region;
  /** The live cells' zoom (Web Mercator tiles): every host of one cabtrack must use the same. */
  readonly liveZoom: number;
  /** How often each live cell sends a snapshot of its drivers, ms. */
  readonly liveKeyframeMs: number;
}

type Kind =
  | 'port'
  | 'count'
  | 'positive'
  | 'string'
  | 'url'
  | 'token'
  | 'level'
  | 'nodes'
  | 'tiles'
  | 'text'
  | 'hostId'
  | 'hostUrl'
  | 'region';

/** Kinds for which a variable set to '' means '' (no tiles, no attribution), not "use the default". */
const EMPTY_IS_A_VALUE: ReadonlySet<Kind> = new Set(['tiles', 'text']);

/** Each setting: its key in config/default.json, its environment variable, and what it must be. */
const SETTINGS: ReadonlyArray<readonly [keyof Config, string, Kind, number?, number?]> = [
  ['udpPort', 'CABTRACK_UDP_PORT', 'port'],
  ['httpPort', 'CABTRACK_HTTP_PORT', 'port'],
  ['host', 'CABTRACK_HOST', 'string'],
  ['workers', 'CABTRACK_WORKERS', 'count', 0, 256],
  ['httpWorkers', 'CABTRACK_HTTP_WORKERS', 'count', 0, 256],
  ['publishMs', 'CABTRACK_PUBLISH_MS', 'count', 10, 5000],
  ['streamMaxViewers', 'CABTRACK_STREAM_MAX_VIEWERS', 'count', 0, 1_000_000],
  ['streamTokenTtlS', 'CABTRACK_STREAM_TOKEN_TTL_S', 'count', 1, 86_400],
  ['streamMaxBehindMs', 'CABTRACK_STREAM_MAX_BEHIND_MS', 'count', 1000, 600_000],
  ['idleTimeoutS', 'CABTRACK_IDLE_TIMEOUT_S', 'count', 1, 7 * 86400],
  ['trackPoints', 'CABTRACK_TRACK_POINTS', 'count', 2, 1000],
  ['operatorToken', 'CABTRACK_OPERATOR_TOKEN', 'token'],
  ['clientToken', 'CABTRACK_CLIENT_TOKEN', 'token'],
  ['redisUrl', 'CABTRACK_REDIS_URL', 'url'],
  ['redisCluster', 'CABTRACK_REDIS_CLUSTER', 'nodes'],
  ['osrmUrl', 'CABTRACK_OSRM_URL', 'url'],
  ['recvBufferBytes', 'CABTRACK_RECV_BUFFER_BYTES', 'count', 0, 2 ** 31 - 1],
  ['maxSpeedKmh', 'CABTRACK_MAX_SPEED_KMH', 'positive', 1, 2000],
  ['finishedTrips', 'CABTRACK_FINISHED_TRIPS', 'count', 0, 100_000_000],
  ['sessionRecheckS', 'CABTRACK_SESSION_RECHECK_S', 'count', 1, 86_400],
  ['sessionLookupsPerS', 'CABTRACK_SESSION_LOOKUPS_PER_S', 'count', 1, 10_000_000],
  ['queryTimeoutMs', 'CABTRACK_QUERY_TIMEOUT_MS', 'count', 10, 60_000],
  ['pathDeadlineMs', 'CABTRACK_PATH_DEADLINE_MS', 'count', 1, 10_000],
  ['osrmTimeoutMs', 'CABTRACK_OSRM_TIMEOUT_MS', 'count', 1, 60_000],
  ['mapTileUrl', 'CABTRACK_MAP_TILE_URL', 'tiles'],
  ['mapAttribution', 'CABTRACK_MAP_ATTRIBUTION', 'text'],
  ['logLevel', 'CABTRACK_LOG_LEVEL', 'level'],
  ['hostId', 'CABTRACK_HOST_ID', 'hostId'],
  ['hostUrl', 'CABTRACK_HOST_URL', 'hostUrl'],
  ['region', 'CABTRACK_REGION', 'region'],
  ['liveZoom', 'CABTRACK_LIVE_ZOOM', 'count', 2, MAX_LIVE_ZOOM],
  ['liveKeyframeMs', 'CABTRACK_LIVE_KEYFRAME_MS', 'count', 500, 60_000],
];

const DEFAULTS_FILE = new URL('../config/default.json', import.meta.url);

export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  defaultsFile: URL | string = DEFAULTS_FILE,
): Config {
  const defaults = JSON.parse(readFileSync(defaultsFile, 'utf8')) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, envName, kind, min, max] of SETTINGS) {
    const fromEnv = env[envName];
    const set = fromEnv !== undefined && (fromEnv !== '' || EMPTY_IS_A_VALUE.has(kind));
    const raw: unknown = set ? fromEnv : defaults[key];
    const name = set ? envName : `config/default.json ${key}`;
    if (raw === undefined) throw new ConfigError(name, 'missing');
    out[key] = parse(name, raw, kind, min, max);
  }
  if (out['workers'] === 0) out['workers'] = availableParallelism();
  if (out['httpWorkers'] === 0) out['httpWorkers'] = availableParallelism();
  if (out['hostId'] !== '') {
    if (out['redisUrl'] === '' && out['redisCluster'] === '') {
      throw new ConfigError(
        'CABTRACK_HOST_ID',
        'several hosts share their drivers through Redis: set CABTRACK_REDIS_CLUSTER (or CABTRACK_REDIS_URL)',
      );
    }
    if (out['hostUrl'] === '') {
      throw new ConfigError(
        'CABTRACK_HOST_URL',
        'must be set with CABTRACK_HOST_ID: how the other hosts reach this one (http://address:port)',
      );
    }
  }
  if (out['udpPort'] === out['httpPort']) {
    // Not an error for the kernel (UDP and TCP ports are separate), but a sign of a typo.
    throw new ConfigError('CABTRACK_HTTP_PORT', 'must differ from the UDP port');
  }
  return Object.freeze(out as unknown as Config);
}

function parse(name: string, raw: unknown, kind: Kind, min = 0, max = Number.MAX_SAFE_INTEGER): unknown {
  const text = String(raw).trim();
  switch (kind) {
    case 'port':
      return integer(name, text, 1, 65535);
    case 'count':
      return integer(name, text, min, max);
    case 'positive': {
      const n = Number(text);
      if (text === '' || !Number.isFinite(n) || n < min || n > max) {
        throw new ConfigError(name, `must be a number from ${min} to ${max}, got ${JSON.stringify(text)}`);
      }
      return n;
    }
    case 'string':
      if (text === '') throw new ConfigError(name, 'must not be empty');
      return text;
    case 'url':
      if (text === '') return '';
      try {
        const u = new URL(text);
        if (!/^(https?|rediss?):$/.test(u.protocol)) throw new Error('scheme');
      } catch {
        throw new ConfigError(name, `must be an http(s):// or redis(s):// URL, got ${JSON.stringify(text)}`);
      }
      return text;
    case 'token':
      if (text !== '' && text.length < 16) {
        throw new ConfigError(name, 'must be at least 16 characters (it guards the API)');
      }
      if (/\s/.test(text)) throw new ConfigError(name, 'must not contain white space');
      return text;
    case 'nodes':
      if (text === '') return '';
      for (const node of text.split(',')) {
        const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(node.trim());
        if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
          throw new ConfigError(name, `must be host:port[,host:port...], got ${JSON.stringify(node)}`);
        }
      }
      return text;
    case 'tiles': {
      const problem = tileUrlProblem(text);
      if (problem !== null) throw new ConfigError(name, `${problem}, got ${JSON.stringify(text)}`);
      return text;
    }
    case 'text':
      return text;
    case 'hostId':
      if (text !== '' && !/^[A-Za-z0-9._-]{1,64}$/.test(text)) {
        throw new ConfigError(name, `must be 1-64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(text)}`);
      }
      return text;
    case 'hostUrl':
      if (text === '') return '';
      try {
        const u = new URL(text);
        if (!/^https?:$/.test(u.protocol) || u.search !== '' || u.hash !== '') throw new Error('scheme');
      } catch {
        throw new ConfigError(name, `must be an http(s)://host:port URL, got ${JSON.stringify(text)}`);
      }
      return text.replace(/\/+$/, '');
    case 'region':
      try {
        return parseRegion(text);
      } catch (err) {
        throw new ConfigError(name, (err as Error).message);
      }
    case 'level':
      if (!['debug', 'info', 'warn', 'error'].includes(text)) {
        throw new ConfigError(name, `must be one of debug, info, warn, error, got ${JSON.stringify(text)}`);
      }
      return text;
  }
}

function integer(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(name, `must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(name, `must be from ${min} to ${max}, got ${n}`);
  return n;
}
