/**
 * The map cells streams share their work by: Web Mercator tiles (the slippy-map scheme every web map
 * uses: z/x/y, x east from the antimeridian, y south from 85.0511 N). A viewer's frame is made of the
 * prepared bytes of the cells covering its view, so the cell's size decides two costs: too big, and a
 * viewer is sent many cars outside its view; too small, and a view is many pieces. Zoom 15 (about 1.2 km
 * across at the equator, 0.8 km at Paris's latitude): a rider's 1 km-radius view is covered by 9 cells
 * or fewer, about 1.8 times the circle's area (measured in bench/stream.ts); an operator's box is
 * covered at the coarsest zoom from 15 down that needs no more than MAX_BOX_CELLS cells.
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
  const n = 2 ** z;
  return Math.min(n - 1, Math.max(0, Math.floor(((lon + 180) / 360) * n)));
}

export function tileY(lat: number, z: number): number {
  const n = 2 ** z;
  const l = Math.max(-MAX_MERCATOR_LAT, Math.min(MAX_MERCATOR_LAT, lat)) * (Math.PI / 180);
  const y = ((1 - Math.log(Math.tan(l) + 1 / Math.cos(l)) / Math.PI) / 2) * n;
  return Math.min(n - 1, Math.max(0, Math.floor(y)));
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
): number[] {
  for (let z = STREAM_ZOOM; z >= MIN_ZOOM; z--) {
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

/** The cells covering a circle (its bounding box, as bboxAround gives it), at STREAM_ZOOM. */
export function cellsForBoxes(boxes: ReadonlyArray<readonly [number, number, number, number]>): number[] {
  const seen = new Set<number>();
  for (const [a, b, c, d] of boxes) for (const k of cellsForBox(a, b, c, d)) seen.add(k);
  return [...seen];
}
