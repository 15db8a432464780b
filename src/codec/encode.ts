import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/*
 * Encoder for tests, the fleet simulator and benchmarks, built on protobufjs and the .proto file itself
 * so that it is an independent check of the hand-written decoder. Not for the ingest path.
 */

/** A Track as the simulator thinks of it. lat/lon are degrees x 1e6 as integers. */
export type TrackFields = {
  session: bigint;
  lat: number;
  lon: number;
  time: number;
  orderId?: bigint;
  cost?: number;
  speed?: number;
  bearing?: number;
};

const MAX_UINT32 = 0xffff_ffff;

let cachedType: protobuf.Type | undefined;

/** protobufjs's reflected cabtrack.v1.Track, loaded from proto/track.proto once. */
export function trackType(): protobuf.Type {
  if (cachedType === undefined) {
    const path = fileURLToPath(new URL('../../proto/track.proto', import.meta.url));
    cachedType = protobuf.loadSync(path).lookupType('cabtrack.v1.Track');
  }
  return cachedType;
}

/**
 * Encodes one Track. Zero fields are left out, as proto3 does. A value that does not fit its proto type
 * throws a RangeError naming the field: protobufjs would wrap it silently and hide the bug.
 */
export function encodeTrack(t: TrackFields): Uint8Array {
  checkInt('lat', t.lat, -0x8000_0000, 0x7fff_ffff);
  checkInt('lon', t.lon, -0x8000_0000, 0x7fff_ffff);
  checkInt('time', t.time, 0, MAX_UINT32);
  checkInt('cost', t.cost ?? 0, 0, MAX_UINT32);
  checkInt('speed', t.speed ?? 0, 0, MAX_UINT32);
  checkInt('bearing', t.bearing ?? 0, 0, MAX_UINT32);
  const bytes = trackType()
    .encode({
      session: toLong('session', t.session),
      lat: t.lat,
      lon: t.lon,
      time: t.time,
      orderId: toLong('orderId', t.orderId ?? 0n),
      cost: t.cost ?? 0,
      speed: t.speed ?? 0,
      bearing: t.bearing ?? 0,
    })
    .finish();
  // protobufjs hands back a Buffer that may be a slice of Node's shared pool; copy it into a Uint8Array of
  // its own so that callers can keep it, use its .buffer and compare it with t.same.
  return new Uint8Array(bytes);
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`Track.${name} ${v} is not an integer in [${min}, ${max}]`);
  }
}

/** protobufjs writes 64-bit fields from anything with signed `low`/`high` words, as a Long has. */
function toLong(name: string, b: bigint): { low: number; high: number; unsigned: true } {
  if (b < 0n || b >= 1n << 64n) throw new RangeError(`Track.${name} ${b} is not a uint64`);
  return { low: Number(b & 0xffff_ffffn) | 0, high: Number(b >> 32n) | 0, unsigned: true };
}
