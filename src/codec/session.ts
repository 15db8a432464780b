/**
 * Text forms of the two 64-bit ids in a Track. On the hot path they stay as two uint32 halves (see Fix);
 * these helpers are for the edges: HTTP, logs, the session registry, the start of a trip.
 */

/** A uint64 as its high and low 32 bits, both unsigned. */
export type U64Halves = { hi: number; lo: number };

const TWO_32 = 0x1_0000_0000;
const MAX_U64 = (1n << 64n) - 1n;

/**
 * The session as 16 lowercase hex digits, high word first, so the text sorts like the number.
 * `>>> 0` lets callers pass halves that went through a signed bitwise op.
 */
export function sessionToHex(hi: number, lo: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

/**
 * Parses exactly 16 hex digits. Only lowercase is accepted: sessionToHex is the one text form, so a token
 * that is a map key, a log field or part of a URL has exactly one spelling and compares as a string.
 * A zero session parses: refusing it is the job of the fix filter, not of the text form.
 */
export function parseSessionHex(s: string): U64Halves | undefined {
  if (s.length !== 16) return undefined;
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < 16; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else return undefined;
    // Multiply instead of shifting: a shift would go through int32 and turn the top nibble negative.
    if (i < 8) hi = hi * 16 + d;
    else lo = lo * 16 + d;
  }
  return { hi, lo };
}

export function sessionToBigInt(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Throws a RangeError for a value outside uint64: that is a bug in the caller, not bad input. */
export function sessionFromBigInt(b: bigint): U64Halves {
  if (b < 0n || b > MAX_U64) throw new RangeError(`session ${b} is not a uint64`);
  return { hi: Number(b >> 32n), lo: Number(b & 0xffff_ffffn) };
}

/** Decimal text of a uint64 order id, exact over the whole range (a double is exact only below 2^53). */
export function orderIdToString(hi: number, lo: number): string {
  hi >>>= 0;
  lo >>>= 0;
  // hi < 2^21 keeps the value below 2^53, where the double arithmetic is exact and cheaper than BigInt.
  if (hi < 0x20_0000) return String(hi * TWO_32 + lo);
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
}

/**
 * Parses a nonzero decimal uint64: 1 to 20 ASCII digits, at most 2^64-1. No sign, spaces or exponent.
 * Leading zeros are accepted (the length cap still applies); 0 is refused because a zero order id means
 * "no order" on the wire.
 */
export function parseOrderId(s: string): U64Halves | undefined {
  if (s.length < 1 || s.length > 20) return undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  const v = BigInt(s);
  if (v === 0n || v > MAX_U64) return undefined;
  return { hi: Number(v >> 32n), lo: Number(v & 0xffff_ffffn) };
}
