import { mkdirSync, writeFileSync } from 'node:fs';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack, trackType } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { Prng } from '../test/support/prng.ts';

// One question: how much faster is the hand-written decodeTrack than protobufjs's generated Track.decode
// on realistic datagrams? Both decode the same 100k seeded fixes in the same run.
// Run: node_modules/.bin/node bench/decode.ts   Result: bench/results/decode.json

const SEED = 0xbe7c;
const FIXES = 100_000;
const WARMUP_ROUNDS = 5;
const ROUNDS = 15;

const rnd = new Prng(SEED);
const datagrams: Uint8Array[] = [];
let totalBytes = 0;
for (let i = 0; i < FIXES; i++) {
  const busy = rnd.chance(0.7);
  const bytes = encodeTrack({
    session: rnd.uint64() || 1n,
    lat: Math.round((Math.asin(2 * rnd.float() - 1) * 180 * 1e6) / Math.PI),
    lon: rnd.int(-180_000_000, 180_000_000),
    time: 1_763_700_000 + rnd.int(-86_400, 60),
    orderId: busy ? BigInt(rnd.int(1, 2 ** 53)) : 0n,
    cost: busy ? rnd.int(0, 10_000_000) : 0,
    speed: rnd.int(0, 250),
    bearing: rnd.int(0, 359),
  });
  datagrams.push(bytes);
  totalBytes += bytes.length;
}

const Track = trackType();
const fix = new Fix();

// Each round folds a decoded field into a checksum, so the work cannot be optimised away, and the two
// checksums must match, so both decoders demonstrably read the same values.
function roundOurs(): number {
  let sum = 0;
  for (let i = 0; i < datagrams.length; i++) {
    const d = datagrams[i]!;
    decodeTrack(d, d.length, fix);
    sum = (sum + fix.lat + fix.time + fix.orderLo) | 0;
  }
  return sum;
}

function roundProtobufjs(): number {
  let sum = 0;
  for (let i = 0; i < datagrams.length; i++) {
    const m = Track.decode(datagrams[i]!) as unknown as {
      lat: number;
      time: number;
      orderId: { low: number };
    };
    sum = (sum + m.lat + m.time + m.orderId.low) | 0;
  }
  return sum;
}

function nsPerOp(round: () => number): number {
  const start = process.hrtime.bigint();
  round();
  return Number(process.hrtime.bigint() - start) / datagrams.length;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

const checkOurs = roundOurs();
const checkTheirs = roundProtobufjs();
if (checkOurs !== checkTheirs) throw new Error(`checksums differ: ${checkOurs} vs ${checkTheirs}`);

for (let i = 0; i < WARMUP_ROUNDS; i++) {
  roundOurs();
  roundProtobufjs();
}
// Interleaved rounds, so that a slow patch of the machine hits both decoders alike.
const ours: number[] = [];
const theirs: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  ours.push(nsPerOp(roundOurs));
  theirs.push(nsPerOp(roundProtobufjs));
}

const decodeTrackNs = median(ours);
const protobufjsNs = median(theirs);
const result = {
  question: 'ns per Track decode: decodeTrack vs protobufjs Track.decode',
  node: process.version,
  seed: SEED,
  fixes: FIXES,
  meanBytes: Number((totalBytes / FIXES).toFixed(2)),
  rounds: ROUNDS,
  decodeTrackNsPerOp: Number(decodeTrackNs.toFixed(1)),
  protobufjsNsPerOp: Number(protobufjsNs.toFixed(1)),
  speedup: Number((protobufjsNs / decodeTrackNs).toFixed(2)),
  date: new Date().toISOString(),
};

const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL('decode.json', dir), `${JSON.stringify(result, null, 2)}\n`);
console.log(result);
