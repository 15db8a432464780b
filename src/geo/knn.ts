/**
 * Geographic queries over an rbush R-tree of padded boxes: k nearest by great-circle distance, and
 * everything inside a longitude/latitude box. Pure: no I/O, no clock.
 *
 * Each item sits in the tree as a box that contains its true position (the store pads it so that a
 * driver moving a few metres does not cost a remove + insert), and carries the exact position in
 * `lat` / `lon`. Queries rank and filter by the exact position; the boxes only steer the descent.
 *
 * nearest() is the best-first search of mourner/geokdbush (after Hjaltason & Samet, "Distance browsing
 * in spatial databases", 1999) run over rbush's node layout: a priority queue holds tree nodes keyed by
 * a lower bound of the great-circle distance from the query to the node's box (boxH), and the search
 * stops when the nearest unopened box is further than the k-th item found. A node's bound never exceeds
 * the distance of anything below it, so every item that can be in the answer is looked at, by its exact
 * position. Distances are compared as haversines, hav = sin^2(angle / 2), which grow with distance: an
 * asin is taken only for items that get into the answer.
 *
 * Measured in bench/knn.ts (results in bench/results/knn.json) against rbush-knn, which ranks boxes by
 * planar degrees and is wrong at any latitude away from the equator.
 */
import type { BBox, default as RBush } from 'rbush';
import { cosDeg, EARTH_RADIUS_M, haversineHForDistance, haversineM, lonDelta, RAD } from './distance.ts';
import { MinHeap } from './min-heap.ts';

/** What the queries need of an item: its box in the tree (X is longitude, Y latitude) and its position. */
export interface GeoItem {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
  /** Exact position in degrees; must lie inside the box. lon in [-180, 180]. */
  lat: number;
  lon: number;
}

/** One result of nearest(). */
export interface Neighbour<T> {
  item: T;
  /** Great-circle metres from the query point: exactly haversineM(lat, lon, item.lat, item.lon). */
  distance: number;
}

/** rbush's internal node (node_modules/rbush/index.js createNode); `children` are items when leaf. */
interface TreeNode {
  children: unknown[];
  leaf: boolean;
  height: number;
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

/**
 * Keys within this relative margin of a cut-off (the k-th result, the radius) are still searched. A
 * haversine is computed to a few ulps (1e-15) of relative error; the margin is a million times wider, so
 * rounding can neither lose an item that ties the k-th nor one that sits exactly on the radius, and it
 * costs nothing measurable (it widens a 1 km search by 0.5 micrometres).
 */
export const SLACK = 1 + 1e-9;

/** Shared by every call: nearest() runs to completion without yielding, so one heap serves them all. */
const scratch = new MinHeap<TreeNode>(256);
// Set while scratch is in use, in case a filter or tieBreak callback calls nearest() again.
let scratchBusy = false;

/**
 * The k items nearest to (lat, lon) by great-circle distance, at most maxDistanceM away, nearest first.
 *
 * Ties are broken by item.lat, then item.lon, then tieBreak (give one, e.g. by driver id, when two items
 * can share a position); the order is then total and does not depend on the shape of the tree. Without
 * tieBreak, items at the very same position come out in an unspecified order.
 *
 * `filter`, if given, is asked about each item near enough to be a candidate (not about every item in
 * the tree), and items it rejects are skipped: k free drivers, not k drivers of which some are free.
 *
 * `out`, if given, is emptied and refilled, and the { item, distance } objects already in it are reused:
 * pass one scratch array per caller to make a query allocate nothing but heap growth.
 *
 * @param k a non-negative integer, or Infinity for every item within the radius
 * @param maxDistanceM metres, >= 0; Infinity for no limit
 * @throws RangeError for a position, k or radius out of range (a programmer error)
 */
export function nearest<T extends GeoItem>(
  tree: RBush<T>,
  lat: number,
  lon: number,
  k: number,
  maxDistanceM: number,
  filter?: (item: T) => boolean,
  out: Array<Neighbour<T>> = [],
  tieBreak?: (a: T, b: T) => number,
): Array<Neighbour<T>> {
  if (!(lat >= -90 && lat <= 90)) throw new RangeError(`nearest: lat must be in [-90, 90], got ${lat}`);
  if (!(lon >= -180 && lon <= 180)) throw new RangeError(`nearest: lon must be in [-180, 180], got ${lon}`);
  if (!(k >= 0 && (Number.isInteger(k) || k === Number.POSITIVE_INFINITY))) {
    throw new RangeError(`nearest: k must be a non-negative integer, got ${k}`);
  }
  if (!(maxDistanceM >= 0)) throw new RangeError(`nearest: maxDistanceM must be >= 0, got ${maxDistanceM}`);

  let count = 0;
  if (k > 0) {
    const reentered = scratchBusy;
    const heap = reentered ? new MinHeap<TreeNode>() : scratch;
    scratchBusy = true;
    try {
      const root = (tree as unknown as { data: TreeNode }).data;
      count = search(heap, root, lat, lon, k, maxDistanceM, filter, out, tieBreak);
    } finally {
      heap.clear();
      if (!reentered) scratchBusy = false;
    }
  }
  out.length = count;
  return out;
}

/**
 * Best-first descent with the results kept beside the queue rather than in it: nodes wait in the heap
 * keyed by their box's lower bound, items go straight into `out` (the best k so far, by exact distance),
 * and the k-th of those shrinks `limit`, below which nothing further is opened. Items never touch the
 * heap, and an item outside the current cap's latitude/longitude box is dropped before any sine.
 */
function search<T extends GeoItem>(
  heap: MinHeap<TreeNode>,
  root: TreeNode,
  lat: number,
  lon: number,
  k: number,
  maxDistanceM: number,
  filter: ((item: T) => boolean) | undefined,
  out: Array<Neighbour<T>>,
  tieBreak: ((a: T, b: T) => number) | undefined,
): number {
  const cosLat = cosDeg(lat);
  const sinLat = Math.sin(lat * RAD);
  // Nothing whose haversine exceeds limit is searched: first the radius, then also the k-th so far.
  let limit = haversineHForDistance(maxDistanceM) * SLACK;
  // The cap of that radius around the query, as half-widths in degrees of its bounding box.
  let latHalf = capLatHalf(maxDistanceM);
  let lonHalf = capLonHalf(lat, cosLat, latHalf);
  let count = 0;
  // The root is expanded, never queued: an empty tree's root has an infinite box.
  let node: TreeNode | undefined = root;

  while (node !== undefined) {
    const children = node.children;
    if (!node.leaf) {
      for (let i = 0; i < children.length; i++) {
        const child = children[i] as TreeNode;
        const h = boxH(lat, lon, cosLat, sinLat, child, latHalf, lonHalf);
        if (h <= limit) heap.push(child, h);
      }
    } else {
      for (let i = 0; i < children.length; i++) {
        const item = children[i] as T;
        const dLat = item.lat - lat;
        if (dLat > latHalf || dLat < -latHalf) continue;
        const dLon = lonDelta(lon, item.lon);
        if (dLon > lonHalf || dLon < -lonHalf) continue;
        // haversineH inlined with the query's cosine hoisted; same operations in the same order, so h
        // is bit-identical to haversineH(lat, lon, item.lat, item.lon).
        const sinDLat = Math.sin(dLat * RAD * 0.5);
        const sinDLon = Math.sin(dLon * RAD * 0.5);
        let h = sinDLat * sinDLat + cosLat * cosDeg(item.lat) * sinDLon * sinDLon;
        if (h > 1) h = 1;
        if (h > limit) continue;
        if (filter !== undefined && !filter(item)) continue;
        // haversineM's near branch, written the same way so the distance is bit-identical to it.
        const distance =
          h <= 0.5 ? 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(h)) : haversineM(lat, lon, item.lat, item.lon);
        if (distance > maxDistanceM) continue;

        if (count < k) {
          const entry = out[count];
          if (entry === undefined) {
            out[count] = { item, distance };
          } else {
            entry.item = item;
            entry.distance = distance;
          }
          if (++count < k) continue;
          // Just filled: order it once, then keep it ordered.
          out.length = count;
          sortNeighbours(out, tieBreak);
        } else {
          const last = out[k - 1]!;
          if (!before(distance, item, last.distance, last.item, tieBreak)) continue;
          let pos = k - 1;
          while (pos > 0) {
            const prev = out[pos - 1]!;
            if (!before(distance, item, prev.distance, prev.item, tieBreak)) break;
            out[pos] = prev;
            pos--;
          }
          last.item = item;
          last.distance = distance;
          out[pos] = last;
        }
        // Nothing further than the k-th (by more than rounding) can get in any more. Its haversine
        // sin^2(d / 2R) is bounded by (d / 2R)^2, which saves a sine per improvement and is looser by
        // a factor 1 + (d / 2R)^2 / 3: one part in 1e12 at 10 km.
        const kthM = out[k - 1]!.distance;
        const x = kthM / (2 * EARTH_RADIUS_M);
        const kth = x * x * SLACK;
        if (kth < limit) {
          limit = kth;
          latHalf = capLatHalf(kthM);
          lonHalf = capLonHalf(lat, cosLat, latHalf);
        }
      }
    }
    node = heap.length > 0 && heap.peekKey() <= limit ? heap.pop() : undefined;
  }

  if (count < k) {
    out.length = count;
    sortNeighbours(out, tieBreak);
  }
  return count;
}

/**
 * Half-height in degrees of the cap of radius distanceM: the arc is the angle, so every point of the cap
 * is within distanceM / R radians of latitude of its centre. Widened by 1e-9 against rounding.
 */
export function capLatHalf(distanceM: number): number {
  return (distanceM / EARTH_RADIUS_M / RAD) * (1 + 1e-9);
}

/**
 * A bound on the half-width in degrees of longitude of the cap of angular radius latHalf degrees at
 * lat. The meridians tangent to the cap are asin(sin r / cos lat) away (as in bboxAround); with
 * sin r <= r and asin(y) <= y / sqrt(1 - y^2) that is at most the value here, computed without a sine
 * and too wide by only y^2 / 3 (2e-8 for 1 km at Paris). Infinite when the cap may reach a pole, where it
 * takes in every longitude (y >= 1 would catch that too; the first test says why).
 */
export function capLonHalf(lat: number, cosLat: number, latHalf: number): number {
  if (!(Math.abs(lat) + latHalf < 90)) return Number.POSITIVE_INFINITY;
  const y = (latHalf * RAD) / cosLat;
  if (!(y < 1)) return Number.POSITIVE_INFINITY;
  return y / Math.sqrt(1 - y * y) / RAD;
}

/** Sorts out in result order: by insertion for the usual handful, by Array.sort for large k. */
function sortNeighbours<T extends GeoItem>(
  out: Array<Neighbour<T>>,
  tieBreak: ((a: T, b: T) => number) | undefined,
): void {
  if (out.length > 32) {
    out.sort((a, b) =>
      before(a.distance, a.item, b.distance, b.item, tieBreak)
        ? -1
        : before(b.distance, b.item, a.distance, a.item, tieBreak)
          ? 1
          : 0,
    );
    return;
  }
  for (let i = 1; i < out.length; i++) {
    const entry = out[i]!;
    let pos = i;
    while (pos > 0) {
      const prev = out[pos - 1]!;
      if (!before(entry.distance, entry.item, prev.distance, prev.item, tieBreak)) break;
      out[pos] = prev;
      pos--;
    }
    out[pos] = entry;
  }
}

/** Result order: distance, then lat, then lon, then tieBreak. */
function before<T extends GeoItem>(
  distA: number,
  a: T,
  distB: number,
  b: T,
  tieBreak: ((a: T, b: T) => number) | undefined,
): boolean {
  if (distA !== distB) return distA < distB;
  if (a.lat !== b.lat) return a.lat < b.lat;
  if (a.lon !== b.lon) return a.lon < b.lon;
  return tieBreak !== undefined && tieBreak(a, b) < 0;
}

/**
 * Lower bound, as a haversine, of the great-circle distance from (lat, lon) to any point of a box; in
 * fact the exact minimum over the box (mourner/geokdbush boxDist).
 *
 *   query inside the box's longitude range      query outside it
 *
 *        minX     maxX                       minX     maxX
 *    maxY +--------+                     maxY +--------+
 *         |        |                          |        |   *  <- the box's nearest point is on the
 *    minY +--------+                          |        |  /      nearer meridian edge, where the great
 *              |  <- straight south           |       +  v       circle from the query crosses it at
 *              *                         minY +--------+         a right angle (or at a corner)
 *
 * Longitudes are compared modulo 360, so a box just east of the date line is near a query just west of
 * it, and a box padded past +/-180 still contains the queries it covers.
 */
export function boxH(
  lat: number,
  lon: number,
  cosLat: number,
  sinLat: number,
  box: BBox,
  latHalf: number,
  lonHalf: number,
): number {
  return boxHOf(lat, lon, cosLat, sinLat, box.minX, box.minY, box.maxX, box.maxY, latHalf, lonHalf);
}

/** boxH for a box given as numbers (indexes that keep their boxes in typed arrays). */
export function boxHOf(
  lat: number,
  lon: number,
  cosLat: number,
  sinLat: number,
  minX: number,
  minY: number,
  maxX: number,
  maxY: number,
  latHalf: number,
  lonHalf: number,
): number {
  if (minY < -90) minY = -90;
  if (maxY > 90) maxY = 90;
  // Outside the bounding box of the search cap: no sine needed to rule it out.
  if (minY - lat > latHalf || lat - maxY > latHalf) return Number.POSITIVE_INFINITY;

  const width = maxX - minX;
  // Degrees the query lies east of the box's west edge, in [0, 360).
  let east = lon - minX;
  if (east < 0 || east >= 360) east -= 360 * Math.floor(east / 360);

  if (east <= width) {
    // The nearest point is on the query's own meridian.
    if (lat < minY) {
      const s = Math.sin((minY - lat) * RAD * 0.5);
      return s * s;
    }
    if (lat > maxY) {
      const s = Math.sin((lat - maxY) * RAD * 0.5);
      return s * s;
    }
    return 0;
  }

  // For every latitude, distance grows with the longitude difference, so the nearer meridian edge
  // (past the east edge, or short of the west edge going round) holds the nearest point. dLon in (0, 180].
  const pastEast = east - width;
  const toWest = 360 - east;
  const dLon = pastEast < toWest ? pastEast : toWest;
  if (dLon > lonHalf) return Number.POSITIVE_INFINITY;
  const sinDLon = Math.sin(dLon * RAD * 0.5);
  const hLon = sinDLon * sinDLon;
  const cosDLon = 1 - 2 * hLon;

  if (cosDLon > 0) {
    // Along that meridian cos(distance) = sinLat sin(phi) + cosLat cosDLon cos(phi), a single bump that
    // peaks at phi = atan2(sinLat, cosLat cosDLon) and falls off monotonically on both sides within
    // [-90, 90]: the nearest point is the peak clamped to the edge's latitude span.
    let phi = Math.atan2(sinLat, cosLat * cosDLon) / RAD;
    if (phi < minY) phi = minY;
    else if (phi > maxY) phi = maxY;
    return meridianH(lat, cosLat, hLon, phi);
  }
  // More than 90 degrees away in longitude the peak lies beyond a pole and the trough can sit inside
  // the span, so only the two ends are candidates.
  const south = meridianH(lat, cosLat, hLon, minY);
  const north = meridianH(lat, cosLat, hLon, maxY);
  return south < north ? south : north;
}

/** Haversine from (lat, .) to the point at latitude phi on a meridian whose hav(dLon) is hLon. */
function meridianH(lat: number, cosLat: number, hLon: number, phi: number): number {
  const s = Math.sin((phi - lat) * RAD * 0.5);
  const h = s * s + cosLat * cosDeg(phi) * hLon;
  return h > 1 ? 1 : h;
}

/**
 * Great-circle metres from (lat, lon) to the nearest point of the box [minLon, maxLon] x [minLat, maxLat]
 * (degrees; 0 inside). The box may extend past +/-180, and minLon > maxLon means it crosses the date line.
 * Within a micrometre up to 10000 km; near the antipodes asin(sqrt(h)) only gives it to ~0.1 m.
 * The bound nearest() prunes with; also usable to decide whether a region (a shard's extent) can hold an
 * item within some radius.
 */
export function boxDistanceM(
  lat: number,
  lon: number,
  minLon: number,
  minLat: number,
  maxLon: number,
  maxLat: number,
): number {
  if (!(lat >= -90 && lat <= 90)) throw new RangeError(`boxDistanceM: lat must be in [-90, 90], got ${lat}`);
  if (!(lon >= -180 && lon <= 180))
    throw new RangeError(`boxDistanceM: lon must be in [-180, 180], got ${lon}`);
  const box = { minX: minLon, minY: minLat, maxX: minLon <= maxLon ? maxLon : maxLon + 360, maxY: maxLat };
  const inf = Number.POSITIVE_INFINITY;
  const h = boxH(lat, lon, cosDeg(lat), Math.sin(lat * RAD), box, inf, inf);
  return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(h));
}

/**
 * Items whose exact position lies inside the box (edges included), in degrees. A box with
 * minLon > maxLon crosses the date line: it is [minLon, 180] plus [-180, maxLon]. Longitudes are
 * compared as numbers, so -180 and 180 are different meridians here; keep positions in [-180, 180).
 *
 * The order is rbush's traversal order, which depends on the tree's history; pass `compare` (e.g. by
 * driver id) for a stable order. The returned array is new and owned by the caller.
 *
 * @throws RangeError for latitudes outside [-90, 90], minLat > maxLat or longitudes outside [-180, 180]
 */
export function within<T extends GeoItem>(
  tree: RBush<T>,
  minLon: number,
  minLat: number,
  maxLon: number,
  maxLat: number,
  compare?: (a: T, b: T) => number,
): T[] {
  if (!(minLat >= -90 && maxLat <= 90 && minLat <= maxLat)) {
    throw new RangeError(`within: need -90 <= minLat <= maxLat <= 90, got ${minLat}, ${maxLat}`);
  }
  if (!(minLon >= -180 && minLon <= 180)) throw new RangeError(`within: minLon out of range: ${minLon}`);
  if (!(maxLon >= -180 && maxLon <= 180)) throw new RangeError(`within: maxLon out of range: ${maxLon}`);

  let result: T[];
  if (minLon <= maxLon) {
    result = tree.search({ minX: minLon, minY: minLat, maxX: maxLon, maxY: maxLat });
    keepInside(result, 0, minLon, minLat, maxLon, maxLat);
  } else {
    // The two halves cannot both hold a position (minLon > maxLon), so the filter also removes an item
    // whose box reaches into both.
    result = tree.search({ minX: minLon, minY: minLat, maxX: 180, maxY: maxLat });
    keepInside(result, 0, minLon, minLat, 180, maxLat);
    const west = tree.search({ minX: -180, minY: minLat, maxX: maxLon, maxY: maxLat });
    const start = result.length;
    for (let i = 0; i < west.length; i++) result.push(west[i]!);
    keepInside(result, start, -180, minLat, maxLon, maxLat);
  }
  if (compare !== undefined) result.sort(compare);
  return result;
}

/** Drops, in place, the items from index start on whose position is outside the box (boxes are padded). */
function keepInside<T extends GeoItem>(
  items: T[],
  start: number,
  minLon: number,
  minLat: number,
  maxLon: number,
  maxLat: number,
): void {
  let n = start;
  for (let i = start; i < items.length; i++) {
    const item = items[i]!;
    if (item.lat >= minLat && item.lat <= maxLat && item.lon >= minLon && item.lon <= maxLon)
      items[n++] = item;
  }
  items.length = n;
}
