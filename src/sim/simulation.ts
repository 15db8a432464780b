import { BAD_KINDS, writeBad } from './bad-datagrams.ts';
import { City, type CityOptions } from './city.ts';
import { Fleet } from './fleet.ts';
import { Random } from './random.ts';
import { SLOT_BYTES, writeTrack } from './wire.ts';

/*
 * What the fleet sends, and when in the sequence: pure, no clock or sockets. The fleet is stepped one car
 * at a time in a fixed round (car 0, 1, ..., n-1, then the next tick), and each step hands the datagrams
 * that car sends to a sink; run.ts decides when a step happens and puts the datagrams on sockets. Given
 * the options (seed and start time included), the datagrams are the same on every machine.
 *
 * Fix times are logical: tick k is timed startS + floor(k / rate), whenever it is actually sent, so a
 * car's fixes are always a whole second or more apart (the daemon refuses a fix that is not newer than
 * the last as stale) however the sender's timer jitters or lags.
 *
 * Offline spells: a phone that loses the network keeps its fixes and sends them all when it is back, in
 * order, with their original times, then carries on live. The daemon must take such a burst whole.
 */

export interface SimulationOptions extends CityOptions {
  cars: number;
  /** Fixes per second per car, at most 1 (a fix's time is whole seconds). */
  rate: number;
  seed: number;
  /** Unix seconds of tick 0. */
  startS: number;
  /** Share of datagrams that are bad, 0-1. */
  badShare: number;
  /** Share of cars offline at any moment, in the long run, 0-0.5. */
  offlineShare: number;
  /** Length of an offline spell, s. */
  offlineMinS: number;
  offlineMaxS: number;
  firstOrderId: number;
}

/**
 * Receives each datagram the moment it is sent. `data[offset..offset+length)` stays unchanged until the
 * same car's next step (a second later at rate 1), long enough for a socket to send it without a copy.
 * `kind` is the bad kind, or -1 for a good fix.
 */
export type DatagramSink = (
  car: number,
  data: Uint8Array,
  offset: number,
  length: number,
  burst: boolean,
  kind: number,
) => void;

/** Counts of what has been sent (handed to the sink), not of what is still held by offline phones. */
export class SimCounters {
  sent = 0;
  /** Sent as part of a burst, good and bad. */
  burst = 0;
  /** Bad datagrams sent, by BadKind. */
  readonly bad = new Float64Array(BAD_KINDS);
  offlineEpisodes = 0;
  /** Cars offline now. */
  offlineNow = 0;
  /** Datagrams held by offline phones now. */
  held = 0;
  /** Cars that have sent at least one good fix: the drivers the daemon knows. */
  carsLive = 0;

  get badTotal(): number {
    let n = 0;
    for (let k = 0; k < BAD_KINDS; k++) n += this.bad[k]!;
    return n;
  }

  get good(): number {
    return this.sent - this.badTotal;
  }
}

interface Held {
  data: Uint8Array;
  kind: number;
  lat: number;
  lon: number;
}

export class Simulation {
  readonly city: City;
  readonly fleet: Fleet;
  readonly counters = new SimCounters();
  readonly cars: number;
  readonly rate: number;
  readonly startS: number;
  /** The last good fix each car sent, degrees x 1e6 (0, 0 before the first). */
  readonly lastLat: Int32Array;
  readonly lastLon: Int32Array;
  readonly #rng: Random;
  readonly #slab: Uint8Array;
  readonly #ends = new Int32Array(10);
  readonly #dt: number;
  readonly #badShare: number;
  /** Chance per step that an online car goes offline. */
  readonly #pOffline: number;
  readonly #offlineMinSteps: number;
  readonly #offlineMaxSteps: number;
  /** Steps of its spell an offline car has still to hold; 0 when online. */
  readonly #offlineLeft: Int32Array;
  readonly #held = new Map<number, Held[]>();
  readonly #seen: Uint8Array;
  #tick = 0;
  #car = 0;
  #time: number;

  constructor(o: SimulationOptions) {
    if (!(o.rate > 0 && o.rate <= 1)) throw new RangeError(`rate ${o.rate} not in (0, 1]`);
    if (!(o.badShare >= 0 && o.badShare <= 1)) throw new RangeError(`badShare ${o.badShare}`);
    if (!(o.offlineShare >= 0 && o.offlineShare <= 0.5))
      throw new RangeError(`offlineShare ${o.offlineShare}`);
    if (!(o.offlineMinS > 0 && o.offlineMinS <= o.offlineMaxS)) {
      throw new RangeError(`offline spell ${o.offlineMinS}-${o.offlineMaxS} s`);
    }
    this.city = new City(o);
    this.cars = o.cars;
    this.rate = o.rate;
    this.startS = o.startS;
    this.fleet = new Fleet({ cars: o.cars, seed: o.seed, city: this.city, firstOrderId: o.firstOrderId });
    // A stream apart from the fleet's, so a seed drives the same cars whatever the bad and offline shares.
    this.#rng = new Random(o.seed ^ 0x0bad_da7a);
    this.#slab = new Uint8Array(o.cars * SLOT_BYTES);
    this.#dt = 1 / o.rate;
    this.#badShare = o.badShare;
    this.#offlineMinSteps = Math.max(1, Math.round(o.offlineMinS * o.rate));
    this.#offlineMaxSteps = Math.max(this.#offlineMinSteps, Math.round(o.offlineMaxS * o.rate));
    // Spells start at p per online step and last m steps on average: offline share = p m / (1 + p m).
    const meanSteps = (this.#offlineMinSteps + this.#offlineMaxSteps) / 2;
    this.#pOffline = o.offlineShare / ((1 - o.offlineShare) * meanSteps);
    this.#offlineLeft = new Int32Array(o.cars);
    this.#seen = new Uint8Array(o.cars);
    this.lastLat = new Int32Array(o.cars);
    this.lastLon = new Int32Array(o.cars);
    this.#time = o.startS;
  }

  /** Steps taken so far (each car once per tick). */
  get steps(): number {
    return this.#tick * this.cars + this.#car;
  }

  /** The time the next step's fix carries, Unix seconds. */
  get time(): number {
    return this.#time;
  }

  /** The next car in the round drives on, and sends what it has to `sink`. */
  step(sink: DatagramSink): void {
    const i = this.#car;
    const fleet = this.fleet;
    fleet.step(i, this.#dt, this.#time);
    const fix = fleet.fix;
    const slab = this.#slab;
    const off = i * SLOT_BYTES;
    const rng = this.#rng;
    let len = writeTrack(slab, off, fix, this.#ends);
    let kind = -1;
    if (this.#badShare > 0 && rng.float() < this.#badShare) {
      kind = rng.int(0, BAD_KINDS - 1);
      len = writeBad(kind, slab, off, len, fix, this.#ends, rng);
    }
    const c = this.counters;
    let left = this.#offlineLeft[i]!;
    const held = this.#held.get(i);
    // A phone whose spell ended this step is back: it sends its burst, and cannot lose the network again
    // before it has (that would mix two spells' fixes in one held list).
    if (left === 0 && held === undefined && this.#pOffline > 0 && rng.float() < this.#pOffline) {
      left = rng.int(this.#offlineMinSteps, this.#offlineMaxSteps);
      c.offlineEpisodes++;
      c.offlineNow++;
      this.#held.set(i, []);
    }
    if (left > 0) {
      this.#offlineLeft[i] = left - 1;
      this.#held.get(i)!.push({ data: slab.slice(off, off + len), kind, lat: fix.lat, lon: fix.lon });
      c.held++;
    } else {
      if (held !== undefined) {
        this.#held.delete(i);
        c.offlineNow--;
        c.held -= held.length;
        for (const h of held) {
          this.#count(i, h.lat, h.lon, h.kind, true);
          sink(i, h.data, 0, h.data.length, true, h.kind);
        }
      }
      this.#count(i, fix.lat, fix.lon, kind, false);
      sink(i, slab, off, len, false, kind);
    }
    if (++this.#car === this.cars) {
      this.#car = 0;
      this.#tick++;
      this.#time = this.startS + Math.floor(this.#tick / this.rate);
    }
  }

  #count(i: number, lat: number, lon: number, kind: number, burst: boolean): void {
    const c = this.counters;
    c.sent++;
    if (burst) c.burst++;
    if (kind >= 0) {
      c.bad[kind]!++;
      return;
    }
    if (this.#seen[i] === 0) {
      this.#seen[i] = 1;
      c.carsLive++;
    }
    this.lastLat[i] = lat;
    this.lastLon[i] = lon;
  }
}
