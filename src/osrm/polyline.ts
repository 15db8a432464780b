/**
 * Google's encoded polyline format, as OSRM speaks it: `geometries=polyline` is precision 5 (1e-5 degree,
 * about 1.1 m) and `geometries=polyline6` is precision 6 (1e-6 degree, the fixed-point precision OSRM
 * stores coordinates in, so nothing is lost).
 *
 * The wire format orders each pair latitude first; this module takes and returns `[lon, lat]` pairs, the
 * GeoJSON order OSRM uses everywhere else, so callers never swap axes by hand.
 *
 * Each value is the zig-zag signed difference from the previous one, cut into 5-bit chunks, low chunk
 * first, each chunk + 63 as one ASCII character (0x20 set on every chunk but the last). Arithmetic is done
 * with `*` and `/` rather than bit operators: a difference of 360 degrees at precision 6 is 7.2e8 after the
 * zig-zag shift, which a 32-bit `<<` would still hold, but a malformed string can carry more chunks than that
 * and must fail cleanly instead of wrapping around.
 *
 * Reference: https://developers.google.com/maps/documentation/utilities/polylinealgorithm
 */

export type PolylinePrecision = 5 | 6;

/**
 * Seven chunks hold 35 bits, already more than any valid difference needs (30 bits at precision 6); a
 * longer run of continuation chunks can only be garbage.
 */
const MAX_CHUNKS = 7;

function factorOf(precision: PolylinePrecision): number {
  if (precision === 5) return 1e5;
  if (precision === 6) return 1e6;
  throw new RangeError(`polyline: precision must be 5 or 6, got ${String(precision)}`);
}

/** Rounds half away from zero, like C++ std::round, so that encoding is symmetric around 0. */
function roundAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function pushValue(out: string[], delta: number): void {
  // Zig-zag: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ...
  let n = delta < 0 ? -2 * delta - 1 : 2 * delta;
  while (n >= 0x20) {
    out.push(String.fromCharCode((0x20 | (n % 0x20)) + 63));
    n = Math.floor(n / 0x20);
  }
  out.push(String.fromCharCode(n + 63));
}

/**
 * Encodes `[lon, lat]` pairs. Throws a RangeError for a non-finite coordinate (a programmer error: the
 * caller owns the coordinates).
 */
export function encodePolyline(
  coordinates: ReadonlyArray<readonly [number, number]>,
  precision: PolylinePrecision,
): string {
  const factor = factorOf(precision);
  const out: string[] = [];
  let prevLat = 0;
  let prevLon = 0;
  for (let i = 0; i < coordinates.length; i++) {
    const c = coordinates[i]!;
    const lon = c[0];
    const lat = c[1];
    if (!Number.isFinite(lon) || !Number.isFinite(lat)) {
      throw new RangeError(`polyline: coordinate ${i} is not finite: [${lon}, ${lat}]`);
    }
    const iLat = roundAway(lat * factor);
    const iLon = roundAway(lon * factor);
    pushValue(out, iLat - prevLat);
    pushValue(out, iLon - prevLon);
    prevLat = iLat;
    prevLon = iLon;
  }
  return out.join('');
}

/**
 * Decodes to `[lon, lat]` pairs. The string comes from the network, so every defect is caught: a character
 * outside '?'..'~', a value cut off mid-chunk, a latitude without its longitude, or an overlong run of
 * chunks throws a RangeError naming the offset; nothing else is thrown. Ranges (|lat| <= 90) are the
 * caller's to check: the format itself does not limit them.
 */
export function decodePolyline(encoded: string, precision: PolylinePrecision): Array<[number, number]> {
  const factor = factorOf(precision);
  const out: Array<[number, number]> = [];
  const len = encoded.length;
  let i = 0;
  let lat = 0;
  let lon = 0;
  let pendingLat = 0;
  let haveLat = false;
  while (i < len) {
    const start = i;
    let result = 0;
    let scale = 1;
    let chunks = 0;
    let b: number;
    do {
      if (i >= len) throw new RangeError(`polyline: value starting at ${start} is cut off`);
      b = encoded.charCodeAt(i++) - 63;
      if (b < 0 || b > 0x3f) throw new RangeError(`polyline: invalid character at ${i - 1}`);
      if (++chunks > MAX_CHUNKS) throw new RangeError(`polyline: value starting at ${start} is too long`);
      result += (b % 0x20) * scale;
      scale *= 0x20;
    } while (b >= 0x20);
    const delta = result % 2 === 1 ? -(result + 1) / 2 : result / 2;
    if (haveLat) {
      lat = pendingLat;
      lon += delta;
      out.push([lon / factor, lat / factor]);
      haveLat = false;
    } else {
      pendingLat = lat + delta;
      haveLat = true;
    }
  }
  if (haveLat) throw new RangeError(`polyline: latitude without longitude at the end (${len})`);
  return out;
}
