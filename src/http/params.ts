import { badParam } from '../errors.ts';

/**
 * Strict parsing of query parameters and path segments: a value is either exactly what the API
 * documents or a 400 naming the parameter. No silent clamping, no NaN leaking into a query.
 */

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** The parameter's one value (null when absent); a parameter given twice is refused, never first-wins. */
export function single(q: URLSearchParams, name: string): string | null {
  const all = q.getAll(name);
  if (all.length > 1) throw badParam(name, 'given more than once');
  return all[0] ?? null;
}

export function number(
  q: URLSearchParams,
  name: string,
  min: number,
  max: number,
  fallback?: number,
): number {
  const raw = single(q, name);
  if (raw === null || raw === '') {
    if (fallback !== undefined) return fallback;
    throw badParam(name, 'is required');
  }
  if (!NUMBER.test(raw)) throw badParam(name, `must be a number, got ${JSON.stringify(clip(raw))}`);
  const n = Number(raw);
  if (!(n >= min && n <= max)) throw badParam(name, `must be between ${min} and ${max}, got ${clip(raw)}`);
  return n;
}

export function integer(
  q: URLSearchParams,
  name: string,
  min: number,
  max: number,
  fallback?: number,
): number {
  const n = number(q, name, min, max, fallback);
  if (!Number.isInteger(n)) throw badParam(name, `must be a whole number, got ${n}`);
  return n;
}

export function flag(q: URLSearchParams, name: string): boolean {
  const raw = single(q, name);
  if (raw === null || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw badParam(name, `must be true, false, 1 or 0, got ${JSON.stringify(clip(raw))}`);
}

/** `minLon,minLat,maxLon,maxLat`; minLon > maxLon is a box across the date line. */
export function bbox(q: URLSearchParams, name: string): [number, number, number, number] {
  const raw = single(q, name);
  if (raw === null || raw === '') throw badParam(name, 'is required: minLon,minLat,maxLon,maxLat');
  const parts = raw.split(',');
  if (parts.length !== 4 || !parts.every((p) => NUMBER.test(p.trim()))) {
    throw badParam(
      name,
      `must be four numbers minLon,minLat,maxLon,maxLat, got ${JSON.stringify(clip(raw))}`,
    );
  }
  const [minLon, minLat, maxLon, maxLat] = parts.map(Number) as [number, number, number, number];
  if (!(minLon >= -180 && minLon <= 180 && maxLon >= -180 && maxLon <= 180)) {
    throw badParam(name, 'longitudes must be between -180 and 180');
  }
  if (!(minLat >= -90 && minLat <= 90 && maxLat >= -90 && maxLat <= 90)) {
    throw badParam(name, 'latitudes must be between -90 and 90');
  }
  if (minLat > maxLat) throw badParam(name, 'minLat must not be greater than maxLat');
  return [minLon, minLat, maxLon, maxLat];
}

/** Driver ids and cab numbers: what dispatch systems use, and safe in paths, logs and Redis keys. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$';
const ID = new RegExp(ID_PATTERN);

/** An id from a path segment (percent-encoded). */
export function id(raw: string, name: string): string {
  let s: string;
  try {
    s = decodeURIComponent(raw);
  } catch {
    throw badParam(name, 'is not valid percent-encoding');
  }
  return plainId(s, name);
}

/** An id given literally (a JSON body). */
export function plainId(s: string, name: string): string {
  if (!ID.test(s)) {
    throw badParam(name, `must be 1-64 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit`);
  }
  return s;
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
