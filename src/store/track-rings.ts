/**
 * The last N points of every driver in a shard, in one slab with a fixed stride per slot: the newest
 * point whole, and each point as its difference from the point before it, 5 bytes instead of 12.
 *
 *   slot s, at byte s * stride (stride = 12 + 5N, rounded up to 4):
 *     0-11             newest point: latE6, lonE6 (int32), time (uint32, Unix s)
 *     12 + 4p          ring position p: dLat, dLon (int16, degrees x 1e6)  = point p - the point before it
 *     12 + 4N + p      ring position p: dt (uint8, s), or ESCAPE
 *
 * A point is read back by walking from the newest one backwards, subtracting. One second of driving is
 * at most 70 m at the 250 km/h limit, a few hundred units of 1e-6 degree, so the differences fit an
 * int16 (±32,767: 3.6 km of latitude) and the time between fixes a byte (1-254 s). What does not fit
 * (a phone back after minutes offline, a re-anchored driver far away) is an escape: the point before it
 * is kept whole in a side map, by slot and position, until the position is written again or the slot is
 * released. Byte 0 marks a position never written since.
 *
 * Why: 20 points of 12 bytes were 240 B a driver, the largest part of a shard's 550 B a driver at a
 * million (bench/memory.ts); as differences they are 112 B (issue 14: at most 600 B a driver for the
 * whole daemon, read replicas apart). A write touches the newest point and the position's bytes, at
 * most three lines of the slot's 112 bytes.
 *
 * The ring's head and count belong to its owner (the shard's record), which keeps the slab free of
 * per-driver bookkeeping; slots are the shard's, and the slab only grows to hold them.
 */
const ESCAPE = 255;
const MAX_DT = 254;
const MAX_D = 32_767;

export class TrackRings {
  readonly points: number;
  /** Bytes a slot takes. */
  readonly stride: number;
  #i32: Int32Array;
  #u32: Uint32Array;
  #i16: Int16Array;
  #u8: Uint8Array;
  #capacity: number;
  /** Escapes: the point before ring position p of slot s, at key s * points + p. */
  readonly #escapes = new Map<number, [number, number, number]>();

  constructor(points: number, initialCapacity = 1024) {
    if (!Number.isInteger(points) || points < 1) throw new RangeError(`points must be a positive integer`);
    this.points = points;
    this.stride = (12 + 5 * points + 3) & ~3;
    this.#capacity = initialCapacity;
    const buf = new ArrayBuffer(initialCapacity * this.stride);
    this.#i32 = new Int32Array(buf);
    this.#u32 = new Uint32Array(buf);
    this.#i16 = new Int16Array(buf);
    this.#u8 = new Uint8Array(buf);
  }

  /** Slots the slab holds room for. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Bytes held by the slab (for memory accounting). */
  get byteLength(): number {
    return this.#u8.byteLength;
  }

  /** Points kept whole beside the slab (for tests). */
  get escapes(): number {
    return this.#escapes.size;
  }

  /** Makes room for slots 0 .. slots - 1 (doubling), keeping what is written. */
  reserve(slots: number): void {
    if (slots <= this.#capacity) return;
    let cap = this.#capacity;
    while (cap < slots) cap *= 2;
    const buf = new ArrayBuffer(cap * this.stride);
    const u8 = new Uint8Array(buf);
    u8.set(this.#u8);
    this.#u8 = u8;
    this.#i32 = new Int32Array(buf);
    this.#u32 = new Uint32Array(buf);
    this.#i16 = new Int16Array(buf);
    this.#capacity = cap;
  }

  /**
   * Writes a point at ring position `pos` (0 <= pos < points) of `slot`, the one after the newest;
   * `first` when the ring holds no point yet (or none is to be kept before this one).
   */
  push(slot: number, pos: number, latE6: number, lonE6: number, time: number, first: boolean): void {
    const base = slot * this.stride;
    const h = base >> 2;
    const t = base + 12 + 4 * this.points + pos;
    const u8 = this.#u8;
    const key = slot * this.points + pos;
    if (u8[t] === ESCAPE) this.#escapes.delete(key);
    if (first) u8[t] = 1;
    else {
      const i32 = this.#i32;
      const prevLat = i32[h]!;
      const prevLon = i32[h + 1]!;
      const prevTime = this.#u32[h + 2]!;
      const dLat = latE6 - prevLat;
      const dLon = lonE6 - prevLon;
      const dt = time - prevTime;
      if (dLat >= -MAX_D && dLat <= MAX_D && dLon >= -MAX_D && dLon <= MAX_D && dt >= 1 && dt <= MAX_DT) {
        const p = (base + 12) / 2 + 2 * pos;
        this.#i16[p] = dLat;
        this.#i16[p + 1] = dLon;
        u8[t] = dt;
      } else {
        u8[t] = ESCAPE;
        this.#escapes.set(key, [prevLat, prevLon, prevTime]);
      }
    }
    this.#i32[h] = latE6;
    this.#i32[h + 1] = lonE6;
    this.#u32[h + 2] = time;
  }

  /**
   * Appends to `out` the `count` newest points of the slot (the newest written at position head - 1),
   * oldest first, as (latE6, lonE6, time) triples.
   */
  read(slot: number, head: number, count: number, out: number[]): void {
    if (count === 0) return;
    const n = this.points;
    const base = slot * this.stride;
    const h = base >> 2;
    const at = out.length;
    for (let k = 0; k < count; k++) out.push(0, 0, 0);
    let lat = this.#i32[h]!;
    let lon = this.#i32[h + 1]!;
    let time = this.#u32[h + 2]!;
    let pos = head === 0 ? n - 1 : head - 1;
    for (let k = count - 1; ; k--) {
      out[at + 3 * k] = lat;
      out[at + 3 * k + 1] = lon;
      out[at + 3 * k + 2] = time;
      if (k === 0) break;
      // The point before the one at pos.
      const tag = this.#u8[base + 12 + 4 * n + pos]!;
      if (tag === ESCAPE) {
        const e = this.#escapes.get(slot * n + pos)!;
        lat = e[0];
        lon = e[1];
        time = e[2];
      } else {
        const p = (base + 12) / 2 + 2 * pos;
        lat -= this.#i16[p]!;
        lon -= this.#i16[p + 1]!;
        time -= tag;
      }
      pos = pos === 0 ? n - 1 : pos - 1;
    }
  }

  /**
   * Loads the lines the next push at `pos` writes (a prefetch; see Shard.warmDriver) and returns what it
   * read, for the caller to keep.
   */
  warm(slot: number, pos: number): number {
    const base = slot * this.stride;
    return (
      this.#i32[base >> 2]! ^
      this.#i16[(base + 12) / 2 + 2 * pos]! ^
      this.#u8[base + 12 + 4 * this.points + pos]!
    );
  }

  /** The slot's driver left: its escapes go, and its positions read as never written. */
  release(slot: number): void {
    const n = this.points;
    const t = slot * this.stride + 12 + 4 * n;
    const u8 = this.#u8;
    for (let p = 0; p < n; p++) {
      if (u8[t + p] === ESCAPE) this.#escapes.delete(slot * n + p);
      u8[t + p] = 0;
    }
  }
}
