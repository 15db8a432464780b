import { LRUCache } from 'lru-cache';
import RBush from 'rbush';
import type { Fix } from '../codec/fix.ts';
import { orderIdToString, parseOrderId } from '../codec/session.ts';
import { haversineM } from '../geo/distance.ts';
import { nearest, within } from '../geo/knn.ts';
import { Reason, type ReasonCode } from '../ingest/reasons.ts';
import { Driver, type DriverState, Trip, type TripEnd, type TripRecord, tripRecord } from './driver.ts';
import { NewTrack } from './new-track.ts';
import { TrackRings } from './track-rings.ts';
import { U64Map } from './u64-map.ts';

/** Metres per degree of latitude on the mean-radius sphere the distances use. */
const M_PER_DEG = (6371008.8 * Math.PI) / 180;

/**
 * Padding bounds for the R-tree boxes, metres; see retunePadding(). The floor is set by the cost of a
 * tree update in a large tree, not by queries: at 1M drivers (spacing ~37 m) a 30 m pad moved 19% of
 * fixes through remove + insert at ~4.8 us a fix; a 100 m pad moves 7% at ~1.8 us, while nearest-10
 * goes from ~25 to ~60 us, which the HTTP round trip dwarfs (measured in-process, 40 rounds at 10 m/s).
 */
const MIN_PAD_M = 100;
const MAX_PAD_M = 150;
const DEFAULT_PAD_M = 100;

export type RemoveReason = 'expired' | 'deleted' | 'revoked' | 'released';

export interface ShardOptions {
  /** Points kept per driver (the ring's length). */
  trackPoints: number;
  /** A driver with no accepted fix for this long is removed. */
  idleTimeoutS: number;
  /** Fixes implying a faster move than this from the last accepted one are refused. */
  maxSpeedKmh?: number;
  /** Finished trips kept in memory for the trips API. */
  finishedTrips?: number;
  /** A trip ended (order changed, driver expired or deleted): its final record. */
  onTripEnd?: (record: TripRecord) => void;
  /** A driver left this shard. */
  onDriverRemoved?: (driver: Driver, why: RemoveReason) => void;
  /** Bounds of the R-tree padding, metres (see retunePadding); for benchmarks and tuning. */
  minPadM?: number;
  maxPadM?: number;
}

export interface Nearby {
  driver: Driver;
  distance: number;
}

const noop = (): void => {};

/**
 * The live drivers one worker owns: the id, session and cab maps, the R-tree, the track rings, the
 * active and recent trips and the expiry order. Every change to a driver goes through the methods
 * here, which keep all of those in step (test/shard-model.test.ts checks them against a plain Map).
 *
 * Pure: no sockets, no clocks (callers pass the time), no metrics.
 */
export class Shard {
  readonly drivers = new Map<string, Driver>();
  readonly rings: TrackRings;
  readonly idleMs: number;
  readonly #maxSpeedMps: number;
  readonly #bySession = new U64Map<Driver>();
  readonly #byCab = new Map<string, Driver>();
  readonly #tree = new RBush<Driver>();
  readonly #activeTrips = new Map<string, Trip>();
  readonly #finishedTrips: LRUCache<string, TripRecord>;
  readonly #onTripEnd: (record: TripRecord) => void;
  readonly #onDriverRemoved: (driver: Driver, why: RemoveReason) => void;
  /** Expiry list: least recently seen first. */
  #head: Driver | null = null;
  #tail: Driver | null = null;
  #padM = DEFAULT_PAD_M;
  readonly #minPadM: number;
  readonly #maxPadM: number;
  /** R-tree updates (remove + insert) since the shard was made: the padding's effect, for benchmarks. */
  treeUpdates = 0;

  constructor(options: ShardOptions) {
    this.rings = new TrackRings(options.trackPoints);
    this.idleMs = options.idleTimeoutS * 1000;
    this.#maxSpeedMps = ((options.maxSpeedKmh ?? 250) * 1000) / 3600;
    this.#finishedTrips = new LRUCache({ max: options.finishedTrips ?? 100_000 });
    this.#onTripEnd = options.onTripEnd ?? noop;
    this.#onDriverRemoved = options.onDriverRemoved ?? noop;
    this.#minPadM = options.minPadM ?? MIN_PAD_M;
    this.#maxPadM = options.maxPadM ?? MAX_PAD_M;
  }

  get size(): number {
    return this.drivers.size;
  }

  get activeTrips(): number {
    return this.#activeTrips.size;
  }

  get paddingM(): number {
    return this.#padM;
  }

  bySession(hi: number, lo: number): Driver | undefined {
    return this.#bySession.get(hi, lo);
  }

  byCab(cab: string): Driver | undefined {
    return this.#byCab.get(cab);
  }

  /**
   * Applies a fix that passed checkFix() to the driver that owns its session. The per-datagram hot
   * path: no allocation unless a trip starts or the driver leaves its padded box.
   */
  ingest(d: Driver, fix: Fix, nowMs: number): ReasonCode {
    const time = fix.time;
    if (time <= d.time) return Reason.stale;
    const lat = fix.lat / 1e6;
    const lon = fix.lon / 1e6;
    let moved = 0;
    if (d.time !== 0) {
      moved = haversineM(d.lat, d.lon, lat, lon);
      if (moved > this.#maxSpeedMps * (time - d.time)) {
        // Refused, unless it completes a track consistent with itself (src/store/new-track.ts).
        d.track ??= new NewTrack();
        if (!d.track.offer(fix.lat, fix.lon, time, this.#maxSpeedMps)) return Reason.tooFast;
        // Re-anchor: the jump itself is not distance driven.
        moved = 0;
      }
    }
    d.track = null;

    if (fix.orderHi !== d.orderHi || fix.orderLo !== d.orderLo) {
      if (d.trip !== null) this.#endTrip(d, 'order_changed');
      d.orderHi = fix.orderHi;
      d.orderLo = fix.orderLo;
      if (fix.orderHi !== 0 || fix.orderLo !== 0) this.#startTrip(d, fix.cost, time);
    } else if (d.trip !== null) {
      const trip = d.trip;
      trip.distanceM += moved;
      trip.lastTime = time;
      trip.cost = fix.cost;
      trip.points++;
    }

    d.lat = lat;
    d.lon = lon;
    d.latE6 = fix.lat;
    d.lonE6 = fix.lon;
    d.time = time;
    d.speed = fix.speed;
    d.bearing = fix.bearing;
    d.cost = fix.cost;
    this.#pushPoint(d, fix.lat, fix.lon, time);
    if (!d.indexed || lon < d.minX || lon > d.maxX || lat < d.minY || lat > d.maxY) this.#reindex(d);
    this.#touch(d, nowMs);
    return Reason.ok;
  }

  /**
   * Adds a driver with no fix yet (it is not in the R-tree until its first fix), or, with `state`, the
   * driver another worker handed over, ring and trip included.
   */
  add(
    id: string,
    cab: string,
    sessionHi: number,
    sessionLo: number,
    nowMs: number,
    state?: DriverState,
  ): Driver {
    const existing = this.drivers.get(id);
    if (existing !== undefined) this.remove(existing, 'released');
    const d = new Driver(id, cab, sessionHi, sessionLo, this.rings.alloc());
    this.drivers.set(id, d);
    this.#bySession.set(sessionHi, sessionLo, d);
    this.#byCab.set(cab, d);
    if (state !== undefined) this.#restore(d, state);
    // A handed-over driver has just sent a fix here, so it counts as seen now: that also keeps the
    // expiry list in time order.
    this.#touch(d, nowMs);
    return d;
  }

  /** The driver now sends with another session (a new login): the old one no longer finds it. */
  rebindSession(d: Driver, sessionHi: number, sessionLo: number, cab: string): void {
    if (this.#bySession.get(d.sessionHi, d.sessionLo) === d) this.#bySession.delete(d.sessionHi, d.sessionLo);
    d.sessionHi = sessionHi;
    d.sessionLo = sessionLo;
    this.#bySession.set(sessionHi, sessionLo, d);
    if (cab !== d.cab) {
      if (this.#byCab.get(d.cab) === d) this.#byCab.delete(d.cab);
      d.cab = cab;
      if (d.trip !== null) d.trip.cab = cab;
    }
    this.#byCab.set(cab, d);
  }

  /**
   * Removes a driver from every structure. Its trip ends unless the driver is being handed to another
   * worker ('released'), which takes the trip with it.
   */
  remove(d: Driver, why: RemoveReason): void {
    if (this.drivers.get(d.id) !== d) return;
    if (d.trip !== null) {
      if (why === 'released') {
        this.#activeTrips.delete(d.trip.orderId);
        d.trip = null;
      } else {
        this.#endTrip(d, why === 'expired' ? 'expired' : 'deleted');
      }
    }
    this.drivers.delete(d.id);
    if (this.#bySession.get(d.sessionHi, d.sessionLo) === d) this.#bySession.delete(d.sessionHi, d.sessionLo);
    if (this.#byCab.get(d.cab) === d) this.#byCab.delete(d.cab);
    if (d.indexed) {
      this.#tree.remove(d);
      d.indexed = false;
    }
    this.#unlink(d);
    this.rings.release(d.slot);
    this.#onDriverRemoved(d, why);
  }

  /**
   * Removes the drivers idle since before nowMs - idleTimeout. The expiry list is in last-seen order,
   * so this touches only the drivers that expire (and one more): no scan of the fleet.
   */
  expire(nowMs: number): number {
    const cutoff = nowMs - this.idleMs;
    let n = 0;
    while (this.#head !== null && this.#head.seenAtMs <= cutoff) {
      this.remove(this.#head, 'expired');
      n++;
    }
    return n;
  }

  /** Up to k drivers within radiusM of (lat, lon), nearest first by great-circle distance. */
  nearest(lat: number, lon: number, k: number, radiusM: number, freeOnly = false): Nearby[] {
    const found = nearest(this.#tree, lat, lon, k, radiusM, freeOnly ? isFree : undefined, undefined, byId);
    const out: Nearby[] = new Array(found.length);
    for (let i = 0; i < found.length; i++) {
      const f = found[i]!;
      out[i] = { driver: f.item, distance: f.distance };
    }
    return out;
  }

  /** Drivers whose position is inside the box (minLon > maxLon: the box crosses the date line). */
  within(minLon: number, minLat: number, maxLon: number, maxLat: number): Driver[] {
    return within(this.#tree, minLon, minLat, maxLon, maxLat);
  }

  /** Every trip in progress here (for the once-a-second write to durable storage). */
  forEachActiveTrip(fn: (trip: Trip) => void): void {
    for (const trip of this.#activeTrips.values()) fn(trip);
  }

  /**
   * Picks a trip up where durable storage left it (the worker that had it died, or the daemon
   * restarted): the driver's next fixes with the same order id continue it instead of starting anew.
   * Call before the driver's first fix here.
   */
  resumeTrip(d: Driver, r: TripRecord): void {
    const order = parseOrderId(r.orderId);
    if (order === undefined || d.trip !== null || !r.active) return;
    d.orderHi = order.hi;
    d.orderLo = order.lo;
    d.cost = r.cost;
    const trip = new Trip(r.orderId, order.hi, order.lo, d.id, d.cab, r.cost, r.startTime);
    trip.distanceM = r.distanceM;
    trip.lastTime = r.lastTime;
    trip.points = r.points;
    trip.synced = r.points;
    d.trip = trip;
    this.#activeTrips.set(trip.orderId, trip);
  }

  /** The active trip with this order id, or the record of a recently finished one. */
  trip(orderId: string): TripRecord | undefined {
    const active = this.#activeTrips.get(orderId);
    if (active !== undefined) return tripRecord(active, true);
    return this.#finishedTrips.get(orderId);
  }

  /** Recent points oldest first, as (latE6, lonE6, time) triples. */
  points(d: Driver): number[] {
    const rings = this.rings;
    const n = rings.points;
    const out: number[] = [];
    for (let i = 0; i < d.ringCount; i++) {
      const pos = (d.ringHead - d.ringCount + i + n) % n;
      out.push(rings.latE6(d.slot, pos), rings.lonE6(d.slot, pos), rings.time(d.slot, pos));
    }
    return out;
  }

  exportState(d: Driver): DriverState {
    const t = d.trip;
    return {
      id: d.id,
      cab: d.cab,
      sessionHi: d.sessionHi,
      sessionLo: d.sessionLo,
      latE6: d.latE6,
      lonE6: d.lonE6,
      time: d.time,
      speed: d.speed,
      bearing: d.bearing,
      orderHi: d.orderHi,
      orderLo: d.orderLo,
      cost: d.cost,
      points: this.points(d),
      trip:
        t === null
          ? null
          : {
              orderId: t.orderId,
              orderHi: t.orderHi,
              orderLo: t.orderLo,
              cost: t.cost,
              distanceM: t.distanceM,
              startTime: t.startTime,
              lastTime: t.lastTime,
              points: t.points,
            },
    };
  }

  /**
   * Sizes the R-tree padding to the fleet's density, within [MIN_PAD_M, MAX_PAD_M]. A larger pad means
   * fewer tree updates (a taxi at 10 m/s leaves a 100 m pad about every 10 s, ~7% of fixes) but more
   * boxes overlapping a query point; around a typical spacing between drivers the two costs balance,
   * until the spacing falls below the floor, where updates cost more than queries gain. Existing boxes
   * keep their size until their driver leaves them.
   */
  retunePadding(): number {
    const root = this.#tree.toJSON() as { minX: number; minY: number; maxX: number; maxY: number };
    const n = this.drivers.size;
    // An empty rbush root has an infinite, inverted box.
    if (n < 2 || !(root.maxX >= root.minX)) {
      this.#padM = DEFAULT_PAD_M;
      return this.#padM;
    }
    const midLat = ((root.minY + root.maxY) / 2) * (Math.PI / 180);
    const h = (root.maxY - root.minY) * M_PER_DEG;
    const w = (root.maxX - root.minX) * M_PER_DEG * Math.max(Math.cos(midLat), 0.01);
    const spacing = Math.sqrt((Math.max(h, 1) * Math.max(w, 1)) / n);
    this.#padM = Math.min(this.#maxPadM, Math.max(this.#minPadM, spacing));
    return this.#padM;
  }

  /** For tests: every structure's view of the shard. */
  inspect(): { sessions: number; cabs: number; indexed: Driver[]; expiryOrder: Driver[]; trips: number } {
    const expiryOrder: Driver[] = [];
    for (let d = this.#head; d !== null; d = d.next) expiryOrder.push(d);
    return {
      sessions: this.#bySession.size,
      cabs: this.#byCab.size,
      indexed: this.#tree.all(),
      expiryOrder,
      trips: this.#activeTrips.size,
    };
  }

  #startTrip(d: Driver, cost: number, time: number): void {
    const orderId = orderIdToString(d.orderHi, d.orderLo);
    const trip = new Trip(orderId, d.orderHi, d.orderLo, d.id, d.cab, cost, time);
    d.trip = trip;
    this.#activeTrips.set(orderId, trip);
  }

  #endTrip(d: Driver, why: TripEnd): void {
    const trip = d.trip!;
    d.trip = null;
    this.#activeTrips.delete(trip.orderId);
    const record = tripRecord(trip, false, why);
    this.#finishedTrips.set(trip.orderId, record);
    this.#onTripEnd(record);
  }

  #pushPoint(d: Driver, latE6: number, lonE6: number, time: number): void {
    const n = this.rings.points;
    this.rings.write(d.slot, d.ringHead, latE6, lonE6, time);
    d.ringHead = d.ringHead + 1 === n ? 0 : d.ringHead + 1;
    if (d.ringCount < n) d.ringCount++;
  }

  #reindex(d: Driver): void {
    if (d.indexed) this.#tree.remove(d);
    const padLat = this.#padM / M_PER_DEG;
    const padLon = this.#padM / (M_PER_DEG * Math.max(Math.cos(d.lat * (Math.PI / 180)), 0.01));
    d.minX = Math.max(-180, d.lon - padLon);
    d.maxX = Math.min(180, d.lon + padLon);
    d.minY = Math.max(-90, d.lat - padLat);
    d.maxY = Math.min(90, d.lat + padLat);
    this.#tree.insert(d);
    d.indexed = true;
    this.treeUpdates++;
  }

  /** Moves the driver to the tail of the expiry list. */
  #touch(d: Driver, nowMs: number): void {
    d.seenAtMs = nowMs;
    if (this.#tail === d) return;
    this.#unlink(d);
    d.prev = this.#tail;
    if (this.#tail !== null) this.#tail.next = d;
    else this.#head = d;
    this.#tail = d;
  }

  #unlink(d: Driver): void {
    if (d.prev !== null) d.prev.next = d.next;
    else if (this.#head === d) this.#head = d.next;
    if (d.next !== null) d.next.prev = d.prev;
    else if (this.#tail === d) this.#tail = d.prev;
    d.prev = null;
    d.next = null;
  }

  #restore(d: Driver, s: DriverState): void {
    d.latE6 = s.latE6;
    d.lonE6 = s.lonE6;
    d.lat = s.latE6 / 1e6;
    d.lon = s.lonE6 / 1e6;
    d.time = s.time;
    d.speed = s.speed;
    d.bearing = s.bearing;
    d.orderHi = s.orderHi;
    d.orderLo = s.orderLo;
    d.cost = s.cost;
    const n = this.rings.points;
    const p = s.points;
    // Keep only the newest ring-length points if the sender kept more (configs may differ mid-rollout).
    const first = Math.max(0, p.length / 3 - n);
    for (let i = first; i < p.length / 3; i++) this.#pushPoint(d, p[3 * i]!, p[3 * i + 1]!, p[3 * i + 2]!);
    if (s.trip !== null) {
      const t = s.trip;
      const trip = new Trip(t.orderId, t.orderHi, t.orderLo, d.id, d.cab, t.cost, t.startTime);
      trip.distanceM = t.distanceM;
      trip.lastTime = t.lastTime;
      trip.points = t.points;
      d.trip = trip;
      this.#activeTrips.set(trip.orderId, trip);
    }
    if (d.time !== 0) this.#reindex(d);
  }
}

/** Drivers at the very same position come out in id order, as the primary's merge sorts them. */
function byId(a: Driver, b: Driver): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function isFree(d: Driver): boolean {
  return d.orderHi === 0 && d.orderLo === 0;
}
