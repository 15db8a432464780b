/**
 * The hot state of a shard's drivers: one 64-byte record per slot in a single ArrayBuffer, read through
 * views of each width (mourner's fixed stride). Every field a fix reads or writes is in its driver's
 * record, so an accepted fix touches one cache line of driver state (plus its ring point and its
 * neighbours in the expiry list), and there is no per-driver object for the garbage collector to trace.
 *
 *   bytes   field                                   view index (slot s)
 *   0-3     latE6            int32                  i32[16s + LAT]
 *   4-7     lonE6            int32                  i32[16s + LON]
 *   8-11    time of the last accepted fix, Unix s   u32[16s + TIME]     0 before the first
 *   12-19   order id, high and low halves           u32[16s + ORDER_HI], u32[16s + ORDER_LO]
 *   20-23   cost, minor units                       u32[16s + COST]
 *   24-31   expiry list: previous, next slot        i32[16s + PREV], i32[16s + NEXT]     -1: none
 *   32-35   trip: accepted fixes                    u32[16s + TRIP_POINTS]
 *   36-39   trip: time of its last fix              u32[16s + TRIP_LAST]
 *   40-47   seen at, server ms (what expiry goes by) f64[8s + SEEN]
 *   48-55   trip: distance driven, m                f64[8s + DISTANCE]
 *   56-59   speed, bearing (clamped to 65,535)      u16[32s + SPEED], u16[32s + BEARING]
 *   60-63   ring head (10 bits) | ring count (11 bits) | flags (11 bits)   u32[16s + RING]
 *
 * Why one record and not one array per field (struct-of-arrays): a fix reads or writes about fifteen of
 * these fields, and with an array each they are fifteen cache lines when fixes arrive in any order but
 * the slots' (as they do: phones send at their own phase of the second). Measured on this machine with
 * the fields a fix touches, a million slots visited in random order: 144 ns a fix with an array per
 * field, 90 ns with the record; in slot order, 17 ns either way (a throwaway loop; the shard's own
 * figure is bench/cost-growth.ts's). Fields a fix never touches (session, directory epoch, trip start
 * and sync mark) live in plain arrays beside the records.
 *
 * Pure storage: the shard (src/store/shard.ts) owns every write.
 */
export const STRIDE = 16;
export const LAT = 0;
export const LON = 1;
export const TIME = 2;
export const ORDER_HI = 3;
export const ORDER_LO = 4;
export const COST = 5;
export const PREV = 6;
export const NEXT = 7;
export const TRIP_POINTS = 8;
export const TRIP_LAST = 9;
/** Float64 indexes within the record (8 a record). */
export const SEEN = 5;
export const DISTANCE = 6;
/** Uint16 indexes within the record (32 a record). */
export const SPEED = 28;
export const BEARING = 29;
export const RING = 15;

/** The ring's head and count: up to 1,023 points (CABTRACK_TRACK_POINTS allows at most 1,000). */
export const RING_BITS = 10;
export const RING_MASK = (1 << RING_BITS) - 1;
export const COUNT_SHIFT = RING_BITS;
export const COUNT_MASK = (1 << (RING_BITS + 1)) - 1;
export const FLAG_SHIFT = 2 * RING_BITS + 1;
/** Flags (above the ring's bits). */
export const LIVE = 1 << FLAG_SHIFT;
/** Moved since the last drain: in the shard's dirty list. Kept when the slot is freed (see Shard). */
export const DIRTY = 2 << FLAG_SHIFT;
/** Has an active trip. */
export const TRIP = 4 << FLAG_SHIFT;
/** Its refused fixes are watched for a new track (a NewTrack in the shard's side map). */
export const WATCH = 8 << FLAG_SHIFT;

export const MAX_U16 = 0xffff;

export class DriverRecords {
  i32: Int32Array;
  u32: Uint32Array;
  f64: Float64Array;
  u16: Uint16Array;
  /** Beside the records: what no fix touches. */
  sessionHi: Uint32Array;
  sessionLo: Uint32Array;
  /** The directory's epoch of this worker's ownership (src/cluster/handoff.ts). */
  epoch: Uint32Array;
  tripStart: Uint32Array;
  /** The trip's point count when it was last written to durable storage. */
  tripSynced: Uint32Array;
  #capacity: number;
  /** Slots handed out so far (free ones included): every slot below is or was a driver's. */
  #limit = 0;
  #free: Int32Array;
  #freeCount = 0;

  constructor(initialCapacity = 1024) {
    this.#capacity = initialCapacity;
    const buf = new ArrayBuffer(initialCapacity * STRIDE * 4);
    this.i32 = new Int32Array(buf);
    this.u32 = new Uint32Array(buf);
    this.f64 = new Float64Array(buf);
    this.u16 = new Uint16Array(buf);
    this.sessionHi = new Uint32Array(initialCapacity);
    this.sessionLo = new Uint32Array(initialCapacity);
    this.epoch = new Uint32Array(initialCapacity);
    this.tripStart = new Uint32Array(initialCapacity);
    this.tripSynced = new Uint32Array(initialCapacity);
    this.#free = new Int32Array(initialCapacity);
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** One past the highest slot ever handed out. */
  get limit(): number {
    return this.#limit;
  }

  /** Bytes held (for memory accounting). */
  get byteLength(): number {
    return this.u32.byteLength + this.#capacity * 4 * 6;
  }

  /**
   * A free slot, the last freed first (its lines are the likeliest to be in cache). May grow the
   * arrays: views read before a call are stale after it.
   */
  alloc(): number {
    if (this.#freeCount > 0) return this.#free[--this.#freeCount]!;
    if (this.#limit === this.#capacity) this.#grow();
    return this.#limit++;
  }

  release(slot: number): void {
    this.#free[this.#freeCount++] = slot;
  }

  #grow(): void {
    const cap = this.#capacity * 2;
    const buf = new ArrayBuffer(cap * STRIDE * 4);
    const u32 = new Uint32Array(buf);
    u32.set(this.u32);
    this.u32 = u32;
    this.i32 = new Int32Array(buf);
    this.f64 = new Float64Array(buf);
    this.u16 = new Uint16Array(buf);
    this.sessionHi = grown(this.sessionHi, cap);
    this.sessionLo = grown(this.sessionLo, cap);
    this.epoch = grown(this.epoch, cap);
    this.tripStart = grown(this.tripStart, cap);
    this.tripSynced = grown(this.tripSynced, cap);
    const free = new Int32Array(cap);
    free.set(this.#free);
    this.#free = free;
    this.#capacity = cap;
  }
}

function grown(from: Uint32Array, cap: number): Uint32Array {
  const to = new Uint32Array(cap);
  to.set(from);
  return to;
}
