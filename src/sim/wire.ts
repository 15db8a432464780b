import type { Fix } from '../codec/fix.ts';

/*
 * The simulator's Track encoder: writes straight into a caller's buffer, with no protobufjs Writer, Long or
 * result object per fix, because it runs 100k times a second. It writes what src/codec/encode.ts (the
 * protobufjs reference) writes, byte for byte (test/sim-model.test.ts checks it): fields in field-number
 * order, zero fields left out as proto3 does.
 */

/** Room for one Track: its widest form is 55 bytes (README, "The wire contract"). */
export const SLOT_BYTES = 64;

/**
 * Encodes `f` into buf[off..] and returns the length. When `ends` is given, ends[0] is set to the number
 * of fields written and ends[1..] to the offset (from `off`) where each field ends: every other cut
 * falls inside a field, which is how the bad-datagram maker truncates a fix so that it is surely malformed.
 */
export function writeTrack(buf: Uint8Array, off: number, f: Fix, ends?: Int32Array): number {
  let p = off;
  let n = 0;
  if (f.sessionHi !== 0 || f.sessionLo !== 0) {
    buf[p++] = (1 << 3) | 1;
    p = writeU32LE(buf, p, f.sessionLo);
    p = writeU32LE(buf, p, f.sessionHi);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.lat !== 0) {
    buf[p++] = 2 << 3;
    p = writeVarint32(buf, p, ((f.lat << 1) ^ (f.lat >> 31)) >>> 0);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.lon !== 0) {
    buf[p++] = 3 << 3;
    p = writeVarint32(buf, p, ((f.lon << 1) ^ (f.lon >> 31)) >>> 0);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.time !== 0) {
    buf[p++] = 4 << 3;
    p = writeVarint32(buf, p, f.time);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.orderHi !== 0 || f.orderLo !== 0) {
    buf[p++] = 5 << 3;
    p = writeVarint64(buf, p, f.orderHi, f.orderLo);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.cost !== 0) {
    buf[p++] = 6 << 3;
    p = writeVarint32(buf, p, f.cost);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.speed !== 0) {
    buf[p++] = 7 << 3;
    p = writeVarint32(buf, p, f.speed);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (f.bearing !== 0) {
    buf[p++] = 8 << 3;
    p = writeVarint32(buf, p, f.bearing);
    if (ends !== undefined) ends[++n] = p - off;
  }
  if (ends !== undefined) ends[0] = n;
  return p - off;
}

function writeU32LE(buf: Uint8Array, p: number, v: number): number {
  buf[p] = v & 0xff;
  buf[p + 1] = (v >>> 8) & 0xff;
  buf[p + 2] = (v >>> 16) & 0xff;
  buf[p + 3] = (v >>> 24) & 0xff;
  return p + 4;
}

/** `v` must be a uint32. */
function writeVarint32(buf: Uint8Array, p: number, v: number): number {
  while (v > 0x7f) {
    buf[p++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[p++] = v;
  return p;
}

function writeVarint64(buf: Uint8Array, p: number, hi: number, lo: number): number {
  hi >>>= 0;
  lo >>>= 0;
  if (hi === 0) return writeVarint32(buf, p, lo);
  // Four 7-bit groups from lo, then one group of lo's top 4 bits and hi's low 3, then the rest of hi.
  for (let i = 0; i < 4; i++) {
    buf[p++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  const mid = lo | ((hi & 7) << 4);
  hi >>>= 3;
  if (hi === 0) {
    buf[p++] = mid;
    return p;
  }
  buf[p++] = mid | 0x80;
  return writeVarint32(buf, p, hi);
}
