import { encodeTrack, type TrackFields } from '../../src/codec/encode.ts';
import { Fix } from '../../src/codec/fix.ts';
import { METRES_PER_DEGREE_LAT, metresPerDegreeLon } from '../../src/geo/distance.ts';
import { writeTrack } from '../../src/sim/wire.ts';
import { mulberry32, Prng } from '../../test/support/prng.ts';

/**
 * The seeded fleet the benchmarks drive: `size` drivers in a 30 km x 30 km city around Paris, 70 % of
 * them around 40 hotspots (stations, airports, the centre) and the rest spread evenly, as in
 * bench/knn.ts. Each fix moves a driver one second along its heading at its own speed (a fifth of
 * them stand still at any time), with a little GPS noise, and bounces off the city's edge.
 *
 * Fix times advance one second per fix of a driver, not with the wall clock: a benchmark that offers
 * 300,000 datagrams a second to 10,000 drivers sends each of them 30 fixes a second, so their clocks
 * run ahead of the server's. Benchmarks therefore start the clocks `startTime` in the past and run the
 * daemon with a long idle timeout (see cabtrackEnv in cabtrack.ts) so that no fix is `stale` or `future`.
 *
 * Sessions, positions and datagrams depend only on the seed and the driver's index, so the same fleet
 * can be rebuilt in every process of a benchmark (the sender, the Redis updater, the load generator).
 */

export const CENTRE_LAT = 48.85;
export const CENTRE_LON = 2.35;
const HALF_SIDE_M = 15_000;
const HOTSPOTS = 40;
const D_LAT = HALF_SIDE_M / METRES_PER_DEGREE_LAT;
const M_PER_DEG_LON = metresPerDegreeLon(CENTRE_LAT);
const D_LON = HALF_SIDE_M / M_PER_DEG_LON;
/** Standard deviation of the GPS noise added to each fix, metres. */
const GPS_NOISE_M = 3;
/** A driver with an order carries this order id offset by its index (a plausible order id size). */
const ORDER_BASE = 4_000_000_000;

/** A city with hotspots, drawn from its own seed, so queries and fleet agree on where the demand is. */
export class City {
  readonly #spots: number[] = [];

  constructor(seed: number) {
    const rnd = new Prng(seed ^ 0x5eed);
    for (let i = 0; i < HOTSPOTS; i++) {
      this.#spots.push(
        CENTRE_LAT + (rnd.float() * 2 - 1) * D_LAT * 0.8,
        CENTRE_LON + (rnd.float() * 2 - 1) * D_LON * 0.8,
        300 + rnd.float() * 1200,
      );
    }
  }

  /** A point where drivers (and riders) are: [lat, lon] in degrees. */
  point(rnd: Prng): [number, number] {
    if (rnd.chance(0.7)) {
      const s = rnd.int(0, HOTSPOTS - 1) * 3;
      const sigma = this.#spots[s + 2]!;
      // Box-Muller
      const r = Math.sqrt(-2 * Math.log(1 - rnd.float())) * sigma;
      const a = 2 * Math.PI * rnd.float();
      return [
        clamp(this.#spots[s]! + (r * Math.sin(a)) / METRES_PER_DEGREE_LAT, CENTRE_LAT, D_LAT),
        clamp(this.#spots[s + 1]! + (r * Math.cos(a)) / M_PER_DEG_LON, CENTRE_LON, D_LON),
      ];
    }
    return [CENTRE_LAT + (rnd.float() * 2 - 1) * D_LAT, CENTRE_LON + (rnd.float() * 2 - 1) * D_LON];
  }
}

function clamp(v: number, centre: number, half: number): number {
  return Math.min(centre + half, Math.max(centre - half, v));
}

/** Session of driver i: a random-looking high word (as a real token is) and a unique low word. */
export function sessionHi(seed: number, i: number): number {
  return mulberry32((seed * 0x9e3779b1) ^ i)() | 1;
}

export function sessionHex(seed: number, i: number): string {
  return (sessionHi(seed, i) >>> 0).toString(16).padStart(8, '0') + (i + 1).toString(16).padStart(8, '0');
}

export const driverId = (i: number): string => `drv-${i}`;
export const cabNumber = (i: number): string => `cab-${i}`;

export class Fleet {
  readonly size: number;
  readonly seed: number;
  readonly city: City;
  readonly lat: Float64Array;
  readonly lon: Float64Array;
  /** Heading, radians clockwise from north, and speed, metres per second. */
  readonly heading: Float64Array;
  readonly speed: Float32Array;
  /** Time of the driver's last fix, Unix seconds. */
  readonly time: Uint32Array;
  readonly cost: Uint32Array;
  readonly hi: Uint32Array;
  /** Scratch for encode(). */
  readonly #fix = new Fix();
  readonly #rnd: Prng;

  constructor(size: number, seed: number, startTime: number) {
    this.size = size;
    this.seed = seed;
    this.city = new City(seed);
    this.lat = new Float64Array(size);
    this.lon = new Float64Array(size);
    this.heading = new Float64Array(size);
    this.speed = new Float32Array(size);
    this.time = new Uint32Array(size).fill(startTime);
    this.cost = new Uint32Array(size);
    this.hi = new Uint32Array(size);
    const rnd = new Prng(seed);
    for (let i = 0; i < size; i++) {
      const [lat, lon] = this.city.point(rnd);
      this.lat[i] = lat;
      this.lon[i] = lon;
      this.heading[i] = rnd.float() * 2 * Math.PI;
      this.speed[i] = rnd.chance(0.2) ? 0 : 4 + rnd.float() * 10;
      this.hi[i] = sessionHi(seed, i);
    }
    this.#rnd = new Prng(seed ^ 0x7e57);
  }

  /** Half the fleet is on a trip; the order stays the same for the whole run (no trip churn). */
  busy(i: number): boolean {
    return (i & 1) === 0;
  }

  orderId(i: number): number {
    return this.busy(i) ? ORDER_BASE + i : 0;
  }

  /** Moves driver i one second on and returns nothing: read the new fix from the arrays. */
  step(i: number): void {
    const rnd = this.#rnd;
    let h = this.heading[i]! + (rnd.float() - 0.5) * 0.3;
    const v = this.speed[i]!;
    let lat = this.lat[i]! + (Math.cos(h) * v + (rnd.float() - 0.5) * GPS_NOISE_M) / METRES_PER_DEGREE_LAT;
    let lon = this.lon[i]! + (Math.sin(h) * v + (rnd.float() - 0.5) * GPS_NOISE_M) / M_PER_DEG_LON;
    if (Math.abs(lat - CENTRE_LAT) > D_LAT || Math.abs(lon - CENTRE_LON) > D_LON) {
      h += Math.PI;
      lat = clamp(lat, CENTRE_LAT, D_LAT);
      lon = clamp(lon, CENTRE_LON, D_LON);
    }
    this.heading[i] = h;
    this.lat[i] = lat;
    this.lon[i] = lon;
    this.time[i] = this.time[i]! + 1;
    if (this.busy(i)) this.cost[i] = this.cost[i]! + 3;
  }

  /**
   * Driver i's current fix as a Track datagram written at out[at..]; returns its length. The simulator's
   * encoder (src/sim/wire.ts), not protobufjs's: the benchmarks encode millions of datagrams, and
   * protobufjs costs about a microsecond each. `orderId` must be below 2^53.
   */
  encode(i: number, out: Uint8Array, at: number): number {
    const f = this.#fix;
    f.reset();
    f.sessionHi = this.hi[i]!;
    f.sessionLo = i + 1;
    f.lat = Math.round(this.lat[i]! * 1e6);
    f.lon = Math.round(this.lon[i]! * 1e6);
    f.time = this.time[i]!;
    const order = this.orderId(i);
    f.orderHi = Math.floor(order / 2 ** 32);
    f.orderLo = order >>> 0;
    f.cost = this.cost[i]!;
    f.speed = Math.round(this.speed[i]! * 3.6);
    const bearing = Math.round((this.heading[i]! * 180) / Math.PI) % 360;
    f.bearing = bearing < 0 ? bearing + 360 : bearing;
    return writeTrack(out, at, f);
  }

  /** Driver i's current fix as the wire contract's fields (what protobufjs's encodeTrack takes). */
  track(i: number): TrackFields {
    return {
      session: (BigInt(this.hi[i]!) << 32n) | BigInt(i + 1),
      lat: Math.round(this.lat[i]! * 1e6),
      lon: Math.round(this.lon[i]! * 1e6),
      time: this.time[i]!,
      orderId: BigInt(this.orderId(i)),
      cost: this.cost[i]!,
      speed: Math.round(this.speed[i]! * 3.6),
      bearing: ((Math.round((this.heading[i]! * 180) / Math.PI) % 360) + 360) % 360,
    };
  }
}

/**
 * Throws unless Fleet.encode gives protobufjs's bytes (src/codec/encode.ts) for the current fix of
 * the first `count` drivers: the benchmarks' datagrams are the wire contract's, byte for byte.
 */
export function checkEncoder(fleet: Fleet, count: number): void {
  const buf = new Uint8Array(64);
  for (let i = 0; i < Math.min(count, fleet.size); i++) {
    const n = fleet.encode(i, buf, 0);
    const want = encodeTrack(fleet.track(i));
    const got = buf.subarray(0, n);
    if (Buffer.compare(got, want) !== 0) {
      throw new Error(
        `encoder differs from protobufjs for driver ${i}: ${Buffer.from(got).toString('hex')} vs ${Buffer.from(want).toString('hex')}`,
      );
    }
  }
}
