import { bboxAround, haversineM } from '../geo/distance.ts';

/**
 * The map cells streams share their work by: Web Mercator tiles (the slippy-map scheme every web map
 * uses: z/x/y, x east from the antimeridian, y south from 85.0511 N). A viewer's frame is made of the
 * prepared bytes of the cells covering its view, so the cell's size decides two costs: too big, and a
 * viewer is sent many cars outside its view; too small, and a view is many pieces. An operator's box
 * is covered at the finest zoom from 15 (about 1.2 km across at the equator, 0.8 km at Paris's
 * latitude) down that needs no more than MAX_BOX_CELLS cells. A rider's view is the cells nearest it
 * that hold the cars it follows, at zoom 17 (cellsNear below).
 *
 * Tiles are chosen over geohash, H3 or S2 because the pages draw Web Mercator tiles anyway and a tile's
 * box is exact in longitude and latitude (a query of the replica by box); a Mercator tile shrinks with
 * latitude, like the views drawn on the same map. Pure functions.
 */

export const STREAM_ZOOM = 15;
/** An operator's box is covered by at most this many cells (coarser zooms for larger boxes). */
export const MAX_BOX_CELLS = 1024;
export const MIN_ZOOM = 3;

/** Web Mercator's latitude limit: the square world ends here. */
export const MAX_MERCATOR_LAT = 85.0511287798066;

/** A cell key: x, y and zoom in one safe integer, (x * 2^24 + y) * 32 + z, for z <= 24 (2^53 at most). */
export function cellKey(z: number, x: number, y: number): number {
  return (x * 2 ** 24 + y) * 32 + z;
}

export function cellOf(key: number): { z: number; x: number; y: number } {
  const z = key % 32;
  const xy = (key - z) / 32;
  const y = xy % 2 ** 24;
  return { z, x: (xy - y) / 2 ** 24, y };
}

export function tileX(lon: number, z: number): number {
  return tileOf(mercatorX(lon), z);
}

export function tileY(lat: number, z: number): number {
  return tileOf(mercatorY(lat), z);
}

/** A longitude's place across the square world, 0 (antimeridian, west) to 1. */
export function mercatorX(lon: number): number {
  return (lon + 180) / 360;
}

/** A latitude's place down the square world, 0 (85.0511 N) to 1 (85.0511 S). */
export function mercatorY(lat: number): number {
  const l = Math.max(-MAX_MERCATOR_LAT, Math.min(MAX_MERCATOR_LAT, lat)) * (Math.PI / 180);
  return (1 - Math.log(Math.tan(l) + 1 / Math.cos(l)) / Math.PI) / 2;
}

/** The tile column (row) at a zoom of a place across (down) the world: cheap, once mercatorX/Y is known. */
export function tileOf(place: number, z: number): number {
  const n = 2 ** z;
  return Math.min(n - 1, Math.max(0, Math.floor(place * n)));
}

/** The cell's box, degrees: [minLon, minLat, maxLon, maxLat]. Cells of the top and bottom rows reach the poles. */
export function cellBox(key: number): [number, number, number, number] {
  const { z, x, y } = cellOf(key);
  const n = 2 ** z;
  const lat = (yy: number): number => (Math.atan(Math.sinh(Math.PI * (1 - (2 * yy) / n))) * 180) / Math.PI;
  return [
    (x / n) * 360 - 180,
    y === n - 1 ? -90 : lat(y + 1),
    ((x + 1) / n) * 360 - 180,
    y === 0 ? 90 : lat(y),
  ];
}

/** The cell a position is in at a zoom. */
export function cellAt(lat: number, lon: number, z = STREAM_ZOOM): number {
  return cellKey(z, tileX(lon, z), tileY(lat, z));
}

/**
 * The cells covering a box (minLon > maxLon: across the antimeridian), at the finest zoom from
 * STREAM_ZOOM down whose cover has at most `max` cells.
 */
export function cellsForBox(
  minLon: number,
  minLat: number,
  maxLon: number,
  maxLat: number,
  max = MAX_BOX_CELLS,
  finest = STREAM_ZOOM,
): number[] {
  for (let z = finest; z >= MIN_ZOOM; z--) {
    const y0 = tileY(maxLat, z);
    const y1 = tileY(minLat, z);
    const xs: Array<[number, number]> =
      minLon <= maxLon
        ? [[tileX(minLon, z), tileX(maxLon, z)]]
        : [
            [tileX(minLon, z), 2 ** z - 1],
            [0, tileX(maxLon, z)],
          ];
    let count = 0;
    for (const [a, b] of xs) count += (b - a + 1) * (y1 - y0 + 1);
    if (count > max && z > MIN_ZOOM) continue;
    const out: number[] = [];
    for (const [a, b] of xs)
      for (let x = a; x <= b; x++) for (let y = y0; y <= y1; y++) out.push(cellKey(z, x, y));
    return out;
  }
  return [];
}

/**
 * A rider's cover: the finest zoom it uses, 17 (about 200 m across at Paris's latitude, 300 m at the
 * equator). A rider asks for the cars nearest it, not for every car within the radius: in a busy centre a
 * 1 km circle holds a thousand cars (bench/stream.ts's city: 900 on average, 1,700 in its zoom-15 cover),
 * which no screen shows and no phone should download every second. Cells of this size let the cover stop
 * close to the number of cars asked for (a zoom-15 cell there holds 140 of them) while a 1 km view still
 * needs no more than about 130 cells where the streets are empty.
 */
export const NEAR_ZOOM = 17;
/** A rider's candidate cells at most: a larger radius is covered at a coarser zoom. */
export const MAX_NEAR_CELLS = 256;

/** What cellsNear chose, and when the caller should choose again. */
export interface NearCover {
  cells: number[];
  /** The cars asked for. */
  limit: number;
  /** The cars the cells held when chosen. */
  cars: number;
  /** Every cell within the radius is in the cover: more cars can only come from moving cars. */
  whole: boolean;
}

/**
 * The cells nearest (lat, lon), nearest first, that together hold at least `limit` cars (of the layer
 * `count` counts), among the cells within `radiusM`: so that the cover holds every car nearer than the
 * nearest cell left out, which includes the `limit` nearest cars, and not many more. Frames stay shared
 * work (src/stream/frames.ts): the cover is whole cells, the same cells other riders near by use.
 * `count(key)` is the cars in a cell now.
 */
export function cellsNear(
  lat: number,
  lon: number,
  radiusM: number,
  limit: number,
  count: (key: number) => number,
): NearCover {
  const candidates: Array<{ key: number; d: number }> = [];
  for (const [a, b, c, d] of bboxAround(lat, lon, radiusM)) {
    for (const key of cellsForBox(a, b, c, d, MAX_NEAR_CELLS, NEAR_ZOOM)) {
      const dist = distanceToBoxM(lat, lon, cellBox(key));
      if (dist <= radiusM) candidates.push({ key, d: dist });
    }
  }
  candidates.sort((x, y) => x.d - y.d);
  const cells: number[] = [];
  let cars = 0;
  for (const { key } of candidates) {
    if (cars >= limit) break;
    cells.push(key);
    cars += count(key);
  }
  return { cells, limit, cars, whole: cells.length === candidates.length };
}

/**
 * Metres from a point to the nearest point of a box (0 inside it): the box's nearest latitude and
 * longitude, the nearer way round in longitude. On the sphere the nearest point of a box's side lies a
 * little poleward of that, which makes this a slight overestimate for boxes far from the point; for
 * ordering a rider's cells, a few hundred metres across, it is exact to well under a metre.
 */
export function distanceToBoxM(
  lat: number,
  lon: number,
  box: readonly [number, number, number, number],
): number {
  const [w, s, e, n] = box;
  const atLat = lat < s ? s : lat > n ? n : lat;
  let atLon = lon;
  if (lon < w || lon > e) {
    const west = (((w - lon) % 360) + 360) % 360;
    const east = (((lon - e) % 360) + 360) % 360;
    atLon = west < east ? w : e;
  }
  return haversineM(lat, lon, atLat, atLon);
}
