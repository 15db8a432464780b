import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { DriverPath } from '../paths/path-matcher.ts';
import type { DriverState, TripRecord } from '../store/driver.ts';

/**
 * What the daemon's processes ask of each other (src/cluster/rpc.ts carries it over cluster IPC):
 *
 *                       ┌──────────── primary ─────────────┐
 *    PrimaryForIngest ──┤ directory, sessions (no Redis),  ├── PrimaryForHttp
 *                       │ supervisor, /metrics aggregation │
 *                       └──────────────────────────────────┘
 *              IngestApi │                          │ HttpApi
 *             ingest workers ── replica batches ──▶ HTTP workers
 *             (UDP, shards)     (Unix sockets)      (HTTP API, read replicas)
 *
 * Each interface lists the methods one side serves; the other side calls them with their types.
 * Methods returning void are one-way messages (Rpc.tell). Everything crosses as structured clones.
 */

/** A driver's full record for operators (GET /v1/drivers/{id}, /v1/cabs/{cab}). */
export interface DriverDetail {
  id: string;
  cab: string;
  lat: number;
  lon: number;
  time: number;
  speed: number;
  bearing: number;
  free: boolean;
  orderId: string | null;
  seenAt: string;
  points: Array<{ lat: number; lon: number; time: number }>;
  track: DriverPath;
  trip: TripRecord | null;
}

export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

/** Served by every ingest worker, for the primary. */
export interface IngestApi {
  [method: string]: (...args: any[]) => unknown;
  /** The directory gives this worker the driver (see src/cluster/handoff.ts). One-way. */
  grant(id: string, epoch: number, state: DriverState | null, resume: TripRecord | null): void;
  /** Let the driver go to another worker: its state, or null if it is not here. */
  release(id: string): DriverState | null;
  /** A session was registered through the API: known from now on (past any negative cache). */
  registered(hi: number, lo: number, driverId: string, cab: string): boolean;
  /** A session was revoked: its driver goes. True if this worker had it. */
  revoke(hi: number, lo: number): boolean;
  /** An operator removed the driver. */
  remove(id: string): { removed: boolean; session: [number, number] | null };
  driver(id: string): Promise<DriverDetail | null>;
  cab(cab: string): Promise<DriverDetail | null>;
  trip(orderId: string): TripRecord | null;
  /** Road paths from each driver's previous fix to its current one. */
  paths(ids: string[], deadlineMs: number): Promise<Record<string, DriverPath>>;
  metrics(): Promise<MetricsJson>;
}

/** What an ingest worker says when its UDP socket is bound and its batch socket listens. */
export interface IngestReady {
  udpPort: number;
  recvBufferBytes: number;
  /** Unix socket the read replicas follow this worker's batches on. */
  feedPath: string;
}

/** Served by the primary, for ingest workers. */
export interface PrimaryForIngest {
  [method: string]: (...args: any[]) => unknown;
  /** Listening for messages: session changes are sent from now on. One-way. */
  hello(): void;
  ready(info: IngestReady): void;
  /** Sessions this worker has no driver for (no Redis: the primary holds them): [driverId, cab] or null. */
  lookup(his: number[], los: number[]): Array<[string, string] | null>;
  /** A fix for a driver this worker does not hold. One-way; grant() answers. */
  claim(id: string): void;
  /** Drivers this worker let go of on its own, with the epochs of its ownership. One-way. */
  dropped(items: Array<[string, number]>): void;
}

/** One ingest worker's batch stream, as the HTTP workers follow it. */
export interface FeedSource {
  source: number;
  path: string;
}

/** Served by every HTTP worker, for the primary. */
export interface HttpApi {
  [method: string]: (...args: any[]) => unknown;
  /** The ingest workers to follow (all of them, each time the set changes). One-way. */
  feeds(sources: FeedSource[]): void;
  /** Several hosts: that host lost its lease (killed); its live cells leave the replica. One-way. */
  hostGone(host: string): void;
  metrics(): Promise<MetricsJson>;
}

export interface Readiness {
  ok: boolean;
  detail: Record<string, unknown>;
}

/** Served by the primary, for HTTP workers: the operator routes, which go to the drivers' owners. */
export interface PrimaryForHttp {
  [method: string]: (...args: any[]) => unknown;
  /** Started: the primary answers with the feeds to follow. */
  hello(): void;
  /** Its replica synced, it takes connections on the HTTP port: ready. */
  listening(): void;
  /** `hop`: asked by another host, so answered from this host alone (src/hosts/peers.ts). */
  driver(id: string, hop: boolean): Promise<DriverDetail | null>;
  cab(cab: string, hop: boolean): Promise<DriverDetail | null>;
  trip(orderId: string, hop: boolean): Promise<TripRecord | null>;
  /** Host `to` took the driver over in the directory: let it go, and give its state. */
  handOver(id: string, to: string): Promise<DriverState | null>;
  /** Paths of drivers owned by one ingest worker. */
  paths(source: number, ids: string[], deadlineMs: number): Promise<Record<string, DriverPath>>;
  putSession(hi: number, lo: number, driverId: string, cab: string): Promise<boolean>;
  deleteSession(hi: number, lo: number): Promise<boolean>;
  deleteDriver(id: string): Promise<boolean>;
  deleteCab(cab: string): Promise<boolean>;
  /** /metrics of the whole daemon, every process aggregated. */
  metrics(): Promise<string>;
  readiness(): Readiness;
}
