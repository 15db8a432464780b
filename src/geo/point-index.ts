import { cosDeg, EARTH_RADIUS_M, haversineHForDistance, haversineM, lonDelta, RAD } from './distance.ts';
import { boxHOf, capLatHalf, capLonHalf, SLACK } from './knn.ts';
import { MinHeap } from './min-heap.ts';

/**
 * A geographic index of points named by slot numbers (0, 1, 2, ...), for a store whose points move all
 * the time: a bucketed point-region quadtree over longitude and latitude, kept in typed arrays.
 *
 *   root [-180, 180] x [-90, 90]
 *    ├─ each node splits into 4 at its centre: SW, SE, NW, NE (child = firstChild + quadrant,
 *    │  quadrant = (east ? 1 : 0) | (north ? 2 : 0); a point on a centre line goes east / north)
 *    └─ a leaf holds up to LEAF_CAPACITY points in a doubly linked list threaded through the slots
 *       (next / prev per slot), and splits when one more arrives (down to MAX_DEPTH, about 2 m)
 *
 * Why not rbush (what the shards used): a moving point there is a remove that searches every node whose
 * box holds the point's box, then an insert; in hotspots, where thousands of padded boxes overlap, the
 * remove cost grew with the fleet (19 us at 1M drivers, 37% of a profile; issue 14). Here a point knows
 * its leaf: a move inside the leaf writes two numbers, a move out of it unlinks in O(1) and descends
 * from the root (O(depth)), and a crowded place just has deeper, smaller leaves. Nothing is padded.
 *
 * Queries rank by exact great-circle distance with the best-first search of src/geo/knn.ts (after
 * mourner/geokdbush): nodes wait in a heap keyed by the haversine lower bound of their box, and the
 * search stops when the nearest unopened box is further than the k-th point found. Results, ties
 * included, come out in the same order as knn.ts's: distance, then latitude, then longitude, then the
 * caller's tie-break.
 *
 * Leaves that empty are kept (not merged): the tree settles to the shape of where the fleet goes, and a
 * node costs 56 bytes. Pure: no I/O, no clock.
 */

/** Points a leaf holds before it splits. Measured in bench/replica.ts: 16-64 cost the same within noise. */
const LEAF_CAPACITY = 32;
/** 360 / 2^26 degrees is 0.6 m of longitude at the equator: deeper leaves only hold points at one spot. */
const MAX_DEPTH = 26;

const NONE = -1;

/** Shared by every query: a query runs to completion without yielding. */
const heap = new MinHeap<number>(256);

export class PointIndex {
  // Per slot.
  #latE6: Int32Array;
  #lonE6: Int32Array;
  #next: Int32Array;
  #prev: Int32Array;
  /**
   * The slot's leaf plus one, 0 when the slot is not in the index: zero is the empty value so that a
   * grown array needs no fill, and the pages of slots never used are never touched (not resident).
   */
  #leaf: Int32Array;
  // Per node.
  #minX: Float64Array;
  #minY: Float64Array;
  #maxX: Float64Array;
  #maxY: Float64Array;
  /** First of the node's 4 children, NONE for a leaf. */
  #child: Int32Array;
  /** A leaf's first slot, and how many it holds. */
  #head: Int32Array;
  #count: Int32Array;
  #depth: Uint8Array;
  #nodes = 0;
  #size = 0;

  constructor(initialSlots = 1024) {
    const n = Math.max(16, initialSlots);
    this.#latE6 = new Int32Array(n);
    this.#lonE6 = new Int32Array(n);
    this.#next = new Int32Array(n);
    this.#prev = new Int32Array(n);
    this.#leaf = new Int32Array(n);
    const m = 64;
    this.#minX = new Float64Array(m);
    this.#minY = new Float64Array(m);
    this.#maxX = new Float64Array(m);
    this.#maxY = new Float64Array(m);
    this.#child = new Int32Array(m);
    this.#head = new Int32Array(m);
    this.#count = new Int32Array(m);
    this.#depth = new Uint8Array(m);
    this.#node(-180, -90, 180, 90, 0);
  }

  /** Points in the index. */
  get size(): number {
    return this.#size;
  }

  /** Nodes in the tree (for memory accounting and tests). */
  get nodes(): number {
    return this.#nodes;
  }

  /** Bytes of typed arrays held. */
  get byteLength(): number {
    return (
      this.#latE6.byteLength * 5 +
      this.#minX.byteLength * 4 +
      this.#child.byteLength * 3 +
      this.#depth.byteLength
    );
  }

  has(slot: number): boolean {
    return slot < this.#leaf.length && this.#leaf[slot] !== 0;
  }

  latE6(slot: number): number {
    return this.#latE6[slot]!;
  }

  lonE6(slot: number): number {
    return this.#lonE6[slot]!;
  }

  /**
   * Puts the slot at (latE6, lonE6) (degrees x 1e6, latitude within +/-90e6, longitude within
   * +/-180e6): an insert, or a move if the slot is in the index already.
   */
  set(slot: number, latE6: number, lonE6: number): void {
    if (slot >= this.#leaf.length) this.#growSlots(slot + 1);
    const leaf = this.#leaf[slot]! - 1;
    this.#latE6[slot] = latE6;
    this.#lonE6[slot] = lonE6;
    const lat = latE6 / 1e6;
    const lon = lonE6 / 1e6;
    if (leaf !== NONE) {
      if (this.#contains(leaf, lon, lat)) return;
      this.#unlink(slot, leaf);
      this.#size--;
    }
    this.#insert(slot, lon, lat);
    this.#size++;
  }

  remove(slot: number): void {
    if (!this.has(slot)) return;
    this.#unlink(slot, this.#leaf[slot]! - 1);
    this.#leaf[slot] = 0;
    this.#size--;
  }

  /**
   * The k points nearest to (lat, lon) by great-circle distance and at most maxDistanceM away, nearest
   * first, into outSlots / outDistances (emptied first); returns how many. `filter` is asked only about
   * points near enough to be candidates. `tieBreak` orders points at the very same position.
   */
  nearest(
    lat: number,
    lon: number,
    k: number,
    maxDistanceM: number,
    outSlots: number[],
    outDistances: number[],
    filter?: (slot: number) => boolean,
    tieBreak?: (a: number, b: number) => number,
  ): number {
    if (!(lat >= -90 && lat <= 90)) throw new RangeError(`nearest: lat must be in [-90, 90], got ${lat}`);
    if (!(lon >= -180 && lon <= 180)) throw new RangeError(`nearest: lon must be in [-180, 180], got ${lon}`);
    if (!(k >= 0 && Number.isInteger(k))) throw new RangeError(`nearest: k must be a whole number, got ${k}`);
    if (!(maxDistanceM >= 0)) throw new RangeError(`nearest: maxDistanceM must be >= 0, got ${maxDistanceM}`);
    outSlots.length = 0;
    outDistances.length = 0;
    if (k === 0 || this.#size === 0) return 0;

    const cosLat = cosDeg(lat);
    const sinLat = Math.sin(lat * RAD);
    let limit = haversineHForDistance(maxDistanceM) * SLACK;
    let latHalf = capLatHalf(maxDistanceM);
    let lonHalf = capLonHalf(lat, cosLat, latHalf);
    let count = 0;
    const latE6s = this.#latE6;
    const lonE6s = this.#lonE6;
    const next = this.#next;
    heap.clear();
    let node = 0;
    for (;;) {
      const first = this.#child[node]!;
      if (first !== NONE) {
        for (let c = first; c < first + 4; c++) {
          if (this.#count[c] === 0 && this.#child[c] === NONE) continue;
          const h = boxHOf(
            lat,
            lon,
            cosLat,
            sinLat,
            this.#minX[c]!,
            this.#minY[c]!,
            this.#maxX[c]!,
            this.#maxY[c]!,
            latHalf,
            lonHalf,
          );
          if (h <= limit) heap.push(c, h);
        }
      } else {
        for (let s = this.#head[node]!; s !== NONE; s = next[s]!) {
          const pLat = latE6s[s]! / 1e6;
          const dLat = pLat - lat;
          if (dLat > latHalf || dLat < -latHalf) continue;
          const pLon = lonE6s[s]! / 1e6;
          const dLon = lonDelta(lon, pLon);
          if (dLon > lonHalf || dLon < -lonHalf) continue;
          // haversineH with the query's cosine hoisted, bit-identical to it (as in knn.ts).
          const sinDLat = Math.sin(dLat * RAD * 0.5);
          const sinDLon = Math.sin(dLon * RAD * 0.5);
          let h = sinDLat * sinDLat + cosLat * cosDeg(pLat) * sinDLon * sinDLon;
          if (h > 1) h = 1;
          if (h > limit) continue;
          if (filter !== undefined && !filter(s)) continue;
          const distance =
            h <= 0.5 ? 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(h)) : haversineM(lat, lon, pLat, pLon);
          if (distance > maxDistanceM) continue;
          if (count === k) {
            if (!this.#before(distance, s, outDistances[k - 1]!, outSlots[k - 1]!, tieBreak)) continue;
            count--;
          }
          // Insertion into the ordered results (k is small: a handful to a hundred).
          let pos = count;
          while (pos > 0 && this.#before(distance, s, outDistances[pos - 1]!, outSlots[pos - 1]!, tieBreak)) {
            outDistances[pos] = outDistances[pos - 1]!;
            outSlots[pos] = outSlots[pos - 1]!;
            pos--;
          }
          outDistances[pos] = distance;
          outSlots[pos] = s;
          count++;
          if (count === k) {
            // Nothing further than the k-th can get in any more (bound as in knn.ts).
            const kthM = outDistances[k - 1]!;
            const x = kthM / (2 * EARTH_RADIUS_M);
            const kth = x * x * SLACK;
            if (kth < limit) {
              limit = kth;
              latHalf = capLatHalf(kthM);
              lonHalf = capLonHalf(lat, cosLat, latHalf);
            }
          }
        }
      }
      if (heap.length === 0 || heap.peekKey() > limit) break;
      node = heap.pop()!;
    }
    heap.clear();
    outSlots.length = count;
    outDistances.length = count;
    return count;
  }

  /**
   * Calls visit(slot) for every point inside the box, edges included (degrees; minLon > maxLon is a box
   * across the date line). Order: the tree's, which depends on its history.
   */
  within(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    visit: (slot: number) => void,
  ): void {
    if (!(minLat >= -90 && maxLat <= 90 && minLat <= maxLat)) {
      throw new RangeError(`within: need -90 <= minLat <= maxLat <= 90, got ${minLat}, ${maxLat}`);
    }
    if (!(minLon >= -180 && minLon <= 180 && maxLon >= -180 && maxLon <= 180)) {
      throw new RangeError(`within: longitudes must be in [-180, 180], got ${minLon}, ${maxLon}`);
    }
    if (minLon <= maxLon) this.#within(minLon, minLat, maxLon, maxLat, visit);
    else {
      // Across the date line: the two halves hold different points (minLon > maxLon).
      this.#within(minLon, minLat, 180, maxLat, visit);
      this.#within(-180, minLat, maxLon, maxLat, visit);
    }
  }

  /** Every point's slot, in the tree's order. */
  forEach(visit: (slot: number) => void): void {
    this.#within(-180, -90, 180, 90, visit);
  }

  /** For tests: checks that every slot sits in the leaf its position descends to; returns the count. */
  check(): number {
    let n = 0;
    for (let slot = 0; slot < this.#leaf.length; slot++) {
      const leaf = this.#leaf[slot]! - 1;
      if (leaf === NONE) continue;
      n++;
      const lat = this.#latE6[slot]! / 1e6;
      const lon = this.#lonE6[slot]! / 1e6;
      if (this.#descend(lon, lat) !== leaf) throw new Error(`slot ${slot} is not in its leaf`);
    }
    if (n !== this.#size) throw new Error(`size ${this.#size} but ${n} slots indexed`);
    return n;
  }

  #within(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    visit: (slot: number) => void,
  ): void {
    const stack: number[] = [0];
    const next = this.#next;
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (
        this.#minX[node]! > maxLon ||
        this.#maxX[node]! < minLon ||
        this.#minY[node]! > maxLat ||
        this.#maxY[node]! < minLat
      ) {
        continue;
      }
      const first = this.#child[node]!;
      if (first !== NONE) {
        for (let c = first; c < first + 4; c++) stack.push(c);
        continue;
      }
      for (let s = this.#head[node]!; s !== NONE; s = next[s]!) {
        const lat = this.#latE6[s]! / 1e6;
        const lon = this.#lonE6[s]! / 1e6;
        if (lat >= minLat && lat <= maxLat && lon >= minLon && lon <= maxLon) visit(s);
      }
    }
  }

  /** Result order: distance, then latitude, then longitude, then the tie-break. */
  #before(
    distA: number,
    a: number,
    distB: number,
    b: number,
    tieBreak: ((a: number, b: number) => number) | undefined,
  ): boolean {
    if (distA !== distB) return distA < distB;
    const latA = this.#latE6[a]!;
    const latB = this.#latE6[b]!;
    if (latA !== latB) return latA < latB;
    const lonA = this.#lonE6[a]!;
    const lonB = this.#lonE6[b]!;
    if (lonA !== lonB) return lonA < lonB;
    return tieBreak !== undefined && tieBreak(a, b) < 0;
  }

  /** Whether the point descends to this leaf: half-open boxes, closed at the world's east and north edges. */
  #contains(leaf: number, lon: number, lat: number): boolean {
    const maxX = this.#maxX[leaf]!;
    const maxY = this.#maxY[leaf]!;
    return (
      lon >= this.#minX[leaf]! &&
      (lon < maxX || maxX === 180) &&
      lat >= this.#minY[leaf]! &&
      (lat < maxY || maxY === 90)
    );
  }

  #descend(lon: number, lat: number): number {
    let node = 0;
    for (;;) {
      const first = this.#child[node]!;
      if (first === NONE) return node;
      const midX = (this.#minX[node]! + this.#maxX[node]!) / 2;
      const midY = (this.#minY[node]! + this.#maxY[node]!) / 2;
      node = first + (lon >= midX ? 1 : 0) + (lat >= midY ? 2 : 0);
    }
  }

  #insert(slot: number, lon: number, lat: number): void {
    let leaf = this.#descend(lon, lat);
    this.#link(slot, leaf);
    while (this.#count[leaf]! > LEAF_CAPACITY && this.#depth[leaf]! < MAX_DEPTH) {
      this.#split(leaf);
      leaf = this.#descend(lon, lat);
    }
  }

  #split(leaf: number): void {
    const x0 = this.#minX[leaf]!;
    const y0 = this.#minY[leaf]!;
    const x1 = this.#maxX[leaf]!;
    const y1 = this.#maxY[leaf]!;
    const mx = (x0 + x1) / 2;
    const my = (y0 + y1) / 2;
    const depth = this.#depth[leaf]! + 1;
    const first = this.#node(x0, y0, mx, my, depth);
    this.#node(mx, y0, x1, my, depth);
    this.#node(x0, my, mx, y1, depth);
    this.#node(mx, my, x1, y1, depth);
    let s = this.#head[leaf]!;
    this.#head[leaf] = NONE;
    this.#count[leaf] = 0;
    this.#child[leaf] = first;
    while (s !== NONE) {
      const after = this.#next[s]!;
      const lon = this.#lonE6[s]! / 1e6;
      const lat = this.#latE6[s]! / 1e6;
      this.#link(s, first + (lon >= mx ? 1 : 0) + (lat >= my ? 2 : 0));
      s = after;
    }
  }

  #link(slot: number, leaf: number): void {
    const head = this.#head[leaf]!;
    this.#next[slot] = head;
    this.#prev[slot] = NONE;
    if (head !== NONE) this.#prev[head] = slot;
    this.#head[leaf] = slot;
    this.#count[leaf]!++;
    this.#leaf[slot] = leaf + 1;
  }

  #unlink(slot: number, leaf: number): void {
    const prev = this.#prev[slot]!;
    const next = this.#next[slot]!;
    if (prev !== NONE) this.#next[prev] = next;
    else this.#head[leaf] = next;
    if (next !== NONE) this.#prev[next] = prev;
    this.#count[leaf]!--;
  }

  #node(minX: number, minY: number, maxX: number, maxY: number, depth: number): number {
    const n = this.#nodes++;
    if (n === this.#child.length) this.#growNodes();
    this.#minX[n] = minX;
    this.#minY[n] = minY;
    this.#maxX[n] = maxX;
    this.#maxY[n] = maxY;
    this.#child[n] = NONE;
    this.#head[n] = NONE;
    this.#count[n] = 0;
    this.#depth[n] = depth;
    return n;
  }

  #growSlots(min: number): void {
    let n = this.#leaf.length;
    while (n < min) n *= 2;
    this.#latE6 = grow(this.#latE6, new Int32Array(n));
    this.#lonE6 = grow(this.#lonE6, new Int32Array(n));
    this.#next = grow(this.#next, new Int32Array(n));
    this.#prev = grow(this.#prev, new Int32Array(n));
    this.#leaf = grow(this.#leaf, new Int32Array(n));
  }

  #growNodes(): void {
    const n = this.#child.length * 2;
    this.#minX = grow(this.#minX, new Float64Array(n));
    this.#minY = grow(this.#minY, new Float64Array(n));
    this.#maxX = grow(this.#maxX, new Float64Array(n));
    this.#maxY = grow(this.#maxY, new Float64Array(n));
    this.#child = grow(this.#child, new Int32Array(n));
    this.#head = grow(this.#head, new Int32Array(n));
    this.#count = grow(this.#count, new Int32Array(n));
    this.#depth = grow(this.#depth, new Uint8Array(n));
  }
}

function grow<T extends Int32Array | Float64Array | Uint8Array>(from: T, to: T): T {
  to.set(from as never);
  return to;
}
