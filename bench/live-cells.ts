/**
 * Question: what size of live cell (CABTRACK_LIVE_ZOOM) should hosts share their drivers by? Each cell is
 * one Redis Cluster sharded pub/sub channel (src/hosts/live-cells.ts), and its size sets four costs
 * against each other:
 *
 * - messages: each host publishes one message per cell with news per tick; Redis's cost is mostly per
 *   message (and per delivery), so fewer, bigger cells are cheaper;
 * - spread: a channel lives on one shard (its slot); a country in a few cells puts all its traffic on
 *   one or two of the cluster's primaries;
 * - over-fetch: a host serving a region subscribes to every cell that touches it, and receives the
 *   cells' drivers outside it too;
 * - churn: a driver that crosses into another cell costs a LEFT and an APPEARED.
 *
 * Measured with the real CellSplit (src/hosts/cell-split.ts) on batches as the ingest workers write
 * them: a national fleet (seven Spanish cities and the country between them, 100k drivers at one fix a
 * second, driving at city speeds) on three hosts of two workers each, for 10 s of 200 ms ticks after
 * a first tick, at zooms 4 to 12. Bytes on the wire count Redis's framing (RESP) of SPUBLISH and of
 * each delivery; the three shards are the default slot ranges of a 3-primary cluster. The regional host
 * follows a metro box (Barcelona's, Madrid's): its over-fetch is what it receives over the MOVED bytes
 * of the drivers actually in the box (1.4 or so is the protocol's own: headers, and the snapshots).
 *
 *   node bench/live-cells.ts [--quick]      Result: bench/results/live-cells.json
 */
import { createRequire } from 'node:module';
import { CellSplit } from '../src/hosts/cell-split.ts';
import { channelCell, inRegion, parseRegion } from '../src/hosts/live-cells.ts';
import { BatchWriter, KIND_DELTA, KIND_SNAPSHOT, MOVED_BYTES } from '../src/replica/batch.ts';
import { Prng } from '../test/support/prng.ts';
import { QUICK, say, writeResult } from './support/report.ts';

const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

const DRIVERS = QUICK ? 30_000 : 100_000;
const HOSTS = 3;
const WORKERS = 2;
const TICK_MS = 200;
const KEYFRAME_TICKS = 25;
const SECONDS = 10;
const ZOOMS = QUICK ? [4, 6, 8, 10, 12] : [4, 5, 6, 7, 8, 9, 10, 11, 12];
/** Two regional hosts: Barcelona's metro box, and Madrid's (in the middle of the country's other cities). */
const REGIONS = { barcelona: parseRegion('1.9,41.2,2.4,41.6'), madrid: parseRegion('-4.0,40.2,-3.4,40.7') };

/** Where the fleet is: cities (lat, lon, radius km, share) and the rest spread over the country. */
const CITIES: Array<[string, number, number, number, number]> = [
  ['Madrid', 40.4168, -3.7038, 25, 0.3],
  ['Barcelona', 41.3874, 2.1686, 20, 0.25],
  ['Valencia', 39.4699, -0.3763, 12, 0.08],
  ['Sevilla', 37.3891, -5.9845, 10, 0.07],
  ['Zaragoza', 41.6488, -0.8891, 8, 0.05],
  ['Malaga', 36.7213, -4.4214, 10, 0.05],
  ['Bilbao', 43.263, -2.935, 8, 0.05],
];
const COUNTRY = { minLat: 36.5, maxLat: 43.5, minLon: -8.8, maxLon: 3.2 };

interface Fleet {
  latE6: Int32Array;
  lonE6: Int32Array;
  heading: Float64Array;
  speed: Float64Array;
}

function makeFleet(n: number, rng: Prng): Fleet {
  const f: Fleet = {
    latE6: new Int32Array(n),
    lonE6: new Int32Array(n),
    heading: new Float64Array(n),
    speed: new Float64Array(n),
  };
  for (let i = 0; i < n; i++) {
    let r = rng.float();
    let lat = 0;
    let lon = 0;
    let placed = false;
    for (const [, clat, clon, km, share] of CITIES) {
      if (r < share) {
        const d = Math.sqrt(rng.float()) * km * 1000;
        const a = rng.float() * 2 * Math.PI;
        lat = clat + (d * Math.cos(a)) / 111_320;
        lon = clon + (d * Math.sin(a)) / (111_320 * Math.cos((clat * Math.PI) / 180));
        placed = true;
        break;
      }
      r -= share;
    }
    if (!placed) {
      lat = COUNTRY.minLat + rng.float() * (COUNTRY.maxLat - COUNTRY.minLat);
      lon = COUNTRY.minLon + rng.float() * (COUNTRY.maxLon - COUNTRY.minLon);
    }
    f.latE6[i] = Math.round(lat * 1e6);
    f.lonE6[i] = Math.round(lon * 1e6);
    f.heading[i] = rng.float() * 2 * Math.PI;
    // Town driving, 5-15 m/s; a fifth on the open road, 20-33 m/s.
    f.speed[i] = placed ? 5 + rng.float() * 10 : 20 + rng.float() * 13;
  }
  return f;
}

/** The RESP bytes of one SPUBLISH of `payload` bytes on `channel`, and of one delivery of it. */
function respBytes(channel: string, payload: number): { publish: number; deliver: number } {
  const bulk = (n: number): number => 1 + String(n).length + 2 + n + 2;
  const args = bulk(channel.length) + bulk(payload);
  return { publish: 4 + bulk(8) + args, deliver: 4 + bulk(8) + args };
}

function shardOf(channel: string): number {
  const slot = keySlot(channel);
  return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
}

interface ZoomFigures {
  zoom: number;
  cellKm: number;
  cells: number;
  messagesPerS: number;
  payloadBytesPerS: number;
  publishWireBytesPerS: number;
  /** Every host follows every cell: deliveries and their bytes, per second. */
  deliveriesPerS: number;
  deliverWireBytesPerS: number;
  /** The busiest shard's share of the messages (1/3 is even). */
  busiestShardShare: number;
  /** Cells entered (APPEARED after a LEFT) per driver per minute. */
  crossingsPerDriverMin: number;
  /** Per region: cells followed, and bytes received over the in-box drivers' MOVED bytes. */
  regions: Record<string, { cells: number; overFetch: number }>;
  splitNsPerRecord: number;
  /** Per 1,000 drivers a second (scaled from this fleet): messages, payload and all-hosts wire bytes. */
  per1000: { messages: number; payloadBytes: number; wireBytes: number };
}

function runZoom(z: number): ZoomFigures {
  const rng = new Prng(0x11fe);
  const fleet = makeFleet(DRIVERS, rng);
  const splits = Array.from(
    { length: HOSTS },
    (_, h) => new CellSplit({ zoom: z, hostId: `h${h}`, keyframeTicks: KEYFRAME_TICKS }),
  );
  const writers = Array.from({ length: HOSTS * WORKERS }, () => new BatchWriter());
  const seqs = new Int32Array(HOSTS * WORKERS);
  const owner = (i: number): number => i % (HOSTS * WORKERS);
  const slotOf = (i: number): number => Math.floor(i / (HOSTS * WORKERS));
  const t0 = 1_763_000_000;
  // The first tick: every worker's snapshot.
  for (let w = 0; w < HOSTS * WORKERS; w++) {
    const bw = writers[w]!;
    bw.begin(KIND_SNAPSHOT, w + 1, ++seqs[w]!, 0);
    for (let i = w; i < DRIVERS; i += HOSTS * WORKERS) {
      bw.appeared(slotOf(i), `drv-${i}`, `CAB-${i}`);
      bw.moved(slotOf(i), fleet.latE6[i]!, fleet.lonE6[i]!, t0, 10, 0, true, 0);
    }
    splits[Math.floor(w / WORKERS)]!.push(w + 1, bw.finish());
  }
  for (const s of splits) s.tick(0);

  const ticks = (SECONDS * 1000) / TICK_MS;
  let messages = 0;
  let payload = 0;
  let publishWire = 0;
  let deliverWire = 0;
  const byShard = [0, 0, 0];
  const cells = new Set<number>();
  const names = Object.keys(REGIONS) as Array<keyof typeof REGIONS>;
  const regionBytes = names.map(() => 0);
  const regionMoved = names.map(() => 0);
  const regionChannels = names.map(() => new Set<string>());
  let records = 0;
  let splitNs = 0;
  let crossings = 0;
  const cellOf = new Float64Array(DRIVERS);
  for (let i = 0; i < DRIVERS; i++) cellOf[i] = cellIndex(fleet.latE6[i]! / 1e6, fleet.lonE6[i]! / 1e6, z);
  for (let tick = 1; tick <= ticks; tick++) {
    const nowMs = tick * TICK_MS;
    for (let w = 0; w < HOSTS * WORKERS; w++) {
      writers[w]!.begin(KIND_DELTA, w + 1, ++seqs[w]!, nowMs);
    }
    // A fifth of the fleet sends its fix each tick (one a second).
    for (let i = tick % 5; i < DRIVERS; i += 5) {
      const m = fleet.speed[i]!;
      fleet.heading[i] = fleet.heading[i]! + (rng.float() - 0.5) * 0.6;
      const lat = fleet.latE6[i]! / 1e6;
      fleet.latE6[i] = fleet.latE6[i]! + Math.round(((Math.cos(fleet.heading[i]!) * m) / 111_320) * 1e6);
      fleet.lonE6[i] =
        fleet.lonE6[i]! +
        Math.round(((Math.sin(fleet.heading[i]!) * m) / (111_320 * Math.cos((lat * Math.PI) / 180))) * 1e6);
      writers[owner(i)]!.moved(
        slotOf(i),
        fleet.latE6[i]!,
        fleet.lonE6[i]!,
        t0 + tick,
        10,
        0,
        true,
        nowMs - 30,
      );
      records++;
      const c = cellIndex(fleet.latE6[i]! / 1e6, fleet.lonE6[i]! / 1e6, z);
      if (c !== cellOf[i]) {
        crossings++;
        cellOf[i] = c;
      }
      const lon = fleet.lonE6[i]! / 1e6;
      const la = fleet.latE6[i]! / 1e6;
      for (let r = 0; r < names.length; r++) {
        const [a, b, c2, d] = REGIONS[names[r]!][0]!;
        if (lon >= a && lon <= c2 && la >= b && la <= d) regionMoved[r]!++;
      }
    }
    const start = process.hrtime.bigint();
    const out: Array<{ channel: string; message: Buffer; cell: number }> = [];
    for (let w = 0; w < HOSTS * WORKERS; w++)
      splits[Math.floor(w / WORKERS)]!.push(w + 1, writers[w]!.finish());
    for (const s of splits) out.push(...s.tick(nowMs));
    splitNs += Number(process.hrtime.bigint() - start);
    for (const m of out) {
      messages++;
      payload += m.message.length;
      const r = respBytes(m.channel, m.message.length);
      publishWire += r.publish;
      deliverWire += r.deliver * HOSTS;
      byShard[shardOf(m.channel)]!++;
      cells.add(m.cell);
      for (let r = 0; r < names.length; r++) {
        if (!inRegion(channelCell(m.channel, z), z, REGIONS[names[r]!])) continue;
        regionBytes[r]! += m.message.length;
        regionChannels[r]!.add(m.channel);
      }
    }
  }
  const seconds = SECONDS;
  const cellKm = (40_075 * Math.cos((40 * Math.PI) / 180)) / 2 ** z;
  return {
    zoom: z,
    cellKm: Math.round(cellKm * 10) / 10,
    cells: cells.size,
    messagesPerS: Math.round(messages / seconds),
    payloadBytesPerS: Math.round(payload / seconds),
    publishWireBytesPerS: Math.round(publishWire / seconds),
    deliveriesPerS: Math.round((messages * HOSTS) / seconds),
    deliverWireBytesPerS: Math.round(deliverWire / seconds),
    busiestShardShare: Math.round((Math.max(...byShard) / messages) * 1000) / 1000,
    crossingsPerDriverMin: Math.round((crossings / DRIVERS / seconds) * 60 * 1000) / 1000,
    regions: Object.fromEntries(
      names.map((n, r) => [
        n,
        {
          cells: regionChannels[r]!.size,
          overFetch: Math.round((regionBytes[r]! / Math.max(1, regionMoved[r]! * MOVED_BYTES)) * 100) / 100,
        },
      ]),
    ),
    splitNsPerRecord: Math.round(splitNs / records),
    per1000: {
      messages: Math.round(((messages / seconds) * 1000 * 100) / DRIVERS) / 100,
      payloadBytes: Math.round(((payload / seconds) * 1000) / DRIVERS),
      wireBytes: Math.round((((publishWire + deliverWire) / seconds) * 1000) / DRIVERS),
    },
  };
}

function cellIndex(lat: number, lon: number, z: number): number {
  const n = 2 ** z;
  const x = Math.floor(((lon + 180) / 360) * n);
  const l = (lat * Math.PI) / 180;
  const y = Math.floor(((1 - Math.log(Math.tan(l) + 1 / Math.cos(l)) / Math.PI) / 2) * n);
  return x * n + y;
}

const rows: ZoomFigures[] = [];
for (const z of ZOOMS) {
  const r = runZoom(z);
  rows.push(r);
  say(
    `z${z} (${r.cellKm} km): ${r.cells} cells, ${r.messagesPerS} msg/s, ${(r.payloadBytesPerS / 1e6).toFixed(2)} MB/s payload, ` +
      `busiest shard ${(r.busiestShardShare * 100).toFixed(0)}%, ` +
      Object.entries(r.regions)
        .map(([n, g]) => `${n} ${g.cells} cells x${g.overFetch}, `)
        .join('') +
      `split ${r.splitNsPerRecord} ns/record`,
  );
}
writeResult('live-cells', 'live cell size: messages, spread over shards, region over-fetch', {
  drivers: DRIVERS,
  hosts: HOSTS,
  workersPerHost: WORKERS,
  tickMs: TICK_MS,
  keyframeS: (KEYFRAME_TICKS * TICK_MS) / 1000,
  seconds: SECONDS,
  regions: Object.fromEntries(Object.entries(REGIONS).map(([n, r]) => [n, r[0]])),
  zooms: rows,
});
