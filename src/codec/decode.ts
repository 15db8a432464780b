import type { Fix } from './fix.ts';

/*
 * Decoder for cabtrack.v1.Track (proto/track.proto), written by hand because it runs once per datagram
 * at 150k+ datagrams/s: it allocates nothing (no Long, BigInt, string, closure or result object) and is
 * one flat loop over tags with the varint reads inlined. Splitting the reads into helpers that hand the
 * value back through module state measured about 1.7x slower.
 *
 * For well-formed input it gives what protobufjs's generated `Track.decode` gives: the last value wins for
 * a repeated scalar, uint32 and sint32 fields keep the low 32 bits of a varint of up to 10 bytes, padded
 * (non-canonical) tags, varints and lengths are read as protobufjs reads them, unknown fields are skipped
 * by wire type so that newer apps with more fields still get through.
 *
 * It is stricter than protobufjs in exactly three ways (test/codec-fuzz.test.ts checks each one):
 *  1. A known field (1-8) with the wrong wire type is malformed. protobufjs skips it as if it were an
 *     unknown field, so a `lat` sent as fixed32 would silently read as 0, a fix in the wrong place.
 *     No build of the driver app sends that, and a fix we cannot read is one we must not put on the map.
 *  2. Wire types 3 and 4 (groups) are malformed. proto3 has no groups; protobufjs skips them.
 *  3. An unknown varint field longer than 10 bytes is malformed. protobufjs skips any run of continuation
 *     bytes there, though it refuses the same varint in a known field.
 * Everything protobufjs refuses is refused here too.
 */

// Tags of the known fields with their proto3 wire types: (field number << 3) | wire type.
const TAG_SESSION = (1 << 3) | 1; // fixed64
const TAG_LAT = 2 << 3; // sint32
const TAG_LON = 3 << 3; // sint32
const TAG_TIME = 4 << 3; // uint32
const TAG_ORDER_ID = 5 << 3; // uint64
const TAG_COST = 6 << 3; // uint32
const TAG_SPEED = 7 << 3; // uint32
const TAG_BEARING = 8 << 3; // uint32
const LAST_KNOWN_FIELD = 8;

const OK = true;
/** Not a well-formed Track (the ingest path counts it as `malformed`). */
const MALFORMED = false;

/**
 * Decodes the Track in buf[0..len) into `out` (reset first) and returns whether it was well-formed.
 * Never throws for any content of buf; a `len` outside [0, buf.length] is a caller bug and throws.
 * Semantic checks (zero session, coordinate range) and the size limit belong to the callers.
 */
export function decodeTrack(buf: Uint8Array, len: number, out: Fix): boolean {
  // Reads past buf.length would give undefined and decode garbage quietly, so refuse them up front.
  if (!(len >= 0 && len <= buf.length)) throw new RangeError(`len ${len} outside [0, ${buf.length}]`);
  out.reset();
  let pos = 0;
  while (pos < len) {
    let b = buf[pos++]!;
    let tag = b;
    if (b >= 0x80) {
      // A multi-byte tag: a field number of 16 or more, or a padded tag. As protobufjs's Reader#tag,
      // at most 5 bytes and a value that fits in 32 bits (a 5th byte of at most 15).
      tag &= 0x7f;
      for (let shift = 7; ; shift += 7) {
        if (pos >= len) return MALFORMED;
        b = buf[pos++]!;
        if (shift === 28) {
          if (b > 0x0f) return MALFORMED;
          tag = (tag | (b << 28)) >>> 0;
          break;
        }
        tag |= (b & 0x7f) << shift;
        if (b < 0x80) break;
      }
    }
    const wireType = tag & 7;

    if (wireType === 0) {
      // Every varint is read in full, into uint32 halves, before the tag says where it goes: one copy of
      // the varint code serves the seven known varint fields and the skipping of unknown ones.
      if (pos >= len) return MALFORMED;
      b = buf[pos++]!;
      let lo = b;
      let hi = 0;
      if (b >= 0x80) {
        lo &= 0x7f;
        if (pos >= len) return MALFORMED;
        b = buf[pos++]!;
        lo |= (b & 0x7f) << 7;
        if (b >= 0x80) {
          if (pos >= len) return MALFORMED;
          b = buf[pos++]!;
          lo |= (b & 0x7f) << 14;
          if (b >= 0x80) {
            if (pos >= len) return MALFORMED;
            b = buf[pos++]!;
            lo |= (b & 0x7f) << 21;
            if (b >= 0x80) {
              if (pos >= len) return MALFORMED;
              b = buf[pos++]!;
              // The 5th byte straddles the halves: 4 bits to the top of lo, 3 to the bottom of hi.
              lo = (lo | (b << 28)) >>> 0;
              hi = (b & 0x7f) >>> 4;
              if (b >= 0x80) {
                // Bytes 6-10 fill hi from bit 3; at shift 31 only bit 63 survives, as in protobufjs.
                // An 11th byte is malformed, for unknown fields too (stricter rule 3).
                for (let shift = 3; ; shift += 7) {
                  if (shift > 31 || pos >= len) return MALFORMED;
                  b = buf[pos++]!;
                  hi |= (b & 0x7f) << shift;
                  if (b < 0x80) break;
                }
                hi >>>= 0;
              }
            }
          }
        }
      }
      switch (tag) {
        case TAG_LAT:
          out.lat = (lo >>> 1) ^ -(lo & 1);
          break;
        case TAG_LON:
          out.lon = (lo >>> 1) ^ -(lo & 1);
          break;
        case TAG_TIME:
          out.time = lo;
          break;
        case TAG_ORDER_ID:
          out.orderLo = lo;
          out.orderHi = hi;
          break;
        case TAG_COST:
          out.cost = lo;
          break;
        case TAG_SPEED:
          out.speed = lo;
          break;
        case TAG_BEARING:
          out.bearing = lo;
          break;
        default:
          // Field 0 is invalid in any protobuf; field 1 (the session) as a varint is the wrong wire type.
          if (tag >>> 3 <= LAST_KNOWN_FIELD) return MALFORMED;
      }
    } else if (wireType === 1) {
      if (pos + 8 > len) return MALFORMED;
      if (tag === TAG_SESSION) {
        // fixed64 is little-endian: the low word comes first.
        out.sessionLo =
          (buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16) | (buf[pos + 3]! << 24)) >>> 0;
        out.sessionHi =
          (buf[pos + 4]! | (buf[pos + 5]! << 8) | (buf[pos + 6]! << 16) | (buf[pos + 7]! << 24)) >>> 0;
      } else if (tag >>> 3 <= LAST_KNOWN_FIELD) {
        return MALFORMED;
      }
      pos += 8;
    } else {
      // No known field is fixed32 or length-delimited, and 3, 4, 6 and 7 are never accepted.
      if (tag >>> 3 <= LAST_KNOWN_FIELD) return MALFORMED;
      if (wireType === 5) {
        if (pos + 4 > len) return MALFORMED;
        pos += 4;
      } else if (wireType === 2) {
        // As protobufjs's Reader#size: at most 5 bytes, the 5th at most 7, so that a padded length it
        // refuses is refused here too.
        let n = 0;
        for (let shift = 0; ; shift += 7) {
          if (pos >= len) return MALFORMED;
          b = buf[pos++]!;
          if (shift === 28) {
            if (b > 7) return MALFORMED;
            n = (n | (b << 28)) >>> 0;
            break;
          }
          n |= (b & 0x7f) << shift;
          if (b < 0x80) break;
        }
        if (n > len - pos) return MALFORMED;
        pos += n;
      } else {
        // 3 and 4 are groups (not in proto3, stricter rule 2); 6 and 7 are not wire types at all.
        return MALFORMED;
      }
    }
  }
  return OK;
}
