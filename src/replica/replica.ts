import { BatchError } from '../errors.ts';
import { PointIndex } from '../geo/point-index.ts';
import { Names } from '../store/names.ts';
import {
  type BatchHeader,
  type BatchVisitor,
  KIND_SNAPSHOT,
  LEFT_RELEASED,
  readBatch,
  readHeader,
} from './batch.ts';
import { ascii, type JsonBytes } from './json-bytes.ts';

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

export interface ReplicaOptions {
  /** Called with each listed fix's lag (receipt by its owner -> applied here), ms. */
  onLag?: (ms: number) => void;
  /**
   * A driver handed off (LEFT, released) stays listed this long, at its last position, waiting for
   * its new owner's batch: the two owners publish on their own ticks, and without it a handoff would
   * make the car blink off the map for up to a tick. Past it, with no new owner, the driver leaves.
   */
  handoffGraceMs?: number;
}

/** Where a driver's state comes from: one ingest worker (on one host). */
interface Source {
  /** Its number in the owner array, from 1. */
  readonly index: number;
  readonly host: string;
  readonly id: number;
  /** Key -> replica slot, -1 for none. */
  keys: Int32Array;
  /** The seq of the last batch applied; the next delta must follow it. */
  seq: number;
  /** A snapshot has been applied: the source's drivers are all here. */
  synced: boolean;
}

const NO_SLOT = -1;
/** Owners are source indexes from 1: zero is none, so a grown array needs no fill (nor its pages). */
const NO_OWNER = 0;
const FREE = 1;
const PLACED = 2;
/**
 * A source said the driver is gone for good (deleted, revoked, expired): a release that arrives after
 * it, from the other side of a handoff, must not keep the driver for the handoff's grace.
 */
const GONE = 4;
/** In the changed list (takeChanged) since it was last taken. */
const CHANGED = 8;

/** The keys of a driver's JSON, in the order view() gives them, pre-encoded for writeJson. */
const K_ID = ascii('{"id":"');
const K_CAB = ascii('","cab":"');
const K_LAT = ascii('","lat":');
const K_LON = ascii(',"lon":');
const K_TIME = ascii(',"time":');
const K_SPEED = ascii(',"speed":');
const K_MOVE_SPEED = ascii('","speed":');
const K_BEARING = ascii(',"bearing":');
const K_FREE = ascii(',"free":');
const K_DISTANCE = ascii(',"distance":');
const K_PATH = ascii(',"path":');
/** Ids and cabs are at most 255 bytes (a u8 length in the name arena). */
const MAX_NAME = 255;

/**
 * A read replica: every live driver's current view, kept from the ingest workers' batches
 * (src/replica/batch.ts), answering nearest and box queries with no call to their owners.
 *
 * Struct-of-arrays by slot, no object per driver: names in src/store/names.ts, positions in a
 * PointIndex, and per slot the fix time, speed, bearing, free flag, the owning source and how many
 * sources name the driver.
 *
 * One entry per driver id, whichever sources talk of it. During a handoff both the old and the new
 * owner name the driver for up to a tick (the new owner's APPEARED and MOVED may arrive before the old
 * owner's LEFT, on another stream): a MOVED from a source that does not own the entry wins only with a
 * newer fix time, and a LEFT from a source that no longer owns it only drops that source's name for
 * it. So no query lists a driver twice, and the newest fix wins. A driver leaves when no source names
 * it any more; a source that goes away (its worker died) is dropped with all its drivers at once.
 *
 * Pure: no sockets, no clock (the caller passes the time), no metrics (onLag reports).
 */
export class Replica {
  readonly #names = new Names();
  readonly #index = new PointIndex();
  #time = new Uint32Array(1024);
  /** The fix before the current one (streams draw the path between them); prevTime 0: none. */
  #prevLatE6 = new Int32Array(1024);
  #prevLonE6 = new Int32Array(1024);
  #prevTime = new Uint32Array(1024);
  /** When the owner received the current fix, ms after `#epochMs` (for the streams' latency). */
  #received = new Uint32Array(1024);
  readonly #epochMs = Date.now();
  #speed = new Uint16Array(1024);
  #bearing = new Uint16Array(1024);
  #flags = new Uint8Array(1024);
  #owner = new Int16Array(1024);
  #refs = new Uint8Array(1024);
  /** Bumped each time a slot is given to a driver: tells a stale reference to the slot from a live one. */
  #gen = new Uint16Array(1024);
  #free: number[] = [];
  /**
   * Slots whose driver moved, or which were emptied, since takeChanged() last ran: once each (the
   * CHANGED flag), so the list never holds more than the slots.
   */
  #changed = new Int32Array(1024);
  #changedN = 0;
  /** Drivers handed off and not yet named by their new owner: slot, its generation, and when to let go. */
  #handoffs: Array<[number, number, number]> = [];
  readonly #graceMs: number;
  #nextSlot = 0;
  readonly #sources = new Map<string, Source>();
  readonly #byIndex: Array<Source | undefined> = [];
  readonly #onLag: (ms: number) => void;
  /** Where the batch being applied reports its lag (the options' onLag, or the caller's). */
  #lag: (ms: number) => void = () => {};
  /** The source and clock of the batch being applied (the visitor's context). */
  #src!: Source;
  #nowMs = 0;
  /** Lag is measured on deltas only: a snapshot shows old fixes to a replica that has just joined. */
  #measure = false;
  readonly #visitor: BatchVisitor;

  constructor(options: ReplicaOptions = {}) {
    this.#onLag = options.onLag ?? (() => {});
    this.#graceMs = options.handoffGraceMs ?? 1000;
    this.#visitor = {
      appeared: (key, bytes, idAt, idLen, cabAt, cabLen) =>
        this.#appeared(this.#src, key, bytes, idAt, idLen, cabAt, cabLen),
      moved: (key, latE6, lonE6, time, speed, bearing, free, receivedMs) =>
        this.#moved(this.#src, key, latE6, lonE6, time, speed, bearing, free, receivedMs),
      left: (key, reason) => this.#left(this.#src, key, reason),
    };
  }

  /** Drivers with a position: what queries can list. */
  get size(): number {
    return this.#index.size;
  }

  /** Drivers named by some source, with or without a position yet. */
  get known(): number {
    return this.#names.size;
  }

  /** Bytes held in typed arrays (memory accounting). */
  get byteLength(): number {
    return (
      this.#names.byteLength +
      this.#index.byteLength +
      this.#time.byteLength * 5 +
      this.#speed.byteLength * 2 +
      this.#flags.byteLength * 2 +
      this.#owner.byteLength +
      this.#changed.byteLength
    );
  }

  /**
   * Applies one batch from a source (host, worker). Throws a BatchError when the batch is malformed or
   * does not follow the source's previous one (a gap): the caller must then resynchronise the source
   * (drop it and ask for a snapshot). Returns the batch's header.
   */
  apply(frame: Uint8Array, nowMs: number, onLag: (ms: number) => void = this.#onLag): BatchHeader {
    this.#expireHandoffs(nowMs);
    this.#lag = onLag;
    const h = readHeader(frame);
    const key = `${h.host}/${h.source}`;
    let src = this.#sources.get(key);
    if (h.kind === KIND_SNAPSHOT) {
      src ??= this.#addSource(h.host, h.source);
      const old = src.keys;
      src.keys = new Int32Array(old.length);
      this.#src = src;
      this.#nowMs = nowMs;
      this.#measure = false;
      readBatch(frame, this.#visitor);
      // What the source named before and no longer does has left it; what it still names keeps its
      // place (and its owner), one reference fewer.
      const still = new Set<number>();
      for (let k = 0; k < src.keys.length; k++) if (src.keys[k] !== 0) still.add(src.keys[k]! - 1);
      for (let k = 0; k < old.length; k++) {
        const slot = old[k]! - 1;
        if (slot === NO_SLOT) continue;
        if (still.has(slot)) this.#refs[slot]!--;
        else this.#release(src, slot);
      }
      src.synced = true;
    } else {
      if (src === undefined || !src.synced) throw new BatchError(`delta from ${key} before its snapshot`);
      if (h.seq !== (src.seq + 1) >>> 0) throw new BatchError(`gap from ${key}: ${src.seq} then ${h.seq}`);
      this.#src = src;
      this.#nowMs = nowMs;
      this.#measure = true;
      readBatch(frame, this.#visitor);
    }
    src.seq = h.seq;
    return h;
  }

  /** The source went away (its worker died, or its stream broke): its drivers leave at once. */
  dropSource(host: string, source: number): number {
    const key = `${host}/${source}`;
    const src = this.#sources.get(key);
    if (src === undefined) return 0;
    let n = 0;
    for (let k = 0; k < src.keys.length; k++) {
      if (src.keys[k] === 0) continue;
      this.#unmap(src, k);
      n++;
    }
    this.#sources.delete(key);
    this.#byIndex[src.index] = undefined;
    return n;
  }

  /** Whether every named source has sent its snapshot. */
  synced(host: string, source: number): boolean {
    return this.#sources.get(`${host}/${source}`)?.synced === true;
  }

  /** The slot of a driver by id, -1 when unknown. */
  find(id: string): number {
    return this.#names.find(id);
  }

  /** Whether the slot has a position (is listed). */
  placed(slot: number): boolean {
    return ((this.#flags[slot] ?? 0) & PLACED) !== 0;
  }

  /** The source (host, worker) that owns the driver in the slot, or null while none does. */
  owner(slot: number): { host: string; source: number } | null {
    const o = this.#owner[slot] ?? NO_OWNER;
    const src = this.#byIndex[o];
    return src === undefined ? null : { host: src.host, source: src.id };
  }

  view(slot: number): DriverView {
    return {
      id: this.#names.id(slot),
      cab: this.#names.cab(slot),
      lat: this.#index.latE6(slot) / 1e6,
      lon: this.#index.lonE6(slot) / 1e6,
      time: this.#time[slot]!,
      speed: this.#speed[slot]!,
      bearing: this.#bearing[slot]!,
      free: (this.#flags[slot]! & FREE) !== 0,
    };
  }

  /**
   * The slot's driver as the API's JSON object with its distance (the view() with `distance`, given in
   * tenths of a metre), written as bytes into `out`: the nearest route's hot path
   * (src/replica/json-bytes.ts says why bytes). Ids and cabs need no escaping: the API allows
   * A-Z a-z 0-9 . _ : -.
   */
  writeJson(slot: number, distanceTenths: number, out: JsonBytes): void {
    this.#writeFields(slot, out);
    out.raw(K_DISTANCE);
    out.fixed(distanceTenths, 1);
    out.byte(125);
  }

  /**
   * Up to k drivers within radiusM of (lat, lon), nearest first by great-circle distance (ties by
   * position, then id), into slots / distances; returns how many.
   */
  nearest(
    lat: number,
    lon: number,
    k: number,
    radiusM: number,
    freeOnly: boolean,
    slots: number[],
    distances: number[],
  ): number {
    return this.#index.nearest(
      lat,
      lon,
      k,
      radiusM,
      slots,
      distances,
      freeOnly ? this.#isFree : undefined,
      this.#byId,
    );
  }

  /**
   * Drivers inside the box (minLon > maxLon: across the date line) whose id sorts after `after`, the
   * first `limit` of them in id order.
   */
  within(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    after: string,
    limit: number,
  ): number[] {
    // A bounded max-heap by id: the `limit` smallest ids seen, without sorting the whole box.
    const heap: number[] = [];
    const names = this.#names;
    const worse = (a: number, b: number): boolean => names.compareIds(a, b) > 0;
    this.#index.within(minLon, minLat, maxLon, maxLat, (slot) => {
      if (after !== '' && names.compareIdTo(slot, after) <= 0) return;
      if (heap.length < limit) {
        heap.push(slot);
        siftUp(heap, heap.length - 1, worse);
      } else if (limit > 0 && worse(heap[0]!, slot)) {
        heap[0] = slot;
        siftDown(heap, 0, worse);
      }
    });
    return heap.sort((a, b) => names.compareIds(a, b));
  }

  /**
   * Visits each slot whose driver has had a new fix (a new position, time or free flag) or has left,
   * or that was given to another driver, since the last call, once, and forgets them. For the streams'
   * cells (src/stream/frames.ts), which follow the replica by it instead of asking the index for every
   * cell each tick: there must be one such follower.
   */
  takeChanged(visit: (slot: number) => void): void {
    const list = this.#changed;
    const n = this.#changedN;
    for (let i = 0; i < n; i++) this.#flags[list[i]!]! &= ~CHANGED;
    this.#changedN = 0;
    for (let i = 0; i < n; i++) visit(list[i]!);
  }

  #markChanged(slot: number): void {
    if ((this.#flags[slot]! & CHANGED) !== 0) return;
    this.#flags[slot]! |= CHANGED;
    if (this.#changedN === this.#changed.length) {
      this.#changed = grown(this.#changed, new Int32Array(this.#changed.length * 2));
    }
    this.#changed[this.#changedN++] = slot;
  }

  /** Every listed slot (tests and snapshots for streams). */
  forEach(visit: (slot: number) => void): void {
    this.#index.forEach(visit);
  }

  /** Every listed slot whose position is in the box, in no particular order (a stream cell's cars). */
  forEachIn(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    visit: (slot: number) => void,
  ): void {
    this.#index.within(minLon, minLat, maxLon, maxLat, visit);
  }

  free(slot: number): boolean {
    return (this.#flags[slot]! & FREE) !== 0;
  }

  /** Changes each time the slot is given to another driver. */
  generation(slot: number): number {
    return this.#gen[slot]!;
  }

  time(slot: number): number {
    return this.#time[slot]!;
  }

  latE6(slot: number): number {
    return this.#index.latE6(slot);
  }

  lonE6(slot: number): number {
    return this.#index.lonE6(slot);
  }

  /** The previous fix's position and time (time 0: none known). */
  prevLatE6(slot: number): number {
    return this.#prevLatE6[slot]!;
  }

  prevLonE6(slot: number): number {
    return this.#prevLonE6[slot]!;
  }

  prevTime(slot: number): number {
    return this.#prevTime[slot]!;
  }

  /** When the owner received the current fix, ms since the epoch (to 1 ms, from the batch's ageMs). */
  receivedMs(slot: number): number {
    return this.#epochMs + this.#received[slot]!;
  }

  id(slot: number): string {
    return this.#names.id(slot);
  }

  /** The slot's id as a JSON string literal. */
  idJson(slot: number): string {
    return `"${this.#names.id(slot)}"`;
  }

  /**
   * The driver as a stream shows it, as JSON bytes: the API's fields and `path`, the road path from its
   * owner (JSON text) when there is one, else straight from the previous fix (`fromPrevious`) or the
   * current point alone. The same text `JSON.stringify` would give (test/json-bytes.test.ts).
   */
  writeCar(slot: number, out: JsonBytes, roadPath: string | undefined, fromPrevious: boolean): void {
    this.#writeFields(slot, out);
    this.#writePath(slot, out, roadPath, fromPrevious);
  }

  /**
   * The driver's new fix for a viewer that already shows it (a stream's delta, src/stream/frames.ts): its
   * id, speed, bearing, free flag and path, but not its cab, which the viewer has, nor its position and
   * time, which are the path's last point. About a third fewer bytes than writeCar's.
   */
  writeMove(slot: number, out: JsonBytes, roadPath: string | undefined, fromPrevious: boolean): void {
    out.raw(K_ID);
    out.wrote(this.#names.copyId(slot, out.room(MAX_NAME), out.at));
    this.#writeMotion(slot, out, K_MOVE_SPEED);
    this.#writePath(slot, out, roadPath, fromPrevious);
  }

  /** `,"path":[...]}`: the end of writeCar and writeMove. */
  #writePath(slot: number, out: JsonBytes, roadPath: string | undefined, fromPrevious: boolean): void {
    out.raw(K_PATH);
    if (roadPath !== undefined) out.text(roadPath);
    else {
      out.byte(91); // [
      if (fromPrevious) {
        writePoint(out, this.#prevLonE6[slot]!, this.#prevLatE6[slot]!, this.#prevTime[slot]!);
        out.byte(44);
      }
      writePoint(out, this.#index.lonE6(slot), this.#index.latE6(slot), this.#time[slot]!);
      out.byte(93);
    }
    out.byte(125);
  }

  /**
   * The nearest route's answer: the first n of `slots` (distances in metres alongside), as a JSON array
   * of writeJson's objects.
   */
  writeAnswer(n: number, slots: readonly number[], distances: readonly number[], out: JsonBytes): void {
    out.byte(91);
    for (let i = 0; i < n; i++) {
      if (i > 0) out.byte(44);
      this.writeJson(slots[i]!, Math.round(distances[i]! * 10), out);
    }
    out.byte(93);
  }

  /** The fields writeJson and writeCar share, from `{"id":` to the free flag's value. */
  #writeFields(slot: number, out: JsonBytes): void {
    const names = this.#names;
    out.raw(K_ID);
    out.wrote(names.copyId(slot, out.room(MAX_NAME), out.at));
    out.raw(K_CAB);
    out.wrote(names.copyCab(slot, out.room(MAX_NAME), out.at));
    out.raw(K_LAT);
    out.fixed(this.#index.latE6(slot), 6);
    out.raw(K_LON);
    out.fixed(this.#index.lonE6(slot), 6);
    out.raw(K_TIME);
    out.uint(this.#time[slot]!);
    this.#writeMotion(slot, out, K_SPEED);
  }

  /** Speed, bearing and the free flag, after `speedKey` (which closes what came before it). */
  #writeMotion(slot: number, out: JsonBytes, speedKey: Uint8Array): void {
    out.raw(speedKey);
    out.uint(this.#speed[slot]!);
    out.raw(K_BEARING);
    out.uint(this.#bearing[slot]!);
    out.raw(K_FREE);
    out.bool((this.#flags[slot]! & FREE) !== 0);
  }

  readonly #isFree = (slot: number): boolean => (this.#flags[slot]! & FREE) !== 0;
  readonly #byId = (a: number, b: number): number => this.#names.compareIds(a, b);

  #addSource(host: string, id: number): Source {
    // Indexes start at 1: 0 is no owner.
    let index = this.#byIndex.indexOf(undefined, 1);
    if (index < 0) index = Math.max(1, this.#byIndex.length);
    if (index > 0x7fff) throw new RangeError('too many sources');
    const src: Source = { index, host, id, keys: new Int32Array(1024), seq: 0, synced: false };
    this.#byIndex[index] = src;
    this.#sources.set(`${host}/${id}`, src);
    return src;
  }

  #appeared(
    src: Source,
    key: number,
    bytes: Buffer,
    idAt: number,
    idLen: number,
    cabAt: number,
    cabLen: number,
  ): void {
    if (key >= src.keys.length) src.keys = growKeys(src.keys, key + 1);
    const names = this.#names;
    const bound = src.keys[key]! - 1;
    if (bound !== NO_SLOT) {
      if (names.findBytes(bytes, idAt, idLen) === bound) {
        // The same driver again: its cab changed (a new login).
        const o = this.#owner[bound]!;
        if ((o === src.index || o === NO_OWNER) && !names.cabIs(bound, bytes, cabAt, cabLen)) {
          names.setCab(bound, bytes, cabAt, cabLen);
        }
        return;
      }
      // Bound again without a LEFT: take it as one.
      this.#unmap(src, key);
    }
    let slot = names.findBytes(bytes, idAt, idLen);
    if (slot === NO_SLOT) {
      slot = this.#alloc();
      names.set(slot, bytes, idAt, idLen, cabAt, cabLen);
    } else if (this.#owner[slot] === NO_OWNER && !names.cabIs(slot, bytes, cabAt, cabLen)) {
      names.setCab(slot, bytes, cabAt, cabLen);
    }
    src.keys[key] = slot + 1;
    this.#refs[slot]!++;
    // Named again (a new login after a deletion): not gone any more.
    this.#flags[slot]! &= ~GONE;
  }

  #moved(
    src: Source,
    key: number,
    latE6: number,
    lonE6: number,
    time: number,
    speed: number,
    bearing: number,
    free: boolean,
    receivedMs: number,
  ): void {
    const slot = key < src.keys.length ? src.keys[key]! - 1 : NO_SLOT;
    if (slot === NO_SLOT) throw new BatchError(`MOVED for key ${key}, which the source never named`);
    const owner = this.#owner[slot]!;
    const flags = this.#flags[slot]!;
    // Another source owns it and has a fix as new or newer: this one is the stale side of a handoff.
    if (owner !== src.index && owner !== NO_OWNER && (flags & PLACED) !== 0 && time <= this.#time[slot]!)
      return;
    this.#owner[slot] = src.index;
    if ((flags & PLACED) !== 0 && time > this.#time[slot]!) {
      this.#prevLatE6[slot] = this.#index.latE6(slot);
      this.#prevLonE6[slot] = this.#index.lonE6(slot);
      this.#prevTime[slot] = this.#time[slot]!;
    } else if ((flags & PLACED) === 0) {
      this.#prevTime[slot] = 0;
    }
    const rel = receivedMs - this.#epochMs;
    this.#received[slot] = rel > 0 ? rel : 0;
    this.#time[slot] = time;
    this.#speed[slot] = speed;
    this.#bearing[slot] = bearing;
    this.#flags[slot] = PLACED | (free ? FREE : 0) | (flags & CHANGED);
    this.#index.set(slot, latE6, lonE6);
    this.#markChanged(slot);
    if (this.#measure) this.#lag(this.#nowMs - receivedMs);
  }

  #left(src: Source, key: number, reason: number): void {
    const slot = key < src.keys.length ? src.keys[key]! - 1 : NO_SLOT;
    if (slot !== NO_SLOT && reason !== LEFT_RELEASED) this.#flags[slot]! |= GONE;
    this.#unmap(src, key, reason === LEFT_RELEASED);
  }

  /** The source no longer names key (LEFT, or the source went away); `handedOff`: LEFT, released. */
  #unmap(src: Source, key: number, handedOff = false): void {
    const slot = key < src.keys.length ? src.keys[key]! - 1 : NO_SLOT;
    if (slot === NO_SLOT) return;
    src.keys[key] = 0;
    this.#release(src, slot, handedOff);
  }

  #release(src: Source, slot: number, handedOff = false): void {
    if (--this.#refs[slot]! === 0) {
      if (handedOff && (this.#flags[slot]! & (PLACED | GONE)) === PLACED) {
        // Listed where it was until its new owner names it, or the grace ends.
        this.#owner[slot] = NO_OWNER;
        this.#handoffs.push([slot, this.#gen[slot]!, this.#nowMs + this.#graceMs]);
        return;
      }
      this.#removeSlot(slot);
    } else if (this.#owner[slot] === src.index) {
      // Another source names it (the other side of a handoff): its next MOVED takes the entry.
      this.#owner[slot] = NO_OWNER;
    }
  }

  #removeSlot(slot: number): void {
    this.#index.remove(slot);
    this.#names.delete(slot);
    this.#flags[slot]! &= CHANGED;
    this.#markChanged(slot);
    this.#owner[slot] = NO_OWNER;
    this.#free.push(slot);
  }

  /** Handoffs whose new owner never named the driver: it leaves now. */
  #expireHandoffs(nowMs: number): void {
    const q = this.#handoffs;
    let i = 0;
    while (i < q.length && q[i]![2] <= nowMs) {
      const [slot, gen] = q[i++]!;
      if (this.#gen[slot] === gen && this.#refs[slot] === 0 && this.#names.has(slot)) this.#removeSlot(slot);
    }
    if (i > 0) q.splice(0, i);
  }

  #alloc(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) {
      this.#gen[reused]!++;
      return reused;
    }
    const slot = this.#nextSlot++;
    if (slot === this.#time.length) {
      const n = slot * 2;
      this.#time = grown(this.#time, new Uint32Array(n));
      this.#prevLatE6 = grown(this.#prevLatE6, new Int32Array(n));
      this.#prevLonE6 = grown(this.#prevLonE6, new Int32Array(n));
      this.#prevTime = grown(this.#prevTime, new Uint32Array(n));
      this.#received = grown(this.#received, new Uint32Array(n));
      this.#speed = grown(this.#speed, new Uint16Array(n));
      this.#bearing = grown(this.#bearing, new Uint16Array(n));
      this.#flags = grown(this.#flags, new Uint8Array(n));
      this.#refs = grown(this.#refs, new Uint8Array(n));
      this.#gen = grown(this.#gen, new Uint16Array(n));
      this.#owner = grown(this.#owner, new Int16Array(n));
    }
    return slot;
  }
}

function grown<T extends Uint32Array | Int32Array | Uint16Array | Int16Array | Uint8Array>(
  from: T,
  to: T,
): T {
  to.set(from as never);
  return to;
}

/** Key -> slot + 1 (0: unbound), grown by doubling. */
function growKeys(from: Int32Array, min: number): Int32Array {
  let n = from.length;
  while (n < min) n *= 2;
  const to = new Int32Array(n);
  to.set(from);
  return to;
}

function siftUp(heap: number[], i: number, worse: (a: number, b: number) => boolean): void {
  const x = heap[i]!;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!worse(x, heap[parent]!)) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = x;
}

function siftDown(heap: number[], i: number, worse: (a: number, b: number) => boolean): void {
  const n = heap.length;
  const x = heap[i]!;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && worse(heap[child + 1]!, heap[child]!)) child++;
    if (!worse(heap[child]!, x)) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = x;
}

/** A path point, `[lon,lat,time]`. */
function writePoint(out: JsonBytes, lonE6: number, latE6: number, time: number): void {
  out.byte(91);
  out.fixed(lonE6, 6);
  out.byte(44);
  out.fixed(latE6, 6);
  out.byte(44);
  out.uint(time);
  out.byte(93);
}
