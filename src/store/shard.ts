import { LRUCache } from 'lru-cache';
import type { Fix } from '../codec/fix.ts';
import { orderIdToString, parseOrderId } from '../codec/session.ts';
import { haversineM } from '../geo/distance.ts';
import { Reason, type ReasonCode } from '../reasons.ts';
import { Driver, type DriverState, Trip, type TripEnd, type TripRecord, tripRecord } from './driver.ts';
import { NewTrack } from './new-track.ts';
import { TrackRings } from './track-rings.ts';
import { U64Map } from './u64-map.ts';

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
}

/**
 * Where the shard's changes go once a tick (the replica batch writer, src/replica/batch.ts): drivers
 * that appeared (or changed cab), moved, or left, by key (the driver's ring slot, stable while it is
 * live here).
 */
export interface ChangeSink {
  appeared(key: number, id: string, cab: string): void;
  moved(
    key: number,
    latE6: number,
    lonE6: number,
    time: number,
    speed: number,
    bearing: number,
    free: boolean,
    receivedMs: number,
  ): void;
  left(key: number, why: RemoveReason): void;
}

const noop = (): void => {};

/**
 * The live drivers one worker owns: the id, session and cab maps, the track rings, the active and
 * recent trips, the expiry order, and the log of what changed since the last tick for the read
 * replicas. Every change to a driver goes through the methods here, which keep all of those in step
 * (test/shard-model.test.ts checks them, and the replicas fed from the log, against a plain Map).
 *
 * No spatial index: nearest and box queries are answered by the read replicas (src/replica/), so a fix
 * costs the same whatever the fleet's size or shape; before, every fix that left its padded box paid an
 * R-tree remove + insert that grew with the fleet (issue 14).
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
  readonly #activeTrips = new Map<string, Trip>();
  readonly #finishedTrips: LRUCache<string, TripRecord>;
  readonly #onTripEnd: (record: TripRecord) => void;
  readonly #onDriverRemoved: (driver: Driver, why: RemoveReason) => void;
  /** Expiry list: least recently seen first. */
  #head: Driver | null = null;
  #tail: Driver | null = null;
  /** Drivers that moved since the last drainChanges(), each once. */
  #dirty: Driver[] = [];
  /** Appearances and departures since the last drainChanges(), in order (a key can leave and be reused). */
  #log: Array<Driver | RemoveReason | number> = [];

  constructor(options: ShardOptions) {
    this.rings = new TrackRings(options.trackPoints);
    this.idleMs = options.idleTimeoutS * 1000;
    this.#maxSpeedMps = ((options.maxSpeedKmh ?? 250) * 1000) / 3600;
    this.#finishedTrips = new LRUCache({ max: options.finishedTrips ?? 100_000 });
    this.#onTripEnd = options.onTripEnd ?? noop;
    this.#onDriverRemoved = options.onDriverRemoved ?? noop;
  }

  get size(): number {
    return this.drivers.size;
  }

  get activeTrips(): number {
    return this.#activeTrips.size;
  }

  bySession(hi: number, lo: number): Driver | undefined {
    return this.#bySession.get(hi, lo);
  }

  byCab(cab: string): Driver | undefined {
    return this.#byCab.get(cab);
  }

  /**
   * Applies a fix that passed checkFix() to the driver that owns its session. The per-datagram hot
   * path: no allocation unless a trip starts.
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
    this.#touch(d, nowMs);
    if (!d.dirty) {
      d.dirty = true;
      this.#dirty.push(d);
    }
    return Reason.ok;
  }

  /**
   * Adds a driver with no fix yet (the replicas list it from its first fix), or, with `state`, the
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
    this.#log.push(d);
    if (d.time !== 0) {
      d.dirty = true;
      this.#dirty.push(d);
    }
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
      // The replicas learn the new cab: an APPEARED again for the same key.
      this.#log.push(d);
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
    this.#unlink(d);
    this.rings.release(d.slot);
    // The key (its slot) may be given to another driver before the next tick: log the departure in order.
    this.#log.push(d.slot, why);
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

  /**
   * Writes what changed since the last call to `sink`, in order: appearances and departures as they
   * happened, then the position of every driver that moved (once each, its latest), and forgets them.
   * Once a tick: nothing on the per-datagram path but a flag and, the first time in a tick, a push.
   */
  drainChanges(sink: ChangeSink): void {
    const log = this.#log;
    for (let i = 0; i < log.length; i++) {
      const e = log[i]!;
      if (typeof e === 'number') sink.left(e, log[++i] as RemoveReason);
      // A driver that appeared and left within the tick: its LEFT follows, harmless.
      else if (typeof e === 'object') sink.appeared(e.slot, e.id, e.cab);
    }
    log.length = 0;
    const dirty = this.#dirty;
    for (let i = 0; i < dirty.length; i++) {
      const d = dirty[i]!;
      d.dirty = false;
      if (this.drivers.get(d.id) === d) this.#writeMoved(sink, d);
    }
    dirty.length = 0;
  }

  /** Every live driver, as appearances and positions: what a replica that starts now needs. */
  snapshot(sink: ChangeSink): void {
    for (const d of this.drivers.values()) {
      sink.appeared(d.slot, d.id, d.cab);
      if (d.time !== 0) this.#writeMoved(sink, d);
    }
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

  /** For tests: every structure's view of the shard. */
  inspect(): { sessions: number; cabs: number; expiryOrder: Driver[]; trips: number } {
    const expiryOrder: Driver[] = [];
    for (let d = this.#head; d !== null; d = d.next) expiryOrder.push(d);
    return {
      sessions: this.#bySession.size,
      cabs: this.#byCab.size,
      expiryOrder,
      trips: this.#activeTrips.size,
    };
  }

  #writeMoved(sink: ChangeSink, d: Driver): void {
    sink.moved(d.slot, d.latE6, d.lonE6, d.time, d.speed, d.bearing, d.free, d.seenAtMs);
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
  }
}
