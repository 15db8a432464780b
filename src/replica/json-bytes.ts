/**
 * A JSON text written straight as bytes: the nearest route's answer, built from the replica's arrays.
 *
 * Why not a template string: a nearest-10 answer is ~1.7 KB made of ~90 pieces. As a string it is a rope
 * of numbers converted by V8's shortest-double algorithm (`latE6 / 1e6`), names decoded from the name
 * arena, then flattened and encoded to UTF-8 again when the socket writes it. Profiled under load
 * (100k drivers, 16 clients), building and writing that string took about half of an HTTP process's
 * time per nearest request, the index itself a sixth. Here names are copied from the arena as bytes,
 * and fixed-point numbers (micro-degrees, tenths of a metre) are written digit by digit from integers,
 * which gives the same text a double's shortest form would (trailing zeros trimmed).
 *
 * One writer is reused for every answer; `take()` copies out what was written, because the socket may
 * still hold the bytes after the next answer starts.
 */
export class JsonBytes {
  #buf: Buffer;
  #at = 0;

  constructor(capacity = 16 * 1024) {
    this.#buf = Buffer.allocUnsafeSlow(capacity);
  }

  /** Forgets what was written. */
  reset(): this {
    this.#at = 0;
    return this;
  }

  get length(): number {
    return this.#at;
  }

  /** A copy of the bytes written since the last reset. */
  take(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#at));
  }

  /**
   * The bytes from `from` to `to`, not copied: they stay valid after the writer grows (it copies to a
   * new buffer), but not after a reset, which writes over them.
   */
  range(from: number, to: number): Buffer {
    return this.#buf.subarray(from, to);
  }

  /** Bytes written earlier, from `from` for `n`, written again (a car shown in two cells). */
  again(from: number, n: number): void {
    const buf = this.room(n);
    buf.copy(buf, this.#at, from, from + n);
    this.#at += n;
  }

  /** A string of ASCII JSON text (a road path as its owner wrote it). */
  text(s: string): void {
    const buf = this.room(s.length);
    this.#at += buf.write(s, this.#at, s.length, 'latin1');
  }

  /** ASCII text with nothing to escape (keys, punctuation), pre-encoded by `ascii()`. */
  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    const buf = this.room(n);
    const at = this.#at;
    // A loop, not set(): keys are a few bytes, shorter than a call into a builtin is worth.
    for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
    this.#at = at + n;
  }

  /**
   * Room for n more bytes, then the buffer and where to write: for a caller that copies its own bytes
   * (src/store/names.ts copies a name from its arena), which then reports them with `wrote`.
   */
  room(n: number): Buffer {
    if (this.#at + n > this.#buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(this.#buf.length * 2, this.#at + n));
      this.#buf.copy(grown, 0, 0, this.#at);
      this.#buf = grown;
    }
    return this.#buf;
  }

  get at(): number {
    return this.#at;
  }

  wrote(n: number): void {
    this.#at += n;
  }

  /** One byte (a char code below 128). */
  byte(c: number): void {
    this.room(1)[this.#at++] = c;
  }

  /** A non-negative integer below 2^32 (fix times, speeds, bearings; whole degrees and metres). */
  uint(n: number): void {
    let len = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) len++;
    const buf = this.room(len);
    let i = this.#at + len;
    do {
      const q = Math.floor(n / 10);
      buf[--i] = 48 + n - q * 10;
      n = q;
    } while (n > 0);
    this.#at += len;
  }

  /**
   * An integer `v` counted in units of 10^-digits (micro-degrees: 6, tenths: 1) as the decimal it
   * stands for, trailing fraction zeros trimmed: 42887400 with 6 digits is `42.8874`, 1230 with 1 is
   * `123`, as JSON.stringify(v / 10 ** digits) writes them.
   */
  fixed(v: number, digits: number): void {
    if (v < 0) {
      this.byte(45);
      v = -v;
    }
    const scale = POW10[digits]!;
    const whole = Math.floor(v / scale);
    let frac = v - whole * scale;
    this.uint(whole);
    if (frac === 0) return;
    let d = digits;
    while (frac % 10 === 0) {
      frac /= 10;
      d--;
    }
    const buf = this.room(d + 1);
    buf[this.#at] = 46;
    for (let i = this.#at + d; i > this.#at; i--) {
      const q = Math.floor(frac / 10);
      buf[i] = 48 + frac - q * 10;
      frac = q;
    }
    this.#at += d + 1;
  }

  bool(b: boolean): void {
    this.raw(b ? TRUE : FALSE);
  }
}

const POW10 = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];
const TRUE = ascii('true');
const FALSE = ascii('false');

/** Pre-encodes constant ASCII text for `raw`. */
export function ascii(text: string): Uint8Array {
  return Buffer.from(text, 'latin1');
}
