import { Fix } from '../codec/fix.ts';
import type { City } from './city.ts';
import { Random } from './random.ts';

/*
 * The cars: where they are, how they drive, their trips. Pure (no clock, no sockets): step(i, dt, time)
 * moves car i on by dt seconds and leaves its fix in `fix`. State is one typed array per attribute
 * (struct of arrays), so 100k cars are a few MB and stepping one allocates nothing.
 *
 * How a car drives: along a street of the City's grid towards the next crossing at its own cruising speed
 * (8-14 m/s, with ±0.5 m/s from one second to the next); at a crossing it goes straight on (60 %) or turns
 * left or right (20 % each), never back unless the grid ends every other way; a crossing has a red light
 * for it 40 % of the time, and it waits there 5-35 s. It also stands still to pick up a passenger.
 */

/** Cruising speeds, m/s (29-50 km/h: city traffic). */
export const MIN_CRUISE_MS = 8;
export const MAX_CRUISE_MS = 14;
/** The second-to-second wobble on top of the cruising speed, m/s either way. */
const SPEED_WOBBLE_MS = 0.5;
/** No car ever moves faster than this, m/s. */
export const MAX_SPEED_MS = MAX_CRUISE_MS + SPEED_WOBBLE_MS;

/**
 * GPS noise per axis: the sum of three uniform draws, scaled so that it lies within ±6 m with a standard
 * deviation of 2 m, which is what a phone reports in a street with open sky. Bounded (unlike a Gaussian),
 * so tests can assert that a fix is on its street within NOISE_MAX_M.
 */
export const NOISE_MAX_M = 6;
const NOISE_SCALE = NOISE_MAX_M / 1.5;

const RED_LIGHT_P = 0.4;
export const MIN_RED_S = 5;
export const MAX_RED_S = 35;
/** Waiting for the passenger at the pick-up, s. */
const MIN_PICKUP_S = 10;
const MAX_PICKUP_S = 40;

/** Share of cars on a trip when the simulation starts. */
const BUSY_AT_START = 0.6;
/** Trip lengths, m. */
const MIN_TRIP_M = 1000;
const MAX_TRIP_M = 8000;
/** How long a car stays free before its next order, s. */
const MIN_FREE_S = 20;
const MAX_FREE_S = 240;

/*
 * The fare in minor currency units, of the order of a European day tariff: 2.50 flag fall, 1.20 a km,
 * 24.00 an hour, counted together (meters in Spain and Italy add both while the car moves).
 */
export const FLAG_FALL = 250;
const PER_M = 0.12;
const PER_S = 24_00 / 3600;

/** Directions: north, east, south, west; a bearing is the direction times 90. */
const DX = Int8Array.of(0, 1, 0, -1);
const DY = Int8Array.of(1, 0, -1, 0);

const TWO_32 = 0x1_0000_0000;

/**
 * The sessions of a fleet of `cars` for `seed`, as [hi0, lo0, hi1, lo1, ...]: the runner registers them
 * before the Fleet exists (the fleet needs the start time, which is after registration). Never zero.
 */
export function fleetSessions(seed: number, cars: number): Uint32Array {
  // A stream of its own, so that the sessions do not depend on anything else the seed drives.
  const rng = new Random(seed ^ 0x5e5510f5);
  const out = new Uint32Array(cars * 2);
  for (let i = 0; i < out.length; i += 2) {
    out[i] = rng.uint32();
    out[i + 1] = rng.uint32() || 1;
  }
  return out;
}

export interface FleetOptions {
  cars: number;
  seed: number;
  city: City;
  /** The first order id handed out; ids count up from it (below 2^53, so a double holds them). */
  firstOrderId: number;
}

export class Fleet {
  readonly size: number;
  readonly city: City;
  /** The last step's fix. Overwritten by the next step. */
  readonly fix = new Fix();
  readonly sessions: Uint32Array;
  /** True position, metres east and north of the centre (on a street axis, without noise). */
  readonly x: Float64Array;
  readonly y: Float64Array;
  /** Direction of travel (0-3, see DX) and the crossing it drives to. */
  readonly dir: Uint8Array;
  readonly tx: Int32Array;
  readonly ty: Int32Array;
  readonly cruise: Float32Array;
  /** Seconds left standing still (red light or pick-up); 0 when driving. */
  readonly stopLeft: Float64Array;
  /** Degrees, of the last move (a car at a light faces the way it came). */
  readonly bearing: Uint16Array;
  /** Current order id, 0 when free. */
  readonly orderId: Float64Array;
  /** Fare so far, minor units, unrounded. */
  readonly fare: Float64Array;
  readonly tripLeftM: Float64Array;
  readonly freeLeftS: Float64Array;
  tripsStarted = 0;
  tripsEnded = 0;
  nextOrderId: number;
  readonly #rng: Random;

  constructor(o: FleetOptions) {
    const n = o.cars;
    this.size = n;
    this.city = o.city;
    this.nextOrderId = o.firstOrderId;
    this.sessions = fleetSessions(o.seed, n);
    this.#rng = new Random(o.seed);
    this.x = new Float64Array(n);
    this.y = new Float64Array(n);
    this.dir = new Uint8Array(n);
    this.tx = new Int32Array(n);
    this.ty = new Int32Array(n);
    this.cruise = new Float32Array(n);
    this.stopLeft = new Float64Array(n);
    this.bearing = new Uint16Array(n);
    this.orderId = new Float64Array(n);
    this.fare = new Float64Array(n);
    this.tripLeftM = new Float64Array(n);
    this.freeLeftS = new Float64Array(n);
    const rng = this.#rng;
    const h = o.city.half;
    const s = o.city.spacingM;
    for (let i = 0; i < n; i++) {
      // Somewhere along a random street segment, heading for one of its ends.
      const ix = rng.int(-h, h);
      const iy = rng.int(-h, h);
      let d = rng.int(0, 3);
      while (!this.#inside(ix + DX[d]!, iy + DY[d]!)) d = (d + 1) & 3;
      const along = rng.float() * s;
      this.dir[i] = d;
      this.tx[i] = ix + DX[d]!;
      this.ty[i] = iy + DY[d]!;
      this.x[i] = ix * s + DX[d]! * along;
      this.y[i] = iy * s + DY[d]! * along;
      this.bearing[i] = d * 90;
      this.cruise[i] = rng.range(MIN_CRUISE_MS, MAX_CRUISE_MS);
      if (rng.float() < BUSY_AT_START) this.#startTrip(i);
      else this.freeLeftS[i] = rng.range(0, MAX_FREE_S);
    }
  }

  /** Moves car i on by dt seconds and writes its fix, timed `time` (Unix seconds), into `fix`. */
  step(i: number, dt: number, time: number): void {
    const rng = this.#rng;
    let moved = 0;
    if (this.stopLeft[i]! > 0) {
      this.stopLeft[i] = Math.max(0, this.stopLeft[i]! - dt);
    } else {
      const s = this.city.spacingM;
      let x = this.x[i]!;
      let y = this.y[i]!;
      let d = (this.cruise[i]! + (rng.float() - 0.5) * 2 * SPEED_WOBBLE_MS) * dt;
      for (;;) {
        const dir = this.dir[i]!;
        const nx = this.tx[i]! * s;
        const ny = this.ty[i]! * s;
        const rem = Math.abs(nx - x) + Math.abs(ny - y);
        if (d < rem) {
          x += DX[dir]! * d;
          y += DY[dir]! * d;
          moved += d;
          if (d > 0) this.bearing[i] = dir * 90;
          break;
        }
        // At the crossing: exactly on it, so the car stays on the street axes whatever the rounding.
        x = nx;
        y = ny;
        moved += rem;
        d -= rem;
        if (rem > 0) this.bearing[i] = dir * 90;
        this.#turn(i);
        if (rng.float() < RED_LIGHT_P) {
          // The rest of this step's distance is lost: the car braked for the light.
          this.stopLeft[i] = rng.range(MIN_RED_S, MAX_RED_S);
          break;
        }
      }
      this.x[i] = x;
      this.y[i] = y;
    }

    if (this.orderId[i] !== 0) {
      this.fare[i] = this.fare[i]! + PER_M * moved + PER_S * dt;
      this.tripLeftM[i] = this.tripLeftM[i]! - moved;
      if (this.tripLeftM[i]! <= 0) {
        this.orderId[i] = 0;
        this.fare[i] = 0;
        this.freeLeftS[i] = rng.range(MIN_FREE_S, MAX_FREE_S);
        this.tripsEnded++;
      }
    } else {
      this.freeLeftS[i] = this.freeLeftS[i]! - dt;
      if (this.freeLeftS[i]! <= 0) {
        this.#startTrip(i);
        // The passenger gets in: the car stands (where it is, on its street) and the meter runs.
        this.stopLeft[i] = Math.max(this.stopLeft[i]!, rng.range(MIN_PICKUP_S, MAX_PICKUP_S));
      }
    }

    const f = this.fix;
    f.sessionHi = this.sessions[2 * i]!;
    f.sessionLo = this.sessions[2 * i + 1]!;
    const noiseX = (rng.float() + rng.float() + rng.float() - 1.5) * NOISE_SCALE;
    const noiseY = (rng.float() + rng.float() + rng.float() - 1.5) * NOISE_SCALE;
    f.lat = this.city.latE6(this.y[i]! + noiseY);
    f.lon = this.city.lonE6(this.x[i]! + noiseX);
    f.time = time;
    const order = this.orderId[i]!;
    f.orderHi = Math.floor(order / TWO_32);
    f.orderLo = order >>> 0;
    f.cost = order === 0 ? 0 : Math.floor(this.fare[i]!);
    f.speed = Math.round((moved / dt) * 3.6);
    f.bearing = this.bearing[i]!;
  }

  /** At the crossing (tx, ty): picks the way on and the next crossing. */
  #turn(i: number): void {
    const d = this.dir[i]!;
    const ix = this.tx[i]!;
    const iy = this.ty[i]!;
    const right = (d + 1) & 3;
    const left = (d + 3) & 3;
    const wStraight = this.#inside(ix + DX[d]!, iy + DY[d]!) ? 0.6 : 0;
    const wRight = this.#inside(ix + DX[right]!, iy + DY[right]!) ? 0.2 : 0;
    const wLeft = this.#inside(ix + DX[left]!, iy + DY[left]!) ? 0.2 : 0;
    const total = wStraight + wRight + wLeft;
    let next = (d + 2) & 3;
    if (total > 0) {
      const r = this.#rng.float() * total;
      next = r < wStraight ? d : r < wStraight + wRight ? right : left;
    }
    this.dir[i] = next;
    this.tx[i] = ix + DX[next]!;
    this.ty[i] = iy + DY[next]!;
  }

  #inside(ix: number, iy: number): boolean {
    const h = this.city.half;
    return ix >= -h && ix <= h && iy >= -h && iy <= h;
  }

  #startTrip(i: number): void {
    this.orderId[i] = this.nextOrderId++;
    this.fare[i] = FLAG_FALL;
    this.tripLeftM[i] = this.#rng.range(MIN_TRIP_M, MAX_TRIP_M);
    this.tripsStarted++;
  }
}
