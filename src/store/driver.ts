import type { NewTrack } from './new-track.ts';

/**
 * A live driver. Every field is initialised in the constructor so that all drivers share one hidden
 * class: the hot path reads and writes them monomorphically. The driver is also a node of the shard's
 * expiry list.
 */
export class Driver {
  readonly id: string;
  cab: string;
  /** The session its fixes carry now (uint32 halves). */
  sessionHi: number;
  sessionLo: number;

  /** Last accepted position, degrees (what queries rank by) and degrees x 1e6 (as received). */
  lat = 0;
  lon = 0;
  latE6 = 0;
  lonE6 = 0;
  /** Time of the last accepted fix, Unix seconds; 0 before the first one. */
  time = 0;
  speed = 0;
  bearing = 0;
  orderHi = 0;
  orderLo = 0;
  cost = 0;
  trip: Trip | null = null;

  /** Server clock (ms) when the last fix was accepted: what idle expiry goes by. */
  seenAtMs = 0;
  /** Watches fixes refused as too fast for a consistent new track (src/store/new-track.ts); null while none is. */
  track: NewTrack | null = null;

  /** Moved since the shard's last drainChanges() (it is in the shard's dirty list). */
  dirty = false;
  /** The directory's epoch of this worker's ownership (src/cluster/handoff.ts), sent back when it drops the driver. */
  epoch = 0;

  /** Its slot in the shard's TrackRings, the next ring position to write, and how many are filled. */
  slot: number;
  ringHead = 0;
  ringCount = 0;

  /** Expiry list, oldest seenAtMs first. */
  prev: Driver | null = null;
  next: Driver | null = null;

  constructor(id: string, cab: string, sessionHi: number, sessionLo: number, slot: number) {
    this.id = id;
    this.cab = cab;
    this.sessionHi = sessionHi;
    this.sessionLo = sessionLo;
    this.slot = slot;
  }

  get free(): boolean {
    return this.orderHi === 0 && this.orderLo === 0;
  }
}

/** The server's copy of a trip: what billing reconciles the driver app's meter against. */
export class Trip {
  readonly orderId: string;
  readonly orderHi: number;
  readonly orderLo: number;
  driverId: string;
  cab: string;
  /** Cost as last reported by the driver app, minor currency units. */
  cost: number;
  /** Distance summed on the server from accepted fixes, metres. */
  distanceM = 0;
  /** Fix times (Unix seconds) of the first and the latest accepted fix of the trip. */
  startTime: number;
  lastTime: number;
  /** Accepted fixes in the trip. */
  points = 1;
  /** `points` when the trip was last written to durable storage (the worker's once-a-second sync). */
  synced = 0;

  constructor(
    orderId: string,
    orderHi: number,
    orderLo: number,
    driverId: string,
    cab: string,
    cost: number,
    time: number,
  ) {
    this.orderId = orderId;
    this.orderHi = orderHi;
    this.orderLo = orderLo;
    this.driverId = driverId;
    this.cab = cab;
    this.cost = cost;
    this.startTime = time;
    this.lastTime = time;
  }
}

/** Why a trip stopped being active. */
export type TripEnd = 'order_changed' | 'expired' | 'deleted';

/** A trip as the API, the handoff and Redis see it. */
export interface TripRecord {
  orderId: string;
  driverId: string;
  cab: string;
  cost: number;
  distanceM: number;
  startTime: number;
  lastTime: number;
  points: number;
  active: boolean;
  /** Set once the trip has ended. */
  endReason?: TripEnd;
}

export function tripRecord(trip: Trip, active: boolean, endReason?: TripEnd): TripRecord {
  const r: TripRecord = {
    orderId: trip.orderId,
    driverId: trip.driverId,
    cab: trip.cab,
    cost: trip.cost,
    distanceM: Math.round(trip.distanceM * 10) / 10,
    startTime: trip.startTime,
    lastTime: trip.lastTime,
    points: trip.points,
    active,
  };
  if (endReason !== undefined) r.endReason = endReason;
  return r;
}

/**
 * Everything a driver carries from one worker to another when its fixes start arriving elsewhere (its
 * NAT mapping changed): sent over cluster IPC with structured-clone serialisation.
 */
export interface DriverState {
  id: string;
  cab: string;
  sessionHi: number;
  sessionLo: number;
  latE6: number;
  lonE6: number;
  time: number;
  speed: number;
  bearing: number;
  orderHi: number;
  orderLo: number;
  cost: number;
  /** Recent points oldest first, (latE6, lonE6, time) triples. */
  points: number[];
  trip: {
    orderId: string;
    orderHi: number;
    orderLo: number;
    cost: number;
    distanceM: number;
    startTime: number;
    lastTime: number;
    points: number;
  } | null;
}
