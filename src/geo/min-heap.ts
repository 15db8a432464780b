/**
 * Binary min-heap of (value, key) for best-first tree search, after mourner/tinyqueue but with the keys
 * in a typed array: a push allocates nothing (no { node, dist } wrapper per entry) and the comparison is
 * a float load, not a callback. The capacity doubles when full and never shrinks, so
 * one heap reused across queries settles at the size the largest query needed.
 *
 * Layout: entry i has children 2i + 1 and 2i + 2; keys[0] is the smallest key.
 */
export class MinHeap<V> {
  #keys: Float64Array;
  #values: Array<V | undefined>;
  #length = 0;
  /** Key of the entry returned by the last pop(). */
  poppedKey = 0;

  constructor(capacity = 64) {
    capacity = Math.max(1, capacity);
    this.#keys = new Float64Array(capacity);
    this.#values = [];
    this.#padValues(capacity);
  }

  get length(): number {
    return this.#length;
  }

  /** Smallest key, or Infinity when empty. */
  peekKey(): number {
    return this.#length > 0 ? this.#keys[0]! : Number.POSITIVE_INFINITY;
  }

  push(value: V, key: number): void {
    if (this.#length === this.#keys.length) this.#grow();
    const keys = this.#keys;
    const values = this.#values;
    let pos = this.#length++;
    // Move the hole up instead of swapping: one write per level.
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      const parentKey = keys[parent]!;
      if (key >= parentKey) break;
      keys[pos] = parentKey;
      values[pos] = values[parent];
      pos = parent;
    }
    keys[pos] = key;
    values[pos] = value;
  }

  /** Removes and returns the entry with the smallest key; its key lands in poppedKey. */
  pop(): V {
    if (this.#length === 0) throw new RangeError('MinHeap.pop: heap is empty');
    const keys = this.#keys;
    const values = this.#values;
    const top = values[0] as V;
    this.poppedKey = keys[0]!;
    const length = --this.#length;
    if (length > 0) {
      const key = keys[length]!;
      const value = values[length];
      const half = length >> 1;
      let pos = 0;
      while (pos < half) {
        let child = 2 * pos + 1;
        let childKey = keys[child]!;
        const right = child + 1;
        if (right < length && keys[right]! < childKey) {
          child = right;
          childKey = keys[right]!;
        }
        if (childKey >= key) break;
        keys[pos] = childKey;
        values[pos] = values[child];
        pos = child;
      }
      keys[pos] = key;
      values[pos] = value;
    }
    // Do not keep a removed driver alive from a scratch heap.
    values[length] = undefined;
    return top;
  }

  /** Empties the heap and drops its references to values; the capacity is kept. */
  clear(): void {
    this.#values.fill(undefined, 0, this.#length);
    this.#length = 0;
  }

  #grow(): void {
    const capacity = this.#keys.length * 2;
    const keys = new Float64Array(capacity);
    keys.set(this.#keys);
    this.#keys = keys;
    this.#padValues(capacity);
  }

  // Grown by push, not by setting length, so V8 keeps the array packed (no hole checks on load).
  #padValues(capacity: number): void {
    const values = this.#values;
    while (values.length < capacity) values.push(undefined);
  }
}
