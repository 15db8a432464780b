/**
 * Great-circle distances on a spherical Earth. Pure functions, degrees in, metres out.
 *
 * A sphere is wrong by up to 0.5 % against the WGS84 ellipsoid, which is far below GPS noise at the
 * distances a dispatcher ranks (a few km), and it keeps the kNN lower bound exact and cheap.
 */

/**
 * Mean Earth radius R1 = (2a + b) / 3 of WGS84, in metres (IUGG, Moritz, "Geodetic Reference System
 * 1980", Bulletin Geodesique 54, 1980; the same value geokdbush and Turf use).
 */
export const EARTH_RADIUS_M = 6371008.8;

/** Radians per degree. */
export const RAD = Math.PI / 180;

/** Length of one degree of latitude (and of longitude on the equator), about 111195.08 m. */
export const METRES_PER_DEGREE_LAT = EARTH_RADIUS_M * RAD;

/** Half the circumference: the largest possible distance, between antipodes. */
export const MAX_DISTANCE_M = Math.PI * EARTH_RADIUS_M;

/** `[minLon, minLat, maxLon, maxLat]` in degrees, with minLon <= maxLon. */
export type LonLatBox = [minLon: number, minLat: number, maxLon: number, maxLat: number];

/**
 * cos(lat) for lat in degrees, with full relative precision up to the poles and exactly 0 at them.
 * Math.cos(90 * RAD) is 6e-17, not 0, and near a pole the rounding of lat * RAD (1e-16 absolute) is a
 * large part of a cosine of 1e-12; 90 - |lat| is exact there (Sterbenz), so its sine is not.
 */
export function cosDeg(lat: number): number {
  if (lat > 45) return Math.sin((90 - lat) * RAD);
  if (lat < -45) return Math.sin((90 + lat) * RAD);
  return Math.cos(lat * RAD);
}

/**
 * Longitude difference lon2 - lon1 brought into [-180, 180], so that 179.99 and -179.99 are 0.02 apart.
 * Subtracting 360 from a difference above 180 is exact (Sterbenz), so points a hair apart across the date
 * line keep their full precision instead of being measured as sin(pi - tiny).
 */
export function lonDelta(lon1: number, lon2: number): number {
  const d = lon2 - lon1;
  return d > 180 ? d - 360 : d < -180 ? d + 360 : d;
}

/**
 * The haversine of the central angle, hav(theta) = sin^2(theta / 2), in [0, 1]. It grows with distance,
 * so the kNN ranks by it and takes the asin only for the results. Both terms are non-negative, so there
 * is no cancellation and the relative error stays at a few ulps at every distance.
 */
export function haversineH(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const sinDLat = Math.sin((lat2 - lat1) * RAD * 0.5);
  const sinDLon = Math.sin(lonDelta(lon1, lon2) * RAD * 0.5);
  const h = sinDLat * sinDLat + cosDeg(lat1) * cosDeg(lat2) * sinDLon * sinDLon;
  return h > 1 ? 1 : h;
}

/**
 * Great-circle distance in metres between two points given in degrees.
 *
 * On the near hemisphere (h <= 1/2) this is the textbook 2R asin(sqrt(h)). On the far one, asin(sqrt(h))
 * is ill-conditioned (h -> 1 at the antipodes, where an ulp of h is ~0.1 m), so the distance is taken
 * from the complement 1 - h = hav(pi - theta), computed directly as the haversine to the antipode of
 * point 2, which keeps full precision there.
 */
export function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const h = haversineH(lat1, lon1, lat2, lon2);
  if (h <= 0.5) return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(h));
  return MAX_DISTANCE_M - 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(antipodeH(lat1, lon1, lat2, lon2)));
}

/** hav(pi - theta): the haversine from point 1 to the antipode (-lat2, lon2 + 180) of point 2. */
function antipodeH(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const sinSumLat = Math.sin((lat1 + lat2) * RAD * 0.5);
  // sin((dLon - 180) / 2)^2 = cos(dLon / 2)^2, which is small (and must stay precise) near 180
  const cosDLon = cosDeg(lonDelta(lon1, lon2) * 0.5);
  const h = sinSumLat * sinSumLat + cosDeg(lat1) * cosDeg(lat2) * cosDLon * cosDLon;
  return h > 1 ? 1 : h;
}

/**
 * Largest value of haversineH for a point at distanceM or closer (Infinity when every point on Earth is).
 * Used to prune a search by radius before any asin is taken.
 */
export function haversineHForDistance(distanceM: number): number {
  if (distanceM >= MAX_DISTANCE_M) return Number.POSITIVE_INFINITY;
  const s = Math.sin(distanceM / (2 * EARTH_RADIUS_M));
  return s * s;
}

/** Metres per degree of longitude along the parallel at lat (0 at the poles). */
export function metresPerDegreeLon(lat: number): number {
  return METRES_PER_DEGREE_LAT * cosDeg(lat);
}

/**
 * Boxes that together cover every point within radiusM of (lat, lon): one box normally, two when the
 * circle crosses the date line (one on each side, touching +/-180), and one box spanning all longitudes
 * when the circle covers a pole.
 *
 * The longitude half-width is that of the meridians tangent to the circle, asin(sin r / cos lat)
 * (J. P. Matuschek, "Finding Points Within a Distance of a Latitude/Longitude Using Bounding
 * Coordinates", 2010), not r / cos lat, which is too narrow away from the equator. The angular radius is
 * widened by one part in 1e9 (6 mm at 6000 km) so that rounding never leaves a point at exactly radiusM
 * outside.
 */
export function bboxAround(lat: number, lon: number, radiusM: number): LonLatBox[] {
  if (!(lat >= -90 && lat <= 90)) throw new RangeError(`bboxAround: lat must be in [-90, 90], got ${lat}`);
  if (!(lon >= -180 && lon <= 180))
    throw new RangeError(`bboxAround: lon must be in [-180, 180], got ${lon}`);
  if (!(radiusM >= 0)) throw new RangeError(`bboxAround: radiusM must be >= 0, got ${radiusM}`);

  const r = (radiusM / EARTH_RADIUS_M) * (1 + 1e-9);
  const rDeg = r / RAD;
  const minLat = lat - rDeg;
  const maxLat = lat + rDeg;
  if (maxLat >= 90 || minLat <= -90 || r >= Math.PI / 2) {
    // The circle reaches a pole, where every meridian meets it.
    return [[-180, minLat < -90 ? -90 : minLat, 180, maxLat > 90 ? 90 : maxLat]];
  }
  // sin r < cos lat here, because the circle stops short of both poles
  const dLon = Math.asin(Math.sin(r) / cosDeg(lat)) / RAD;
  const minLon = lon - dLon;
  const maxLon = lon + dLon;
  if (maxLon - minLon >= 360) return [[-180, minLat, 180, maxLat]];
  if (minLon < -180) {
    return [
      [minLon + 360, minLat, 180, maxLat],
      [-180, minLat, maxLon, maxLat],
    ];
  }
  if (maxLon > 180) {
    return [
      [minLon, minLat, 180, maxLat],
      [-180, minLat, maxLon - 360, maxLat],
    ];
  }
  return [[minLon, minLat, maxLon, maxLat]];
}
