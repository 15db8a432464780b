/**
 * A hash index from unsigned 64-bit keys (two uint32 halves: sessions, order ids) to small non-negative
 * integers (slot numbers), all in one typed array: no object per entry for the garbage collector to
 * trace, and a lookup touches one cache line.
 *
 *   entry i at words 4i .. 4i + 3:   hi | lo | value + 1 (0: empty) | unused
 *
 * 16 bytes an entry, so an entry never straddles a 64-byte line, and a probe run of up to four entries
 * costs one cache miss. At a million sessions in a worker's shard that miss is what a datagram's lookup
 * costs (U64Map keeps keys and values in two arrays: two misses; bench/cost-growth.ts). Open addressing,
 * linear probing, at most 3/4 full, backward-shift deletion (no tombstones), and a hash seeded at random
 * per index, as in U64Map (src/store/u64-map.ts), whose comment says why.
 */
const STRIDE = 4;

export class U64Index {
  #e: Uint32Array;
  #mask: number;
  #size = 0;
  readonly #seed: number;

  constructor(initialCapacity = 1024, seed = (Math.random() * 0x100000000) >>> 0) {
    let cap = 16;
    while (cap * 3 < initialCapacity * 4) cap *= 2;
    this.#e = new Uint32Array(cap * STRIDE);
    this.#mask = cap - 1;
    this.#seed = seed;
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes held (for memory accounting). */
  get byteLength(): number {
    return this.#e.byteLength;
  }

  /** The value stored for the key, or -1. */
  get(hi: number, lo: number): number {
    hi >>>= 0;
    lo >>>= 0;
    const e = this.#e;
    const mask = this.#mask;
    for (let i = this.#home(hi, lo); ; i = (i + 1) & mask) {
      const at = i * STRIDE;
      const v = e[at + 2]!;
      if (v === 0) return -1;
      if (e[at] === hi && e[at + 1] === lo) return v - 1;
    }
  }

  /**
   * Loads the key's home entry: a prefetch (the caller keeps what it returns somewhere, so that the
   * load is not optimised away). See Shard.warmSession.
   */
  warm(hi: number, lo: number): number {
    return this.#e[this.#home(hi >>> 0, lo >>> 0) * STRIDE]!;
  }

  /** Stores value (0 <= value < 2^32 - 1) for the key, replacing any. */
  set(hi: number, lo: number, value: number): void {
    hi >>>= 0;
    lo >>>= 0;
    if ((this.#size + 1) * 4 > (this.#mask + 1) * 3) this.#grow();
    const e = this.#e;
    const mask = this.#mask;
    for (let i = this.#home(hi, lo); ; i = (i + 1) & mask) {
      const at = i * STRIDE;
      if (e[at + 2] === 0) {
        e[at] = hi;
        e[at + 1] = lo;
        e[at + 2] = value + 1;
        this.#size++;
        return;
      }
      if (e[at] === hi && e[at + 1] === lo) {
        e[at + 2] = value + 1;
        return;
      }
    }
  }

  /** Removes the key; true when it was there. With `onlyIf`, only when it holds that value. */
  delete(hi: number, lo: number, onlyIf = -1): boolean {
    hi >>>= 0;
    lo >>>= 0;
    const e = this.#e;
    const mask = this.#mask;
    let i = this.#home(hi, lo);
    for (; ; i = (i + 1) & mask) {
      const at = i * STRIDE;
      const v = e[at + 2]!;
      if (v === 0) return false;
      if (e[at] === hi && e[at + 1] === lo) {
        if (onlyIf >= 0 && v !== onlyIf + 1) return false;
        break;
      }
    }
    // Backward-shift deletion: pull later members of the probe run into the hole unless their home
    // lies cyclically in (hole, j], so every remaining key stays reachable from its home.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const at = j * STRIDE;
      if (e[at + 2] === 0) break;
      const home = this.#home(e[at]!, e[at + 1]!);
      if (hole <= j ? hole < home && home <= j : hole < home || home <= j) continue;
      const to = hole * STRIDE;
      e[to] = e[at]!;
      e[to + 1] = e[at + 1]!;
      e[to + 2] = e[at + 2]!;
      hole = j;
    }
    e[hole * STRIDE + 2] = 0;
    this.#size--;
    return true;
  }

  forEach(fn: (value: number, hi: number, lo: number) => void): void {
    const e = this.#e;
    for (let at = 0; at < e.length; at += STRIDE) {
      const v = e[at + 2]!;
      if (v !== 0) fn(v - 1, e[at]!, e[at + 1]!);
    }
  }

  clear(): void {
    this.#e.fill(0);
    this.#size = 0;
  }

  #home(hi: number, lo: number): number {
    // murmur3's 32-bit finaliser over both halves mixed with the seed (as U64Map).
    let h = Math.imul(lo ^ this.#seed, 0xcc9e2d51);
    h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ hi;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.#mask;
  }

  #grow(): void {
    const old = this.#e;
    const cap = (this.#mask + 1) * 2;
    this.#e = new Uint32Array(cap * STRIDE);
    this.#mask = cap - 1;
    this.#size = 0;
    for (let at = 0; at < old.length; at += STRIDE) {
      const v = old[at + 2]!;
      if (v !== 0) this.set(old[at]!, old[at + 1]!, v - 1);
    }
  }
}
