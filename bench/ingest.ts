/**
 * Question: what is the highest rate at which one worker accepts every datagram (zero loss by the
 * kernel's counters and the daemon's own) with 10k, 100k and 1M live drivers, against a bare Node UDP
 * receiver that only counts, fed by the same sender in the same run? And the whole cluster?
 *
 * - The sender (support/sender.ts) is a separate process with 32 source sockets; the datagrams are
 *   the seeded fleet's fixes (support/fleet.ts), encoded before each trial.
 * - A trial offers a rate for a few seconds; zero loss means the daemon received and accepted every
 *   datagram sent and the kernel counted no drop on the port nor machine-wide (RcvbufErrors, InErrors).
 *   The highest such rate is found by bisection (support/trials.ts).
 * - CPU per datagram: the receiving processes' CPU time (/proc/<pid>/stat) over a trial divided by the
 *   datagrams received, at a fixed 100k/s for every receiver (comparable) and at the zero-loss rate.
 * - Before trials, every driver sends its first fix (a new driver is claimed from the primary) and the
 *   receivers warm up for two seconds.
 * - 1M drivers run on their own (--1m): registering 1M sessions through PUT /v1/sessions takes about
 *   100 s on the 2-core machine, and their first fixes (each a claim through the primary) half a minute
 *   more; `npm run bench` spends its minutes on memory.ts's 1M instead. --1m measures the bare
 *   receiver again (the baseline of the same run) and one worker with 1M drivers.
 *
 *   node bench/ingest.ts [--quick]   Result: bench/results/ingest.json
 *   node bench/ingest.ts --1m        Result: bench/results/ingest-1m.json (a row of the same table)
 */
import { availableParallelism } from 'node:os';
import type { Daemon } from '../test/support/daemon.ts';
import { BareReceiver, DAEMON_RECV_BUFFER } from './support/bare-receiver.ts';
import {
  fleetStartTime,
  ingestCounts,
  type Registration,
  registerFleet,
  scrape,
  startCabtrack,
  waitDrivers,
} from './support/cabtrack.ts';
import { raiseRmemMax, restoreRmemMax, rmemMax } from './support/proc.ts';
import { QUICK, say, writeResult } from './support/report.ts';
import { Sender } from './support/sender.ts';
import {
  bareTarget,
  daemonTarget,
  round,
  type Search,
  searchCeiling,
  type Target,
  type Trial,
  trial,
} from './support/trials.ts';

const SEED = 0x1a9e;
const SOCKETS = 32;
const ONE_MILLION = process.argv.includes('--1m');
const SIZES = ONE_MILLION ? [1_000_000] : QUICK ? [100_000] : [10_000, 100_000];
const CLUSTER_SIZE = 100_000;
const TRIAL_S = QUICK ? 2 : 2.5;
/** Search trials for the target's row (one worker, 100k) and the bare receiver; the others get fewer. */
const MAX_TRIALS = QUICK ? 3 : 5;
const OTHER_TRIALS = QUICK ? 3 : 4;
const PRECISION = 0.05;
/** The rate every receiver is measured at for CPU per datagram: below all of their ceilings. */
const FIXED_RATE = 100_000;
/**
 * First fixes are sent at this rate: each makes the worker claim a new driver from the primary, which
 * costs the worker IPC; at 50k/s a quarter of 1M first fixes were lost here.
 */
const FIRST_FIX_RATE = 30_000;
/**
 * Registering sessions with PUT /v1/sessions runs at about 10k/s here (the primary's CPU: HTTP and one
 * IPC message per worker per session). Past this budget the fleet is what got registered, and the
 * results say so.
 */
const REGISTER_BUDGET_MS = 240_000;

const logTrial =
  (label: string) =>
  (t: Trial): void =>
    say(
      `${label}: offered ${t.offered}/s sent ${t.sent} accepted ${t.accepted} drops ${t.socketDrops}` +
        ` ${t.zeroLoss ? 'ZERO LOSS' : `loss ${(t.lossShare * 100).toFixed(3)}%`} cpu ${t.cpuUsPerDatagram} us/dgram` +
        ` other load ${t.otherCores} cores (before ${t.otherCoresBefore}), softirq ${t.softirqCores}`,
    );

interface FleetRun {
  drivers: number;
  workers: number;
  recvBufferBytes: number;
  registration: Registration;
  /** Time for every driver's first fix to be accepted (each one a claim through the primary). */
  firstFixes: { seconds: number; live: number; rounds: number };
  fixedRate: Trial;
  search: Search;
}

async function firstFixes(d: Daemon, sender: Sender, n: number): Promise<FleetRun['firstFixes']> {
  const t0 = performance.now();
  let live = 0;
  let rounds = 0;
  while (live < n && rounds < 3) {
    rounds++;
    await sender.run(d.udpPort, FIRST_FIX_RATE, n);
    live = await waitDrivers(d, n, 60_000);
  }
  return { seconds: round((performance.now() - t0) / 1000, 1), live, rounds };
}

/** The sender's best flat-out rate in this run (against the bare receiver). */
let senderFlatOut = 0;

async function fleetRun(
  drivers: number,
  workers: number,
  label: string,
  maxTrials: number,
): Promise<FleetRun> {
  say(`${label}: starting the daemon`);
  const d = await startCabtrack(workers);
  let sender: Sender | null = null;
  try {
    const registration = await registerFleet(d, SEED, 0, drivers, Date.now() + REGISTER_BUDGET_MS);
    say(
      `${label}: registered ${registration.registered} sessions in ${registration.seconds.toFixed(1)} s` +
        ` (${Math.round(registration.perSecond)}/s)`,
    );
    // The sender's fleet is what got registered: a fix from an unknown session would count as loss.
    sender = await Sender.start({
      drivers: registration.registered,
      seed: SEED,
      startTime: fleetStartTime(),
      sockets: SOCKETS,
    });
    const live = registration.registered;
    const first = await firstFixes(d, sender, live);
    say(`${label}: ${first.live} drivers live after ${first.seconds} s of first fixes`);
    // Warm-up: JIT and the R-tree's padding settle (the worker retunes it every 10 s).
    await sender.run(d.udpPort, FIXED_RATE / 2, Math.round((FIXED_RATE / 2) * 2));
    const target: Target = daemonTarget(label, d);
    const fixedRate = await trial(target, sender, FIXED_RATE, FIXED_RATE * TRIAL_S, TRIAL_S * 1.5);
    logTrial(`${label} fixed`)(fixedRate);
    const search = await searchCeiling(target, sender, {
      seconds: TRIAL_S,
      maxTrials,
      precision: PRECISION,
      start: 0,
      prior: [fixedRate],
      flatOut: senderFlatOut,
      log: logTrial(label),
    });
    const m = await scrape(d);
    const counts = await ingestCounts(d);
    if (counts.drivers < live) say(`${label}: only ${counts.drivers} of ${live} drivers live at the end`);
    return {
      drivers: live,
      workers,
      recvBufferBytes: (m.get('cabtrack_udp_receive_buffer_bytes') ?? 0) / workers,
      registration: {
        ...registration,
        seconds: round(registration.seconds, 1),
        perSecond: round(registration.perSecond),
      },
      firstFixes: first,
      fixedRate,
      search,
    };
  } finally {
    sender?.stop();
    await d.stop();
  }
}

const rmemBefore = rmemMax();
const rmem = raiseRmemMax(DAEMON_RECV_BUFFER);
say(`net.core.rmem_max ${rmem.before} -> ${rmem.after} (${rmem.note})`);
try {
  // The ceiling, and what the sender can offer at all.
  const bare = await BareReceiver.start();
  const bareT = bareTarget(bare);
  const sender = await Sender.start({
    drivers: CLUSTER_SIZE,
    seed: SEED,
    startTime: fleetStartTime(),
    sockets: SOCKETS,
  });
  const nodeSender = await Sender.start({
    drivers: 10_000,
    seed: SEED + 1,
    startTime: fleetStartTime(),
    sockets: SOCKETS,
    engine: 'node',
  });
  let bareRun: { fixedRate: Trial; search: Search; recvBufferBytes: number };
  let nodeFlatOut: Trial;
  try {
    // JIT warm-up for the receiver, then the Node engine flat out (for the record: what it achieves).
    await sender.run(bare.port, FIXED_RATE / 2, FIXED_RATE);
    nodeFlatOut = await trial(bareT, nodeSender, 0, 450_000 * TRIAL_S, TRIAL_S);
    logTrial('node-engine sender flat out -> bare')(nodeFlatOut);
    nodeSender.stop();
    const fixedRate = await trial(bareT, sender, FIXED_RATE, FIXED_RATE * TRIAL_S, TRIAL_S * 1.5);
    logTrial('bare fixed')(fixedRate);
    const search = await searchCeiling(bareT, sender, {
      seconds: TRIAL_S,
      maxTrials: MAX_TRIALS,
      precision: PRECISION,
      start: 0,
      prior: [fixedRate],
      log: logTrial('bare'),
    });
    bareRun = { fixedRate, search, recvBufferBytes: bare.recvBufferBytes };
    senderFlatOut = Math.max(0, ...search.trials.filter((t) => t.asked === 0).map((t) => t.offered));
  } finally {
    sender.stop();
    nodeSender.stop();
    bare.stop();
  }
  const senderInfo = {
    engine: sender.engine,
    engineNote: sender.engineNote,
    sockets: SOCKETS,
    flatOutRates: bareRun.search.trials.filter((t) => t.asked === 0).map((t) => t.offered),
    nodeEngineFlatOut: nodeFlatOut.offered,
    nodeEngineCpuUsPerDatagram: nodeFlatOut.senderCpuUsPerDatagram,
    nativeCpuUsPerDatagram: bareRun.fixedRate.senderCpuUsPerDatagram,
  };

  const oneWorker: FleetRun[] = [];
  for (const n of SIZES) {
    const trials = n === 100_000 ? MAX_TRIALS : OTHER_TRIALS;
    oneWorker.push(await fleetRun(n, 1, `1 worker, ${n / 1000}k drivers`, trials));
  }
  // The whole cluster (one worker per core), in the full run only: a quick look is about one worker.
  const cluster =
    QUICK || ONE_MILLION
      ? null
      : await fleetRun(
          CLUSTER_SIZE,
          availableParallelism(),
          `${availableParallelism()} workers, ${CLUSTER_SIZE / 1000}k drivers`,
          OTHER_TRIALS,
        );

  writeResult(
    ONE_MILLION ? 'ingest-1m' : 'ingest',
    'highest zero-loss ingest rate: one worker at 10k/100k/1M drivers and the cluster, vs a bare Node UDP receiver',
    {
      rmemMax: { ...rmem, original: rmemBefore },
      daemonRecvBufferAsked: DAEMON_RECV_BUFFER,
      trialSeconds: TRIAL_S,
      fixedRate: FIXED_RATE,
      sender: senderInfo,
      bare: bareRun,
      oneWorker,
      cluster,
    },
  );
} finally {
  if (rmem.raised) restoreRmemMax(rmem.before);
}
