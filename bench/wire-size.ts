/**
 * Question: how many bytes does a fix cost on the wire as a protobuf Track, against the same fix as
 * compact JSON? Driver apps pay for mobile data, one fix a second all day.
 *
 * Two seeded sets of realistic fixes: the benchmarks' city fleet (support/fleet.ts: Paris, half the
 * drivers on a trip) and fixes all over the world with the ranges behind the README's 42-byte claim
 * (order ids below 2^35, costs below 2^21 minor units, speeds to 250 km/h). Protobuf bytes come from
 * protobufjs and proto/track.proto (src/codec/encode.ts), the reference encoder. The JSON carries the
 * same eight fields with the same information: session as its 16 hex digits and order id as a decimal
 * string (JSON numbers cannot carry a uint64), coordinates as degrees x 1e6 integers as in the proto;
 * once with every field present, as JSON.stringify of the app's object gives, and once with zero
 * fields left out, as proto3 does. A UDP datagram also carries 28 bytes of IPv4 and UDP headers.
 *
 *   node bench/wire-size.ts      Result: bench/results/wire-size.json
 */
import { encodeTrack, type TrackFields } from '../src/codec/encode.ts';
import { Prng } from '../test/support/prng.ts';
import { Fleet } from './support/fleet.ts';
import { QUICK, writeResult } from './support/report.ts';

const SEED = 0x5172e;
const FIXES = QUICK ? 20_000 : 100_000;
const IP_UDP_HEADERS = 28;

function jsonOf(t: TrackFields, omitZeros: boolean): string {
  const o: Record<string, string | number> = {
    session: t.session.toString(16).padStart(16, '0'),
    lat: t.lat,
    lon: t.lon,
    time: t.time,
    orderId: (t.orderId ?? 0n).toString(),
    cost: t.cost ?? 0,
    speed: t.speed ?? 0,
    bearing: t.bearing ?? 0,
  };
  if (omitZeros) {
    for (const k of Object.keys(o)) if (o[k] === 0 || o[k] === '0') delete o[k];
  }
  return JSON.stringify(o);
}

function cityFixes(n: number): TrackFields[] {
  const fleet = new Fleet(n, SEED, Math.floor(Date.now() / 1000));
  const out: TrackFields[] = [];
  for (let i = 0; i < n; i++) {
    fleet.step(i);
    out.push(fleet.track(i));
  }
  return out;
}

function worldFixes(n: number): TrackFields[] {
  const rnd = new Prng(SEED);
  const now = Math.floor(Date.now() / 1000);
  const out: TrackFields[] = [];
  for (let i = 0; i < n; i++) {
    const busy = rnd.chance(0.6);
    out.push({
      session: rnd.uint64() || 1n,
      // Uniform over the sphere's surface, not over degrees.
      lat: Math.round((Math.asin(2 * rnd.float() - 1) * 180 * 1e6) / Math.PI),
      lon: rnd.int(-180_000_000, 180_000_000),
      time: now + rnd.int(-3600, 0),
      orderId: busy ? BigInt(rnd.int(1, 2 ** 35 - 1)) : 0n,
      cost: busy ? rnd.int(0, 2 ** 21 - 1) : 0,
      speed: rnd.chance(0.2) ? 0 : rnd.int(1, 250),
      bearing: rnd.int(0, 359),
    });
  }
  return out;
}

function measure(fixes: TrackFields[]): Record<string, unknown> {
  const stats = (sizes: number[]): { mean: number; max: number; min: number } => ({
    mean: Number((sizes.reduce((a, b) => a + b, 0) / sizes.length).toFixed(2)),
    max: Math.max(...sizes),
    min: Math.min(...sizes),
  });
  const proto = fixes.map((t) => encodeTrack(t).length);
  const json = fixes.map((t) => Buffer.byteLength(jsonOf(t, false)));
  const jsonOmit = fixes.map((t) => Buffer.byteLength(jsonOf(t, true)));
  const p = stats(proto);
  const j = stats(json);
  const jo = stats(jsonOmit);
  return {
    fixes: fixes.length,
    protobuf: p,
    json: j,
    jsonZerosOmitted: jo,
    jsonOverProtobuf: Number((j.mean / p.mean).toFixed(2)),
    jsonZerosOmittedOverProtobuf: Number((jo.mean / p.mean).toFixed(2)),
    withHeaders: {
      protobuf: Number((p.mean + IP_UDP_HEADERS).toFixed(2)),
      json: Number((j.mean + IP_UDP_HEADERS).toFixed(2)),
      ratio: Number(((j.mean + IP_UDP_HEADERS) / (p.mean + IP_UDP_HEADERS)).toFixed(2)),
    },
    /** A day of one fix a second, megabytes, payload + headers. */
    mbPerDriverDay: {
      protobuf: Number((((p.mean + IP_UDP_HEADERS) * 86_400) / 1e6).toFixed(2)),
      json: Number((((j.mean + IP_UDP_HEADERS) * 86_400) / 1e6).toFixed(2)),
    },
    sampleJson: jsonOf(fixes[0]!, false),
  };
}

const city = measure(cityFixes(FIXES));
const world = measure(worldFixes(FIXES));
console.log(JSON.stringify({ city, world }, null, 2));
writeResult('wire-size', 'bytes per fix: protobuf Track vs the same fields as compact JSON', {
  seed: SEED,
  ipUdpHeaderBytes: IP_UDP_HEADERS,
  sets: { city, world },
});
