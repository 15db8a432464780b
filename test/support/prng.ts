/**
 * Seeded randomness for tests and benchmarks: the same seed gives the same inputs on every machine, so a
 * failure found by a random test can be replayed. mulberry32 (Tommy Ettinger's 32-bit generator) is tiny
 * and good enough for test data; it is not for anything secret.
 */

/** Returns a generator of uint32 values. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A small toolkit over one mulberry32 stream. */
export class Prng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** Uniform uint32. */
  uint32(): number {
    return this.#next();
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.#next() / 0x1_0000_0000;
  }

  /** Uniform integer in [min, max], both inclusive; exact for ranges up to 2^53. */
  int(min: number, max: number): number {
    const span = max - min + 1;
    if (span <= 0x1_0000_0000) return min + Math.floor(this.float() * span);
    // Two draws give 53 random bits, enough for any safe-integer range.
    const r = ((this.#next() >>> 5) * 0x400_0000 + (this.#next() >>> 6)) / 2 ** 53;
    return min + Math.floor(r * span);
  }

  /** Uniform uint64. */
  uint64(): bigint {
    return (BigInt(this.#next()) << 32n) | BigInt(this.#next());
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** `n` uniform random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#next() & 0xff;
    return out;
  }
}
