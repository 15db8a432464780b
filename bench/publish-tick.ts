/**
 * Question: which publish tick (CABTRACK_PUBLISH_MS) for the read replicas? For 100, 200 and 250 ms
 * (issue 10 asks for a default in 100-250 ms): the replica lag (a fix received by its ingest worker ->
 * visible to nearest) p50 and p99, and the CPU the ingest workers and the HTTP workers spend, with 100k
 * drivers at one fix a second each (100k datagrams/s) and no queries. Same fleet, same rate, each tick
 * on a fresh daemon.
 *
 *   node bench/publish-tick.ts [--quick]      Result: bench/results/publish-tick.json
 */
import { availableParallelism } from 'node:os';
import {
  fleetStartTime,
  registerFleet,
  sleep,
  startCabtrack,
  waitDrivers,
  workersByRole,
} from './support/cabtrack.ts';
import { cpuMs } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';

const SEED = 0x71c;
const DRIVERS = QUICK ? 20_000 : 100_000;
const TICKS = [100, 200, 250];
const SECONDS = QUICK ? 4 : 10;
const workers = availableParallelism();

/** Cumulative bucket counts of a histogram on a /metrics page. */
function buckets(text: string, name: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m !== null) out.push([m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2])]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

function quantile(before: Array<[number, number]>, after: Array<[number, number]>, q: number): number | null {
  const total = after.at(-1)![1] - (before.at(-1)?.[1] ?? 0);
  if (total <= 0) return null;
  let prevBound = 0;
  let prevCount = 0;
  for (let i = 0; i < after.length; i++) {
    const [bound, cum] = after[i]!;
    const c = cum - (before[i]?.[1] ?? 0);
    if (c >= q * total) {
      if (bound === Number.POSITIVE_INFINITY) return prevBound;
      return prevBound + ((bound - prevBound) * (q * total - prevCount)) / Math.max(1, c - prevCount);
    }
    prevBound = bound;
    prevCount = c;
  }
  return null;
}

const rows = [];
for (const tick of TICKS) {
  const daemon = await startCabtrack(workers, { CABTRACK_PUBLISH_MS: String(tick) });
  const sender = await Sender.start({
    drivers: DRIVERS,
    seed: SEED,
    startTime: fleetStartTime(),
    sockets: 32,
  });
  try {
    await registerFleet(daemon, SEED, 0, DRIVERS);
    await sender.run(daemon.udpPort, 50_000, DRIVERS);
    await waitDrivers(daemon, DRIVERS, 30_000);
    const roles = workersByRole(daemon);
    const metrics = async (): Promise<string> => (await fetch(`${daemon.url}/metrics`)).text();
    const before = buckets(await metrics(), 'cabtrack_replica_lag_seconds');
    const cpu0 = { ingest: roles.ingest.map(cpuMs), http: roles.http.map(cpuMs) };
    const sent = await sender.run(daemon.udpPort, DRIVERS, DRIVERS * SECONDS);
    await sleep(2 * tick);
    const after = buckets(await metrics(), 'cabtrack_replica_lag_seconds');
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const ingestMs = sum(roles.ingest.map(cpuMs)) - sum(cpu0.ingest);
    const httpMs = sum(roles.http.map(cpuMs)) - sum(cpu0.http);
    const ms = (x: number | null): number | null => (x === null ? null : Math.round(x * 10_000) / 10);
    const row = {
      publishMs: tick,
      drivers: DRIVERS,
      datagramsPerSecond: Math.round(sent.rate),
      lagP50Ms: ms(quantile(before, after, 0.5)),
      lagP99Ms: ms(quantile(before, after, 0.99)),
      ingestWorkersCpuPerSecond: Number((ingestMs / 1000 / sent.seconds).toFixed(3)),
      httpWorkersCpuPerSecond: Number((httpMs / 1000 / sent.seconds).toFixed(3)),
    };
    say(JSON.stringify(row));
    rows.push(row);
  } finally {
    sender.stop();
    await daemon.stop();
  }
}
writeResult('publish-tick', 'replica lag and CPU at publish ticks of 100, 200 and 250 ms', {
  drivers: DRIVERS,
  workers,
  seconds: SECONDS,
  rows,
});
