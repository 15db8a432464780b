/**
 * A hash map keyed by unsigned 64-bit integers given as two uint32 halves, so that sessions (fixed64 on
 * the wire) are looked up on the hot path without building a BigInt or a string per datagram.
 *
 * Open addressing with linear probing over flat typed arrays (keys interleaved hi, lo) and backward-shift
 * deletion, so there are no tombstones and lookups stay short after churn. The hash is seeded at random
 * per map: sessions come from the network, and a fixed hash would let an attacker who learns it pick
 * colliding keys and turn lookups into long scans. Keys are taken as unsigned (`>>> 0`): a caller's
 * int32 from a bitwise expression finds the same entry as its uint32.
 */
export class U64Map<V> {
  #keys: Uint32Array;
  #values: (V | undefined)[];
  #mask: number;
  #size = 0;
  readonly #seed: number;

  constructor(initialCapacity = 1024, seed = (Math.random() * 0x100000000) >>> 0) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap *= 2;
    this.#keys = new Uint32Array(cap * 2);
    this.#values = new Array<V | undefined>(cap).fill(undefined);
    this.#mask = cap - 1;
    this.#seed = seed;
  }

  get size(): number {
    return this.#size;
  }

  get(hi: number, lo: number): V | undefined {
    hi >>>= 0;
    lo >>>= 0;
    const keys = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    let i = this.#slot(hi, lo);
    for (;;) {
      const v = values[i];
      if (v === undefined) return undefined;
      if (keys[2 * i] === hi && keys[2 * i + 1] === lo) return v;
      i = (i + 1) & mask;
    }
  }

  has(hi: number, lo: number): boolean {
    return this.get(hi, lo) !== undefined;
  }

  /** Values may not be undefined: an empty slot is one whose value is undefined. */
  set(hi: number, lo: number, value: V): void {
    hi >>>= 0;
    lo >>>= 0;
    if ((this.#size + 1) * 4 > (this.#mask + 1) * 3) this.#grow();
    const keys = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    let i = this.#slot(hi, lo);
    for (;;) {
      if (values[i] === undefined) {
        keys[2 * i] = hi;
        keys[2 * i + 1] = lo;
        values[i] = value;
        this.#size++;
        return;
      }
      if (keys[2 * i] === hi && keys[2 * i + 1] === lo) {
        values[i] = value;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  delete(hi: number, lo: number): boolean {
    hi >>>= 0;
    lo >>>= 0;
    const keys = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    let i = this.#slot(hi, lo);
    for (;;) {
      if (values[i] === undefined) return false;
      if (keys[2 * i] === hi && keys[2 * i + 1] === lo) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later members of the probe run into the hole when their home slot
    // does not lie cyclically in (hole, j], so every remaining key stays reachable from its home slot.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = values[j];
      if (v === undefined) break;
      const home = this.#slot(keys[2 * j]!, keys[2 * j + 1]!);
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (between) continue;
      keys[2 * hole] = keys[2 * j]!;
      keys[2 * hole + 1] = keys[2 * j + 1]!;
      values[hole] = v;
      hole = j;
    }
    values[hole] = undefined;
    this.#size--;
    return true;
  }

  forEach(fn: (value: V, hi: number, lo: number) => void): void {
    const keys = this.#keys;
    const values = this.#values;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v !== undefined) fn(v, keys[2 * i]!, keys[2 * i + 1]!);
    }
  }

  clear(): void {
    this.#values.fill(undefined);
    this.#size = 0;
  }

  #slot(hi: number, lo: number): number {
    // murmur3's 32-bit finaliser over both halves mixed with the seed.
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
    const oldKeys = this.#keys;
    const oldValues = this.#values;
    const cap = (this.#mask + 1) * 2;
    this.#keys = new Uint32Array(cap * 2);
    this.#values = new Array<V | undefined>(cap).fill(undefined);
    this.#mask = cap - 1;
    this.#size = 0;
    for (let i = 0; i < oldValues.length; i++) {
      const v = oldValues[i];
      if (v !== undefined) this.set(oldKeys[2 * i]!, oldKeys[2 * i + 1]!, v);
    }
  }
}
