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
 *    └─ a leaf holds up to LEAF_CAPACITY points in a block of its own in one pool, each point an entry
 *       (slot, latE6, lonE6), and splits when one more arrives (down to MAX_DEPTH, about 2 m)
 *
 *   per slot:   its leaf + 1 (0: not in the index) and its entry's place in the leaf's block
 *   per node:   box (minX, minY, maxX, maxY together), first child, block, block size, count, depth
 *   pool:       blocks of 4, 8, 16, ... entries (12 B each), reused through a free list per size; a
 *               leaf's block grows when full and shrinks when a quarter full, so blocks stay at least
 *               a quarter full (a leaf at MAX_DEPTH may grow past LEAF_CAPACITY: points at one spot)
 *
 * A leaf's points are contiguous: a query reads a leaf front to back. Before (issue 14) a leaf was a
 * linked list threaded through the slots, and at a million points each point of a leaf was a cache
 * miss that the next one waited for (next[] was read from the point before): nearest-10 cost 3.4x as
 * much at 1M points as at 10k (bench/replica.ts), against the target of 3x.
 *
 * Why not rbush (what the shards used): a moving point there is a remove that searches every node whose
 * box holds the point's box, then an insert; in hotspots, where thousands of padded boxes overlap, the
 * remove cost grew with the fleet (19 us at 1M drivers, 37% of a profile; issue 14). Here a point knows
 * its leaf and its place in it: a move inside the leaf writes two numbers, a move out of it takes the
 * leaf's last entry into its place (O(1)) and descends from the root (O(depth)), and a crowded place
 * just has deeper, smaller leaves. Nothing is padded.
 *
 * Queries rank by exact great-circle distance with the best-first search of src/geo/knn.ts (after
 * mourner/geokdbush): nodes wait in a heap keyed by the haversine lower bound of their box, and the
 * search stops when the nearest unopened box is further than the k-th point found. Results, ties
 * included, come out in the same order as knn.ts's: distance, then latitude, then longitude, then the
 * caller's tie-break.
 *
 * Leaves that empty are kept (not merged), their blocks given back: the tree settles to the shape of
 * where the fleet goes. Pure: no I/O, no clock.
 */

/**
 * Points a leaf holds before it splits. Measured in bench/replica.ts with contiguous leaves, nearest-10
 * within 1 km at 1M drivers: 16 points 8.1 us, 32 6.1 us, 64 6.2 us but 95 B of RSS a driver (issue
 * 10's budget is 96) against 81 B.
 */
const LEAF_CAPACITY = 32;
/** 360 / 2^26 degrees is 0.6 m of longitude at the equator: deeper leaves only hold points at one spot. */
const MAX_DEPTH = 26;

const NONE = -1;
/** Per node: fields at 4n + ... */
const CHILD = 0;
const BLOCK = 1;
const CAP = 2;
const COUNT = 3;
/** Per slot: fields at 2s + ... */
const LEAF = 0;
const POS = 1;
/** The smallest block, entries: a leaf holding one point takes 48 bytes of pool. */
const MIN_BLOCK = 4;

/** Shared by every query: a query runs to completion without yielding. */
const heap = new MinHeap<number>(256);

export class PointIndex {
  /**
   * Per slot s, at 2s: its leaf plus one (0 when the slot is not in the index: zero is the empty value
   * so that a grown array needs no fill, and the pages of slots never used are never touched), and at
   * 2s + 1 its entry's place in the leaf's block. Together: one cache line for both.
   */
  #si: Int32Array;
  // Per node.
  /** minX, minY, maxX, maxY at 4n .. 4n + 3. */
  #box: Float64Array;
  /**
   * Per node n, at 4n .. 4n + 3: its first child (of 4; NONE for a leaf), a leaf's block (its first
   * entry in the pool; NONE while it holds no point), the block's size, and the leaf's count. Together,
   * so that a query looking at a node's four children reads one cache line of them (and two of boxes).
   */
  #ni: Int32Array;
  #depth: Uint8Array;
  #nodes = 0;
  #size = 0;
  /** The pool of blocks: entry e is (slot, latE6, lonE6) at 3e .. 3e + 2. */
  #pool: Int32Array;
  /** Entries of the pool handed out so far. */
  #poolUsed = 0;
  /** Free blocks by size: #freeBlocks[b] holds blocks of 4 << b entries. */
  readonly #freeBlocks: number[][] = [];

  constructor(initialSlots = 1024) {
    const n = Math.max(16, initialSlots);
    this.#si = new Int32Array(2 * n);
    const m = 64;
    this.#box = new Float64Array(4 * m);
    this.#ni = new Int32Array(4 * m);
    this.#depth = new Uint8Array(m);
    this.#pool = new Int32Array(3 * 1024);
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
      this.#si.byteLength +
      this.#box.byteLength +
      this.#ni.byteLength +
      this.#depth.byteLength +
      this.#pool.byteLength
    );
  }

  has(slot: number): boolean {
    return 2 * slot < this.#si.length && this.#si[2 * slot + LEAF] !== 0;
  }

  /** The slot's latitude, degrees x 1e6 (the slot must be in the index). */
  latE6(slot: number): number {
    return this.#pool[3 * this.#entry(slot) + 1]!;
  }

  lonE6(slot: number): number {
    return this.#pool[3 * this.#entry(slot) + 2]!;
  }

  /**
   * Puts the slot at (latE6, lonE6) (degrees x 1e6, latitude within +/-90e6, longitude within
   * +/-180e6): an insert, or a move if the slot is in the index already.
   */
  set(slot: number, latE6: number, lonE6: number): void {
    if (2 * slot >= this.#si.length) this.#growSlots(slot + 1);
    const leaf = this.#si[2 * slot + LEAF]! - 1;
    const lat = latE6 / 1e6;
    const lon = lonE6 / 1e6;
    if (leaf !== NONE) {
      if (this.#contains(leaf, lon, lat)) {
        const e = 3 * (this.#ni[4 * leaf + BLOCK]! + this.#si[2 * slot + POS]!);
        this.#pool[e + 1] = latE6;
        this.#pool[e + 2] = lonE6;
        return;
      }
      this.#take(slot, leaf);
      this.#size--;
    }
    this.#insert(slot, latE6, lonE6, lon, lat);
    this.#size++;
  }

  remove(slot: number): void {
    if (!this.has(slot)) return;
    this.#take(slot, this.#si[2 * slot + LEAF]! - 1);
    this.#si[2 * slot + LEAF] = 0;
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
    const pool = this.#pool;
    const box = this.#box;
    heap.clear();
    let node = 0;
    for (;;) {
      const first = this.#ni[4 * node + CHILD]!;
      if (first !== NONE) {
        for (let c = first; c < first + 4; c++) {
          if (this.#ni[4 * c + COUNT] === 0 && this.#ni[4 * c + CHILD] === NONE) continue;
          const h = boxHOf(
            lat,
            lon,
            cosLat,
            sinLat,
            box[4 * c]!,
            box[4 * c + 1]!,
            box[4 * c + 2]!,
            box[4 * c + 3]!,
            latHalf,
            lonHalf,
          );
          if (h <= limit) heap.push(c, h);
        }
      } else {
        const start = 3 * this.#ni[4 * node + BLOCK]!;
        const end = start + 3 * this.#ni[4 * node + COUNT]!;
        for (let e = start; e < end; e += 3) {
          const pLat = pool[e + 1]! / 1e6;
          const dLat = pLat - lat;
          if (dLat > latHalf || dLat < -latHalf) continue;
          const pLon = pool[e + 2]! / 1e6;
          const dLon = lonDelta(lon, pLon);
          if (dLon > lonHalf || dLon < -lonHalf) continue;
          // haversineH with the query's cosine hoisted, bit-identical to it (as in knn.ts).
          const sinDLat = Math.sin(dLat * RAD * 0.5);
          const sinDLon = Math.sin(dLon * RAD * 0.5);
          let h = sinDLat * sinDLat + cosLat * cosDeg(pLat) * sinDLon * sinDLon;
          if (h > 1) h = 1;
          if (h > limit) continue;
          const s = pool[e]!;
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

  /**
   * For tests: checks that every slot sits in the leaf its position descends to, at its place in the
   * leaf's block, and that the counts add up; returns the count.
   */
  check(): number {
    let n = 0;
    for (let slot = 0; 2 * slot < this.#si.length; slot++) {
      const leaf = this.#si[2 * slot + LEAF]! - 1;
      if (leaf === NONE) continue;
      n++;
      const e = 3 * (this.#ni[4 * leaf + BLOCK]! + this.#si[2 * slot + POS]!);
      if (this.#si[2 * slot + POS]! >= this.#ni[4 * leaf + COUNT]! || this.#pool[e] !== slot) {
        throw new Error(`slot ${slot} is not at its place in its leaf`);
      }
      if (this.#descend(this.#pool[e + 2]! / 1e6, this.#pool[e + 1]! / 1e6) !== leaf) {
        throw new Error(`slot ${slot} is not in its leaf`);
      }
    }
    let inLeaves = 0;
    for (let node = 0; node < this.#nodes; node++)
      if (this.#ni[4 * node + CHILD] === NONE) inLeaves += this.#ni[4 * node + COUNT]!;
    if (n !== this.#size || inLeaves !== n)
      throw new Error(`size ${this.#size}, ${n} slots, ${inLeaves} in leaves`);
    return n;
  }

  #entry(slot: number): number {
    return this.#ni[4 * (this.#si[2 * slot + LEAF]! - 1) + 1]! + this.#si[2 * slot + POS]!;
  }

  #within(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    visit: (slot: number) => void,
  ): void {
    const stack: number[] = [0];
    const box = this.#box;
    const pool = this.#pool;
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (
        box[4 * node]! > maxLon ||
        box[4 * node + 2]! < minLon ||
        box[4 * node + 1]! > maxLat ||
        box[4 * node + 3]! < minLat
      ) {
        continue;
      }
      const first = this.#ni[4 * node + CHILD]!;
      if (first !== NONE) {
        for (let c = first; c < first + 4; c++) stack.push(c);
        continue;
      }
      const start = 3 * this.#ni[4 * node + BLOCK]!;
      const end = start + 3 * this.#ni[4 * node + COUNT]!;
      for (let e = start; e < end; e += 3) {
        const lat = pool[e + 1]! / 1e6;
        const lon = pool[e + 2]! / 1e6;
        if (lat >= minLat && lat <= maxLat && lon >= minLon && lon <= maxLon) visit(pool[e]!);
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
    const latA = this.latE6(a);
    const latB = this.latE6(b);
    if (latA !== latB) return latA < latB;
    const lonA = this.lonE6(a);
    const lonB = this.lonE6(b);
    if (lonA !== lonB) return lonA < lonB;
    return tieBreak !== undefined && tieBreak(a, b) < 0;
  }

  /** Whether the point descends to this leaf: half-open boxes, closed at the world's east and north edges. */
  #contains(leaf: number, lon: number, lat: number): boolean {
    const b = 4 * leaf;
    const maxX = this.#box[b + 2]!;
    const maxY = this.#box[b + 3]!;
    return (
      lon >= this.#box[b]! &&
      (lon < maxX || maxX === 180) &&
      lat >= this.#box[b + 1]! &&
      (lat < maxY || maxY === 90)
    );
  }

  #descend(lon: number, lat: number): number {
    let node = 0;
    const box = this.#box;
    for (;;) {
      const first = this.#ni[4 * node + CHILD]!;
      if (first === NONE) return node;
      const midX = (box[4 * node]! + box[4 * node + 2]!) / 2;
      const midY = (box[4 * node + 1]! + box[4 * node + 3]!) / 2;
      node = first + (lon >= midX ? 1 : 0) + (lat >= midY ? 2 : 0);
    }
  }

  #insert(slot: number, latE6: number, lonE6: number, lon: number, lat: number): void {
    let leaf = this.#descend(lon, lat);
    while (this.#ni[4 * leaf + COUNT]! >= LEAF_CAPACITY && this.#depth[leaf]! < MAX_DEPTH) {
      this.#split(leaf);
      leaf = this.#descend(lon, lat);
    }
    this.#append(leaf, slot, latE6, lonE6);
  }

  #split(leaf: number): void {
    const b = 4 * leaf;
    const x0 = this.#box[b]!;
    const y0 = this.#box[b + 1]!;
    const x1 = this.#box[b + 2]!;
    const y1 = this.#box[b + 3]!;
    const mx = (x0 + x1) / 2;
    const my = (y0 + y1) / 2;
    const depth = this.#depth[leaf]! + 1;
    const first = this.#node(x0, y0, mx, my, depth);
    this.#node(mx, y0, x1, my, depth);
    this.#node(x0, my, mx, y1, depth);
    this.#node(mx, my, x1, y1, depth);
    const start = this.#ni[4 * leaf + BLOCK]!;
    const n = this.#ni[4 * leaf + COUNT]!;
    this.#ni[4 * leaf + CHILD] = first;
    for (let i = 0; i < n; i++) {
      // #append may grow the pool: read it afresh each time.
      const e = 3 * (start + i);
      const s = this.#pool[e]!;
      const latE6 = this.#pool[e + 1]!;
      const lonE6 = this.#pool[e + 2]!;
      this.#append(first + (lonE6 / 1e6 >= mx ? 1 : 0) + (latE6 / 1e6 >= my ? 2 : 0), s, latE6, lonE6);
    }
    this.#release(start, this.#ni[4 * leaf + CAP]!);
    this.#ni[4 * leaf + BLOCK] = NONE;
    this.#ni[4 * leaf + CAP] = 0;
    this.#ni[4 * leaf + COUNT] = 0;
  }

  /** Adds the point at the end of the leaf's block, growing the block when it is full. */
  #append(leaf: number, slot: number, latE6: number, lonE6: number): void {
    const n = this.#ni[4 * leaf + COUNT]!;
    if (n === this.#ni[4 * leaf + CAP]!) this.#resize(leaf, n === 0 ? MIN_BLOCK : 2 * n);
    const e = 3 * (this.#ni[4 * leaf + BLOCK]! + n);
    const pool = this.#pool;
    pool[e] = slot;
    pool[e + 1] = latE6;
    pool[e + 2] = lonE6;
    this.#si[2 * slot + POS] = n;
    this.#si[2 * slot + LEAF] = leaf + 1;
    this.#ni[4 * leaf + COUNT] = n + 1;
  }

  /** Takes the slot out of its leaf: the leaf's last entry moves into its place. */
  #take(slot: number, leaf: number): void {
    const block = this.#ni[4 * leaf + BLOCK]!;
    const last = this.#ni[4 * leaf + COUNT]! - 1;
    const pos = this.#si[2 * slot + POS]!;
    const pool = this.#pool;
    if (pos !== last) {
      const from = 3 * (block + last);
      const to = 3 * (block + pos);
      const moved = pool[from]!;
      pool[to] = moved;
      pool[to + 1] = pool[from + 1]!;
      pool[to + 2] = pool[from + 2]!;
      this.#si[2 * moved + POS] = pos;
    }
    this.#ni[4 * leaf + COUNT] = last;
    const cap = this.#ni[4 * leaf + CAP]!;
    if (last === 0) {
      this.#release(block, cap);
      this.#ni[4 * leaf + BLOCK] = NONE;
      this.#ni[4 * leaf + CAP] = 0;
    } else if (cap > MIN_BLOCK && last * 4 <= cap) this.#resize(leaf, cap / 2);
  }

  /** Moves the leaf's points to a block of `cap` entries. */
  #resize(leaf: number, cap: number): void {
    const to = this.#alloc(cap);
    const from = this.#ni[4 * leaf + BLOCK]!;
    const n = this.#ni[4 * leaf + COUNT]!;
    if (n > 0) this.#pool.copyWithin(3 * to, 3 * from, 3 * (from + n));
    if (from !== NONE) this.#release(from, this.#ni[4 * leaf + CAP]!);
    this.#ni[4 * leaf + BLOCK] = to;
    this.#ni[4 * leaf + CAP] = cap;
  }

  /** A block of `cap` entries (a power of two, at least MIN_BLOCK): a free one of that size, or new. */
  #alloc(cap: number): number {
    const free = this.#freeBlocks[sizeClass(cap)];
    const reused = free?.pop();
    if (reused !== undefined) return reused;
    const at = this.#poolUsed;
    if (3 * (at + cap) > this.#pool.length) {
      let n = this.#pool.length * 2;
      while (3 * (at + cap) > n) n *= 2;
      this.#pool = grow(this.#pool, new Int32Array(n));
    }
    this.#poolUsed = at + cap;
    return at;
  }

  #release(block: number, cap: number): void {
    const c = sizeClass(cap);
    while (this.#freeBlocks.length <= c) this.#freeBlocks.push([]);
    this.#freeBlocks[c]!.push(block);
  }

  #node(minX: number, minY: number, maxX: number, maxY: number, depth: number): number {
    const n = this.#nodes++;
    if (4 * n === this.#ni.length) this.#growNodes();
    this.#box[4 * n] = minX;
    this.#box[4 * n + 1] = minY;
    this.#box[4 * n + 2] = maxX;
    this.#box[4 * n + 3] = maxY;
    this.#ni[4 * n + CHILD] = NONE;
    this.#ni[4 * n + BLOCK] = NONE;
    this.#ni[4 * n + CAP] = 0;
    this.#ni[4 * n + COUNT] = 0;
    this.#depth[n] = depth;
    return n;
  }

  #growSlots(min: number): void {
    let n = this.#si.length / 2;
    while (n < min) n *= 2;
    this.#si = grow(this.#si, new Int32Array(2 * n));
  }

  #growNodes(): void {
    const n = (this.#ni.length / 4) * 2;
    this.#box = grow(this.#box, new Float64Array(4 * n));
    this.#ni = grow(this.#ni, new Int32Array(4 * n));
    this.#depth = grow(this.#depth, new Uint8Array(n));
  }
}

/** The free list a block of `cap` entries goes to: MIN_BLOCK << class. */
function sizeClass(cap: number): number {
  return 31 - Math.clz32(cap / MIN_BLOCK);
}

function grow<T extends Int32Array | Float64Array | Uint8Array>(from: T, to: T): T {
  to.set(from as never);
  return to;
}
