import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { IngestCounters } from './ingest/counters.ts';
import { udpDrops } from './ingest/udp-drops.ts';
import { LiveHeap } from './live-heap.ts';
import { OSRM_OUTCOMES } from './osrm/client.ts';
import type { PathCounters } from './paths/path-matcher.ts';
import { reasonNames } from './reasons.ts';

/**
 * Every metric cabtrack exports is defined here, named with its unit. Workers count into plain numbers
 * (IngestCounters, Buckets) that the metrics read when scraped; the primary gathers every worker's
 * registry over IPC and merges it with its own (AggregatorRegistry sums counters and gauges across
 * processes, unless a metric says otherwise).
 */

export interface WorkerGauges {
  drivers(): number;
  activeTrips(): number;
  recvBufferBytes(): number;
  /** True while the OSRM client's circuit breaker keeps calls away (open or half-open); false without OSRM. */
  osrmBreakerOpen(): boolean;
}

export interface WorkerMetrics {
  register: Registry;
  /** One OSRM /match call ended: its outcome (a fixed set, src/osrm/client.ts) and duration. */
  osrmRequest(outcome: string, seconds: number): void;
}

/**
 * prom-client's gauges of totals that it names `_total`, which Prometheus reserves for counters
 * (`promtool check metrics` refuses them). Each is the sum over `type` of the gauge of the same name
 * without `_total` that prom-client also exports (`cabtrack_nodejs_active_handles{type}`), so dropping
 * them loses nothing, and the name a rename would take is that gauge's.
 */
const TOTAL_GAUGES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** prom-client's process and Node.js metrics, plus the live heap (summed over the processes when merged). */
function processMetrics(register: Registry): void {
  collectDefaultMetrics({ register, prefix: 'cabtrack_' });
  for (const name of TOTAL_GAUGES) register.removeSingleMetric(`cabtrack_${name}`);
  const heap = new LiveHeap();
  new Gauge({
    name: 'cabtrack_nodejs_heap_live_bytes',
    help: 'V8 heap in use just after the last full GC: live data without garbage. A steady climb is a leak.',
    registers: [register],
    collect() {
      this.set(heap.bytes);
    },
  });
}

export function workerRegistry(c: IngestCounters, g: WorkerGauges, paths: PathCounters): WorkerMetrics {
  const register = new Registry();
  processMetrics(register);
  const opts = { registers: [register] };
  new Counter({
    name: 'cabtrack_datagrams_received_total',
    help: 'UDP datagrams received by the workers.',
    ...opts,
    collect() {
      this.reset();
      this.inc(c.received);
    },
  });
  new Counter({
    name: 'cabtrack_datagrams_accepted_total',
    help: 'Datagrams whose fix was applied to a driver.',
    ...opts,
    collect() {
      this.reset();
      this.inc(c.accepted);
    },
  });
  new Counter({
    name: 'cabtrack_datagrams_rejected_total',
    help: 'Datagrams dropped, by reason.',
    labelNames: ['reason'],
    ...opts,
    collect() {
      this.reset();
      // Every reason is exported, zeros included, so a dashboard sees a reason before it first happens.
      for (let i = 1; i < reasonNames.length; i++) this.inc({ reason: reasonNames[i]! }, c.rejected[i]!);
    },
  });
  new Gauge({
    name: 'cabtrack_drivers',
    help: 'Live drivers in the store.',
    ...opts,
    collect() {
      this.set(g.drivers());
    },
  });
  new Gauge({
    name: 'cabtrack_trips_active',
    help: 'Trips in progress.',
    ...opts,
    collect() {
      this.set(g.activeTrips());
    },
  });
  new Counter({
    name: 'cabtrack_trips_ended_total',
    help: 'Trips that ended (order changed, driver expired or removed).',
    ...opts,
    collect() {
      this.reset();
      this.inc(c.tripsEnded);
    },
  });
  new Counter({
    name: 'cabtrack_driver_handoffs_total',
    help: 'Drivers handed from one worker to another because their fixes started arriving there.',
    ...opts,
    collect() {
      this.reset();
      this.inc(c.handoffs);
    },
  });
  new Counter({
    name: 'cabtrack_drivers_expired_total',
    help: 'Drivers removed after being idle for the idle timeout.',
    ...opts,
    collect() {
      this.reset();
      this.inc(c.expired);
    },
  });
  new Gauge({
    name: 'cabtrack_udp_receive_buffer_bytes',
    help: 'SO_RCVBUF the kernel granted each worker socket (capped by net.core.rmem_max).',
    aggregator: 'min',
    ...opts,
    collect() {
      this.set(g.recvBufferBytes());
    },
  });
  new Counter({
    name: 'cabtrack_path_cache_total',
    help: 'Driver paths asked for, by outcome: hit, miss (an OSRM call), shared (joined a call in flight), standstill (no call).',
    labelNames: ['outcome'],
    ...opts,
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(paths)) this.inc({ outcome }, n);
    },
  });
  const osrmTotal = new Counter({
    name: 'cabtrack_osrm_requests_total',
    help: 'OSRM /match calls by outcome.',
    labelNames: ['outcome'],
    ...opts,
  });
  for (const outcome of OSRM_OUTCOMES) osrmTotal.inc({ outcome }, 0);
  new Gauge({
    name: 'cabtrack_osrm_breaker_open',
    help: 'Workers whose OSRM circuit breaker is open (calls refused: OSRM failed 5 times in a row), summed over the workers.',
    ...opts,
    collect() {
      this.set(g.osrmBreakerOpen() ? 1 : 0);
    },
  });
  const osrmDuration = new Histogram({
    name: 'cabtrack_osrm_request_duration_seconds',
    help: 'OSRM /match call duration (calls that reached the network).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    ...opts,
  });
  return {
    register,
    osrmRequest(outcome, seconds) {
      osrmTotal.inc({ outcome });
      if (seconds > 0) osrmDuration.observe(seconds);
    },
  };
}

/** What a process using Redis reports about it (null fields: this process does not do that part). */
export interface RedisSource {
  up(): boolean;
  /** Live drivers' sessions checked again in Redis: valid, gone (the driver removed), error. */
  sessionRechecks: Readonly<Record<string, number>> | null;
  tripWrites: Readonly<object> | null;
  tripBuffer: (() => number) | null;
}

/**
 * Session lookups for fixes of drivers a worker does not hold, by outcome: from Redis (redis_hit) or,
 * without Redis, from the primary (primary_hit).
 */
export function addSessionLookupMetrics(register: Registry, lookups: Readonly<Record<string, number>>): void {
  new Counter({
    name: 'cabtrack_session_lookups_total',
    help: 'Session lookups for fixes of drivers a worker does not hold, by outcome.',
    labelNames: ['outcome'],
    registers: [register],
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(lookups)) this.inc({ outcome }, n);
    },
  });
}

/** Redis metrics, in the workers (trip writes) and the primary (up). */
export function addRedisMetrics(register: Registry, r: RedisSource): void {
  const opts = { registers: [register] };
  new Gauge({
    name: 'cabtrack_redis_up',
    help: '1 when every process has a working Redis connection (the minimum across processes).',
    aggregator: 'min',
    ...opts,
    collect() {
      this.set(r.up() ? 1 : 0);
    },
  });
  if (r.sessionRechecks !== null) {
    const rechecks = r.sessionRechecks;
    new Counter({
      name: 'cabtrack_session_rechecks_total',
      help: "Live drivers' sessions checked again in Redis, by outcome (gone: expired or deleted, driver removed).",
      labelNames: ['outcome'],
      ...opts,
      collect() {
        this.reset();
        for (const [outcome, n] of Object.entries(rechecks)) this.inc({ outcome }, n);
      },
    });
  }
  if (r.tripWrites !== null) {
    const writes = r.tripWrites;
    new Counter({
      name: 'cabtrack_trip_writes_total',
      help: 'Trip records written to Redis, by outcome (ok, error: retried later, dropped: buffer full).',
      labelNames: ['outcome'],
      ...opts,
      collect() {
        this.reset();
        for (const [outcome, n] of Object.entries(writes) as Array<[string, number]>)
          this.inc({ outcome }, n);
      },
    });
  }
  if (r.tripBuffer !== null) {
    const buffered = r.tripBuffer;
    new Gauge({
      name: 'cabtrack_trip_buffer',
      help: 'Trip records waiting to be written to Redis.',
      ...opts,
      collect() {
        this.set(buffered());
      },
    });
  }
}

/** What an ingest worker's batch publisher counts (src/replica/publisher.ts). */
export interface PublisherCounts {
  readonly batches: number;
  readonly bytes: number;
  readonly cutOff: number;
  readonly subscribers: number;
}

/** The ingest worker's side of the read path. */
export function addPublisherMetrics(register: Registry, p: PublisherCounts): void {
  const opts = { registers: [register] };
  new Counter({
    name: 'cabtrack_replica_batches_total',
    help: 'Replica batches (deltas and snapshots) the ingest workers published.',
    ...opts,
    collect() {
      this.reset();
      this.inc(p.batches);
    },
  });
  new Counter({
    name: 'cabtrack_replica_batch_bytes_total',
    help: 'Bytes of replica batches written to the read replicas (each replica counted).',
    ...opts,
    collect() {
      this.reset();
      this.inc(p.bytes);
    },
  });
  new Counter({
    name: 'cabtrack_replica_followers_cut_total',
    help: 'Read replicas cut off by an ingest worker for falling behind its batches (they resynchronise).',
    ...opts,
    collect() {
      this.reset();
      this.inc(p.cutOff);
    },
  });
}

/**
 * Counts observations into fixed buckets, for a histogram whose observations are too many for
 * prom-client's observe() (a label hash each): a loop over a dozen bounds and an increment.
 */
export class Buckets {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }
}

/** Replica lag buckets, seconds: around the publish tick (100-250 ms), and the tail past it. */
export const REPLICA_LAG_BUCKETS = [0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5];

/** A histogram read from Buckets when scraped (prom-client takes any object with get()). */
function bucketsHistogram(register: Registry, name: string, help: string, b: Buckets): void {
  register.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> =
        [];
      let cumulative = 0;
      for (let i = 0; i < b.bounds.length; i++) {
        cumulative += b.counts[i]!;
        values.push({ metricName: `${name}_bucket`, labels: { le: b.bounds[i]! }, value: cumulative });
      }
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: b.count });
      values.push({ metricName: `${name}_sum`, labels: {}, value: b.sum });
      values.push({ metricName: `${name}_count`, labels: {}, value: b.count });
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  } as unknown as Parameters<Registry['registerMetric']>[0]);
}

export interface HttpWorkerSources {
  /** Drivers this process's replica lists. */
  replicaDrivers(): number;
  /** Sources dropped and followed again from a snapshot (a broken stream, a gap, a malformed batch). */
  replicaResyncs(): number;
  lag: Buckets;
  /** Several hosts: the other hosts' live cells in this replica (src/hosts/remote-feed.ts). */
  live: {
    crossLag: Buckets;
    sources(): number;
    counters: { frames: number; skippedWaiting: number; resyncs: number; stale: number };
  } | null;
  /** The stream hub's counters (src/stream/hub.ts) and its viewers. */
  stream: {
    viewers(): number;
    backlogBytes(): number;
    counters: {
      frames: number;
      bytes: number;
      skipped: number;
      disconnects: Record<string, number>;
    };
    /** From a fix received by its ingest worker to the frame carrying it leaving for its viewers. */
    latency: Buckets;
  };
}

/** Stream latency buckets, seconds: a frame a second, so up to a second plus the replica's lag. */
export const STREAM_LATENCY_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5];

export interface HttpWorkerMetrics {
  readonly register: Registry;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
}

/** An HTTP worker: its process, the API's latency and its read replica. */
export function httpWorkerRegistry(s: HttpWorkerSources): HttpWorkerMetrics {
  const register = new Registry();
  processMetrics(register);
  const opts = { registers: [register] };
  bucketsHistogram(
    register,
    'cabtrack_replica_lag_seconds',
    'From a fix received by its ingest worker to the fix visible to queries in a read replica (every replica counted).',
    s.lag,
  );
  new Gauge({
    name: 'cabtrack_replica_drivers',
    help: 'Drivers listed by the read replicas: the fewest of any HTTP worker (all should agree within a tick).',
    aggregator: 'min',
    ...opts,
    collect() {
      this.set(s.replicaDrivers());
    },
  });
  new Gauge({
    name: 'cabtrack_stream_viewers',
    help: 'Stream viewers connected (SSE), all HTTP workers.',
    ...opts,
    collect() {
      this.set(s.stream.viewers());
    },
  });
  new Gauge({
    name: 'cabtrack_stream_backlog_bytes',
    help: 'Bytes of stream frames queued in the HTTP workers for viewers that have not taken them yet.',
    ...opts,
    collect() {
      this.set(s.stream.backlogBytes());
    },
  });
  new Counter({
    name: 'cabtrack_stream_frames_total',
    help: 'Stream frames sent to viewers.',
    ...opts,
    collect() {
      this.reset();
      this.inc(s.stream.counters.frames);
    },
  });
  new Counter({
    name: 'cabtrack_stream_bytes_total',
    help: 'Bytes of stream frames and heartbeats written to viewers.',
    ...opts,
    collect() {
      this.reset();
      this.inc(s.stream.counters.bytes);
    },
  });
  new Counter({
    name: 'cabtrack_stream_frames_skipped_total',
    help: 'Frames a viewer skipped because its socket had not taken the previous ones (it gets a snapshot after).',
    ...opts,
    collect() {
      this.reset();
      this.inc(s.stream.counters.skipped);
    },
  });
  new Counter({
    name: 'cabtrack_stream_disconnects_total',
    help: 'Stream viewers gone, by reason: slow (cut off after skipping frames too long), closed (by the client), shutdown.',
    labelNames: ['reason'],
    ...opts,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(s.stream.counters.disconnects)) this.inc({ reason }, n);
    },
  });
  bucketsHistogram(
    register,
    'cabtrack_stream_latency_seconds',
    'From a fix received by its ingest worker to the stream frame carrying it leaving for its viewers (each car once a frame).',
    s.stream.latency,
  );
  new Counter({
    name: 'cabtrack_replica_resyncs_total',
    help: 'Times a read replica dropped an ingest worker and followed it again from a snapshot.',
    ...opts,
    collect() {
      this.reset();
      this.inc(s.replicaResyncs());
    },
  });
  if (s.live !== null) {
    const live = s.live;
    bucketsHistogram(
      register,
      'cabtrack_cross_host_lag_seconds',
      'From a fix received by its owner on another host to the fix visible to queries here (every replica counted).',
      live.crossLag,
    );
    new Gauge({
      name: 'cabtrack_live_remote_cells',
      help: "Other hosts' live cells (host, cell) in the read replica: the fewest of any HTTP worker.",
      aggregator: 'min',
      ...opts,
      collect() {
        this.set(live.sources());
      },
    });
    new Counter({
      name: 'cabtrack_live_remote_events_total',
      help:
        "The other hosts' batches as the replicas took them: applied; skipped_waiting (a delta before its cell's " +
        'snapshot); resync (a gap: the cell dropped until its next snapshot); stale (a cell silent too long, dropped).',
      labelNames: ['event'],
      ...opts,
      collect() {
        this.reset();
        this.inc({ event: 'applied' }, live.counters.frames - live.counters.skippedWaiting);
        this.inc({ event: 'skipped_waiting' }, live.counters.skippedWaiting);
        this.inc({ event: 'resync' }, live.counters.resyncs);
        this.inc({ event: 'stale' }, live.counters.stale);
      },
    });
  }
  return {
    register,
    httpDuration: new Histogram({
      name: 'cabtrack_http_request_duration_seconds',
      help: 'HTTP API request duration by route.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      ...opts,
    }),
  };
}

export interface PrimaryMetrics {
  readonly register: Registry;
  readonly workerRestarts: Counter;
  readonly queryTimeouts: Counter;
}

export function primaryMetrics(
  sessions: () => number,
  workersUp: () => number,
  httpWorkersUp: () => number,
  directory: () => number,
  /** The workers' UDP port, whose kernel drops the primary reads. */
  udpPort: number,
): PrimaryMetrics {
  const register = new Registry();
  processMetrics(register);
  addKernelDropMetrics(register, udpPort);
  const opts = { registers: [register] };
  new Gauge({
    name: 'cabtrack_sessions',
    help: 'Sessions registered in the embedded registry.',
    ...opts,
    collect() {
      this.set(sessions());
    },
  });
  new Gauge({
    name: 'cabtrack_workers_up',
    help: 'Ingest workers running and bound to the UDP port.',
    ...opts,
    collect() {
      this.set(workersUp());
    },
  });
  new Gauge({
    name: 'cabtrack_http_workers_up',
    help: 'HTTP workers running and serving the API.',
    ...opts,
    collect() {
      this.set(httpWorkersUp());
    },
  });
  new Gauge({
    name: 'cabtrack_directory_drivers',
    help: "Drivers in the primary's directory of owners: live drivers, plus those whose drop is on its way.",
    ...opts,
    collect() {
      this.set(directory());
    },
  });
  return {
    register,
    workerRestarts: new Counter({
      name: 'cabtrack_worker_restarts_total',
      help: 'Workers forked again after one died.',
      ...opts,
    }),
    queryTimeouts: new Counter({
      name: 'cabtrack_query_worker_timeouts_total',
      help: 'Calls from the primary to a worker that got no answer in time (an operator route, a handoff).',
      ...opts,
    }),
  };
}

/** What a host's link to the others counts (src/hosts/host-link.ts, src/hosts/directory.ts, src/hosts/peers.ts). */
export interface HostSources {
  link: {
    cells: number;
    subscriptions: number;
    counters: {
      published: number;
      publishedBytes: number;
      publishErrors: number;
      received: number;
      receivedBytes: number;
      ownReceived: number;
      relayCutOff: number;
      redisOps: number;
    };
  };
  directoryOps: Record<string, number>;
  peers: { calls: number; failures: number };
  /** Drivers taken over from another host, by how: state (released by a live host), trip (read from Redis: the host was dead or did not answer), none. */
  takeovers: Record<string, number>;
}

/** The primary of one of several hosts: the live cells it publishes and follows, the directory's work. */
export function addHostMetrics(register: Registry, s: HostSources): void {
  const opts = { registers: [register] };
  const counter = (name: string, help: string, value: () => number): void => {
    new Counter({
      name,
      help,
      ...opts,
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  };
  new Gauge({
    name: 'cabtrack_live_cells',
    help: 'Live cells this host has drivers in (each published once a tick when something moved).',
    ...opts,
    collect() {
      this.set(s.link.cells);
    },
  });
  new Gauge({
    name: 'cabtrack_live_subscriptions',
    help: 'Live cell channels this host follows (SSUBSCRIBE): the active cells of its region.',
    ...opts,
    collect() {
      this.set(s.link.subscriptions);
    },
  });
  const c = s.link.counters;
  counter('cabtrack_live_published_total', 'Live cell messages published (SPUBLISH).', () => c.published);
  counter(
    'cabtrack_live_published_bytes_total',
    'Bytes of live cell messages published.',
    () => c.publishedBytes,
  );
  counter(
    'cabtrack_live_publish_errors_total',
    'SPUBLISH calls that failed (Redis down or failing over).',
    () => c.publishErrors,
  );
  counter('cabtrack_live_received_total', "Other hosts' live cell messages received.", () => c.received);
  counter(
    'cabtrack_live_received_bytes_total',
    "Bytes of other hosts' live cell messages received.",
    () => c.receivedBytes,
  );
  counter(
    'cabtrack_live_own_received_total',
    "This host's own messages Redis sent back (it follows cells it publishes to; skipped).",
    () => c.ownReceived,
  );
  counter(
    'cabtrack_live_relay_cutoffs_total',
    'HTTP workers cut off the live relay for falling behind.',
    () => c.relayCutOff,
  );
  new Counter({
    name: 'cabtrack_redis_host_ops_total',
    help: 'Redis operations of the multi-host layer, by kind: the directory (claim, renew, drop, lease, lookup) and the live cells (live).',
    labelNames: ['op'],
    ...opts,
    collect() {
      this.reset();
      for (const [op, n] of Object.entries(s.directoryOps)) this.inc({ op }, n);
      this.inc({ op: 'live' }, c.redisOps);
    },
  });
  counter(
    'cabtrack_peer_calls_total',
    'Calls to other hosts (handoffs, forwarded operator routes).',
    () => s.peers.calls,
  );
  counter(
    'cabtrack_peer_call_failures_total',
    'Calls to other hosts that failed or timed out.',
    () => s.peers.failures,
  );
  new Counter({
    name: 'cabtrack_host_takeovers_total',
    help:
      'Drivers this host took over from another, by what came with them: state (the other host released it), ' +
      'trip (only the trip, read back from Redis: the host was dead or did not answer), none (neither).',
    labelNames: ['with'],
    ...opts,
    collect() {
      this.reset();
      for (const [w, n] of Object.entries(s.takeovers)) this.inc({ with: w }, n);
    },
  });
}

const UDP_TABLES = ['/proc/net/udp', '/proc/net/udp6'];

/**
 * Kernel drops on the daemon's UDP port (src/ingest/udp-drops.ts), read by the primary when scraped:
 * it shares the workers' network namespace, so it sees their sockets, and no worker needs to answer.
 * Not registered without a /proc/net/udp that has the drops column (not Linux): an absent metric
 * rather than a 0 that means nothing.
 */
function addKernelDropMetrics(register: Registry, udpPort: number): void {
  let table: string;
  try {
    table = readFileSync(UDP_TABLES[0]!, 'utf8');
  } catch {
    return;
  }
  if (udpDrops(table, udpPort) === null) return;
  new Counter({
    name: 'cabtrack_udp_kernel_drops_total',
    help: "Datagrams the kernel dropped on the daemon's UDP port before a worker read them (a full receive buffer), from /proc/net/udp and udp6.",
    registers: [register],
    async collect() {
      let drops = 0;
      for (const file of UDP_TABLES) {
        // No udp6 table on a kernel without IPv6: no sockets there.
        const text = await readFile(file, 'utf8').catch(() => '');
        drops += udpDrops(text, udpPort) ?? 0;
      }
      this.reset();
      this.inc(drops);
    },
  });
}

/** Merges the workers' metrics (as getMetricsAsJSON() gave them) with the primary's. */
export async function clusterMetricsText(primary: Registry, workers: unknown[]): Promise<string> {
  const all = [...workers, await primary.getMetricsAsJSON()] as Parameters<
    typeof AggregatorRegistry.aggregate
  >[0];
  return AggregatorRegistry.aggregate(all).metrics();
}

export const metricsContentType = new Registry().contentType;
