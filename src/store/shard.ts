import { LRUCache } from 'lru-cache';
import type { Fix } from '../codec/fix.ts';
import { orderIdToString, parseOrderId } from '../codec/session.ts';
import { haversineM } from '../geo/distance.ts';
import { Reason, type ReasonCode } from '../reasons.ts';
import type { DriverState, TripEnd, TripRecord } from './driver.ts';
import {
  BEARING,
  COST,
  COUNT_MASK,
  COUNT_SHIFT,
  DIRTY,
  DISTANCE,
  DriverRecords,
  LAT,
  LIVE,
  LON,
  MAX_U16,
  NEXT,
  ORDER_HI,
  ORDER_LO,
  PREV,
  RING,
  RING_MASK,
  SEEN,
  SPEED,
  STRIDE,
  TIME,
  TRIP,
  TRIP_LAST,
  TRIP_POINTS,
  WATCH,
} from './driver-records.ts';
import { Names } from './names.ts';
import { NewTrack } from './new-track.ts';
import { TrackRings } from './track-rings.ts';
import { U64Index } from './u64-index.ts';

export type RemoveReason = 'expired' | 'deleted' | 'revoked' | 'released';

/** No driver: what the lookups answer for an unknown session, id or cab. */
export const NO_SLOT = -1;

export interface ShardOptions {
  /** Points kept per driver (the ring's length, at most 1,000). */
  trackPoints: number;
  /** A driver with no accepted fix for this long is removed. */
  idleTimeoutS: number;
  /** Fixes implying a faster move than this from the last accepted one are refused. */
  maxSpeedKmh?: number;
  /** Finished trips kept in memory for the trips API. */
  finishedTrips?: number;
  /** A trip ended (order changed, driver expired or deleted): its final record. */
  onTripEnd?: (record: TripRecord) => void;
  /** A driver left this shard: its id and the directory's epoch of its ownership here. */
  onDriverRemoved?: (id: string, epoch: number, why: RemoveReason) => void;
}

/**
 * Where the shard's changes go once a tick (the replica batch writer, src/replica/batch.ts): drivers
 * that appeared (or changed cab), moved, or left, by key (the driver's slot, stable while it is live
 * here).
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

/** A driver as tests and the operators' detail route see it (built on demand, off the hot path). */
export interface DriverView {
  slot: number;
  id: string;
  cab: string;
  sessionHi: number;
  sessionLo: number;
  latE6: number;
  lonE6: number;
  lat: number;
  lon: number;
  time: number;
  speed: number;
  bearing: number;
  free: boolean;
  seenAtMs: number;
  /** The active trip's order id, null when none. */
  orderId: string | null;
}

const noop = (): void => {};

/** The change log's records: [APPEARED, slot, id, cab] and [LEFT, slot, reason]. */
const APPEARED = 0;
const LEFT = 1;
const REASONS: readonly RemoveReason[] = ['expired', 'deleted', 'revoked', 'released'];

/**
 * The live drivers one worker owns, each a slot number: its record in typed arrays
 * (src/store/driver-records.ts), its ring of recent points (src/store/track-rings.ts), its id and cab
 * interned as bytes (src/store/names.ts), and indexes of slots by session and by the order id of its
 * active trip (src/store/u64-index.ts). Also the recently finished trips, the expiry order (a doubly
 * linked list through the records, least recently seen first), and the log of what changed since the
 * last tick for the read replicas (an appear/leave log and a dirty list of slots). Every change to a
 * driver goes through the methods here, which keep all of those in step (test/shard-model.test.ts
 * checks them, and the replicas fed from the log, against a plain Map).
 *
 * No object per driver on the per-datagram path, and none at all for most drivers: a trip is a few
 * numbers in the record, and the only side objects are the re-anchoring watch (src/store/new-track.ts)
 * of a driver whose fixes are being refused. Before (issue 14) each driver was a ~30-field object whose
 * doubles V8 boxed, in three Maps and a Trip object: 1,409 B of RSS a driver at 1M, and a fix cost 3.3x
 * as much at 1M drivers as at 10k (bench/cost-growth.ts), much of it the garbage collector's tracing.
 *
 * No spatial index: nearest and box queries are answered by the read replicas (src/replica/), so a fix
 * costs the same whatever the fleet's size or shape.
 *
 * A slot is valid until its driver is removed; it may then be given to another driver. Pure: no
 * sockets, no clocks (callers pass the time), no metrics.
 */
export class Shard {
  readonly rings: TrackRings;
  readonly idleMs: number;
  readonly #r = new DriverRecords();
  readonly #names = new Names({ byCab: true });
  readonly #bySession = new U64Index();
  /** Active trips by order id. */
  readonly #byOrder = new U64Index();
  readonly #maxSpeedMps: number;
  readonly #points: number;
  readonly #finishedTrips: LRUCache<string, TripRecord>;
  readonly #onTripEnd: (record: TripRecord) => void;
  readonly #onDriverRemoved: (id: string, epoch: number, why: RemoveReason) => void;
  /** Watches of drivers whose fixes are being refused as too fast, by slot (flag WATCH). */
  readonly #tracks = new Map<number, NewTrack>();
  #size = 0;
  #version = 0;
  #trips = 0;
  /** Expiry list: least recently seen first. */
  #head = NO_SLOT;
  #tail = NO_SLOT;
  /** Slots that moved since the last drainChanges(), each once (flag DIRTY). */
  #dirty: Int32Array = new Int32Array(1024);
  #dirtyCount = 0;
  /** Appearances and departures since the last drainChanges(), in order (a slot can leave and be reused). */
  #log: Array<number | string> = [];

  constructor(options: ShardOptions) {
    if (!(options.trackPoints >= 1 && options.trackPoints <= RING_MASK)) {
      throw new RangeError(`trackPoints must be 1-${RING_MASK}, got ${options.trackPoints}`);
    }
    this.#points = options.trackPoints;
    this.rings = new TrackRings(options.trackPoints, this.#r.capacity);
    this.idleMs = options.idleTimeoutS * 1000;
    this.#maxSpeedMps = ((options.maxSpeedKmh ?? 250) * 1000) / 3600;
    this.#finishedTrips = new LRUCache({ max: options.finishedTrips ?? 100_000 });
    this.#onTripEnd = options.onTripEnd ?? noop;
    this.#onDriverRemoved = options.onDriverRemoved ?? noop;
  }

  get size(): number {
    return this.#size;
  }

  get activeTrips(): number {
    return this.#trips;
  }

  /** One past the highest slot ever used: every live slot is below it. */
  get slotLimit(): number {
    return this.#r.limit;
  }

  /** Bytes of typed arrays held (for memory accounting). */
  get byteLength(): number {
    return (
      this.#r.byteLength +
      this.rings.byteLength +
      this.#names.byteLength +
      this.#bySession.byteLength +
      this.#byOrder.byteLength
    );
  }

  /**
   * Bumped by every add and remove: a slot looked up before is still the same driver's while this has
   * not changed (the batched ingest path looks slots up, then applies fixes).
   */
  get version(): number {
    return this.#version;
  }

  /**
   * Prefetches, for a batch of fixes (src/ingest/ingest.ts flush()): loads the session's place in the
   * index. Called for every fix of a batch in a tight loop, before any is looked up, so that their
   * cache misses overlap instead of each fix waiting for its own: at a million drivers the index is
   * 32 MB and a lookup that misses costs about 150 ns on this machine. Returns what it loaded, for the
   * caller to keep (a load whose value is never used may be optimised away).
   */
  warmSession(hi: number, lo: number): number {
    return this.#bySession.warm(hi, lo);
  }

  /**
   * Prefetches the lines a fix for this driver will write: its record, the ring point it will write,
   * and its neighbours in the expiry list. A load starts a miss at once; a store that misses would hold
   * back every later store, which leave the core in order (bench/cost-growth.ts: a fix at 1M drivers
   * cost 473 ns applied on its own, 315 ns in a batch with these prefetches; at 10k 182 and 248 ns).
   */
  warmDriver(slot: number): number {
    const { u32, i32 } = this.#r;
    const w = slot * STRIDE;
    let x = this.rings.warm(slot, u32[w + RING]! & RING_MASK);
    const prev = i32[w + PREV]!;
    const next = i32[w + NEXT]!;
    if (prev !== NO_SLOT) x ^= i32[prev * STRIDE + NEXT]!;
    if (next !== NO_SLOT) x ^= i32[next * STRIDE + PREV]!;
    return x;
  }

  /** The slot of the driver sending with this session, or NO_SLOT. */
  bySession(hi: number, lo: number): number {
    return this.#bySession.get(hi, lo);
  }

  byId(id: string): number {
    return this.#names.find(id);
  }

  /** The driver with this cab (of several, the one with the newest fix), or NO_SLOT. */
  byCab(cab: string): number {
    let best = NO_SLOT;
    const u32 = this.#r.u32;
    this.#names.forCab(cab, (s) => {
      if (best === NO_SLOT || u32[s * STRIDE + TIME]! > u32[best * STRIDE + TIME]!) best = s;
    });
    return best;
  }

  live(slot: number): boolean {
    return slot >= 0 && slot < this.#r.limit && (this.#r.u32[slot * STRIDE + RING]! & LIVE) !== 0;
  }

  id(slot: number): string {
    return this.#names.id(slot);
  }

  cab(slot: number): string {
    return this.#names.cab(slot);
  }

  sessionHi(slot: number): number {
    return this.#r.sessionHi[slot]!;
  }

  sessionLo(slot: number): number {
    return this.#r.sessionLo[slot]!;
  }

  latE6(slot: number): number {
    return this.#r.i32[slot * STRIDE + LAT]!;
  }

  lonE6(slot: number): number {
    return this.#r.i32[slot * STRIDE + LON]!;
  }

  /** Time of the last accepted fix, Unix seconds; 0 before the first. */
  time(slot: number): number {
    return this.#r.u32[slot * STRIDE + TIME]!;
  }

  seenAtMs(slot: number): number {
    return this.#r.f64[slot * (STRIDE / 2) + SEEN]!;
  }

  epoch(slot: number): number {
    return this.#r.epoch[slot]!;
  }

  /** The directory's epoch of this worker's ownership (src/cluster/handoff.ts), sent back when it drops the driver. */
  setEpoch(slot: number, epoch: number): void {
    this.#r.epoch[slot] = epoch;
  }

  /** The order id of the driver's active trip, or null. */
  orderId(slot: number): string | null {
    const u32 = this.#r.u32;
    const w = slot * STRIDE;
    return (u32[w + RING]! & TRIP) === 0 ? null : orderIdToString(u32[w + ORDER_HI]!, u32[w + ORDER_LO]!);
  }

  view(slot: number): DriverView {
    const { i32, u32, u16 } = this.#r;
    const w = slot * STRIDE;
    return {
      slot,
      id: this.#names.id(slot),
      cab: this.#names.cab(slot),
      sessionHi: this.#r.sessionHi[slot]!,
      sessionLo: this.#r.sessionLo[slot]!,
      latE6: i32[w + LAT]!,
      lonE6: i32[w + LON]!,
      lat: i32[w + LAT]! / 1e6,
      lon: i32[w + LON]! / 1e6,
      time: u32[w + TIME]!,
      speed: u16[slot * 32 + SPEED]!,
      bearing: u16[slot * 32 + BEARING]!,
      free: u32[w + ORDER_HI] === 0 && u32[w + ORDER_LO] === 0,
      seenAtMs: this.seenAtMs(slot),
      orderId: this.orderId(slot),
    };
  }

  /** Calls visit(slot) for every live driver, in slot order. */
  forEach(visit: (slot: number) => void): void {
    const u32 = this.#r.u32;
    const limit = this.#r.limit;
    for (let s = 0; s < limit; s++) if ((u32[s * STRIDE + RING]! & LIVE) !== 0) visit(s);
  }

  /**
   * Applies a fix that passed checkFix() to the driver in `slot` (the one its session names). The
   * per-datagram hot path: no allocation unless the fix is refused as too fast for the first time in a
   * while (a re-anchoring watch starts).
   */
  ingest(slot: number, fix: Fix, nowMs: number): ReasonCode {
    const r = this.#r;
    const u32 = r.u32;
    const i32 = r.i32;
    const f64 = r.f64;
    const w = slot * STRIDE;
    const time = fix.time;
    const last = u32[w + TIME]!;
    if (time <= last) return Reason.stale;
    let moved = 0;
    if (last !== 0) {
      moved = haversineM(i32[w + LAT]! / 1e6, i32[w + LON]! / 1e6, fix.lat / 1e6, fix.lon / 1e6);
      if (moved > this.#maxSpeedMps * (time - last)) {
        // Refused, unless it completes a track consistent with itself (src/store/new-track.ts).
        let track = this.#tracks.get(slot);
        if (track === undefined) {
          track = new NewTrack();
          this.#tracks.set(slot, track);
          u32[w + RING] = u32[w + RING]! | WATCH;
        }
        if (!track.offer(fix.lat, fix.lon, time, this.#maxSpeedMps)) return Reason.tooFast;
        // Re-anchor: the jump itself is not distance driven.
        moved = 0;
      }
    }
    if ((u32[w + RING]! & WATCH) !== 0) {
      this.#tracks.delete(slot);
      u32[w + RING] = u32[w + RING]! & ~WATCH;
    }

    const orderHi = fix.orderHi;
    const orderLo = fix.orderLo;
    if (orderHi !== u32[w + ORDER_HI] || orderLo !== u32[w + ORDER_LO]) {
      if ((u32[w + RING]! & TRIP) !== 0) this.#endTrip(slot, 'order_changed');
      u32[w + ORDER_HI] = orderHi;
      u32[w + ORDER_LO] = orderLo;
      if (orderHi !== 0 || orderLo !== 0) this.#startTrip(slot, time);
    } else if ((u32[w + RING]! & TRIP) !== 0) {
      const d = slot * (STRIDE / 2) + DISTANCE;
      f64[d] = f64[d]! + moved;
      u32[w + TRIP_LAST] = time;
      u32[w + TRIP_POINTS] = u32[w + TRIP_POINTS]! + 1;
    }

    i32[w + LAT] = fix.lat;
    i32[w + LON] = fix.lon;
    u32[w + TIME] = time;
    u32[w + COST] = fix.cost;
    const h = slot * 32;
    r.u16[h + SPEED] = fix.speed > MAX_U16 ? MAX_U16 : fix.speed;
    r.u16[h + BEARING] = fix.bearing > MAX_U16 ? MAX_U16 : fix.bearing;
    this.#pushPoint(slot, fix.lat, fix.lon, time);
    this.#touch(slot, nowMs);
    this.#markDirty(slot);
    return Reason.ok;
  }

  /**
   * Adds a driver with no fix yet (the replicas list it from its first fix), or, with `state`, the
   * driver another worker handed over, ring and trip included. Returns its slot.
   */
  add(
    id: string,
    cab: string,
    sessionHi: number,
    sessionLo: number,
    nowMs: number,
    state?: DriverState,
  ): number {
    const existing = this.#names.find(id);
    if (existing !== NO_SLOT) this.remove(existing, 'released');
    const r = this.#r;
    const slot = r.alloc();
    if (r.capacity > this.rings.capacity) this.rings.reserve(r.capacity);
    if (slot >= this.#dirty.length) this.#dirty = grownInt32(this.#dirty, r.capacity);
    const u32 = r.u32;
    const w = slot * STRIDE;
    // A reused slot keeps its DIRTY flag: it may still be in the dirty list (see drainChanges).
    const dirty = u32[w + RING]! & DIRTY;
    u32.fill(0, w, w + STRIDE);
    u32[w + RING] = LIVE | dirty;
    r.i32[w + PREV] = NO_SLOT;
    r.i32[w + NEXT] = NO_SLOT;
    r.sessionHi[slot] = sessionHi;
    r.sessionLo[slot] = sessionLo;
    r.epoch[slot] = 0;
    r.tripStart[slot] = 0;
    r.tripSynced[slot] = 0;
    this.#names.setText(slot, id, cab);
    this.#bySession.set(sessionHi, sessionLo, slot);
    this.#size++;
    this.#version++;
    if (state !== undefined) this.#restore(slot, state);
    // A handed-over driver has just sent a fix here, so it counts as seen now: that also keeps the
    // expiry list in time order.
    this.#touch(slot, nowMs);
    this.#log.push(APPEARED, slot, id, cab);
    if (u32[w + TIME] !== 0) this.#markDirty(slot);
    return slot;
  }

  /** The driver now sends with another session (a new login): the old one no longer finds it. */
  rebindSession(slot: number, sessionHi: number, sessionLo: number, cab: string): void {
    const r = this.#r;
    this.#bySession.delete(r.sessionHi[slot]!, r.sessionLo[slot]!, slot);
    r.sessionHi[slot] = sessionHi;
    r.sessionLo[slot] = sessionLo;
    this.#bySession.set(sessionHi, sessionLo, slot);
    if (this.#names.cab(slot) !== cab) {
      this.#names.setCabText(slot, cab);
      // The replicas learn the new cab: an APPEARED again for the same key.
      this.#log.push(APPEARED, slot, this.#names.id(slot), cab);
    }
  }

  /**
   * Removes a driver from every structure. Its trip ends unless the driver is being handed to another
   * worker ('released'), which takes the trip with it.
   */
  remove(slot: number, why: RemoveReason): void {
    if (!this.live(slot)) return;
    const r = this.#r;
    const w = slot * STRIDE;
    if ((r.u32[w + RING]! & TRIP) !== 0) {
      if (why === 'released') this.#dropTrip(slot);
      else this.#endTrip(slot, why === 'expired' ? 'expired' : 'deleted');
    }
    this.#bySession.delete(r.sessionHi[slot]!, r.sessionLo[slot]!, slot);
    this.#unlink(slot);
    if ((r.u32[w + RING]! & WATCH) !== 0) this.#tracks.delete(slot);
    // Only DIRTY stays: the slot may be in the dirty list until the next drain.
    r.u32[w + RING] = r.u32[w + RING]! & DIRTY;
    // The key (its slot) may be given to another driver before the next tick: log the departure in order.
    this.#log.push(LEFT, slot, REASONS.indexOf(why));
    const id = this.#names.id(slot);
    const epoch = r.epoch[slot]!;
    this.#names.delete(slot);
    this.rings.release(slot);
    r.release(slot);
    this.#size--;
    this.#version++;
    this.#onDriverRemoved(id, epoch, why);
  }

  /**
   * Removes the drivers idle since before nowMs - idleTimeout. The expiry list is in last-seen order,
   * so this touches only the drivers that expire (and one more): no scan of the fleet.
   */
  expire(nowMs: number): number {
    const cutoff = nowMs - this.idleMs;
    let n = 0;
    while (this.#head !== NO_SLOT && this.#r.f64[this.#head * (STRIDE / 2) + SEEN]! <= cutoff) {
      this.remove(this.#head, 'expired');
      n++;
    }
    return n;
  }

  /**
   * Writes what changed since the last call to `sink`, in order: appearances and departures as they
   * happened, then the position of every driver that moved (once each, its latest), and forgets them.
   * Once a tick: nothing on the per-datagram path but a flag and, the first time in a tick, a write to
   * the dirty list.
   */
  drainChanges(sink: ChangeSink): void {
    const log = this.#log;
    for (let i = 0; i < log.length; ) {
      if (log[i] === APPEARED) {
        // A driver that appeared and left within the tick: its LEFT follows, harmless.
        sink.appeared(log[i + 1] as number, log[i + 2] as string, log[i + 3] as string);
        i += 4;
      } else {
        sink.left(log[i + 1] as number, REASONS[log[i + 2] as number]!);
        i += 3;
      }
    }
    log.length = 0;
    const u32 = this.#r.u32;
    const dirty = this.#dirty;
    for (let i = 0; i < this.#dirtyCount; i++) {
      const slot = dirty[i]!;
      const w = slot * STRIDE;
      const flags = u32[w + RING]! & ~DIRTY;
      u32[w + RING] = flags;
      // A slot freed since it moved is skipped; one given to another driver meanwhile is that driver's
      // (its APPEARED went out above), with the fix it has, if any.
      if ((flags & LIVE) !== 0 && u32[w + TIME] !== 0) this.#writeMoved(sink, slot);
    }
    this.#dirtyCount = 0;
  }

  /** Every live driver, as appearances and positions: what a replica that starts now needs. */
  snapshot(sink: ChangeSink): void {
    this.forEach((slot) => {
      sink.appeared(slot, this.#names.id(slot), this.#names.cab(slot));
      if (this.#r.u32[slot * STRIDE + TIME] !== 0) this.#writeMoved(sink, slot);
    });
  }

  /**
   * The records of the active trips that changed since the last call (for the once-a-second write to
   * durable storage), each marked as written.
   */
  syncTrips(write: (record: TripRecord) => void): void {
    const { u32, tripSynced } = this.#r;
    const limit = this.#r.limit;
    for (let s = 0; s < limit; s++) {
      const w = s * STRIDE;
      if ((u32[w + RING]! & (LIVE | TRIP)) !== (LIVE | TRIP)) continue;
      const points = u32[w + TRIP_POINTS]!;
      if (tripSynced[s] === points) continue;
      tripSynced[s] = points;
      write(this.#tripRecord(s, true));
    }
  }

  /**
   * Picks a trip up where durable storage left it (the worker that had it died, or the daemon
   * restarted): the driver's next fixes with the same order id continue it instead of starting anew.
   * Call before the driver's first fix here.
   */
  resumeTrip(slot: number, rec: TripRecord): void {
    const order = parseOrderId(rec.orderId);
    const r = this.#r;
    const w = slot * STRIDE;
    if (order === undefined || (r.u32[w + RING]! & TRIP) !== 0 || !rec.active) return;
    r.u32[w + ORDER_HI] = order.hi;
    r.u32[w + ORDER_LO] = order.lo;
    r.u32[w + COST] = rec.cost;
    this.#beginTrip(slot, rec.startTime, rec.lastTime, rec.points, rec.distanceM);
    r.tripSynced[slot] = rec.points;
  }

  /** The active trip with this order id, or the record of a recently finished one. */
  trip(orderId: string): TripRecord | undefined {
    const order = parseOrderId(orderId);
    if (order !== undefined && orderIdToString(order.hi, order.lo) === orderId) {
      const slot = this.#byOrder.get(order.hi, order.lo);
      if (slot !== NO_SLOT) return this.#tripRecord(slot, true);
    }
    return this.#finishedTrips.get(orderId);
  }

  /** Recent points oldest first, as (latE6, lonE6, time) triples. */
  points(slot: number): number[] {
    const bits = this.#r.u32[slot * STRIDE + RING]!;
    const out: number[] = [];
    this.rings.read(slot, bits & RING_MASK, (bits >>> COUNT_SHIFT) & COUNT_MASK, out);
    return out;
  }

  exportState(slot: number): DriverState {
    const { i32, u32, f64, u16 } = this.#r;
    const w = slot * STRIDE;
    const hasTrip = (u32[w + RING]! & TRIP) !== 0;
    return {
      id: this.#names.id(slot),
      cab: this.#names.cab(slot),
      sessionHi: this.#r.sessionHi[slot]!,
      sessionLo: this.#r.sessionLo[slot]!,
      latE6: i32[w + LAT]!,
      lonE6: i32[w + LON]!,
      time: u32[w + TIME]!,
      speed: u16[slot * 32 + SPEED]!,
      bearing: u16[slot * 32 + BEARING]!,
      orderHi: u32[w + ORDER_HI]!,
      orderLo: u32[w + ORDER_LO]!,
      cost: u32[w + COST]!,
      points: this.points(slot),
      trip: !hasTrip
        ? null
        : {
            orderId: orderIdToString(u32[w + ORDER_HI]!, u32[w + ORDER_LO]!),
            orderHi: u32[w + ORDER_HI]!,
            orderLo: u32[w + ORDER_LO]!,
            cost: u32[w + COST]!,
            distanceM: f64[slot * (STRIDE / 2) + DISTANCE]!,
            startTime: this.#r.tripStart[slot]!,
            lastTime: u32[w + TRIP_LAST]!,
            points: u32[w + TRIP_POINTS]!,
          },
    };
  }

  /** For tests: every structure's view of the shard (the expiry order as slots, oldest first). */
  inspect(): { sessions: number; cabs: number; expiryOrder: number[]; trips: number; tripIndex: number } {
    const expiryOrder: number[] = [];
    const i32 = this.#r.i32;
    for (let s = this.#head; s !== NO_SLOT; s = i32[s * STRIDE + NEXT]!) expiryOrder.push(s);
    return {
      sessions: this.#bySession.size,
      cabs: this.#names.cabEntries,
      expiryOrder,
      trips: this.#trips,
      tripIndex: this.#byOrder.size,
    };
  }

  #writeMoved(sink: ChangeSink, slot: number): void {
    const { i32, u32, u16, f64 } = this.#r;
    const w = slot * STRIDE;
    sink.moved(
      slot,
      i32[w + LAT]!,
      i32[w + LON]!,
      u32[w + TIME]!,
      u16[slot * 32 + SPEED]!,
      u16[slot * 32 + BEARING]!,
      u32[w + ORDER_HI] === 0 && u32[w + ORDER_LO] === 0,
      f64[slot * (STRIDE / 2) + SEEN]!,
    );
  }

  #markDirty(slot: number): void {
    const u32 = this.#r.u32;
    const w = slot * STRIDE;
    const bits = u32[w + RING]!;
    if ((bits & DIRTY) !== 0) return;
    u32[w + RING] = bits | DIRTY;
    this.#dirty[this.#dirtyCount++] = slot;
  }

  /** A trip starts with the fix at `time` (the record's order id is the trip's). */
  #startTrip(slot: number, time: number): void {
    this.#beginTrip(slot, time, time, 1, 0);
  }

  #beginTrip(slot: number, start: number, last: number, points: number, distanceM: number): void {
    const r = this.#r;
    const w = slot * STRIDE;
    r.u32[w + RING] = r.u32[w + RING]! | TRIP;
    r.u32[w + TRIP_LAST] = last;
    r.u32[w + TRIP_POINTS] = points;
    r.f64[slot * (STRIDE / 2) + DISTANCE] = distanceM;
    r.tripStart[slot] = start;
    r.tripSynced[slot] = 0;
    this.#byOrder.set(r.u32[w + ORDER_HI]!, r.u32[w + ORDER_LO]!, slot);
    this.#trips++;
  }

  #endTrip(slot: number, why: TripEnd): void {
    const record = this.#tripRecord(slot, false, why);
    this.#dropTrip(slot);
    this.#finishedTrips.set(record.orderId, record);
    this.#onTripEnd(record);
  }

  /** The trip stops being this shard's (ended, or handed over with its driver). */
  #dropTrip(slot: number): void {
    const u32 = this.#r.u32;
    const w = slot * STRIDE;
    u32[w + RING] = u32[w + RING]! & ~TRIP;
    this.#byOrder.delete(u32[w + ORDER_HI]!, u32[w + ORDER_LO]!, slot);
    this.#trips--;
  }

  #tripRecord(slot: number, active: boolean, endReason?: TripEnd): TripRecord {
    const { u32, f64 } = this.#r;
    const w = slot * STRIDE;
    const r: TripRecord = {
      orderId: orderIdToString(u32[w + ORDER_HI]!, u32[w + ORDER_LO]!),
      driverId: this.#names.id(slot),
      cab: this.#names.cab(slot),
      cost: u32[w + COST]!,
      distanceM: Math.round(f64[slot * (STRIDE / 2) + DISTANCE]! * 10) / 10,
      startTime: this.#r.tripStart[slot]!,
      lastTime: u32[w + TRIP_LAST]!,
      points: u32[w + TRIP_POINTS]!,
      active,
    };
    if (endReason !== undefined) r.endReason = endReason;
    return r;
  }

  #pushPoint(slot: number, latE6: number, lonE6: number, time: number): void {
    const u32 = this.#r.u32;
    const w = slot * STRIDE;
    const bits = u32[w + RING]!;
    const n = this.#points;
    const head = bits & RING_MASK;
    let count = (bits >>> COUNT_SHIFT) & COUNT_MASK;
    this.rings.push(slot, head, latE6, lonE6, time, count === 0);
    if (count < n) count++;
    u32[w + RING] =
      (bits & ~(RING_MASK | (COUNT_MASK << COUNT_SHIFT))) |
      (head + 1 === n ? 0 : head + 1) |
      (count << COUNT_SHIFT);
  }

  /** Moves the driver to the tail of the expiry list. */
  #touch(slot: number, nowMs: number): void {
    const r = this.#r;
    r.f64[slot * (STRIDE / 2) + SEEN] = nowMs;
    if (this.#tail === slot) return;
    this.#unlink(slot);
    const i32 = r.i32;
    const tail = this.#tail;
    i32[slot * STRIDE + PREV] = tail;
    if (tail !== NO_SLOT) i32[tail * STRIDE + NEXT] = slot;
    else this.#head = slot;
    this.#tail = slot;
  }

  #unlink(slot: number): void {
    const i32 = this.#r.i32;
    const w = slot * STRIDE;
    const prev = i32[w + PREV]!;
    const next = i32[w + NEXT]!;
    if (prev !== NO_SLOT) i32[prev * STRIDE + NEXT] = next;
    else if (this.#head === slot) this.#head = next;
    if (next !== NO_SLOT) i32[next * STRIDE + PREV] = prev;
    else if (this.#tail === slot) this.#tail = prev;
    i32[w + PREV] = NO_SLOT;
    i32[w + NEXT] = NO_SLOT;
  }

  #restore(slot: number, s: DriverState): void {
    const r = this.#r;
    const w = slot * STRIDE;
    r.i32[w + LAT] = s.latE6;
    r.i32[w + LON] = s.lonE6;
    r.u32[w + TIME] = s.time;
    r.u16[slot * 32 + SPEED] = s.speed > MAX_U16 ? MAX_U16 : s.speed;
    r.u16[slot * 32 + BEARING] = s.bearing > MAX_U16 ? MAX_U16 : s.bearing;
    r.u32[w + ORDER_HI] = s.orderHi;
    r.u32[w + ORDER_LO] = s.orderLo;
    r.u32[w + COST] = s.cost;
    const n = this.#points;
    const p = s.points;
    // Keep only the newest ring-length points if the sender kept more (configs may differ mid-rollout).
    const first = Math.max(0, p.length / 3 - n);
    for (let i = first; i < p.length / 3; i++) this.#pushPoint(slot, p[3 * i]!, p[3 * i + 1]!, p[3 * i + 2]!);
    if (s.trip !== null) {
      const t = s.trip;
      // The trip's order id is the driver's (a trip is active exactly while its order is the driver's).
      r.u32[w + ORDER_HI] = t.orderHi;
      r.u32[w + ORDER_LO] = t.orderLo;
      r.u32[w + COST] = t.cost;
      this.#beginTrip(slot, t.startTime, t.lastTime, t.points, t.distanceM);
    }
  }
}

function grownInt32(from: Int32Array, min: number): Int32Array {
  let n = from.length;
  while (n < min) n *= 2;
  const to = new Int32Array(n);
  to.set(from);
  return to;
}
