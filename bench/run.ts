/**
 * Runs every benchmark, one child process each, in an order where later ones can use earlier ones'
 * results of the same run (query.ts runs ingest at half the capacity ingest.ts measured; cost-growth.ts
 * takes ingest.ts's daemon-level CPU figures), then regenerates bench/README.md from bench/results/.
 *
 *   npm run bench                  the whole set, within 15 minutes on the project's 2-core machine
 *   npm run bench -- --quick       a first look, about 2 minutes (smaller fleets, fewer trials)
 *   npm run bench -- --only ingest,query     some of them (the README keeps the others' last results)
 *   npm run bench -- --readme      only regenerate bench/README.md from the results there
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './support/proc.ts';
import { formatFiles } from './support/report.ts';

const QUICK = process.argv.includes('--quick');
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? new Set(process.argv[onlyArg + 1]!.split(',')) : null;
const README_ONLY = process.argv.includes('--readme');
const RUN_MODE: LastRun['mode'] = QUICK ? 'quick' : ONLY !== null ? 'partial' : 'full';
const RUN = new Date().toISOString();
const STARTED = Date.now();
const DIR = fileURLToPath(new URL('./', import.meta.url));
const RESULTS = `${DIR}results/`;

interface Bench {
  name: string;
  /** What it answers, for the README. */
  question: string;
  args: string[];
  /** null: left out of a quick run. */
  quickArgs: string[] | null;
}

const BENCHES: Bench[] = [
  { name: 'wire-size', question: 'bytes per fix, protobuf vs JSON', args: [], quickArgs: ['--quick'] },
  { name: 'decode', question: 'decodeTrack vs protobufjs', args: [], quickArgs: [] },
  {
    name: 'pipeline',
    question: 'per-datagram work after the socket',
    args: ['--drivers', '10000,100000', '--rounds', '20'],
    quickArgs: null,
  },
  {
    name: 'knn',
    question: 'geographic kNN vs rbush-knn',
    args: ['--queries', '5000', '--rounds', '2'],
    quickArgs: null,
  },
  { name: 'ingest', question: 'ingest against the ceiling', args: [], quickArgs: ['--quick'] },
  { name: 'query', question: 'queries against Redis GEO', args: [], quickArgs: ['--quick'] },
  { name: 'cost-growth', question: 'cost growth 10k to 1M', args: [], quickArgs: ['--quick'] },
  { name: 'cold-start', question: 'a fleet coming back at once', args: [], quickArgs: ['--quick'] },
  { name: 'replica', question: 'read replica memory, apply and queries', args: [], quickArgs: ['--quick'] },
  { name: 'publish-tick', question: 'replica lag and CPU by publish tick', args: [], quickArgs: ['--quick'] },
  { name: 'live-cells', question: 'live cell size between hosts', args: [], quickArgs: ['--quick'] },
  { name: 'hosts', question: 'three hosts on Redis Cluster', args: [], quickArgs: null },
  { name: 'stream', question: 'live streams against polling', args: [], quickArgs: null },
  // Last: its step up to 1M stops at the run's deadline (registering 1M sessions takes minutes here).
  { name: 'memory', question: 'memory per driver', args: [], quickArgs: ['--quick'] },
];

/**
 * The whole set's time budget on the 2-core machine. Issue 5 asked for 10 minutes; since then the read
 * path's benchmarks (replica, publish-tick), the cold start, and issue 14's memory figure at 1M (its step
 * from 100k to 1M drivers takes three minutes, and is skipped when the budget is spent) need about 13.
 */
const BUDGET_S = QUICK ? 150 : 900;

interface Outcome {
  name: string;
  seconds: number;
  exitCode: number | null;
}

function runOne(b: Bench): Promise<Outcome> {
  const t0 = performance.now();
  process.stderr.write(`\n=== ${b.name}: ${b.question}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`${DIR}${b.name}.ts`, ...(QUICK ? (b.quickArgs ?? []) : b.args)], {
      env: { ...process.env, CABTRACK_BENCH_RUN: RUN, CABTRACK_BENCH_DEADLINE: String(DEADLINE) },
      // The benchmarks' own output is progress for whoever watches; the figures go to results/.
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    child.on('exit', (code) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      const seconds = (performance.now() - t0) / 1000;
      process.stderr.write(
        `=== ${b.name}: ${code === 0 ? 'done' : `FAILED (${code})`} in ${seconds.toFixed(0)} s\n`,
      );
      resolve({ name: b.name, seconds, exitCode: code });
    });
  });
}

// ---- README ----

function load(name: string): any {
  const file = new URL(`./results/${name}.json`, import.meta.url);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

const int = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : Math.round(x).toLocaleString('en-US');
const num = (x: number | null | undefined, d = 2): string =>
  x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d);
const pct = (x: number): string => `${Math.round(x * 100)}%`;
const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');
const kib = (b: number): string => `${int(b)} B`;

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** When a result was measured: `2026-12-04 17:43 UTC`. */
function when(r: any): string {
  return `${String(r?.machine?.date ?? r?.date ?? '')
    .slice(0, 16)
    .replace('T', ' ')} UTC`;
}

/** The run the README describes: this one, or the last `npm run bench` when only regenerating it. */
let described = RUN;

function stamp(r: any): string {
  if (r === null) return '';
  const when = r.machine?.date ?? r.date ?? '';
  return `_${r.mode ?? 'full'} run, ${when.slice(0, 16).replace('T', ' ')} UTC${r.run === described ? '' : ' (another run)'}_`;
}

function ingestSection(r: any): { text: string; target: string } {
  if (r === null) return { text: 'No results yet: `node bench/ingest.ts`.', target: 'not measured' };
  const bare = r.bare;
  const bareRate = bare.search.zeroLossRate as number;
  const bareCpu = bare.fixedRate.cpuUsPerDatagram as number;
  const rateCell = (s: any): string =>
    `${s.senderLimited ? '≥ ' : ''}${int(s.zeroLossRate)}${s.lossyRate === null ? '' : ` (lost at ${int(s.lossyRate)})`}` +
    (s.passedAboveALoss ? `; passed once at ${int(s.passedAboveALoss)}` : '') +
    (s.lossesUnderLoad?.length > 0
      ? `; lost under other jobs' load at ${s.lossesUnderLoad.map(int).join(', ')}`
      : '');
  const row = (label: string, drivers: string, run: any, isBare = false): string[] => [
    label,
    drivers,
    rateCell(run.search),
    isBare ? '1.00 (baseline)' : num(run.search.zeroLossRate / bareRate),
    `${num(run.fixedRate.cpuUsPerDatagram)} (kernel ${num(run.fixedRate.systemUsPerDatagram)})${run.fixedRate.zeroLoss ? '' : ' (lossy)'}`,
    isBare ? '1.00 (baseline)' : num(bareCpu / run.fixedRate.cpuUsPerDatagram),
    int(1e6 / run.fixedRate.cpuUsPerDatagram / (run.workers ?? 1)),
    num(run.search.best?.otherCores),
    run.search.trials.length.toString(),
  ];
  const rows = [row('bare Node receiver', '-', bare, true)];
  for (const w of r.oneWorker) {
    const note = w.registration.timedOut ? ` (time-boxed: ${int(w.registration.registered)} registered)` : '';
    rows.push(row('cabtrack, 1 worker', `${int(w.drivers)}${note}`, w));
  }
  if (r.cluster !== null) {
    rows.push(row(`cabtrack, ${r.cluster.workers} workers (cluster)`, int(r.cluster.drivers), r.cluster));
  }
  // The 1M row runs on its own (ingest.ts --1m), with its own bare receiver as its baseline.
  const m1 = load('ingest-1m');
  if (m1 !== null && m1.oneWorker[0] !== undefined) {
    const w = m1.oneWorker[0];
    const b = m1.bare;
    const note = w.registration.timedOut ? ` (time-boxed: ${int(w.registration.registered)} registered)` : '';
    rows.push(
      [
        `bare Node receiver, the 1M run's baseline (${stamp(m1).replace(/_/g, '').replace(' (another run)', '')})`,
        '-',
        rateCell(b.search),
        '1.00 (baseline)',
        `${num(b.fixedRate.cpuUsPerDatagram)} (kernel ${num(b.fixedRate.systemUsPerDatagram)})`,
        '1.00 (baseline)',
        int(1e6 / b.fixedRate.cpuUsPerDatagram),
        num(b.search.best?.otherCores),
        b.search.trials.length.toString(),
      ],
      [
        'cabtrack, 1 worker (the 1M run)',
        `${int(w.drivers)}${note}`,
        rateCell(w.search),
        num(w.search.zeroLossRate / b.search.zeroLossRate),
        `${num(w.fixedRate.cpuUsPerDatagram)} (kernel ${num(w.fixedRate.systemUsPerDatagram)})${w.fixedRate.zeroLoss ? '' : ' (lossy)'}`,
        num(b.fixedRate.cpuUsPerDatagram / w.fixedRate.cpuUsPerDatagram),
        int(1e6 / w.fixedRate.cpuUsPerDatagram),
        num(w.search.best?.otherCores),
        w.search.trials.length.toString(),
      ],
    );
  }
  const w100 = r.oneWorker.find((w: any) => w.drivers === 100_000);
  let target = 'not measured (no 100k run)';
  if (w100 !== undefined) {
    const rate = w100.search.zeroLossRate as number;
    const ratio = rate / bareRate;
    const ok = rate >= 150_000 && ratio >= 0.5;
    target =
      `${verdict(ok)}: ${int(rate)}/s with zero loss at 100k drivers (target ≥ 150,000), ` +
      `${pct(ratio)} of the bare receiver's ${bare.search.senderLimited ? '≥ ' : ''}${int(bareRate)}/s (target ≥ 50%); ` +
      `by CPU per datagram at ${int(r.fixedRate)}/s the worker costs ${num(w100.fixedRate.cpuUsPerDatagram)} us ` +
      `against the bare receiver's ${num(bareCpu)} us (${pct(bareCpu / w100.fixedRate.cpuUsPerDatagram)})`;
  }
  const s = r.sender;
  const text = [
    stamp(r),
    '',
    table(
      [
        'receiver',
        'live drivers',
        'zero-loss rate, datagrams/s',
        'vs bare',
        `CPU us/datagram at ${int(r.fixedRate)}/s (of which system time)`,
        'bare CPU / this CPU',
        'one core at that CPU cost, datagrams/s',
        "other jobs' load in the best trial, cores",
        'trials',
      ],
      rows,
    ),
    '',
    `Zero loss: every datagram sent was received and accepted by the daemon's counters ` +
      `(\`cabtrack_datagrams_received_total\`, \`..._accepted_total\`), and the kernel counted no drop on the ` +
      `port (/proc/net/udp) nor machine-wide (\`RcvbufErrors\`, \`InErrors\` in /proc/net/snmp). ` +
      `${r.trialSeconds} s trials, bisection on the offered rate; "lost at" is the lowest offered rate that lost ` +
      `datagrams while other jobs on the machine used under half a core, and the zero-loss rate is the best ` +
      `pass below it (a loss while other jobs held half a core or more is listed but not counted; a pass above ` +
      `a counted loss is listed but not taken). Trials that lost while other jobs were busy are run once more. CPU: the receiving processes' user + system time ` +
      `(/proc/<pid>/stat) per datagram received; "one core at that CPU cost" is 1 s / that time per ` +
      `receiving process: the rate a dedicated core would reach, a figure other jobs on the machine disturb less ` +
      `than the zero-loss rate. Other jobs' load: CPU time of processes other than the receiver and the sender ` +
      `over the best trial.`,
    '',
    `Sender: ${s.engine} engine (${s.engineNote}), ${s.sockets} source sockets, flat out ` +
      `${s.flatOutRates.map(int).join(', ')} datagrams/s at ${num(s.nativeCpuUsPerDatagram)} us of CPU each; ` +
      `the Node dgram engine flat out: ${int(s.nodeEngineFlatOut)}/s at ${num(s.nodeEngineCpuUsPerDatagram)} us each.`,
    `Receive buffer: net.core.rmem_max was ${int(r.rmemMax.before)}` +
      (r.rmemMax.raised
        ? `, raised to ${int(r.rmemMax.after)} for the run (root; restored after), so the daemon's 32 MiB request was granted (${int(r.oneWorker[0]?.recvBufferBytes)} bytes after the kernel's doubling).`
        : ` (${r.rmemMax.note}); the daemon was granted ${int(r.oneWorker[0]?.recvBufferBytes)} bytes.`),
    `First fixes (each new driver is claimed from the primary): ${r.oneWorker
      .map((w: any) => `${int(w.drivers)} drivers in ${w.firstFixes.seconds} s`)
      .join(', ')}. Sessions registered with PUT /v1/sessions at ${r.oneWorker
      .map((w: any) => `${int(w.registration.perSecond)}/s`)
      .join(', ')}.`,
  ].join('\n');
  return { text, target };
}

/** Issue 14's daemon-level figure: one worker with 1M drivers (bench/ingest.ts --1m, its own run). */
function ingest1mTarget(m: any): string {
  const w = m?.oneWorker?.[0];
  if (w === undefined) return 'not measured (`node bench/ingest.ts --1m`)';
  const rate = w.search.zeroLossRate as number;
  return (
    `${verdict(rate >= 150_000 && w.drivers >= 900_000)}: ${int(rate)}/s with zero loss at ${int(w.drivers)} drivers ` +
    `(target ≥ 150,000; that run's bare receiver ${int(m.bare.search.zeroLossRate)}/s, ${pct(rate / m.bare.search.zeroLossRate)}); ` +
    `${num(w.fixedRate.cpuUsPerDatagram)} us of CPU a datagram at ${int(m.fixedRate)}/s against the bare receiver's ` +
    `${num(m.bare.fixedRate.cpuUsPerDatagram)} us (\`ingest.ts --1m\`, ${when(m)})`
  );
}

function querySection(r: any): { text: string; target: string; targets10: string[] } {
  if (r === null)
    return {
      text: 'No results yet: `node bench/query.ts`.',
      target: 'not measured',
      targets10: Array(4).fill('not measured'),
    };
  // Other jobs' load during the kept measurement (and the one run again, if any), cores.
  const other = (m: any): string =>
    Array.isArray(m.otherCores)
      ? `${num(Math.min(...m.otherCores))}${m.otherCores.length > 1 ? ` (retried: ${num(Math.max(...m.otherCores))})` : ''}`
      : 'n/a';
  const rows: string[][] = [];
  for (const run of r.runs) {
    const c = run.cabtrack;
    const x = run.redis;
    rows.push([
      `${run.radiusM / 1000} km`,
      String(run.concurrency),
      'cabtrack HTTP API',
      int(c.perSecond),
      num(c.p50Ms),
      num(c.p99Ms),
      num(run.throughputRatio),
      `${int(c.ingest.offered)} datagrams/s, ${int(c.ingest.lost)} lost`,
      c.lagP99Ms === undefined ? 'n/a' : `${num(c.lagP50Ms, 0)} / ${num(c.lagP99Ms, 0)}`,
      other(c),
    ]);
    rows.push([
      `${run.radiusM / 1000} km`,
      String(run.concurrency),
      'Redis GEOSEARCH (baseline)',
      int(x.perSecond),
      num(x.p50Ms),
      num(x.p99Ms),
      '1.00',
      `${int(x.updates.rate)} GEOADD updates/s`,
      '-',
      other(x),
    ]);
  }
  for (const h of r.healthz ?? []) {
    rows.push([
      '-',
      String(h.concurrency),
      'cabtrack GET /healthz (baseline)',
      int(h.perSecond),
      num(h.p50Ms),
      num(h.p99Ms),
      '-',
      `${int(h.ingest.offered)} datagrams/s, ${int(h.ingest.lost)} lost`,
      h.lagP99Ms === undefined ? 'n/a' : `${num(h.lagP50Ms, 0)} / ${num(h.lagP99Ms, 0)}`,
      other(h),
    ]);
  }
  // Issue 10's targets.
  const levelsAll = [...new Set<number>(r.runs.map((x: any) => x.concurrency))].sort((a, b) => b - a);
  const ratios = r.runs.map((x: any) => x.throughputRatio as number);
  const hz = (c: number): any => (r.healthz ?? []).find((h: any) => h.concurrency === c);
  const vsHealthz = r.runs
    .filter((x: any) => hz(x.concurrency) !== undefined)
    .map((x: any) => x.cabtrack.perSecond / hz(x.concurrency).perSecond);
  const four = r.runs.filter((x: any) => x.concurrency === Math.min(...levelsAll));
  const sixteen = r.runs.filter((x: any) => x.concurrency === Math.max(...levelsAll));
  const lags = r.runs.map((x: any) => x.cabtrack.lagP99Ms).filter((x: any) => typeof x === 'number');
  const tick = r.publishMs ?? 200;
  const targets10 = [
    `${verdict(ratios.every((x: number) => x >= 10))}: ${ratios.map((x: number) => num(x, 1)).join(', ')}x Redis GEOSEARCH's throughput (1 km and 3 km, at ${levelsAll.join(' and ')} clients; target ≥ 10x each)`,
    vsHealthz.length === 0
      ? 'not measured'
      : `${verdict(vsHealthz.every((x: number) => x >= 0.5))}: nearest-10 at ${vsHealthz.map((x: number) => pct(x)).join(', ')} of /healthz's throughput from the same load generator (target ≥ 50%)`,
    `${verdict(four.every((x: any) => x.cabtrack.p99Ms < 5 && x.cabtrack.ingest.lost === 0))}: p99 ${four.map((x: any) => `${num(x.cabtrack.p99Ms)} ms`).join(', ')} at ${Math.min(...levelsAll)} clients (target < 5 ms), ${four.map((x: any) => int(x.cabtrack.ingest.lost)).join(', ')} datagrams lost meanwhile (target 0); at ${Math.max(...levelsAll)} clients ${sixteen.map((x: any) => int(x.cabtrack.ingest.lost)).join(', ')} lost`,
    lags.length === 0
      ? 'not measured'
      : `${verdict(lags.every((x: number) => x <= tick + 50))}: replica lag p99 ${lags.map((x: number) => `${num(x, 0)} ms`).join(', ')} (target ≤ the ${tick} ms tick + 50 ms)`,
  ];
  const at = (radiusM: number, concurrency: number): any =>
    r.runs.find((x: any) => x.radiusM === radiusM && x.concurrency === concurrency);
  const levels = [...new Set<number>(r.runs.map((x: any) => x.concurrency))].sort((a, b) => b - a);
  const sat = at(3000, levels[0]!);
  const below = at(3000, levels.at(-1)!);
  const target =
    sat === undefined || below === undefined
      ? 'not measured'
      : `${verdict(sat.throughputRatio >= 5 && below.cabtrack.p99Ms < 5)}: ${num(sat.throughputRatio)}x Redis ` +
        `GEOSEARCH's throughput at 3 km (target ≥ 5x; ${int(sat.cabtrack.perSecond)} vs ${int(sat.redis.perSecond)} ` +
        `queries/s, ${levels[0]} clients); p99 ${num(below.cabtrack.p99Ms)} ms with ${levels.at(-1)} clients ` +
        `(target < 5 ms; ${num(sat.cabtrack.p99Ms)} ms with ${levels[0]}, saturated) while ingesting ` +
        `${int(below.cabtrack.ingest.offered)} datagrams/s`;
  const text = [
    stamp(r),
    '',
    table(
      [
        'radius',
        'clients',
        'system',
        'queries/s',
        'p50 ms',
        'p99 ms',
        'throughput vs Redis',
        'ingest meanwhile',
        'replica lag p50 / p99, ms',
        "other jobs' load, cores",
      ],
      rows,
    ),
    '',
    `${int(r.drivers)} drivers, ${r.workers} workers. Load: a closed loop of ${r.load.levels.join(' and ')} ` +
      `clients (keep-alive connections, one per client), ${r.load.warmupS} s warm-up, ${r.load.seconds} s ` +
      `measured, the same seeded rider positions for both, from one process. ${r.load.levels[0]} clients ` +
      `saturate either system on two cores (throughput; latency there is mostly queueing: clients / ` +
      `throughput); ${r.load.levels.at(-1)} load it below saturation (latency). Ingest: ${int(r.ingestRate)} ` +
      `datagrams/s (${r.ingestRateSource}). Redis: \`${r.redisCommand}\` (ids only, where the API answers ` +
      `with each driver's record), ${r.redisUpdates}. Same nearest-10 at rest (200 queries): ` +
      Object.entries<any>(r.agreementAtRest)
        .map(([k, v]) => `${k}: same drivers ${pct(v.sameSet)}, same order ${pct(v.sameOrder)}`)
        .join('; ') +
      ' (Redis keeps 52-bit geohashes, about 0.6 m, and another earth radius: near-ties may swap). ' +
      'Each measurement starts when other jobs on the machine are quiet (waiting up to 3 s); one during which ' +
      'they used half a core or more is run again and the quieter kept.',
  ].join('\n');
  return { text, target, targets10 };
}

function replicaSection(r: any): { text: string; memoryTarget: string; nearestTarget: string } {
  if (r === null)
    return {
      text: 'No results yet: `node bench/replica.ts`.',
      memoryTarget: 'not measured',
      nearestTarget: 'not measured',
    };
  const rows = r.results.map((x: any) => [
    int(x.drivers),
    kib(x.memory.rssBytesPerDriver),
    kib(x.memory.heapBytesPerDriver),
    kib(x.memory.typedArrayBytesPerDriver),
    int(x.applyNsPerMoved),
    `${int(x.rbushMoveNsPerMoved)} (${pct(x.rbushReindexShare)} re-inserted)`,
    ...x.queries.map((q: any) => `${num(q.quadtreeUs, 1)} / ${num(q.rbushUs, 1)}`),
  ]);
  const big = r.results.at(-1);
  const memoryTarget =
    big === undefined || big.drivers < 1_000_000
      ? 'not measured at 1M'
      : `${verdict(big.memory.rssBytesPerDriver <= 96)}: ${kib(big.memory.rssBytesPerDriver)} of RSS per driver per HTTP process at ${int(big.drivers)} drivers (target ≤ 96 B; V8 heap ${kib(big.memory.heapBytesPerDriver)}, typed arrays ${kib(big.memory.typedArrayBytesPerDriver)})`;
  const g = r.growth;
  const first = r.results[0];
  const nearestTarget =
    big === undefined || big.drivers < 1_000_000
      ? 'not measured at 1M'
      : `${verdict(g.nearest.every((n: any) => n.quadtree <= 3))}: ` +
        g.nearest
          .map(
            (n: any, i: number) =>
              `${num(n.quadtree)}x within ${n.radiusM / 1000} km (${num(big.queries[i].quadtreeUs)} us at ${int(big.drivers)} against ${num(first.queries[i].quadtreeUs)} us at ${int(first.drivers)})`,
          )
          .join(', ') +
        ` (target ≤ 3x); rbush as the shards used it: ${g.nearest.map((n: any) => `${num(n.rbush)}x`).join(', ')}`;
  const text = [
    stamp(r),
    '',
    table(
      [
        'drivers',
        'RSS per driver',
        'V8 heap per driver',
        'typed arrays per driver',
        'apply, ns per MOVED',
        'rbush move, ns (baseline)',
        ...r.results[0].queries.map(
          (q: any) => `nearest-10 within ${q.radiusM / 1000} km, us: quadtree / rbush`,
        ),
      ],
      rows,
    ),
    '',
    `In-process, one Replica (src/replica/replica.ts) holding the seeded city fleet, each size in its own ` +
      `process, with the malloc setting the daemon gives its workers. Memory: after a full GC, (with the ` +
      `replica - before) / drivers. Apply: ${r.ticks} ticks of real batches, a fifth of the fleet each (one ` +
      `fix a second at a 200 ms tick: ${r.ticks / 5} s of driving), decoding included; median over the last ` +
      `third. rbush: the same fleet and moves on rbush as the shards used it (boxes padded 100 m, remove + ` +
      `insert when a driver leaves its box, ${pct(r.results.at(-1).rbushReindexShare)} of the moves measured), the same geographic kNN ` +
      `(src/geo/knn.ts). From ${int(g.from)} to ${int(g.to)} drivers: nearest-10 grows ` +
      g.nearest
        .map(
          (n: any) =>
            `${num(n.quadtree)}x (quadtree) and ${num(n.rbush)}x (rbush) within ${n.radiusM / 1000} km`,
        )
        .join(', ') +
      `; a move ${num(g.applyNs)}x (replica apply) and ${num(g.rbushMoveNs)}x (rbush).`,
  ].join('\n');
  return { text, memoryTarget, nearestTarget };
}

function publishTickSection(r: any): string {
  if (r === null) return 'No results yet: `node bench/publish-tick.ts`.';
  return [
    stamp(r),
    '',
    table(
      ['CABTRACK_PUBLISH_MS', 'replica lag p50 / p99, ms', 'ingest workers, cores', 'HTTP workers, cores'],
      r.rows.map((x: any) => [
        String(x.publishMs),
        `${num(x.lagP50Ms, 0)} / ${num(x.lagP99Ms, 0)}`,
        num(x.ingestWorkersCpuPerSecond),
        num(x.httpWorkersCpuPerSecond),
      ]),
    ),
    '',
    `${int(r.drivers)} drivers at one fix a second each, ${r.workers} ingest and ${r.workers} HTTP workers, ` +
      `${r.seconds} s per tick on a fresh daemon, no queries; CPU from /proc over the run. The lag is about the ` +
      'tick plus 40 ms at each setting; a shorter tick costs CPU on both sides for every replica. The default, ' +
      '200 ms, keeps the p99 near a quarter of a second (what a rider polling every 2 s or a stream frame a ' +
      'second never sees) at the lower cost.',
  ].join('\n');
}

function coldStartSection(r: any): { text: string; target: string; target14: string } {
  const m1 = load('cold-start-1m');
  const m1run = m1?.runs?.[0];
  const refusedOf = (x: any): string =>
    Object.entries<number>(x.rejected)
      .map(([k, v]) => `${k} ${int(v)}`)
      .join(', ') || 'none';
  const target14 =
    m1run === undefined
      ? 'not measured (`node bench/cold-start.ts --1m`)'
      : `${verdict(m1run.secondsToLive !== null && ['queue_full', 'throttled', 'lookup_failed'].every((k) => !(m1run.rejected[k] > 0)))}: ` +
        `${int(m1run.drivers)} drivers, first fixes within ${m1run.roundSeconds} s: every driver live in ` +
        `${m1run.secondsToLive === null ? `not all within ${m1run.rounds} rounds` : `${num(m1run.secondsToLive)} s`}, refused on the way: ` +
        `${refusedOf(m1run)} (target: no queue_full, throttled or lookup_failed); ${int(m1run.liveBySecond[m1run.roundSeconds - 1] ?? 0)} ` +
        `live after the first ${m1run.roundSeconds} s, ${int(m1run.kernelDrops)} kernel drops (\`cold-start.ts --1m\`, ${when(m1)})`;
  if (r === null)
    return { text: 'No results yet: `node bench/cold-start.ts`.', target: 'not measured', target14 };
  const row = (x: any, label: string): string[] => [
    label,
    int(x.drivers),
    `${x.roundSeconds ?? 1} s`,
    x.secondsToLive === null ? `not all within ${x.rounds} rounds` : num(x.secondsToLive),
    x.liveBySecond.map(int).join(', '),
    refusedOf(x),
    int(x.kernelDrops),
  ];
  const rows = r.runs.map((x: any) =>
    row(
      x,
      x.mode === 'redis' ? 'Redis (sessions written by dispatch)' : 'no Redis (sessions in the primary)',
    ),
  );
  if (m1run !== undefined) {
    rows.push(row(m1run, `no Redis, a million (\`cold-start.ts --1m\`, ${when(m1)})`));
  }
  const emb = r.runs.find((x: any) => x.mode === 'embedded');
  const red = r.runs.find((x: any) => x.mode === 'redis');
  const limit = r.capArithmeticS + 1;
  const target =
    emb === undefined || red === undefined
      ? 'not measured'
      : `${verdict(emb.secondsToLive !== null && emb.secondsToLive <= 3 && red.secondsToLive !== null && red.secondsToLive <= limit)}: ` +
        `without Redis every driver live in ${num(emb.secondsToLive)} s (target ≤ 3 s), none refused as unknown; ` +
        `with Redis in ${num(red.secondsToLive)} s (the cap's arithmetic: ${int(r.drivers)} / (${int(r.lookupCapPerWorker)} x ` +
        `${r.workers} workers) = ${r.capArithmeticS} s, plus the second a throttled driver waits for its next fix: ≤ ${limit} s)`;
  const text = [
    stamp(r),
    '',
    table(
      [
        'sessions',
        'drivers',
        'first fixes within',
        'seconds until every driver is live',
        'live after 1, 2, ... s',
        'refused on the way',
        'kernel drops',
      ],
      rows,
    ),
    '',
    `${r.workers} workers. The sender sends every driver's fix once a second (${int(r.drivers)} datagrams a ` +
      'second), from the first datagram until every driver is live; the time is from the first datagram until ' +
      '`cabtrack_drivers` reaches the fleet (polled every 50 ms). With Redis the sessions are written straight to ' +
      'Redis, as dispatch does (through the API the workers would have them cached, which a restarted daemon has ' +
      'not), and each worker looks up at most `CABTRACK_SESSION_LOOKUPS_PER_S` a second; the rest are refused as ' +
      '`throttled` and looked up at their next fix. Kernel drops: the sender, the daemon and Redis share two cores. ' +
      'The million (issue 14): sessions registered through the API, every first fix within 10 s (100,000 a second) ' +
      "and each driver's next fix 10 s after the last, a round at a time.",
  ].join('\n');
  return { text, target, target14 };
}

function memorySection(r: any): { text: string; target: string; target14: string } {
  if (r === null)
    return {
      text: 'No results yet: `node bench/memory.ts`.',
      target: 'not measured',
      target14: 'not measured',
    };
  const procs = (xs: number[]): string => xs.map((b) => int(b)).join(' + ');
  const side = (x: any): string =>
    x.perDriver.ingestSideRssBytes === undefined ? 'n/a' : kib(x.perDriver.ingestSideRssBytes);
  const rows = r.results.map((x: any) => [
    int(x.drivers),
    kib(x.perDriver.rssBytes),
    side(x),
    x.perDriver.httpRssBytes === undefined ? 'n/a' : kib(x.perDriver.httpRssBytes),
    kib(x.perDriver.heapUsedBytes),
    kib(x.perDriver.externalBytes),
    `${kib(x.perSession.rssBytes)} (${procs(x.perSession.rssBytesByProcess)})`,
    `${kib(x.perLiveDriverBeyondSession.rssBytes)} (${procs(x.perLiveDriverBeyondSession.rssBytesByProcess)})`,
    `${num(x.ringPoints.mean, 1)} (min ${x.ringPoints.min}) of ${x.ringPoints.of}`,
    `${int(x.loaded.rssBytes / 2 ** 20)} MiB`,
    `${int(x.idle.rssBytes / 2 ** 20)} MiB`,
  ]);
  const largest = r.results.at(-1);
  const skipped = (r.skipped ?? []).map((x: any) => `${int(x.drivers)} skipped: ${x.why}`).join('; ');
  const notAt1m =
    largest === undefined || largest.drivers < 900_000
      ? `not measured at 1M${largest === undefined ? '' : ` (largest: ${int(largest.drivers)} drivers, ${kib(largest.perDriver.rssBytes)} RSS each)`}${skipped === '' ? '' : `; ${skipped}`}`
      : null;
  const rings =
    largest?.ringsFull === false
      ? `; rings ${num(largest.ringPoints.mean, 1)} points deep of ${largest.ringPoints.of} (time budget; a ring's slot is allocated whole)`
      : '';
  const target =
    notAt1m ??
    `${verdict(largest.perDriver.rssBytes < 1024)}: ${kib(largest.perDriver.rssBytes)} of RSS per driver at ` +
      `${int(largest.drivers)} drivers, every process (target < 1,024 B), of which ${kib(largest.perSession.rssBytes)} is the ` +
      `session registry's (the primary's, the only copy)${rings}`;
  const target14 =
    notAt1m ??
    (largest.perDriver.ingestSideRssBytes === undefined
      ? 'not measured by role'
      : `${verdict(largest.perDriver.ingestSideRssBytes <= 600)}: ${kib(largest.perDriver.ingestSideRssBytes)} of RSS per driver at ` +
        `${int(largest.drivers)} drivers for the primary and the ingest workers (target ≤ 600 B); the ${r.httpWorkers} HTTP ` +
        `workers' replicas ${kib(largest.perDriver.httpRssBytes)} more (${kib(largest.perDriver.rssBytes)} in all)${rings}`);
  const curve = r.results.find((x: any) => x.rssAsRingsFill?.length > 0);
  const text = [
    stamp(r),
    '',
    table(
      [
        'live drivers',
        'RSS per driver, whole daemon',
        'primary + ingest workers (issue 14)',
        'HTTP workers (read replicas)',
        'V8 heap per driver',
        'typed arrays per driver',
        'of which the session: RSS (by process)',
        'the live driver beyond its session: RSS (by process)',
        'ring points (100 sampled drivers)',
        'daemon RSS',
        'idle daemon RSS (baseline)',
      ],
      rows,
    ),
    '',
    `Whole daemon: the primary, ${r.workers} ingest workers and ${r.httpWorkers ?? 0} HTTP workers, each garbage-collected ` +
      `through the inspector before it is measured; per driver = (loaded - idle) / drivers, the idle daemon measured ` +
      `in the same run; "by process" lists the primary, then the ingest workers, then the HTTP workers. ` +
      `"Of which the session": measured after PUT /v1/sessions and before any fix, per new session (at 1M: ` +
      `the 900k added to the 100k). Typed arrays: their capacity (resident when touched), outside the V8 heap.` +
      (curve === undefined
        ? ''
        : ` As the rings fill at ${int(curve.drivers)} drivers, RSS per driver goes ${curve.rssAsRingsFill
            .map((c: any) => `${kib(c.rssBytesPerDriver)} at ${num(c.meanPoints, 0)} points`)
            .join(', ')}: a ring's slot is allocated whole when the driver arrives.`),
  ].join('\n');
  return { text, target, target14 };
}

function costSection(r: any): { text: string; target: string; target14: string } {
  if (r === null)
    return {
      text: 'No results yet: `node bench/cost-growth.ts`.',
      target: 'not measured',
      target14: 'not measured',
    };
  const rows = r.inProcess.map((x: any) => [
    int(x.drivers),
    int(x.pipelineNsPerDatagram),
    int(x.decodeNsPerDatagram),
    x.shuffledNsPerDatagram === undefined ? '-' : int(x.shuffledNsPerDatagram),
    ...x.queries.map((q: any) => num(q.usPerQuery, 1)),
    x.otherCores === undefined ? 'n/a' : num(x.otherCores),
  ]);
  const d = r.daemonLevel;
  // The 1M point from ingest-1m.json as it is now (it runs on its own and may be newer than this run).
  const m1run = load('ingest-1m');
  const m1 =
    m1run === null || m1run.oneWorker[0] === undefined
      ? null
      : {
          drivers: m1run.oneWorker[0].drivers,
          date: m1run.machine.date,
          cpuUsPerDatagram: m1run.oneWorker[0].fixedRate.cpuUsPerDatagram,
          bareCpuUsPerDatagram: m1run.bare.fixedRate.cpuUsPerDatagram,
        };
  const daemon = d.available
    ? `Daemon-level check (bench/ingest.ts, same run, one worker, ${int(d.rate)}/s offered): ` +
      d.points.map((p: any) => `${num(p.cpuUsPerDatagram)} us at ${int(p.drivers)}`).join(', ') +
      ` drivers (bare receiver ${num(d.bareCpuUsPerDatagram)} us)` +
      (m1 === null
        ? '.'
        : `; with ${int(m1.drivers)} drivers (\`ingest.ts --1m\`, ${String(m1.date).slice(0, 16).replace('T', ' ')} UTC) ` +
          `${num(m1.cpuUsPerDatagram)} us (that run's bare receiver ${num(m1.bareCpuUsPerDatagram)} us): ` +
          `${num(m1.cpuUsPerDatagram / m1.bareCpuUsPerDatagram / (d.points[0].cpuUsPerDatagram / d.bareCpuUsPerDatagram))}x ` +
          `the ${int(d.points[0].drivers)}-driver cost, each taken relative to its run's bare receiver. The receive ` +
          `path (the bare receiver's cost) is the same at every size and dilutes the growth.`)
    : `Daemon-level check: not available (${d.why}).`;
  const at1m = r.ratios.to >= 900_000;
  const first = r.inProcess[0];
  const last = r.inProcess.at(-1);
  const target = !at1m
    ? `not measured at 1M (largest ${int(r.ratios.to)})`
    : `${verdict(r.ratios.pipeline <= 1.5)}: ${num(r.ratios.pipeline)}x the cost per datagram at ${int(r.ratios.to)} drivers vs ` +
      `${int(r.ratios.from)} (target ≤ 1.5x): ${int(last.pipelineNsPerDatagram)} ns against ${int(first.pipelineNsPerDatagram)} ns`;
  const target14 = !at1m
    ? `not measured at 1M (largest ${int(r.ratios.to)})`
    : `${verdict(r.ratios.pipeline <= 1.3)}: ${num(r.ratios.pipeline)}x (target ≤ 1.3x): ${int(last.pipelineNsPerDatagram)} ns ` +
      `a datagram at ${int(r.ratios.to)} drivers against ${int(first.pipelineNsPerDatagram)} ns at ${int(r.ratios.from)}` +
      (r.ratios.shuffled === undefined
        ? ''
        : `; with the fixes in a shuffled order ${num(r.ratios.shuffled)}x (${int(last.shuffledNsPerDatagram)} against ${int(first.shuffledNsPerDatagram)} ns)`);
  const text = [
    stamp(r),
    '',
    table(
      [
        'live drivers',
        `ns/datagram, rounds ${r.comparedRounds.join('-')} (drivers' order)`,
        'decode alone, ns (baseline)',
        `ns/datagram, rounds ${(r.shuffledRounds ?? []).join('-')} (shuffled order)`,
        ...r.inProcess[0].queries.map((q: any) => `nearest-10 within ${q.radiusM / 1000} km, us`),
        "other jobs' load as the compared rounds started, cores",
      ],
      rows,
    ),
    '',
    `Ratios ${int(r.ratios.from)} -> ${int(r.ratios.to)}: per datagram ${num(r.ratios.pipeline)}x` +
      (r.ratios.shuffled === undefined ? '' : ` (${num(r.ratios.shuffled)}x in a shuffled order)`) +
      `, decode ${num(r.ratios.decode)}x, nearest-10 ${r.ratios.queries.map((q: any) => `${num(q.ratio)}x at ${q.radiusM / 1000} km`).join(', ')}. ` +
      `In-process through the worker's own path minus the socket (src/ingest/ingest.ts over one Shard, in batches ` +
      `of up to ${r.batch ?? 32} as a worker applies a burst of reads); each round is one fix from every driver. ` +
      `The drivers' order is also their slots' (they were added in it); the shuffled rounds send the same fleet's ` +
      `fixes in a fixed random order, what a worker sees once phones' phases and churn have scattered the slots. ` +
      `Nearest-10: a Replica loaded from the shard's snapshot (what an HTTP worker answers with). Each compared ` +
      `round starts when other jobs on the machine use under a quarter of a core (waiting up to 2 s).`,
    '',
    daemon,
  ].join('\n');
  return { text, target, target14 };
}

function wireSection(r: any): { text: string; target: string } {
  if (r === null) return { text: 'No results yet: `node bench/wire-size.ts`.', target: '' };
  const rows: string[][] = [];
  for (const [name, s] of Object.entries<any>(r.sets)) {
    rows.push([
      name === 'city' ? 'city fleet (Paris)' : 'worldwide',
      `${num(s.protobuf.mean, 1)} / ${s.protobuf.max}`,
      `${num(s.json.mean, 1)} / ${s.json.max}`,
      num(s.jsonOverProtobuf),
      `${num(s.jsonZerosOmitted.mean, 1)} / ${s.jsonZerosOmitted.max}`,
      num(s.jsonZerosOmittedOverProtobuf),
      `${num(s.withHeaders.protobuf, 1)} vs ${num(s.withHeaders.json, 1)} (${num(s.withHeaders.ratio)}x)`,
      `${num(s.mbPerDriverDay.protobuf, 1)} vs ${num(s.mbPerDriverDay.json, 1)}`,
    ]);
  }
  const world = r.sets.world;
  const text = [
    stamp(r),
    '',
    table(
      [
        'fixes',
        'protobuf bytes, mean / max',
        'JSON bytes, mean / max (baseline)',
        'JSON / protobuf',
        'JSON without zero fields',
        'ratio',
        'with IPv4 + UDP headers',
        'MB a driver-day at 1 fix/s',
      ],
      rows,
    ),
    '',
    `${int(world.fixes)} seeded fixes per set; protobuf from protobufjs and proto/track.proto. JSON: the same ` +
      `eight fields, session as 16 hex digits and order id as a decimal string, coordinates as degrees x 1e6, e.g. ` +
      `\`${world.sampleJson}\`.`,
  ].join('\n');
  return { text, target: `largest realistic fix ${world.protobuf.max} bytes (contract: at most 42)` };
}

function microSection(): string {
  const d = load('decode');
  const k = load('knn');
  const p = load('pipeline');
  const out: string[] = [];
  if (d !== null) {
    out.push(
      `**decode** (\`bench/decode.ts\`, ${d.date?.slice(0, 10)}): decodeTrack ${num(d.decodeTrackNsPerOp, 1)} ns, ` +
        `protobufjs Track.decode ${num(d.protobufjsNsPerOp, 1)} ns per datagram (${num(d.speedup)}x), ${int(d.fixes)} fixes.`,
    );
  }
  if (p !== null) {
    out.push(
      '',
      `**pipeline** (\`bench/pipeline.ts\`, ${p.date?.slice(0, 10)}):`,
      '',
      table(
        ['drivers', 'decode ns', 'pipeline ns', 'pipeline / decode', 'datagrams/s on one core'],
        p.results.map((x: any) => [
          int(x.drivers),
          int(x.decodeNsPerDatagram),
          int(x.pipelineNsPerDatagram),
          num(x.pipelineOverDecode),
          int(x.datagramsPerSecondOneCore),
        ]),
      ),
    );
  }
  if (k !== null) {
    out.push(
      '',
      `**knn** (\`bench/knn.ts\`, ${k.date?.slice(0, 10)}, ${int(k.queries)} queries, ${k.rounds} rounds):`,
      '',
      table(
        [
          'items',
          'radius',
          'geographic us/query',
          'rbush-knn planar us/query (baseline)',
          'ratio',
          'planar order differs',
        ],
        k.runs.map((x: any) => [
          int(x.items),
          `${x.radiusM / 1000} km`,
          num(x.geographicUsPerQuery),
          num(x.rbushKnnPlanarUsPerQuery),
          num(x.ratio),
          pct(x.planarOrderDiffers),
        ]),
      ),
    );
  }
  return out.join('\n');
}

/** What the last `npm run bench` ran (results/run.json), for a README regenerated later. */
interface LastRun {
  run: string;
  /** partial: `--only` some of them; the other sections keep their own last results. */
  mode: 'quick' | 'full' | 'partial';
  seconds: number;
  outcomes: Outcome[];
}

// The results' JSON, as bench/stream.ts writes it (load() gives any, as for the other sections).
function streamTargets(r: any): string[] {
  if (r == null) return ['not run', 'not run', 'not run'];
  const phase = (name: string): any => r.phases.find((p: any) => p.name === name);
  const streams = phase('streams');
  const polls = phase('polls');
  const s = r.perRiderSecond.stream;
  const q = r.perRiderSecond.poll;
  const ratio = q.cpuUs / Math.max(0.01, s.cpuUs);
  // Runs before the split was recorded have neither figure.
  const split = (x: any): string =>
    x.systemUs === undefined ? '' : ` (kernel ${x.systemUs}, HTTP workers ${x.httpUs})`;
  // Runs before the half phase was added have no scaling.
  const k = r.scaling;
  const scaling =
    k === undefined
      ? ''
      : `; of the streams' CPU, ${int(k.fixedMsPerS)} ms a second whatever the viewers and ${k.perViewerUs} us a viewer-second (fitted from ${int(k.halfRiders)} and ${int(r.riders)} viewers): one more viewer costs ${k.marginalRatio.toFixed(2)}x less than one more poller`;
  return [
    `**${streams.latencyP99Ms <= 1500 ? 'met' : 'not met'}**: p99 ${int(streams.latencyP99Ms)} ms, p50 ${int(streams.latencyP50Ms)} ms (target ≤ 1,500 ms), ${int(r.riders)} viewers, ${int(streams.riders.connected)} connected throughout`,
    `**${ratio >= 10 ? 'met' : 'not met'}**: ${s.cpuUs} us of daemon CPU a viewer-second${split(s)} against ${q.cpuUs} us a poll of nearest (k=100)${split(q)}, ${ratio.toFixed(2)}x less (target ≥ 10x)${scaling}; bytes ${int(s.bytes)} a viewer-second against ${int(q.bytes)} a poll`,
    `**${streams.ingest.lost === 0 && polls.ingest.lost === 0 ? 'met' : 'not met'}**: ${int(streams.ingest.lost)} datagrams lost while streaming, ${int(polls.ingest.lost)} while polling`,
  ];
}

// The results' JSON, as bench/hosts.ts writes it.
function hostsFigures(r: any): string[] {
  if (r == null) return ['not run', 'not run', 'not run'];
  const red = r.redis;
  return [
    `p50 ${int(r.crossHostLag.p50Ms)} ms, p99 ${int(r.crossHostLag.p99Ms)} ms (${int(r.publishMs)} ms tick; ${int(r.drivers)} drivers on ${int(r.hosts)} hosts)`,
    `${red.opsPer1000DriversPerS} operations (multi-host layer: ${Object.values(
      red.multiHostLayerOpsPer1000DriversPerS as Record<string, number>,
    )
      .reduce((a, b) => a + b, 0)
      .toFixed(
        1,
      )}), ${int(red.bytesInPer1000DriversPerS)} B in, ${int(red.bytesOutPer1000DriversPerS)} B out, ${int(red.replicationBytesPer1000DriversPerS)} B replicated, ${red.cpuCoresPer1000DriversAllNodes} cores`,
    (
      r.perHost as Array<{
        host: string;
        driversOwned: number;
        queriesPerS: number;
        cpuCores: Record<string, number>;
      }>
    )
      .map(
        (h) =>
          `${h.host}: ${int(h.driversOwned)} drivers, ${int(h.queriesPerS)} q/s, ${Object.values(h.cpuCores)
            .reduce((a, b) => a + b, 0)
            .toFixed(3)} cores`,
      )
      .join('; '),
  ];
}

function readme(ran: Outcome[], seconds: number): string {
  const last: LastRun | null =
    ran.length > 0 ? { run: RUN, mode: RUN_MODE, seconds, outcomes: ran } : load('run');
  described = last?.run ?? RUN;
  const m = load('ingest')?.machine ?? machineInfo();
  const ingest = ingestSection(load('ingest'));
  const query = querySection(load('query'));
  const memory = memorySection(load('memory'));
  const cost = costSection(load('cost-growth'));
  const wire = wireSection(load('wire-size'));
  const cold = coldStartSection(load('cold-start'));
  const replica = replicaSection(load('replica'));
  const ingest1m = ingest1mTarget(load('ingest-1m'));
  const stream = streamTargets(load('stream'));
  const hosts = hostsFigures(load('hosts'));
  const failed = (last?.outcomes ?? []).filter((o) => o.exitCode !== 0);
  return `# Benchmarks

Generated by \`npm run bench\` (bench/run.ts) from bench/results/*.json: do not edit by hand.
One question per file; every benchmark measures its baseline in the same run on the same seeded data.

\`\`\`sh
npm run bench              # everything, within 15 minutes on a 2-core machine
npm run bench -- --quick   # a first look, about 2 minutes (100k drivers only, fewer trials)
node bench/ingest.ts       # one of them; then \`npm run bench -- --readme\` to refresh this page
node bench/ingest.ts --1m  # one worker with 1M drivers: about 4 minutes, so not part of npm run bench
node bench/cold-start.ts --1m  # a million drivers coming back at once: about 2 minutes, not part of it either
\`\`\`

Machine: ${m.cpuModel}, ${m.cores} cores, ${int(m.memoryBytes / 2 ** 30)} GiB, Node ${m.node}, Linux ${m.kernel}.
${last === null ? '' : `Last \`npm run bench\`: ${last.run.slice(0, 16).replace('T', ' ')} UTC, ${last.mode}, ${Math.round(last.seconds)} s (${last.outcomes.map((o) => `${o.name} ${Math.round(o.seconds)} s`).join(', ')}).${last.mode === 'partial' ? ' Only these ran: every other section keeps the figures of its own last run, dated in its heading.' : ''}`}
${failed.length > 0 ? `\n**Failed in the last run:** ${failed.map((o) => `${o.name} (exit ${o.exitCode})`).join(', ')}; their tables below are older.\n` : ''}
The machine is shared and noisy (other jobs run on the same two cores), so compare each figure with its
baseline from the same run rather than with another day's figure.

## Targets (issue 5)

| target | result |
|---|---|
| One worker: ≥ 150,000 datagrams/s with zero loss at 100k drivers, and ≥ 50% of the bare receiver | ${ingest.target} |
| Nearest-10: ≥ 5x Redis GEOSEARCH's throughput at 3 km, p99 < 5 ms while ingesting | ${query.target} |
| Memory: < 1 KiB of RSS per driver at 1M drivers, rings included | ${memory.target} |
| Cost per datagram at 1M drivers ≤ 1.5x the cost at 10k | ${cost.target} |

## Targets (issue 10)

| target | result |
|---|---|
| nearest-10 at 1 km and 3 km: ≥ 10x Redis GEOSEARCH's throughput at 4 and at 16 clients | ${query.targets10[0]} |
| nearest-10 throughput ≥ 50% of the same daemon's /healthz throughput from the same load generator | ${query.targets10[1]} |
| p99 < 5 ms at 4 clients, and no datagram lost while 4 query clients run | ${query.targets10[2]} |
| replica lag p99 ≤ the publish tick + 50 ms | ${query.targets10[3]} |
| replica memory ≤ 96 B per driver per HTTP process at 1M drivers | ${replica.memoryTarget} |

## Targets (issue 12)

| target | result |
|---|---|
| A 100k fleet whose first fixes arrive within one second is live again within 3 s without Redis, within the cap's arithmetic with it | ${cold.target} |

## Targets (issue 14)

| target | result |
|---|---|
| Whole daemon at 1M drivers: ≤ 600 B of RSS per driver, read replicas excluded | ${memory.target14} |
| Cost per datagram at 1M ≤ 1.3x the cost at 10k, in-process | ${cost.target14} |
| Daemon level: one worker with 1M drivers takes ≥ 150k datagrams/s with zero loss | ${ingest1m} |
| Nearest-10 at 1M ≤ 3x its cost at 10k, in-process (the read replica's index) | ${replica.nearestTarget} |
| A cold start of 1M drivers (all first fixes within 10 s) completes without the daemon refusing what it can hold | ${cold.target14} |

## Targets (issue 11, \`bench/stream.ts\`: 100k drivers, 10,000 stream viewers with 1 km views)

| target | result |
|---|---|
| Fix-to-viewer latency p99 ≤ 1.5 s | ${stream[0]} |
| CPU per viewer-second ≥ 10x less than polling nearest once a second; bytes | ${stream[1]} |
| Ingest at half capacity loses no datagram | ${stream[2]} |

## Figures (issue 13, \`bench/hosts.ts\`; the cost model is in docs/multi-host.md)

| figure | measured |
|---|---|
| cross-host lag | ${hosts[0]} |
| Redis Cluster per 1,000 drivers a second | ${hosts[1]} |
| per host | ${hosts[2]} |

## 1. Ingest against the ceiling (\`bench/ingest.ts\`)

${ingest.text}

## 2. Queries against Redis GEO (\`bench/query.ts\`)

${query.text}

## 3. Memory per driver (\`bench/memory.ts\`)

${memory.text}

## 4. Cost growth from 10k to 1M drivers (\`bench/cost-growth.ts\`)

${cost.text}

## 5. Wire size (\`bench/wire-size.ts\`)

${wire.text}

## 6. Read replicas (\`bench/replica.ts\`)

${replica.text}

### The publish tick (\`bench/publish-tick.ts\`)

${publishTickSection(load('publish-tick'))}

## 7. Cold start (\`bench/cold-start.ts\`)

${cold.text}

## Micro-benchmarks

${microSection()}

## What limits the targets missed, and what the figures are made of (2-core machine, 2026-12-04)

- **Memory (issue 14).** A driver at 1M costs the primary and the ingest workers about 530 B of RSS.
  Its structures: in its worker a 64-byte record of typed arrays and 20 B beside it (session, directory
  epoch, trip start and sync mark), a ring of 20 points as differences (112 B), its id and cab interned
  as bytes with their index entries (about 40 B), its session's and, while on a trip, its order id's
  entries in the \`U64Index\`es (16-byte entries at most three quarters full: 21-43 B and 11-21 B); in
  the primary its session (about 50 B: an index entry and the names as bytes) and its directory entry
  (about 40 B). That is about 380 B; the rest is the processes' heaps grown by the million registrations,
  lookups, claims and grants that brought the drivers in (V8 keeps the pages after collecting), and
  growth slack. Each HTTP worker's replica adds 80-100 B (issue 10's budget: 96 B a process).
- **Cost growth (issue 14).** In the drivers' own order (their slots') a datagram costs 1.2-1.4x at 1M
  what it costs at 10k, depending on the run; in a shuffled order 1.5-2.1x. At 10k everything a fix
  touches is in the core's caches; at 1M each fix in a random order misses on its session's index entry,
  its record, its ring and its two neighbours in the expiry list, each about 150 ns from memory on this
  VM, plus as many TLB misses over the 300 MB of a worker's arrays. Fixes are applied in batches whose
  stages prefetch those lines for every fix of the batch before any is applied, so the misses overlap;
  the core keeps only about ten in flight, which is what is left. Before the batches (records alone) a
  fix at 1M cost 2.6x the 10k cost in order; before the records (Driver objects) 3.3x. Transparent huge
  pages for the workers' arrays (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) took about 10% off the shuffled
  figure in a trial; not adopted (unmeasured for memory).
- **Cold start of 100k (issue 12).** Runs of the same day gave 1.9-3.6 s without Redis depending on other
  jobs: the first second's 100k datagrams arrive while the workers claim their drivers, and what the
  kernel drops then (15-100k) comes back a second later. With Redis, five runs on a quiet machine
  (2026-12-05) gave 5.62, 6.71, 6.58, 6.49 and 6.33 s against the cap's 6 s, with 206-247k kernel drops
  and only 1.8-11k fixes throttled: after the first second the cap is not what holds drivers back (3-15k
  go live a second, under the 20k the cap allows), the datagrams that never reach a worker are. Here the
  sender (100k datagrams/s), redis-server (the lookups, and an HSET a second for every trip that has
  started) and the daemon share two cores; a profile of an ingest worker in that window is 15% trip
  writes (ioredis building commands) and 15% GC. Writing only a running trip's changing fields took the
  drops to 206-228k and the time to 6.3-6.5 s in two runs: not enough to adopt against what it costs
  (a hash that lost its first write in a failover would stay partial).
- **Queries (issue 10).** Throughput at 3 km is well above Redis's (GEOSEARCH scans every member in the
  covering geohash cells and sorts them), but on two cores the queries, the workers, the primary, the
  sender and the load generator share the CPU: at 16 clients the workers fall behind the ingest
  (datagrams lost, see the table), which is where the p99 tail comes from; with other jobs on the machine
  the ratios move by tens of percent from one run to the next.
- **Ingest.** Receiving is most of a worker's cost: one recvmsg and one JS callback per datagram (Node
  has no recvmmsg); see the bare receiver's CPU per datagram against the worker's in table 1. Zero-loss
  rates move by tens of percent with other jobs' load; the CPU per datagram is the steadier figure.

## How the measurements are made

- **Fleet** (\`support/fleet.ts\`): drivers in a 30 km x 30 km city around Paris, 70% around 40 hotspots,
  one fix a second of their own clock, 4-14 m/s (a fifth standing), 3 m GPS noise, half on a trip. Their
  clocks run ahead of the wall clock when a benchmark sends faster than one fix a second per driver, so the
  daemon runs with a 7-day idle timeout and the clocks start a week back: nothing is stale, nothing expires.
- **Sender** (\`support/sender.ts\`, \`support/sendmmsg.c\`): a child process that encodes each trial's
  datagrams beforehand (checked byte for byte against protobufjs) and sends them from 32 fixed source ports
  at a paced rate (what is due every millisecond), with sendmmsg(2) when a C compiler is there, else Node dgram.
- **Daemon** (\`support/cabtrack.ts\`): the real one, \`src/main.ts\` as a child process on free loopback
  ports (test/support/daemon.ts); sessions registered through PUT /v1/sessions; metrics from /metrics.
- **Bare receiver** (\`support/bare-receiver.ts\`): a Node dgram socket with the daemon's 32 MiB buffer
  request that only counts.
- **Redis** (\`support/geo-updater.ts\`): a local redis-server (test/support/redis.ts), the same fleet.
- **Results**: \`bench/results/<name>.json\`, with the machine, the mode, the run and every trial.
`;
}

// ---- main (last: the README helpers above must be initialised first) ----

const DEADLINE = STARTED + BUDGET_S * 1000;
const outcomes: Outcome[] = [];
const t0 = performance.now();
if (!README_ONLY) {
  for (const b of BENCHES) {
    if (ONLY !== null ? ONLY.has(b.name) : !QUICK || b.quickArgs !== null) outcomes.push(await runOne(b));
  }
}
const totalS = (performance.now() - t0) / 1000;
// The older micro-benchmarks write their JSON themselves: format the results of the benchmarks run here
// as the linter wants them (other files in results/ are their owners' business).
formatFiles(outcomes.map((o) => `${RESULTS}${o.name}.json`).filter((f) => existsSync(f)));
if (outcomes.length > 0) {
  const last: LastRun = { run: RUN, mode: RUN_MODE, seconds: totalS, outcomes };
  writeFileSync(`${RESULTS}run.json`, `${JSON.stringify(last, null, 2)}\n`);
  formatFiles([`${RESULTS}run.json`]);
}
const README = `${DIR}README.md`;
writeFileSync(README, readme(outcomes, totalS));
formatFiles([README]);
process.stderr.write(`\nbench/README.md written; ${totalS.toFixed(0)} s in all\n`);
if (outcomes.some((o) => o.exitCode !== 0)) process.exitCode = 1;
