/**
 * The last N points of every driver in a shard, in one slab of typed arrays with a fixed stride
 * (mourner's layout): no per-driver array objects for the garbage collector to trace, 12 bytes a point.
 *
 *   slot s, point p (0 <= p < N) is the triple at words 3i .. 3i + 2, i = s * N + p:
 *     latE6, lonE6   degrees x 1e6 (int32, exactly as received)
 *     time           Unix seconds (uint32: good past 2038)
 *
 * A point's three numbers sit together, so writing one (every accepted fix) touches one cache line,
 * not two. A slot's ring position (head, count) belongs to its owner (the shard's record), which keeps
 * the slab free of per-driver bookkeeping. Slots are the shard's: the slab only grows to hold them.
 */
export class TrackRings {
  readonly points: number;
  #i32: Int32Array;
  #u32: Uint32Array;
  #capacity: number;

  constructor(points: number, initialCapacity = 1024) {
    if (!Number.isInteger(points) || points < 1) throw new RangeError(`points must be a positive integer`);
    this.points = points;
    this.#capacity = initialCapacity;
    this.#i32 = new Int32Array(initialCapacity * points * 3);
    this.#u32 = new Uint32Array(this.#i32.buffer);
  }

  /** Slots the slab holds room for. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Bytes held by the slab (for memory accounting). */
  get byteLength(): number {
    return this.#i32.byteLength;
  }

  /** Makes room for slots 0 .. slots - 1 (doubling), keeping what is written. */
  reserve(slots: number): void {
    if (slots <= this.#capacity) return;
    let cap = this.#capacity;
    while (cap < slots) cap *= 2;
    const i32 = new Int32Array(cap * this.points * 3);
    i32.set(this.#i32);
    this.#i32 = i32;
    this.#u32 = new Uint32Array(i32.buffer);
    this.#capacity = cap;
  }

  /** Writes a point at ring position `pos` (0 <= pos < points) of `slot`. */
  write(slot: number, pos: number, latE6: number, lonE6: number, time: number): void {
    const i = (slot * this.points + pos) * 3;
    this.#i32[i] = latE6;
    this.#i32[i + 1] = lonE6;
    this.#u32[i + 2] = time;
  }

  latE6(slot: number, pos: number): number {
    return this.#i32[(slot * this.points + pos) * 3]!;
  }

  lonE6(slot: number, pos: number): number {
    return this.#i32[(slot * this.points + pos) * 3 + 1]!;
  }

  time(slot: number, pos: number): number {
    return this.#u32[(slot * this.points + pos) * 3 + 2]!;
  }
}
