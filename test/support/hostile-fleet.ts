import type dgram from 'node:dgram';
import { encodeTrack } from '../../src/codec/encode.ts';
import { haversineM } from '../../src/geo/distance.ts';
import type { Daemon } from './daemon.ts';
import { connectedSocket, hex } from './hostile-net.ts';
import { Prng } from './prng.ts';

/**
 * A well-behaved fleet for the hostile tests: each driver has its own socket (one phone, one source
 * address), sends one fix per round with its time one second on, drives ~10 m a second, and takes
 * orders one after another. The fleet remembers everything it sent, so a test can say exactly where
 * each driver must be and what each trip's record must hold if every fix was accepted.
 */

export interface SentFix {
  lat: number;
  lon: number;
  time: number;
  orderId: bigint;
  cost: number;
}

/** A trip as the fleet drove it: what its record must say if every fix of it was accepted. */
export interface ExpectedTrip {
  orderId: string;
  driverId: string;
  cab: string;
  startTime: number;
  lastTime: number;
  points: number;
  cost: number;
  /** Unrounded; records hold it to 0.1 m. */
  distance: number;
  /** The fix time at which the order changed (the trip ended), null while active. */
  endedAt: number | null;
}

export class FleetDriver {
  readonly id: string;
  readonly cab: string;
  readonly session: bigint;
  socket!: dgram.Socket;
  readonly fixes: SentFix[] = [];
  readonly trips: ExpectedTrip[] = [];
  lat: number;
  lon: number;
  time: number;
  order = 0n;
  /** Rounds left in the current order (or in the free spell between orders). */
  left = 0;
  tripsDone = 0;

  constructor(id: string, cab: string, session: bigint, lat: number, lon: number, time: number) {
    this.id = id;
    this.cab = cab;
    this.session = session;
    this.lat = lat;
    this.lon = lon;
    this.time = time;
  }

  get last(): SentFix | undefined {
    return this.fixes[this.fixes.length - 1];
  }

  get trip(): ExpectedTrip | undefined {
    const t = this.trips[this.trips.length - 1];
    return t !== undefined && t.endedAt === null ? t : undefined;
  }
}

export interface FleetOptions {
  size: number;
  seed: number;
  /** Prefix of the driver ids (`<prefix>-007`) and cabs. */
  prefix: string;
  /** Sessions are `sessionBase + i`. */
  sessionBase: bigint;
  /** Order ids are `orderBase + i * 1000 + trip number`. */
  orderBase: bigint;
  /** Fix time of the first round, Unix seconds. */
  startTime: number;
  centre: { lat: number; lon: number };
  /** Rounds per order (inclusive range), and rounds free between orders; 0 orders: always free. */
  orderRounds?: [number, number];
  freeRounds?: [number, number];
}

export class Fleet {
  readonly drivers: FleetDriver[] = [];
  readonly #rnd: Prng;
  readonly #o: FleetOptions;
  /** Datagrams sent by all rounds. */
  sent = 0;

  constructor(o: FleetOptions) {
    this.#o = o;
    this.#rnd = new Prng(o.seed);
    for (let i = 0; i < o.size; i++) {
      const n = String(i).padStart(3, '0');
      this.drivers.push(
        new FleetDriver(
          `${o.prefix}-${n}`,
          `${o.prefix.toUpperCase()}-${n}`,
          o.sessionBase + BigInt(i),
          Math.round((o.centre.lat + (this.#rnd.float() - 0.5) * 0.08) * 1e6),
          Math.round((o.centre.lon + (this.#rnd.float() - 0.5) * 0.16) * 1e6),
          o.startTime,
        ),
      );
    }
  }

  /** Opens every driver's socket (connected to the daemon's UDP port). */
  async open(udpPort: number): Promise<void> {
    for (const d of this.drivers) d.socket = await connectedSocket(udpPort);
  }

  close(): void {
    for (const d of this.drivers) d.socket?.close();
  }

  /** Registers every session through the API (the embedded registry). */
  async register(daemon: Daemon): Promise<void> {
    for (const d of this.drivers) {
      const r = await daemon.request('PUT', `/v1/sessions/${hex(d.session)}`, {
        body: { driverId: d.id, cab: d.cab },
      });
      if (r.status !== 201 && r.status !== 200) throw new Error(`PUT session ${d.id}: ${r.status} ${r.text}`);
    }
  }

  /** The next fix of one driver: one second on, ~10 m north-east, its order as the schedule says. */
  next(d: FleetDriver): Uint8Array {
    const o = this.#o;
    d.time += 1;
    d.lat += 60 + this.#rnd.int(-10, 10); // ~6.7 m north
    d.lon += 100 + this.#rnd.int(-10, 10); // ~5-7 m east at these latitudes
    if (o.orderRounds !== undefined) {
      if (d.left <= 0) {
        if (d.order !== 0n) {
          // The order is done: free for a while (or straight into the next one).
          const [a, b] = o.freeRounds ?? [0, 0];
          d.left = this.#rnd.int(a, b);
          d.order = 0n;
        }
        if (d.left <= 0) {
          d.tripsDone++;
          d.order = o.orderBase + BigInt(this.drivers.indexOf(d) * 1000 + d.tripsDone);
          d.left = this.#rnd.int(o.orderRounds[0], o.orderRounds[1]);
        }
      }
      d.left--;
    }
    // What the server makes of it, as src/store/shard.ts ingest() does for an accepted fix: an order
    // change ends the open trip (its record keeps its last fix's time) and starts the next one.
    const prev = d.last;
    const open = d.trip;
    if (open !== undefined && open.orderId !== String(d.order)) open.endedAt = d.time;
    let cur = d.trip;
    if (d.order !== 0n) {
      if (cur === undefined) {
        cur = {
          orderId: String(d.order),
          driverId: d.id,
          cab: d.cab,
          startTime: d.time,
          lastTime: d.time,
          points: 1,
          cost: 0,
          distance: 0,
          endedAt: null,
        };
        d.trips.push(cur);
      } else {
        cur.points++;
        cur.lastTime = d.time;
        cur.distance += haversineM(prev!.lat / 1e6, prev!.lon / 1e6, d.lat / 1e6, d.lon / 1e6);
      }
      cur.cost = 250 + 35 * (cur.points - 1);
    }
    const cost = cur?.cost ?? 0;
    const fix: SentFix = { lat: d.lat, lon: d.lon, time: d.time, orderId: d.order, cost };
    d.fixes.push(fix);
    return encodeTrack({ session: d.session, lat: d.lat, lon: d.lon, time: d.time, orderId: d.order, cost });
  }

  /** One round: every driver (or those given) sends its next fix. Returns the datagrams sent. */
  async round(which: readonly FleetDriver[] = this.drivers): Promise<number> {
    await Promise.all(
      which.map(
        (d) =>
          new Promise<void>((resolve, reject) =>
            d.socket.send(this.next(d), (err) => (err ? reject(err) : resolve())),
          ),
      ),
    );
    this.sent += which.length;
    return which.length;
  }

  /** Every trip the fleet drove, ended or not. */
  allTrips(): ExpectedTrip[] {
    return this.drivers.flatMap((d) => d.trips);
  }
}

/** A trip's record as the API and Redis give it, if every fix was accepted. */
export function tripRecordOf(t: ExpectedTrip): Record<string, unknown> {
  const r: Record<string, unknown> = {
    orderId: t.orderId,
    driverId: t.driverId,
    cab: t.cab,
    cost: t.cost,
    distanceM: Math.round(t.distance * 10) / 10,
    startTime: t.startTime,
    lastTime: t.lastTime,
    points: t.points,
    active: t.endedAt === null,
  };
  if (t.endedAt !== null) r['endReason'] = 'order_changed';
  return r;
}
