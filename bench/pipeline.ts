/**
 * Question: what does the per-datagram work after the socket cost, at 10k, 100k and 1M live drivers?
 *
 * The full pipeline a worker runs for a datagram (decode, filter, session lookup, shard update with
 * ring, trip and R-tree) against decoding alone, measured in the same run on the same datagrams.
 * Seeded data: drivers spread over a 30 km x 30 km city, each moving ~10 m/s, one fix a second.
 * The budget for everything after the socket is about 2 us a datagram.
 *
 *   node bench/pipeline.ts [--drivers 10000,100000,1000000] [--rounds 30]
 */
import { writeFileSync } from 'node:fs';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { checkFix } from '../src/ingest/filter.ts';
import { Reason } from '../src/reasons.ts';
import { NO_SLOT, Shard } from '../src/store/shard.ts';
import { Prng } from '../test/support/prng.ts';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const sizes = arg('drivers', '10000,100000,1000000').split(',').map(Number);
const rounds = Number(arg('rounds', '30'));

const T0 = 1_700_000_000;
const results: Array<Record<string, number>> = [];

for (const n of sizes) {
  const rnd = new Prng(n);
  const shard = new Shard({ trackPoints: 20, idleTimeoutS: 900 });
  const lat0 = 48.7;
  const lon0 = 2.2;
  const pos = new Float64Array(n * 4); // lat, lon, dlat, dlon per driver
  for (let i = 0; i < n; i++) {
    const heading = rnd.float() * 2 * Math.PI;
    pos[4 * i] = lat0 + rnd.float() * 0.27;
    pos[4 * i + 1] = lon0 + rnd.float() * 0.41;
    pos[4 * i + 2] = (Math.cos(heading) * 10) / 111_195;
    pos[4 * i + 3] = (Math.sin(heading) * 10) / 73_000;
    shard.add(`drv-${i}`, `cab-${i}`, 1, i + 1, T0 * 1000);
  }
  // One round = one fix from every driver. Datagrams are encoded ahead of time (the phones' work).
  const datagrams: Uint8Array[][] = [];
  for (let r = 0; r < rounds + 1; r++) {
    const round: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      pos[4 * i] = pos[4 * i]! + pos[4 * i + 2]!;
      pos[4 * i + 1] = pos[4 * i + 1]! + pos[4 * i + 3]!;
      round.push(
        encodeTrack({
          session: BigInt(i + 1) | (1n << 32n),
          lat: Math.round(pos[4 * i]! * 1e6),
          lon: Math.round(pos[4 * i + 1]! * 1e6),
          time: T0 + r,
          orderId: i % 2 === 0 ? BigInt(1_000_000 + i) : 0n,
          cost: 500 + r * 10,
          speed: 36,
          bearing: 90,
        }),
      );
    }
    datagrams.push(round);
  }
  const fix = new Fix();
  // Warm-up round: every driver gets its first fix.
  for (const b of datagrams[0]!) {
    decodeTrack(b, b.length, fix);
    shard.ingest(shard.bySession(fix.sessionHi, fix.sessionLo), fix, T0 * 1000);
  }
  const noSink = { appeared() {}, moved() {}, left() {} };
  shard.drainChanges(noSink);

  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 1; r <= rounds; r++)
    for (const b of datagrams[r]!) sink += (decodeTrack(b, b.length, fix) ? 1 : 0) + fix.lat;
  const decodeNs = Number(process.hrtime.bigint() - t0) / (rounds * n);

  let accepted = 0;
  const t1 = process.hrtime.bigint();
  for (let r = 1; r <= rounds; r++) {
    const nowMs = (T0 + r) * 1000;
    const nowS = T0 + r;
    for (const b of datagrams[r]!) {
      if (b.length > 64 || !decodeTrack(b, b.length, fix)) continue;
      if (checkFix(fix, nowS, 900) !== Reason.ok) continue;
      const d = shard.bySession(fix.sessionHi, fix.sessionLo);
      if (d !== NO_SLOT && shard.ingest(d, fix, nowMs) === Reason.ok) accepted++;
    }
    // The publisher drains the change log once a tick (a few hundred fixes a tick here).
    shard.drainChanges(noSink);
  }
  const pipelineNs = Number(process.hrtime.bigint() - t1) / (rounds * n);
  if (accepted !== rounds * n) throw new Error(`only ${accepted} of ${rounds * n} accepted`);
  const row = {
    drivers: n,
    decodeNsPerDatagram: Math.round(decodeNs),
    pipelineNsPerDatagram: Math.round(pipelineNs),
    pipelineOverDecode: Math.round((pipelineNs / decodeNs) * 100) / 100,
    datagramsPerSecondOneCore: Math.round(1e9 / pipelineNs),
  };
  results.push(row);
  console.log(JSON.stringify(row), sink === 0.5 ? '' : '');
}

writeFileSync(
  new URL('./results/pipeline.json', import.meta.url),
  `${JSON.stringify({ node: process.version, date: new Date().toISOString(), results }, null, 2)}\n`,
);
