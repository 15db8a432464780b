/**
 * A driver and its trip as they travel between processes and to Redis: the handoff's state, the API's
 * and billing's trip record. Inside a shard a driver is a slot of typed arrays (src/store/shard.ts).
 */

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
