import { Reason } from '../ingest/reasons.ts';
import type { Fix } from './fix.ts';

/*
 * Decoder for cabtrack.v1.Track (proto/track.proto), written by hand because it runs once per datagram
 * at 150k+ datagrams/s: it allocates nothing (no Long, BigInt, string, closure or result object) and is
 * one flat loop over tags.
 *
 * For well-formed input it gives what protobufjs's generated `Track.decode` gives: last value wins for a
 * repeated scalar, uint32 fields keep the low 32 bits of a varint of up to 10 bytes, non-canonical
 * (padded) tags and varints are accepted, unknown fields are skipped by wire type.
 *
 * It is stricter than protobufjs in exactly three ways (test/codec-fuzz.test.ts checks each one):
 *  1. A known field (1-8) with the wrong wire type is malformed. protobufjs skips it as if it were an
 *     unknown field, so `lat` sent as fixed32 would silently read as 0. No driver app build sends that;
 *     a fix whose field we could not read is one we must not place on the map.
 *  2. Wire types 3 and 4 (groups) are malformed. proto3 has no groups; protobufjs skips them.
 *  3. An unknown varint field longer than 10 bytes is malformed. protobufjs skips any run of
 *     continuation bytes there, but refuses the same varint in a known field.
 * Anything protobufjs refuses is refused here too.
 */

// Tags of the known fields with their proto3 wire types: (field number << 3) | wire type.
const TAG_SESSION = (1 << 3) | 1; // fixed64
const TAG_LAT = 2 << 3; // sint32, varint
const TAG_LON = 3 << 3; // sint32, varint
const TAG_TIME = 4 << 3; // uint32, varint
const TAG_ORDER_ID = 5 << 3; // uint64, varint
const TAG_COST = 6 << 3; // uint32, varint
const TAG_SPEED = 7 << 3; // uint32, varint
const TAG_BEARING = 8 << 3; // uint32, varint
const LAST_KNOWN_FIELD = 8;

const OK = Reason.ok;
const MALFORMED = Reason.malformed;

// The readers return the position after what they read, or -1, and leave the value here. A pair of
// module-level numbers instead of a result object keeps the hot path allocation-free; decoding is
// synchronous, so no other call can interleave between a read and its use.
let varLo = 0;
let varHi = 0;

/**
 * Decodes the Track in buf[0..len) into `out` (reset first) and returns Reason.ok or Reason.malformed.
 * Never throws for any content of buf; a `len` outside [0, buf.length] is a caller bug and throws.
 * Semantic checks (zero session, coordinate range) and the size limit belong to the callers.
 */
export function decodeTrack(buf: Uint8Array, len: number, out: Fix): number {
  if (!(len >= 0 && len <= buf.length)) throw new RangeError(`len ${len} outside [0, ${buf.length}]`);
  out.reset();
  let pos = 0;
  while (pos < len) {
    let tag = buf[pos]!;
    if (tag < 0x80) {
      pos++;
    } else {
      pos = readTag(buf, pos, len);
      if (pos < 0) return MALFORMED;
      tag = varLo;
    }
    switch (tag) {
      case TAG_SESSION:
        if (pos + 8 > len) return MALFORMED;
        // fixed64 is little-endian: the low word comes first.
        out.sessionLo =
          (buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16) | (buf[pos + 3]! << 24)) >>> 0;
        out.sessionHi =
          (buf[pos + 4]! | (buf[pos + 5]! << 8) | (buf[pos + 6]! << 16) | (buf[pos + 7]! << 24)) >>> 0;
        pos += 8;
        break;
      case TAG_LAT:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.lat = (varLo >>> 1) ^ -(varLo & 1);
        break;
      case TAG_LON:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.lon = (varLo >>> 1) ^ -(varLo & 1);
        break;
      case TAG_TIME:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.time = varLo;
        break;
      case TAG_ORDER_ID:
        pos = readVarint64(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.orderLo = varLo;
        out.orderHi = varHi;
        break;
      case TAG_COST:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.cost = varLo;
        break;
      case TAG_SPEED:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.speed = varLo;
        break;
      case TAG_BEARING:
        pos = readVarint32(buf, pos, len);
        if (pos < 0) return MALFORMED;
        out.bearing = varLo;
        break;
      default: {
        const field = tag >>> 3;
        // Field 0 is invalid in every protobuf; 1-8 here means a known field with the wrong wire type.
        if (field <= LAST_KNOWN_FIELD) return MALFORMED;
        switch (tag & 7) {
          case 0:
            pos = readVarint32(buf, pos, len);
            break;
          case 1:
            pos = pos + 8 <= len ? pos + 8 : -1;
            break;
          case 2:
            pos = skipLengthDelimited(buf, pos, len);
            break;
          case 5:
            pos = pos + 4 <= len ? pos + 4 : -1;
            break;
          default:
            // 3 and 4 are groups (not in proto3), 6 and 7 are not wire types at all.
            return MALFORMED;
        }
        if (pos < 0) return MALFORMED;
      }
    }
  }
  return OK;
}

/**
 * A tag of 2 to 5 bytes (the caller handles 1). Like protobufjs's Reader#tag, the value must fit in
 * 32 bits: a 5th byte above 15 is refused, as is a 6th byte.
 */
function readTag(buf: Uint8Array, pos: number, end: number): number {
  let v = buf[pos++]! & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    if (pos >= end) return -1;
    const b = buf[pos++]!;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) {
      varLo = v;
      return pos;
    }
  }
  if (pos >= end) return -1;
  const b = buf[pos++]!;
  if (b > 0x0f) return -1;
  varLo = (v | (b << 28)) >>> 0;
  return pos;
}

/**
 * A varint of up to 10 bytes; its low 32 bits go to varLo, as protobufjs's Reader#uint32 does with
 * bits it cannot hold. Also used to skip unknown varint fields, which is what bounds them to 10 bytes.
 */
function readVarint32(buf: Uint8Array, pos: number, end: number): number {
  if (pos >= end) return -1;
  let b = buf[pos++]!;
  let v = b & 0x7f;
  if (b < 0x80) {
    varLo = v;
    return pos;
  }
  if (pos >= end) return -1;
  b = buf[pos++]!;
  v |= (b & 0x7f) << 7;
  if (b < 0x80) {
    varLo = v;
    return pos;
  }
  if (pos >= end) return -1;
  b = buf[pos++]!;
  v |= (b & 0x7f) << 14;
  if (b < 0x80) {
    varLo = v;
    return pos;
  }
  if (pos >= end) return -1;
  b = buf[pos++]!;
  v |= (b & 0x7f) << 21;
  if (b < 0x80) {
    varLo = v;
    return pos;
  }
  if (pos >= end) return -1;
  b = buf[pos++]!;
  // Only the low 4 bits of the 5th byte fit in 32; the shift drops the rest.
  v = (v | (b << 28)) >>> 0;
  if (b < 0x80) {
    varLo = v;
    return pos;
  }
  // Bytes 6 to 10 carry bits 35 and up: only their termination matters.
  for (let i = 0; i < 5; i++) {
    if (pos >= end) return -1;
    if (buf[pos++]! < 0x80) {
      varLo = v;
      return pos;
    }
  }
  return -1;
}

/** A varint of up to 10 bytes as two unsigned halves in varLo/varHi; bits above 63 are dropped. */
function readVarint64(buf: Uint8Array, pos: number, end: number): number {
  let lo = 0;
  let b = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) return -1;
    b = buf[pos++]!;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      varLo = lo;
      varHi = 0;
      return pos;
    }
  }
  if (pos >= end) return -1;
  b = buf[pos++]!;
  // The 5th byte straddles the halves: 4 bits to the top of lo, 3 bits to the bottom of hi.
  lo = (lo | (b << 28)) >>> 0;
  let hi = (b & 0x7f) >>> 4;
  if (b < 0x80) {
    varLo = lo;
    varHi = hi;
    return pos;
  }
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) return -1;
    b = buf[pos++]!;
    // At shift 31 (the 10th byte) only bit 63 survives, as in protobufjs.
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      varLo = lo;
      varHi = hi >>> 0;
      return pos;
    }
  }
  return -1;
}

/**
 * Skips a length-delimited field. protobufjs's Reader#size reads a length as at most 5 bytes with a
 * 5th byte of at most 7; doing the same keeps padded lengths it refuses from passing here.
 */
function skipLengthDelimited(buf: Uint8Array, pos: number, end: number): number {
  let n = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) return -1;
    const b = buf[pos++]!;
    n |= (b & 0x7f) << shift;
    if (b < 0x80) return n <= end - pos ? pos + n : -1;
  }
  if (pos >= end) return -1;
  const b = buf[pos++]!;
  if (b > 7) return -1;
  n = (n | (b << 28)) >>> 0;
  return n <= end - pos ? pos + n : -1;
}
