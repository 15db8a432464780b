/**
 * The last N points of every driver in a shard, in one slab of typed arrays with a fixed stride
 * (mourner's layout): no per-driver array objects for the garbage collector to trace, 12 bytes a point.
 *
 *   slot s, point p (0 <= p < N) lives at index s * N + p:
 *     latLon[2i], latLon[2i+1]  degrees x 1e6 (int32, exactly as received)
 *     time[i]                   Unix seconds (uint32: good past 2038)
 *
 * A slot's ring position (head, count) belongs to its owner (the Driver object), which keeps the slab
 * free of per-driver bookkeeping. Freed slots are reused last-in first-out.
 */
export class TrackRings {
  readonly points: number;
  #latLon: Int32Array;
  #time: Uint32Array;
  #capacity: number;
  #next = 0;
  #free: number[] = [];

  constructor(points: number, initialCapacity = 1024) {
    if (!Number.isInteger(points) || points < 1) throw new RangeError(`points must be a positive integer`);
    this.points = points;
    this.#capacity = initialCapacity;
    this.#latLon = new Int32Array(initialCapacity * points * 2);
    this.#time = new Uint32Array(initialCapacity * points);
  }

  /** Slots in use. */
  get size(): number {
    return this.#next - this.#free.length;
  }

  /** Bytes held by the slab (for memory accounting). */
  get byteLength(): number {
    return this.#latLon.byteLength + this.#time.byteLength;
  }

  alloc(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#next === this.#capacity) this.#grow();
    return this.#next++;
  }

  release(slot: number): void {
    this.#free.push(slot);
  }

  /** Writes a point at ring position `pos` (0 <= pos < points) of `slot`. */
  write(slot: number, pos: number, latE6: number, lonE6: number, time: number): void {
    const i = slot * this.points + pos;
    this.#latLon[2 * i] = latE6;
    this.#latLon[2 * i + 1] = lonE6;
    this.#time[i] = time;
  }

  latE6(slot: number, pos: number): number {
    return this.#latLon[2 * (slot * this.points + pos)]!;
  }

  lonE6(slot: number, pos: number): number {
    return this.#latLon[2 * (slot * this.points + pos) + 1]!;
  }

  time(slot: number, pos: number): number {
    return this.#time[slot * this.points + pos]!;
  }

  #grow(): void {
    const cap = this.#capacity * 2;
    const latLon = new Int32Array(cap * this.points * 2);
    latLon.set(this.#latLon);
    const time = new Uint32Array(cap * this.points);
    time.set(this.#time);
    this.#latLon = latLon;
    this.#time = time;
    this.#capacity = cap;
  }
}
