import t from 'tap';
import {
  bboxAround,
  EARTH_RADIUS_M,
  haversineH,
  haversineHForDistance,
  haversineM,
  type LonLatBox,
  lonDelta,
  MAX_DISTANCE_M,
  METRES_PER_DEGREE_LAT,
  metresPerDegreeLon,
  RAD,
} from '../src/geo/distance.ts';
import { Prng } from './support/prng.ts';

// Great-circle distance on the mean-radius sphere, and the boxes that cover a circle.

/**
 * Vincenty's formula for the sphere: an independent oracle, well conditioned at every distance
 * (atan2 of the cross and dot products of the two position vectors).
 */
function vincentyM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const p1 = lat1 * RAD;
  const p2 = lat2 * RAD;
  const dl = (lon2 - lon1) * RAD;
  const y = Math.hypot(
    Math.cos(p2) * Math.sin(dl),
    Math.cos(p1) * Math.sin(p2) - Math.sin(p1) * Math.cos(p2) * Math.cos(dl),
  );
  const x = Math.sin(p1) * Math.sin(p2) + Math.cos(p1) * Math.cos(p2) * Math.cos(dl);
  return EARTH_RADIUS_M * Math.atan2(y, x);
}

/** The point distanceM from (lat, lon) along the initial bearing (degrees clockwise from north). */
function destination(lat: number, lon: number, bearing: number, distanceM: number): [number, number] {
  const d = distanceM / EARTH_RADIUS_M;
  const p1 = lat * RAD;
  const th = bearing * RAD;
  const sinP2 = Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(th);
  const p2 = Math.asin(Math.max(-1, Math.min(1, sinP2)));
  const l2 =
    lon * RAD +
    Math.atan2(Math.sin(th) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
  let lon2 = l2 / RAD;
  lon2 = ((((lon2 + 180) % 360) + 360) % 360) - 180;
  return [p2 / RAD, lon2];
}

/** A latitude uniform over the sphere's area. */
function sphereLat(prng: Prng): number {
  return Math.asin(2 * prng.float() - 1) / RAD;
}

function insideAny(boxes: LonLatBox[], lat: number, lon: number): boolean {
  for (const [minLon, minLat, maxLon, maxLat] of boxes) {
    if (lat >= minLat && lat <= maxLat && lon >= minLon && lon <= maxLon) return true;
  }
  // -180 and 180 are the same meridian.
  if (lon === 180 || lon === -180) {
    for (const [minLon, minLat, maxLon, maxLat] of boxes) {
      if (lat >= minLat && lat <= maxLat && (minLon === -180 || maxLon === 180)) return true;
    }
  }
  return false;
}

t.test('EARTH_RADIUS_M is the IUGG mean radius', async (tt) => {
  tt.equal(EARTH_RADIUS_M, 6371008.8);
  tt.equal(MAX_DISTANCE_M, Math.PI * 6371008.8);
});

t.test('one degree of latitude is about 111195 m', async (tt) => {
  const d = haversineM(0, 0, 1, 0);
  tt.ok(Math.abs(d - METRES_PER_DEGREE_LAT) <= 1e-6, `${d}`);
  tt.equal(Math.round(d), 111195);
  tt.ok(Math.abs(haversineM(48, 2, 49, 2) - METRES_PER_DEGREE_LAT) <= 1e-6);
  tt.ok(Math.abs(haversineM(-89.5, 0, 89.5, 0) - 179 * METRES_PER_DEGREE_LAT) <= 1e-6);
  // Along the equator a degree of longitude is as long as a degree of latitude.
  tt.ok(Math.abs(haversineM(0, 10, 0, 11) - METRES_PER_DEGREE_LAT) <= 1e-6);
});

t.test('the same point is 0 m away, and so is a pole from itself at any longitude', async (tt) => {
  tt.equal(haversineM(48.85, 2.35, 48.85, 2.35), 0);
  tt.equal(haversineM(90, 0, 90, 137), 0);
  tt.equal(haversineM(-90, -45, -90, 179), 0);
  tt.equal(haversineM(0, 180, 0, -180), 0);
});

t.test('antipodes are pi R apart, and near-antipodes keep millimetre precision', async (tt) => {
  tt.ok(Math.abs(haversineM(0, 0, 0, 180) - MAX_DISTANCE_M) <= 1e-6);
  tt.ok(Math.abs(haversineM(90, 0, -90, 0) - MAX_DISTANCE_M) <= 1e-6);
  tt.ok(Math.abs(haversineM(33.3, -117.1, -33.3, 62.9) - MAX_DISTANCE_M) <= 1e-6);
  tt.ok(Math.abs(haversineM(-41.29, 174.78, 41.29, -5.22) - MAX_DISTANCE_M) <= 1e-6);
  // On the equator the distance is the longitude difference; here 1.1 cm short of the antipode, where
  // 2R asin(sqrt(h)) alone is off by centimetres.
  const near = haversineM(0, 0, 0, 179.9999999);
  tt.ok(Math.abs(near - 179.9999999 * METRES_PER_DEGREE_LAT) <= 1e-6, `${near}`);
  const meridian = haversineM(10, 20, -10.0000001, -160);
  tt.ok(Math.abs(meridian - (180 - 0.0000001) * METRES_PER_DEGREE_LAT) <= 1e-6, `${meridian}`);
});

t.test('pairs across the date line are measured the short way, symmetrically', async (tt) => {
  const east = haversineM(10, 179.99, 10, -179.99);
  const west = haversineM(10, -179.99, 10, 179.99);
  tt.equal(east, west);
  tt.ok(Math.abs(east - haversineM(10, -0.01, 10, 0.01)) <= 1e-6, `${east}`);
  tt.ok(east < 2500, 'not the long way round');
  // 2e-7 degrees across the line on the equator: 2.2 cm, to a micrometre.
  const hair = haversineM(0, 179.9999999, 0, -179.9999999);
  tt.ok(Math.abs(hair - 0.0000002 * METRES_PER_DEGREE_LAT) <= 1e-6, `${hair}`);
  tt.equal(lonDelta(179.99, -179.99), -179.99 + 360 - 179.99);
  tt.equal(lonDelta(-179.5, 179.5), -1);
  tt.equal(lonDelta(10, 20), 10);
});

t.test('haversineM agrees with Vincenty and is exactly symmetric', async (tt) => {
  const prng = new Prng(1);
  let worst = 0;
  let asymmetric = 0;
  for (let i = 0; i < 20000; i++) {
    const lat1 = sphereLat(prng);
    const lon1 = prng.float() * 360 - 180;
    let lat2: number;
    let lon2: number;
    const kind = i % 4;
    if (kind === 0) {
      lat2 = sphereLat(prng);
      lon2 = prng.float() * 360 - 180;
    } else if (kind === 1) {
      // Within a few km: the scale the kNN ranks at.
      lat2 = Math.max(-90, Math.min(90, lat1 + (prng.float() - 0.5) * 0.05));
      lon2 = lon1 + (prng.float() - 0.5) * 0.05;
      lon2 = lon2 > 180 ? lon2 - 360 : lon2 < -180 ? lon2 + 360 : lon2;
    } else {
      // Within a few km of the antipode.
      lat2 = Math.max(-90, Math.min(90, -lat1 + (prng.float() - 0.5) * 0.05));
      lon2 = lon1 + 180 + (prng.float() - 0.5) * 0.05;
      lon2 = lon2 > 180 ? lon2 - 360 : lon2;
    }
    const d = haversineM(lat1, lon1, lat2, lon2);
    worst = Math.max(worst, Math.abs(d - vincentyM(lat1, lon1, lat2, lon2)));
    if (d !== haversineM(lat2, lon2, lat1, lon1)) asymmetric++;
  }
  tt.ok(worst <= 1e-6, `worst difference ${worst} m`);
  tt.equal(asymmetric, 0);
});

t.test('haversineHForDistance inverts 2R asin(sqrt(h))', async (tt) => {
  tt.equal(haversineHForDistance(0), 0);
  tt.equal(haversineHForDistance(MAX_DISTANCE_M), Number.POSITIVE_INFINITY);
  tt.equal(haversineHForDistance(Number.POSITIVE_INFINITY), Number.POSITIVE_INFINITY);
  for (const [lat, lon] of [
    [48.85, 2.35],
    [-33.87, 151.21],
    [0.001, -179.999],
  ] as const) {
    const h = haversineH(0, 0, lat, lon);
    const back = haversineHForDistance(haversineM(0, 0, lat, lon));
    tt.ok(Math.abs(back - h) <= 1e-15 * h + 1e-300, `${lat},${lon}`);
  }
});

t.test('metresPerDegreeLon shrinks with the cosine of the latitude', async (tt) => {
  tt.equal(metresPerDegreeLon(0), METRES_PER_DEGREE_LAT);
  tt.ok(Math.abs(metresPerDegreeLon(60) - METRES_PER_DEGREE_LAT / 2) <= 1e-6);
  tt.ok(Math.abs(metresPerDegreeLon(-60) - METRES_PER_DEGREE_LAT / 2) <= 1e-6);
  tt.equal(metresPerDegreeLon(90), 0);
  tt.equal(metresPerDegreeLon(-90), 0);
  // It is the measured length of a short step east.
  const step = haversineM(48.85, 2.35, 48.85, 2.351) / 0.001;
  tt.ok(Math.abs(step - metresPerDegreeLon(48.85)) < 0.01, `${step}`);
});

t.test('bboxAround: one box of the expected size away from the poles and the date line', async (tt) => {
  const [box, ...rest] = bboxAround(0, 0, METRES_PER_DEGREE_LAT);
  tt.equal(rest.length, 0);
  const want = [-1, -1, 1, 1];
  for (let i = 0; i < 4; i++) tt.ok(Math.abs(box![i]! - want[i]!) <= 1e-6, `${box}`);

  // At 60 degrees a circle spans twice as many degrees of longitude as of latitude (a bit more: the
  // tangent meridians, not the centre's parallel, bound it).
  const [b60] = bboxAround(60, 10, 10000);
  const halfLat = (b60![3] - b60![1]) / 2;
  const halfLon = (b60![2] - b60![0]) / 2;
  tt.ok(Math.abs(halfLat - 10000 / METRES_PER_DEGREE_LAT) <= 1e-9);
  tt.ok(halfLon > 2 * halfLat && halfLon < 2 * halfLat * 1.0001, `${halfLon} vs ${halfLat}`);
  tt.strictSame(bboxAround(12.5, 45, 0), [[45, 12.5, 45, 12.5]]);
});

t.test('bboxAround splits at the date line and opens up over a pole', async (tt) => {
  const east = bboxAround(0, 179.95, 20000);
  tt.equal(east.length, 2);
  tt.equal(east[0]![2], 180);
  tt.equal(east[1]![0], -180);
  tt.ok(Math.abs(east[0]![0] - (179.95 - 20000 / METRES_PER_DEGREE_LAT)) <= 1e-6);
  tt.ok(Math.abs(east[1]![2] - (179.95 + 20000 / METRES_PER_DEGREE_LAT - 360)) <= 1e-6);

  const west = bboxAround(-40, -179.99, 5000);
  tt.equal(west.length, 2);
  tt.equal(west[0]![2], 180);
  tt.equal(west[1]![0], -180);

  const north = bboxAround(89.9, 10, 20000);
  tt.equal(north.length, 1);
  tt.equal(north[0]![0], -180);
  tt.equal(north[0]![2], 180);
  tt.equal(north[0]![3], 90);
  tt.ok(Math.abs(north[0]![1] - (89.9 - 20000 / METRES_PER_DEGREE_LAT)) <= 1e-6);

  const south = bboxAround(-90, 0, 1000);
  tt.strictSame(south.length, 1);
  tt.equal(south[0]![1], -90);
  tt.equal(south[0]![0], -180);

  tt.strictSame(bboxAround(10, 20, MAX_DISTANCE_M), [[-180, -90, 180, 90]]);
});

t.test('bboxAround covers every point of the circle (property)', async (tt) => {
  const prng = new Prng(7);
  const failures: string[] = [];
  let checked = 0;
  for (let c = 0; c < 3000; c++) {
    let lat: number;
    let lon: number;
    switch (c % 5) {
      case 0: // near the date line
        lat = sphereLat(prng);
        lon = prng.chance(0.5) ? 180 - prng.float() * 0.5 : -180 + prng.float() * 0.5;
        break;
      case 1: // near a pole
        lat = prng.chance(0.5) ? 90 - prng.float() * 0.5 : -90 + prng.float() * 0.5;
        lon = prng.float() * 360 - 180;
        break;
      default:
        lat = sphereLat(prng);
        lon = prng.float() * 360 - 180;
    }
    // Log-uniform from 1 m to 3000 km.
    const radius = 10 ** (prng.float() * 6.5);
    const boxes = bboxAround(lat, lon, radius);
    for (const [minLon, minLat, maxLon, maxLat] of boxes) {
      if (!(minLon <= maxLon && minLon >= -180 && maxLon <= 180 && minLat >= -90 && maxLat <= 90)) {
        failures.push(`bad box ${[minLon, minLat, maxLon, maxLat]} for ${lat},${lon} r=${radius}`);
      }
    }
    for (let i = 0; i < 40; i++) {
      // Half on the rim (the hardest points), half inside.
      const d = i % 2 === 0 ? radius : radius * Math.sqrt(prng.float());
      const [pLat, pLon] = destination(lat, lon, prng.float() * 360, d);
      if (haversineM(lat, lon, pLat, pLon) > radius) continue;
      checked++;
      if (!insideAny(boxes, pLat, pLon))
        failures.push(`${pLat},${pLon} outside ${boxes} for ${lat},${lon} r=${radius}`);
    }
  }
  tt.ok(checked > 80000, `checked ${checked} points`);
  tt.strictSame(failures, []);
});

t.test('bboxAround rejects positions and radii out of range', async (tt) => {
  tt.throws(() => bboxAround(91, 0, 1), RangeError);
  tt.throws(() => bboxAround(Number.NaN, 0, 1), RangeError);
  tt.throws(() => bboxAround(0, 181, 1), RangeError);
  tt.throws(() => bboxAround(0, 0, -1), RangeError);
  tt.throws(() => bboxAround(0, 0, Number.NaN), RangeError);
});
