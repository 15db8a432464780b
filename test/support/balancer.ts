import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_RADIUS_M, DEFAULT_SPACING_M } from '../../src/sim/city.ts';
import { fleetSessions } from '../../src/sim/fleet.ts';
import { cabOf, driverId, writeSessions } from '../../src/sim/run.ts';
import { type DatagramSink, Simulation } from '../../src/sim/simulation.ts';

/*
 * The UDP load balancer in front of the daemon hosts, as the multi-host tests drive it, and a driver that
 * runs simulated cities through it from the test's namespace.
 *
 * Production puts the hosts behind IPVS hashing each datagram's source address: a phone sticks to one
 * host while the hosts stay the same. Here the choice is rendezvous (highest-random-weight) hashing of
 * the car's source socket (`address:port`) over the live hosts: each (source, host) pair gets a
 * pseudo-random score and the source goes to the live host with the highest. Removing a host moves
 * exactly the sources it had (each to its second-best host) and no other; restoring it moves exactly
 * those back. Nothing is sent to a host's address from a removed slot, so "host down" is a removal.
 *
 * The driver paces every city as src/sim/run.ts paces one (each car's steps spread evenly over each
 * second), one UDP socket per `carsPerSocket` cars of a city, never connected (a car's host may change),
 * and asks the balancer where each datagram goes. Every loop is bounded: a run stops after its
 * `durationS` of fixes, or at `signal`, and in any case after `maxS` seconds of wall time.
 */

export interface Target {
  address: string;
  port: number;
}

/** FNV-1a over a string's UTF-16 units, then murmur3's finaliser so nearby keys score far apart. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Balancer {
  readonly targets: readonly Target[];
  /** Datagrams routed to each target, by index. */
  readonly sent: number[];
  /** Datagrams that found no live target (every target removed), not sent. */
  dropped = 0;
  readonly #live: boolean[];
  readonly #targetKeys: string[];
  readonly #sourceKeys: string[] = [];
  /** Per source, its target and the #version it was computed at. */
  readonly #sourceTarget: number[] = [];
  readonly #sourceVersion: number[] = [];
  readonly #carSource: number[] = [];
  readonly #pins = new Map<number, number>();
  #version = 0;

  constructor(targets: readonly Target[]) {
    if (targets.length === 0) throw new RangeError('a balancer needs at least one target');
    this.targets = targets.map((t) => ({ ...t }));
    this.sent = targets.map(() => 0);
    this.#live = targets.map(() => true);
    this.#targetKeys = targets.map((t) => `${t.address}:${t.port}`);
  }

  /** Registers a source (a socket's `address:port`); returns its id. */
  addSource(key: string): number {
    this.#sourceKeys.push(key);
    this.#sourceTarget.push(-1);
    this.#sourceVersion.push(-1);
    return this.#sourceKeys.length - 1;
  }

  /** Car `car` sends from source `source`. */
  assign(car: number, source: number): void {
    if (!(source >= 0 && source < this.#sourceKeys.length)) throw new RangeError(`no source ${source}`);
    this.#carSource[car] = source;
  }

  sourceOf(car: number): number {
    const s = this.#carSource[car];
    if (s === undefined) throw new RangeError(`car ${car} has no source`);
    return s;
  }

  get sources(): number {
    return this.#sourceKeys.length;
  }

  /** The source's `address:port`, as the receiving host sees it. */
  sourceKey(source: number): string {
    const k = this.#sourceKeys[source];
    if (k === undefined) throw new RangeError(`no source ${source}`);
    return k;
  }

  /** Host `i` is down (or drained): its sources move to their next-best live host. */
  remove(i: number): void {
    this.#check(i);
    if (this.#live[i]) {
      this.#live[i] = false;
      this.#version++;
    }
  }

  restore(i: number): void {
    this.#check(i);
    if (!this.#live[i]) {
      this.#live[i] = true;
      this.#version++;
    }
  }

  isLive(i: number): boolean {
    this.#check(i);
    return this.#live[i]!;
  }

  /**
   * Forces car `car`'s datagrams to target `target` (null lifts the pin), from its usual socket: to
   * make a handoff between hosts happen. A pin to a removed target is not followed while it is removed.
   */
  pin(car: number, target: number | null): void {
    if (target === null) this.#pins.delete(car);
    else {
      this.#check(target);
      this.#pins.set(car, target);
    }
  }

  /** Where source `source` goes now: the live target with the highest score, -1 when none is live. */
  targetOfSource(source: number): number {
    if (this.#sourceVersion[source] === this.#version) return this.#sourceTarget[source]!;
    const key = this.#sourceKeys[source];
    if (key === undefined) throw new RangeError(`no source ${source}`);
    let best = -1;
    let bestScore = -1;
    for (let t = 0; t < this.targets.length; t++) {
      if (!this.#live[t]) continue;
      const score = hash32(`${key}>${this.#targetKeys[t]}`);
      if (score > bestScore) {
        best = t;
        bestScore = score;
      }
    }
    this.#sourceTarget[source] = best;
    this.#sourceVersion[source] = this.#version;
    return best;
  }

  /** Where car `car`'s next datagram goes: its pin if live, else its source's host; -1 when none. */
  targetOf(car: number): number {
    const pinned = this.#pins.get(car);
    if (pinned !== undefined && this.#live[pinned]) return pinned;
    return this.targetOfSource(this.sourceOf(car));
  }

  /** targetOf(car) as an address, counted in `sent` (or `dropped`, then undefined). */
  route(car: number): Target | undefined {
    const t = this.targetOf(car);
    if (t < 0) {
      this.dropped++;
      return undefined;
    }
    this.sent[t]!++;
    return this.targets[t];
  }

  #check(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.targets.length)) {
      throw new RangeError(`no target ${i} (there are ${this.targets.length})`);
    }
  }
}

export interface CityPlan {
  centre: { lat: number; lon: number };
  /** Driver ids `${idPrefix}-${i}`, cabs `${IDPREFIX}-${i}` (src/sim/run.ts). */
  idPrefix: string;
  cars: number;
  /** Drives the cars and makes their sessions (fleetSessions): give each city its own. */
  seed: number;
  /**
   * Default: from the start second as src/sim/run.ts does (startS x 100,000 + 1), each city getting an
   * equal share of the 100,000 ids of that second, so cities never hand out the same order id.
   */
  firstOrderId?: number;
  spacingM?: number;
  radiusM?: number;
}

export interface DriveOptions {
  cities: readonly CityPlan[];
  balancer: Balancer;
  /** Fixes per second per car, at most 1. */
  rate: number;
  /** Seconds of fixes each car sends (durationS x rate each); without it, until `signal` aborts. */
  durationS?: number;
  signal?: AbortSignal;
  /** Wall-time bound on sending, s: the run stops there whatever else (default durationS + 30, or 120). */
  maxS?: number;
  carsPerSocket: number;
  /**
   * Writes each city's sessions to Redis (a Cluster client, as the dispatch system would) before
   * sending; 'none' when they are there already (a second drive with the same seeds).
   */
  register: { redis: Redis | Cluster } | 'none';
  /** Address the sockets bind (default 0.0.0.0: the route's source, the root namespace's address). */
  sourceAddress?: string;
  /**
   * Shares of bad datagrams and of offline phones; default 0, so every fix sent is a good one and each
   * car sends exactly one datagram per step (Drive.stepsOf).
   */
  badShare?: number;
  offlineShare?: number;
  /** Called once everything is ready, just before the first datagram: e.g. to pin cars from the start. */
  onStart?: (drive: Drive) => void;
}

export interface DrivenCity {
  readonly index: number;
  readonly plan: CityPlan;
  readonly sim: Simulation;
  /** The balancer's (global) car index of this city's car 0. */
  readonly firstCar: number;
}

export interface DriverPosition {
  /** Global car index (the balancer's). */
  car: number;
  id: string;
  cab: string;
  /** Degrees x 1e6, as last sent (a good fix). */
  latE6: number;
  lonE6: number;
  lat: number;
  lon: number;
}

export interface DriveReport {
  elapsedS: number;
  /** Datagrams handed to sockets, per city. */
  sent: number[];
  /** Good fixes among them, per city. */
  good: number[];
  /** Per target, as counted by the balancer (over its whole life, not just this drive). */
  perTarget: number[];
  dropped: number;
  sendErrors: number;
  /** True when maxS cut the drive short. */
  truncated: boolean;
}

const TICK_MS = 5;
const MAX_BATCH_S = 0.05;

export class Drive {
  readonly cities: readonly DrivenCity[];
  readonly totalCars: number;
  /** Resolves when sending ends (duration, signal, stop() or maxS) and the sockets are closed. */
  readonly done: Promise<DriveReport>;
  readonly #stop: () => void;

  constructor(cities: DrivenCity[], done: Promise<DriveReport>, stop: () => void) {
    this.cities = cities;
    this.totalCars = cities.reduce((n, c) => n + c.sim.cars, 0);
    this.done = done;
    this.#stop = stop;
  }

  /** Stops sending now; resolves with the report. */
  stop(): Promise<DriveReport> {
    this.#stop();
    return this.done;
  }

  carIndex(city: number, i: number): number {
    const c = this.cities[city];
    if (c === undefined || !(i >= 0 && i < c.sim.cars)) throw new RangeError(`no car ${i} in city ${city}`);
    return c.firstCar + i;
  }

  /** The city of a global car index, and the car's index in it. */
  cityOf(car: number): { city: DrivenCity; i: number } {
    for (const c of this.cities)
      if (car >= c.firstCar && car < c.firstCar + c.sim.cars) return { city: c, i: car - c.firstCar };
    throw new RangeError(`no car ${car}`);
  }

  driverId(car: number): string {
    const { city, i } = this.cityOf(car);
    return driverId(city.plan.idPrefix, i);
  }

  /** Steps car `car` has taken: the datagrams it sent, with no offline phones (offlineShare 0). */
  stepsOf(car: number): number {
    const { city, i } = this.cityOf(car);
    const { steps, cars } = city.sim;
    return Math.floor(steps / cars) + (i < steps % cars ? 1 : 0);
  }

  /**
   * Every car that has sent a good fix, at that fix (Simulation.lastLat/lastLon): what the daemons hold
   * once they have taken everything sent, for a test to rank by brute force.
   */
  positions(): DriverPosition[] {
    const out: DriverPosition[] = [];
    for (const c of this.cities) {
      const { sim } = c;
      for (let i = 0; i < sim.cars; i++) {
        const latE6 = sim.lastLat[i]!;
        const lonE6 = sim.lastLon[i]!;
        if (latE6 === 0 && lonE6 === 0) continue;
        out.push({
          car: c.firstCar + i,
          id: driverId(c.plan.idPrefix, i),
          cab: cabOf(c.plan.idPrefix, i),
          latE6,
          lonE6,
          lat: latE6 / 1e6,
          lon: lonE6 / 1e6,
        });
      }
    }
    return out;
  }
}

/**
 * Registers the cities' sessions (unless `register: 'none'`), opens the sockets and starts sending;
 * resolves with the running Drive once the first datagrams are on their way.
 */
export async function driveCities(o: DriveOptions): Promise<Drive> {
  if (!(o.rate > 0 && o.rate <= 1)) throw new RangeError(`rate ${o.rate} not in (0, 1]`);
  if (!(Number.isInteger(o.carsPerSocket) && o.carsPerSocket >= 1)) {
    throw new RangeError(`carsPerSocket ${o.carsPerSocket}`);
  }
  if (o.durationS === undefined && o.signal === undefined) {
    throw new RangeError('driveCities needs durationS or signal to know when to stop');
  }
  if (o.durationS !== undefined && !(o.durationS > 0)) throw new RangeError(`durationS ${o.durationS}`);
  const maxS = o.maxS ?? (o.durationS !== undefined ? o.durationS + 30 : 120);

  if (o.register !== 'none') {
    for (const plan of o.cities) {
      await writeSessions(
        o.register.redis,
        fleetSessions(plan.seed, plan.cars),
        plan.cars,
        plan.idPrefix,
        o.signal,
      );
    }
  }

  const balancer = o.balancer;
  const sockets: dgram.Socket[] = [];
  let sendErrors = 0;
  const onSent = (err: Error | null): void => {
    if (err) sendErrors++;
  };
  const startS = Math.floor(Date.now() / 1000);
  const idsPerCity = Math.floor(100_000 / o.cities.length);
  const cities: DrivenCity[] = [];
  const sinks: DatagramSink[] = [];
  let firstCar = 0;
  try {
    for (const [index, plan] of o.cities.entries()) {
      const sim = new Simulation({
        cars: plan.cars,
        rate: o.rate,
        seed: plan.seed,
        startS,
        centreLat: plan.centre.lat,
        centreLon: plan.centre.lon,
        spacingM: plan.spacingM ?? DEFAULT_SPACING_M,
        radiusM: plan.radiusM ?? DEFAULT_RADIUS_M,
        badShare: o.badShare ?? 0,
        offlineShare: o.offlineShare ?? 0,
        offlineMinS: 1,
        offlineMaxS: 5,
        firstOrderId: plan.firstOrderId ?? startS * 100_000 + index * idsPerCity + 1,
      });
      const citySockets: dgram.Socket[] = [];
      for (let from = 0; from < plan.cars; from += o.carsPerSocket) {
        const s = dgram.createSocket('udp4');
        sockets.push(s);
        citySockets.push(s);
        s.on('error', () => sendErrors++);
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind(0, o.sourceAddress ?? '0.0.0.0', () => {
            s.off('error', reject);
            resolve();
          });
        });
        const a = s.address();
        const source = balancer.addSource(`${a.address}:${a.port}`);
        for (let i = from; i < Math.min(plan.cars, from + o.carsPerSocket); i++)
          balancer.assign(firstCar + i, source);
      }
      const base = firstCar;
      const perSocket = o.carsPerSocket;
      sinks.push((car, data, offset, length) => {
        const target = balancer.route(base + car);
        if (target === undefined) return;
        citySockets[(car / perSocket) | 0]!.send(data, offset, length, target.port, target.address, onSent);
      });
      cities.push({ index, plan, sim, firstCar });
      firstCar += plan.cars;
    }
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }

  const t0 = performance.now();
  let stopped = false;
  let truncated = false;
  let timer: NodeJS.Timeout | undefined;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    o.signal?.removeEventListener('abort', stop);
    finish();
  };
  const totals = cities.map((c) =>
    o.durationS !== undefined
      ? Math.max(1, Math.round(o.durationS * o.rate)) * c.sim.cars
      : Number.POSITIVE_INFINITY,
  );
  const perSecond = cities.map((c) => c.sim.cars * o.rate);
  const maxBatch = perSecond.map((p) => Math.max(1, Math.ceil(p * MAX_BATCH_S)));
  const pump = (): void => {
    timer = undefined;
    if (stopped) return;
    const elapsedS = (performance.now() - t0) / 1000;
    if (elapsedS > maxS) {
      truncated = true;
      stop();
      return;
    }
    let behind = false;
    let all = true;
    for (const [k, c] of cities.entries()) {
      const sim = c.sim;
      const due = Math.min(totals[k]!, Math.floor(elapsedS * perSecond[k]!) + 1);
      const n = Math.min(due - sim.steps, maxBatch[k]!);
      for (let j = 0; j < n; j++) sim.step(sinks[k]!);
      if (sim.steps < totals[k]!) all = false;
      if (due > sim.steps) behind = true;
    }
    if (all) stop();
    else if (behind) setImmediate(pump);
    else timer = setTimeout(pump, TICK_MS);
  };
  const done = (async (): Promise<DriveReport> => {
    await finished;
    const elapsedS = (performance.now() - t0) / 1000;
    // Let queued sends leave (bounded), so that what is counted as sent was sent.
    for (let k = 0; k < 200 && !sockets.every((s) => s.getSendQueueCount() === 0); k++) await sleep(10);
    for (const s of sockets) s.close();
    return {
      elapsedS,
      sent: cities.map((c) => c.sim.counters.sent),
      good: cities.map((c) => c.sim.counters.good),
      perTarget: [...balancer.sent],
      dropped: balancer.dropped,
      sendErrors,
      truncated,
    };
  })();
  const drive = new Drive(cities, done, stop);
  try {
    o.onStart?.(drive);
  } catch (err) {
    stop();
    await done;
    throw err;
  }
  if (o.signal?.aborted) stop();
  else {
    o.signal?.addEventListener('abort', stop, { once: true });
    pump();
  }
  return drive;
}
