import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { HttpError, notFound } from '../errors.ts';
import { DEFAULT_STREAM_RADIUS_M } from './limits.ts';
import { tileSource } from './tile-url.ts';

/**
 * The pages the daemon serves: the operator's live map at `/`, the rider's screen at `/rider`, their
 * scripts and styles (src/web/, plain browser ES modules, served as they are) under `/assets/`, Leaflet's
 * own files (node_modules/leaflet/dist, a production dependency) under `/assets/leaflet/`, and the map
 * settings the pages need at `/config.json`. Public: the pages ask for a token themselves, and every
 * call they make with it is an API call.
 *
 * Every file is read once, when the HTTP worker starts, and kept with its gzip (when it is worth it) and
 * an ETag of its content, so a request costs a lookup and a write. Caching: the pages, our scripts and
 * the config are revalidated on every load (`no-cache`, then 304 while the ETag matches), so a new
 * release reaches every browser at once; Leaflet, whose version only changes with package-lock.json,
 * may be kept a day. The HTML pages carry a strict Content-Security-Policy: scripts, styles and
 * connections from this origin only (no inline script or style), images from here and the tile server,
 * and `data:` images: Leaflet stops loading a tile it drops (the map zoomed or moved) by pointing it at
 * an empty `data:` GIF, refused and logged as an error otherwise.
 */

export interface PagesOptions {
  /** CABTRACK_MAP_TILE_URL ('' for no tiles). */
  tileUrl: string;
  /** CABTRACK_MAP_ATTRIBUTION (HTML). */
  attribution: string;
}

/** Serves a request for a page or an asset: the route's name for the metrics, or null when not one. */
export type Pages = (req: IncomingMessage, url: URL, res: ServerResponse) => string | null;

interface Asset {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
  etag: string;
  cacheControl: string;
  headers: Record<string, string>;
}

const WEB_DIR = fileURLToPath(new URL('../web/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.map': 'application/json',
};
/** What our own files may be: anything else in src/web (its tsconfig) is not served. */
const APP_FILES = new Set(['.js', '.css', '.svg']);
/** Leaflet's minified script, its source map and stylesheet, and the images the stylesheet names. */
const LEAFLET_FILES = ['leaflet.js', 'leaflet.js.map', 'leaflet.css'];

const REVALIDATE = 'no-cache';
const ONE_DAY = 'public, max-age=86400';

export function createPages(o: PagesOptions): Pages {
  const tiles = tileSource(o.tileUrl);
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${tiles === '' ? '' : ` ${tiles}`}`,
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
  const pageHeaders = {
    'content-security-policy': csp,
    'referrer-policy': 'strict-origin-when-cross-origin',
  };

  const page = (file: string): Asset =>
    asset(readFileSync(join(WEB_DIR, file)), file, REVALIDATE, pageHeaders);
  const pages = new Map<string, Asset>([
    ['/', page('operator.html')],
    ['/rider', page('rider.html')],
  ]);

  const config = asset(
    Buffer.from(
      JSON.stringify({
        tileUrl: o.tileUrl,
        attribution: o.tileUrl === '' ? '' : o.attribution,
        riderRadiusM: DEFAULT_STREAM_RADIUS_M,
      }),
    ),
    'config.json',
    REVALIDATE,
  );

  const assets = new Map<string, Asset>();
  for (const file of readdirSync(WEB_DIR)) {
    if (APP_FILES.has(extname(file))) {
      assets.set(`/assets/${file}`, asset(readFileSync(join(WEB_DIR, file)), file, REVALIDATE));
    }
  }
  const leaflet = join(dirname(createRequire(import.meta.url).resolve('leaflet/package.json')), 'dist');
  for (const file of LEAFLET_FILES) {
    assets.set(`/assets/leaflet/${file}`, asset(readFileSync(join(leaflet, file)), file, ONE_DAY));
  }
  for (const file of readdirSync(join(leaflet, 'images'))) {
    const body = readFileSync(join(leaflet, 'images', file));
    assets.set(`/assets/leaflet/images/${file}`, asset(body, file, ONE_DAY));
  }

  return (req, url, res) => {
    const path = url.pathname;
    let found: Asset | undefined;
    let route: string;
    if (path === '/config.json') {
      found = config;
      route = 'config';
    } else if (pages.has(path)) {
      found = pages.get(path);
      route = 'page';
    } else if (path.startsWith('/assets/')) {
      found = assets.get(path);
      route = 'asset';
    } else return null;
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      throw new HttpError(405, 'method_not_allowed', `method ${method} not allowed here`, 'GET, HEAD');
    }
    if (found === undefined) throw notFound(`asset ${path}`);
    send(req, res, found);
    return route;
  };
}

function asset(
  body: Buffer,
  file: string,
  cacheControl: string,
  headers: Record<string, string> = {},
): Asset {
  const type = TYPES[extname(file)];
  if (type === undefined) throw new Error(`no content type for ${file}`);
  // Images are compressed already; a small file gains less than the header costs.
  const gzip = type.startsWith('image/png') || body.length < 1024 ? null : gzipSync(body, { level: 9 });
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, gzip, type, etag, cacheControl, headers };
}

function send(req: IncomingMessage, res: ServerResponse, a: Asset): void {
  const gzip = a.gzip !== null && acceptsGzip(req.headers['accept-encoding']);
  // Each encoding is its own representation, with its own tag.
  const etag = gzip ? `${a.etag.slice(0, -1)}-gz"` : a.etag;
  res.setHeader('content-type', a.type);
  res.setHeader('cache-control', a.cacheControl);
  res.setHeader('etag', etag);
  res.setHeader('x-content-type-options', 'nosniff');
  if (a.gzip !== null) res.setHeader('vary', 'accept-encoding');
  for (const [k, v] of Object.entries(a.headers)) res.setHeader(k, v);
  if (matches(req.headers['if-none-match'], etag)) {
    res.statusCode = 304;
    res.end();
    return;
  }
  const body = gzip ? a.gzip! : a.body;
  if (gzip) res.setHeader('content-encoding', 'gzip');
  res.setHeader('content-length', body.length);
  res.statusCode = 200;
  // A HEAD answer gets the headers only (node's ServerResponse drops the body).
  res.end(body);
}

/** Accept-Encoding lists gzip (or *) without q=0. */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** If-None-Match names this tag (weakly compared, as RFC 9110 says for it) or is `*`. */
export function matches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}
