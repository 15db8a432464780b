import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { City, DEFAULT_CENTRE, DEFAULT_RADIUS_M, DEFAULT_SPACING_M } from './city.ts';
import type { Registration, RunOptions } from './run.ts';

/*
 * Command-line options of `cabtrack simulate` and `cabtrack demo`, checked once: a bad value throws an
 * OptionError that names the option, and the CLI prints it and exits 2, as the daemon does for config.
 */

export class OptionError extends Error {
  readonly code = 'CABTRACK_OPTION';
  readonly option: string;
  /** `option` is '' when the command line itself is wrong (parseArgs's message names the option). */
  constructor(option: string, message: string) {
    super(option === '' ? message : `--${option}: ${message}`);
    this.name = 'OptionError';
    this.option = option;
  }
}

export const SIMULATE_USAGE = `usage: cabtrack simulate [options]   (npm run simulate -- [options])

  --drivers N          cars (default 1000)
  --rate R             fixes a second per car, at most 1 (default 1)
  --duration S         seconds of driving (each car takes S x R fixes), 0 = until Ctrl-C (default 0)
  --host H             daemon's UDP address (default 127.0.0.1)
  --udp-port P         daemon's UDP port (default CABTRACK_UDP_PORT or 5005)
  --http URL           API base URL for --register api (default http://127.0.0.1:<CABTRACK_HTTP_PORT or 8080>)
  --token T            operator token (default CABTRACK_OPERATOR_TOKEN)
  --register api|redis|none
                       how sessions are registered (default api; redis writes cabtrack:session:<hex> hashes
                       to CABTRACK_REDIS_URL as the dispatch system does; none: already registered)
  --centre LAT,LON     city centre (default ${DEFAULT_CENTRE.lat},${DEFAULT_CENTRE.lon}, Barcelona's Eixample)
  --spacing M          street grid spacing, metres (default ${DEFAULT_SPACING_M})
  --radius M           the grid reaches this far from the centre, metres (default ${DEFAULT_RADIUS_M})
  --bad-share F        share of bad datagrams, 0-1 (default 0.01)
  --offline-share F    share of cars offline at a time, 0-0.5 (default 0.02)
  --offline-min S, --offline-max S
                       length of an offline spell, seconds (default 10 and 90)
  --seed N             seed of everything random (default 1)
  --cars-per-socket N  cars sharing one UDP source port (default 100)
  --report-every S     seconds between progress reports, 0 for none (default 10)
  --id-prefix P        driver ids P-0, P-1, ...; cabs P-0 upper-cased (default sim)
  --json               print the final report as one JSON line on stdout (progress goes to stderr)
`;

const SIMULATE_OPTIONS = {
  drivers: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  host: { type: 'string' },
  'udp-port': { type: 'string' },
  http: { type: 'string' },
  token: { type: 'string' },
  register: { type: 'string' },
  centre: { type: 'string' },
  spacing: { type: 'string' },
  radius: { type: 'string' },
  'bad-share': { type: 'string' },
  'offline-share': { type: 'string' },
  'offline-min': { type: 'string' },
  'offline-max': { type: 'string' },
  seed: { type: 'string' },
  'cars-per-socket': { type: 'string' },
  'report-every': { type: 'string' },
  'id-prefix': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type SimulateCommand =
  | { help: true }
  | { help: false; json: boolean; run: Omit<RunOptions, 'print' | 'signal' | 'onStart'> };

export function parseSimulateArgs(argv: string[], env: NodeJS.ProcessEnv): SimulateCommand {
  const { values: v } = parseOrThrow(argv, SIMULATE_OPTIONS);
  if (v.help === true) return { help: true };
  const drivers = int('drivers', v.drivers, 1000, 1, 10_000_000);
  // A fix carries whole seconds: two fixes of a car in one second would be refused as stale.
  const rate = num('rate', v.rate, 1, 0.001, 1);
  const durationS = num('duration', v.duration, 0, 0, 365 * 86400);
  const udpPort = int('udp-port', v['udp-port'] ?? env['CABTRACK_UDP_PORT'], 5005, 1, 65535);
  const http = v.http ?? `http://127.0.0.1:${env['CABTRACK_HTTP_PORT'] ?? '8080'}`;
  try {
    if (!/^https?:$/.test(new URL(http).protocol)) throw new Error('scheme');
  } catch {
    throw new OptionError('http', `must be an http(s):// URL, got ${JSON.stringify(http)}`);
  }
  const register = (v.register ?? 'api') as Registration;
  if (!['api', 'redis', 'none'].includes(register)) {
    throw new OptionError('register', `must be api, redis or none, got ${JSON.stringify(v.register)}`);
  }
  const { lat, lon } = centre(v.centre);
  const spacingM = num('spacing', v.spacing, DEFAULT_SPACING_M, 20, 2000);
  const radiusM = num('radius', v.radius, DEFAULT_RADIUS_M, 2 * spacingM, 100_000);
  try {
    new City({ centreLat: lat, centreLon: lon, spacingM, radiusM });
  } catch (err) {
    throw new OptionError('radius', (err as Error).message);
  }
  const offlineMinS = num('offline-min', v['offline-min'], 10, 1, 600);
  const offlineMaxS = num('offline-max', v['offline-max'], Math.max(90, offlineMinS), offlineMinS, 600);
  const idPrefix = v['id-prefix'] ?? 'sim';
  // Driver ids are 1-64 characters of A-Z a-z 0-9 . _ : - (README, HTTP API); leave room for the number.
  if (!/^[A-Za-z0-9._:-]{1,40}$/.test(idPrefix)) {
    throw new OptionError('id-prefix', 'must be 1-40 characters of A-Z a-z 0-9 . _ : -');
  }
  const run = {
    drivers,
    rate,
    durationS,
    host: v.host ?? '127.0.0.1',
    udpPort,
    http,
    token: v.token ?? env['CABTRACK_OPERATOR_TOKEN'] ?? '',
    register,
    redisUrl: env['CABTRACK_REDIS_URL'] ?? '',
    centreLat: lat,
    centreLon: lon,
    spacingM,
    radiusM,
    badShare: num('bad-share', v['bad-share'], 0.01, 0, 1),
    offlineShare: num('offline-share', v['offline-share'], 0.02, 0, 0.5),
    offlineMinS,
    offlineMaxS,
    seed: int('seed', v.seed, 1, 0, 0xffff_ffff),
    carsPerSocket: int('cars-per-socket', v['cars-per-socket'], 100, 1, 1_000_000),
    reportEveryS: num('report-every', v['report-every'], 10, 0, 86400),
    idPrefix,
  };
  // Checked last, so that a typo in another option is reported first.
  if (register === 'api' && run.token === '') {
    throw new OptionError(
      'token',
      'needed to register sessions through the API (or set CABTRACK_OPERATOR_TOKEN)',
    );
  }
  if (register === 'redis' && run.redisUrl === '') {
    throw new OptionError('register', 'redis needs CABTRACK_REDIS_URL');
  }
  return { help: false, json: v.json === true, run };
}

export const DEMO_USAGE = `usage: cabtrack demo [options]   (npm run demo -- [options])

Starts the daemon and drives a simulated fleet around the centre until Ctrl-C.

  --drivers N          cars (default 200)
  --udp-port P         daemon's UDP port (default 5005)
  --http-port P        daemon's HTTP port (default 8080)
  --centre LAT,LON     city centre (default ${DEFAULT_CENTRE.lat},${DEFAULT_CENTRE.lon})
  --seed N             (default 1)
`;

const DEMO_OPTIONS = {
  drivers: { type: 'string' },
  'udp-port': { type: 'string' },
  'http-port': { type: 'string' },
  centre: { type: 'string' },
  seed: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface DemoCommand {
  help: boolean;
  drivers: number;
  udpPort: number;
  httpPort: number;
  centreLat: number;
  centreLon: number;
  seed: number;
}

export function parseDemoArgs(argv: string[]): DemoCommand {
  const { values: v } = parseOrThrow(argv, DEMO_OPTIONS);
  const { lat, lon } = centre(v.centre);
  return {
    help: v.help === true,
    drivers: int('drivers', v.drivers, 200, 1, 100_000),
    udpPort: int('udp-port', v['udp-port'], 5005, 1, 65535),
    httpPort: int('http-port', v['http-port'], 8080, 1, 65535),
    centreLat: lat,
    centreLon: lon,
    seed: int('seed', v.seed, 1, 0, 0xffff_ffff),
  };
}

function parseOrThrow<T extends ParseArgsOptionsConfig>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (err) {
    // parseArgs names the option in its message ("Unknown option '--x'"); keep it, add ours.
    throw new OptionError('', (err as Error).message);
  }
}

function num(name: string, text: string | undefined, dflt: number, min: number, max: number): number {
  if (text === undefined) return dflt;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v < min || v > max) {
    throw new OptionError(name, `must be a number in [${min}, ${max}], got ${JSON.stringify(text)}`);
  }
  return v;
}

function int(name: string, text: string | undefined, dflt: number, min: number, max: number): number {
  const v = num(name, text, dflt, min, max);
  if (!Number.isInteger(v)) throw new OptionError(name, `must be an integer, got ${JSON.stringify(text)}`);
  return v;
}

function centre(text: string | undefined): { lat: number; lon: number } {
  if (text === undefined) return { lat: DEFAULT_CENTRE.lat, lon: DEFAULT_CENTRE.lon };
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$/.exec(text);
  const lat = Number(m?.[1]);
  const lon = Number(m?.[2]);
  // Up to 80° (no taxis beyond), and not so near the date line that the grid would cross it.
  if (m === null || Math.abs(lat) > 80 || Math.abs(lon) > 179) {
    throw new OptionError(
      'centre',
      `must be LAT,LON with |LAT| <= 80 and |LON| <= 179, got ${JSON.stringify(text)}`,
    );
  }
  return { lat, lon };
}
