// @ts-check
/**
 * Motion along a car's path: where a marker is drawn while it replays the path the stream sent with the
 * car's fix. Pure (no DOM), so test/web-motion.test.ts runs it in Node.
 *
 * A stream frame gives each car that moved its `path` from the previous fix to this one: `[lon, lat, t]`
 * points, t in Unix seconds (straight: the two fixes; along the roads when OSRM matched it: many points,
 * t spread by distance). The page replays it over the next frame interval, so that the marker reaches
 * the fix as the next frame comes: the path's own times are kept in proportion and scaled into that
 * second (a phone that was a few seconds late does not make its car crawl behind the stream).
 */

/** @typedef {[number, number, number]} PathPoint `[lon, lat, t]` */
/** @typedef {{ lat: number, lon: number, heading: number | null }} Place */

/** The streams' frame interval, ms (src/cluster/http-worker.ts ticks once a second). */
export const FRAME_MS = 1000;

/** Below this, a segment's direction is GPS noise, not a heading, metres. */
const MIN_HEADING_M = 0.5;
const DEG = Math.PI / 180;
/** The server's Earth radius (src/geo/distance.ts), so that the pages' distances are its distances. */
const EARTH_M = 6_371_008.8;

/**
 * The place a fraction `f` (0 at the first point, 1 at the last) through a path's time, with the
 * heading of the segment it is on (degrees clockwise from north; null at a standstill).
 *
 * @param {ReadonlyArray<PathPoint>} path at least one point
 * @param {number} f
 * @returns {Place}
 */
export function placeOnPath(path, f) {
  const n = path.length;
  const last = /** @type {PathPoint} */ (path[n - 1]);
  if (n === 1) return { lat: last[1], lon: last[0], heading: null };
  const first = /** @type {PathPoint} */ (path[0]);
  const span = last[2] - first[2];
  // Times that do not advance (a path of one instant): go by the points' order instead.
  /** @param {number} i the fraction of the path's time at its point i */
  const at = (i) => {
    const p = /** @type {PathPoint} */ (path[i]);
    return span > 0 ? (p[2] - first[2]) / span : i / (n - 1);
  };
  const g = Math.min(1, Math.max(0, f));
  let i = 0;
  while (i < n - 2 && at(i + 1) < g) i++;
  const a = /** @type {PathPoint} */ (path[i]);
  const b = /** @type {PathPoint} */ (path[i + 1]);
  const t0 = at(i);
  const t1 = at(i + 1);
  const k = t1 > t0 ? Math.min(1, Math.max(0, (g - t0) / (t1 - t0))) : 1;
  return {
    lat: a[1] + (b[1] - a[1]) * k,
    lon: a[0] + (b[0] - a[0]) * k,
    heading: headingOf(a, b),
  };
}

/**
 * The heading from a to b, degrees clockwise from north; null when they are too close to say.
 *
 * @param {PathPoint} a
 * @param {PathPoint} b
 * @returns {number | null}
 */
export function headingOf(a, b) {
  const y = (b[1] - a[1]) * DEG * EARTH_M;
  const x = (b[0] - a[0]) * DEG * EARTH_M * Math.cos(((a[1] + b[1]) / 2) * DEG);
  if (Math.hypot(x, y) < MIN_HEADING_M) return null;
  return (Math.atan2(x, y) / DEG + 360) % 360;
}

/**
 * Great-circle metres between two points (haversine), as the server measures its radius.
 *
 * @param {number} lat1
 * @param {number} lon1
 * @param {number} lat2
 * @param {number} lon2
 */
export function distanceM(lat1, lon1, lat2, lon2) {
  const dLat = (lat2 - lat1) * DEG;
  // Across the date line, 179.99 and -179.99 are 0.02 apart.
  const dLon = ((((lon2 - lon1 + 540) % 360) + 360) % 360) - 180;
  const dLonRad = dLon * DEG;
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * DEG) * Math.cos(lat2 * DEG) * Math.sin(dLonRad / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.min(1, Math.sqrt(h)));
}
