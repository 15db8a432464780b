import type { DriverState, TripRecord } from '../store/driver.ts';

/**
 * Cluster IPC between the primary and its workers (structured-clone serialisation, so typed arrays and
 * nested objects cross as they are). `req` ties an answer to its request.
 */

/** Queries a worker answers about its own shard. */
export type QueryOp =
  | { op: 'nearest'; lat: number; lon: number; k: number; radius: number; free: boolean }
  | {
      op: 'bbox';
      minLon: number;
      minLat: number;
      maxLon: number;
      maxLat: number;
      after: string;
      limit: number;
    }
  | { op: 'driver'; id: string }
  | { op: 'cab'; cab: string }
  | { op: 'trip'; orderId: string }
  | { op: 'paths'; ids: string[]; deadlineMs: number }
  | { op: 'metrics' }
  | { op: 'stats' };

export type ToWorker =
  /** The answer to a worker's `lookup`: per session, [driverId, cab], or null for an unknown one. */
  | { t: 'found'; id: number; found: Array<[string, string] | null> }
  | { t: 'session'; req: number; hi: number; lo: number; driverId: string; cab: string }
  | { t: 'revoke'; req: number; hi: number; lo: number }
  | { t: 'remove-driver'; req: number; id: string }
  /** The driver is this worker's now: with its state from the previous owner, or the trip it had
   * in progress when its worker died (read back from Redis), or neither. */
  | { t: 'grant'; id: string; state: DriverState | null; resume: TripRecord | null }
  | { t: 'release'; req: number; id: string }
  | { t: 'query'; req: number; q: QueryOp };

export type FromWorker =
  | { t: 'hello' }
  | { t: 'ready'; udpPort: number; recvBufferBytes: number }
  /** Sessions the worker has no driver for (no Redis: the primary holds the sessions), uint32 halves. */
  | { t: 'lookup'; id: number; his: number[]; los: number[] }
  | { t: 'claim'; id: string }
  | { t: 'dropped'; ids: string[] }
  | { t: 'released'; req: number; id: string; state: DriverState | null }
  | { t: 'answer'; req: number; result: unknown };

/** A driver as the API shows it. */
export interface DriverView {
  id: string;
  cab: string;
  lat: number;
  lon: number;
  time: number;
  speed: number;
  bearing: number;
  free: boolean;
}
