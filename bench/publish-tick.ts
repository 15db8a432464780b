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
import { buckets, quantile } from './support/histogram.ts';
import { cpuMs } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';

const SEED = 0x71c;
const DRIVERS = QUICK ? 20_000 : 100_000;
const TICKS = [100, 200, 250];
const SECONDS = QUICK ? 4 : 10;
const workers = availableParallelism();

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
