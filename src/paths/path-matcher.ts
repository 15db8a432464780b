import { LRUCache } from 'lru-cache';
import { haversineM } from '../geo/distance.ts';
import type { MatchPoint, MatchResult } from '../osrm/client.ts';

/**
 * The road path a car took from its previous fix to its current one, for client apps to animate the
 * marker along streets instead of across blocks. Points are `[lon, lat, t]`, t in Unix seconds
 * (fractional), spread over the interval in proportion to distance along the path.
 */
export interface DriverPath {
  path: Array<[number, number, number]>;
  matched: boolean;
}

export type Matcher = (points: readonly MatchPoint[], signal?: AbortSignal) => Promise<MatchResult>;

export interface PathMatcherOptions {
  /** OSRM's match; null when no OSRM is configured (paths are straight, matched false). */
  match: Matcher | null;
  /** Below this move since the previous fix the path is just the current point: GPS jitter at a
   * standstill must not make a car dance, and OSRM matches parked cars badly (detours of ~90 m). */
  minMoveM?: number;
  /** Recent fixes sent to OSRM: the ones before the previous fix give it the heading and the road. */
  contextPoints?: number;
  cacheMax?: number;
}

/** Outcomes for cabtrack_path_cache_total{outcome}. */
export interface PathCounters {
  hit: number;
  miss: number;
  /** Joined a match already in flight for the same fix. */
  shared: number;
  /** Moved under minMoveM, or nothing to match: no OSRM call. */
  standstill: number;
}

/**
 * Matches each driver's path at most once per new fix, however many clients look at it: results are
 * cached by (driver, time of its last fix), and concurrent requests for the same fix share one call.
 */
export class PathMatcher {
  readonly counters: PathCounters = { hit: 0, miss: 0, shared: 0, standstill: 0 };
  #match: Matcher | null;
  readonly #minMoveM: number;
  readonly #context: number;
  readonly #cache: LRUCache<string, DriverPath>;
  readonly #inFlight = new Map<string, Promise<DriverPath>>();

  constructor(o: PathMatcherOptions) {
    this.#match = o.match;
    this.#minMoveM = o.minMoveM ?? 20;
    this.#context = Math.max(2, o.contextPoints ?? 6);
    this.#cache = new LRUCache({ max: o.cacheMax ?? 100_000 });
  }

  /** Installed once the OSRM client exists (it reports to metrics that need these counters first). */
  setMatcher(match: Matcher | null): void {
    this.#match = match;
  }

  /**
   * The path into the newest of `points` ((latE6, lonE6, time) triples, oldest first). With a
   * deadline, a match still running then yields the straight path now; the call goes on and fills
   * the cache for the next viewer.
   */
  async path(driverId: string, points: readonly number[], deadlineMs?: number): Promise<DriverPath> {
    const n = points.length / 3;
    if (n === 0) return { path: [], matched: false };
    const cur = toPoint(points, n - 1);
    const prev = n > 1 ? toPoint(points, n - 2) : cur;
    if (n === 1 || haversineM(prev.lat, prev.lon, cur.lat, cur.lon) < this.#minMoveM) {
      this.counters.standstill++;
      return { path: [[cur.lon, cur.lat, cur.time]], matched: false };
    }
    if (this.#match === null) return straight(prev, cur);
    const key = `${driverId}\u0000${cur.time}`;
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.counters.hit++;
      return cached;
    }
    let running = this.#inFlight.get(key);
    if (running !== undefined) {
      this.counters.shared++;
    } else {
      this.counters.miss++;
      const trace: MatchPoint[] = [];
      for (let i = Math.max(0, n - this.#context); i < n; i++) trace.push(toPoint(points, i));
      running = this.#match(trace).then((r) => {
        const p = cut(r, trace, prev, cur);
        // OSRM's answer about this trace is final; 'unavailable' (down, slow, busy) is not, and the
        // next viewer should try again.
        if (r.kind !== 'unavailable') this.#cache.set(key, p);
        return p;
      });
      running.finally(() => this.#inFlight.delete(key)).catch(() => {});
      this.#inFlight.set(key, running);
    }
    if (deadlineMs === undefined) return running;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<DriverPath>((resolve) => {
      timer = setTimeout(() => resolve(straight(prev, cur)), deadlineMs);
    });
    return Promise.race([running, late]).finally(() => clearTimeout(timer));
  }

  /**
   * The whole recent track along the roads (for operators), or the raw fixes when it cannot match.
   * Cached like paths, by driver and last fix, so an operator screen that polls costs one call a fix.
   */
  async track(driverId: string, points: readonly number[], deadlineMs: number): Promise<DriverPath> {
    const n = points.length / 3;
    if (n === 0) return { path: [], matched: false };
    const key = `track\u0000${driverId}\u0000${points[3 * n - 1]}`;
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    const p = await this.#track(points, deadlineMs);
    if (p.matched) this.#cache.set(key, p);
    return p;
  }

  async #track(points: readonly number[], deadlineMs: number): Promise<DriverPath> {
    const n = points.length / 3;
    const raw: DriverPath = { path: [], matched: false };
    for (let i = 0; i < n; i++) {
      const p = toPoint(points, i);
      raw.path.push([p.lon, p.lat, p.time]);
    }
    if (this.#match === null || n < 2) return raw;
    const trace: MatchPoint[] = [];
    for (let i = 0; i < n; i++) trace.push(toPoint(points, i));
    const signal = AbortSignal.timeout(deadlineMs);
    const r = await this.#match(trace, signal);
    if (r.kind !== 'matched') return raw;
    const first = r.tracepoints.find((tp) => tp !== null);
    const last = r.tracepoints.findLast((tp) => tp !== null);
    if (first === undefined || last === undefined) return raw;
    const path: Array<[number, number, number]> = [];
    for (const [m, matching] of r.matchings.entries()) {
      const times = r.tracepoints.flatMap((tp, i) =>
        tp !== null && tp.matchingsIndex === m ? [trace[i]!.time] : [],
      );
      if (times.length < 2) continue;
      path.push(...timed(matching.coordinates, times[0]!, times[times.length - 1]!));
    }
    return path.length > 1 ? { path, matched: true } : raw;
  }
}

function toPoint(points: readonly number[], i: number): MatchPoint {
  return { lat: points[3 * i]! / 1e6, lon: points[3 * i + 1]! / 1e6, time: points[3 * i + 2]! };
}

function straight(prev: MatchPoint, cur: MatchPoint): DriverPath {
  return {
    path: [
      [prev.lon, prev.lat, prev.time],
      [cur.lon, cur.lat, cur.time],
    ],
    matched: false,
  };
}

/**
 * The stretch of the matched geometry between the snapped previous fix and the snapped current one.
 * With overview=full every snapped fix is a vertex of its matching's geometry, so the stretch is the
 * slice between the first vertex at the previous fix's location and the next one at the current's.
 */
function cut(r: MatchResult, trace: MatchPoint[], prev: MatchPoint, cur: MatchPoint): DriverPath {
  if (r.kind !== 'matched') return straight(prev, cur);
  const n = trace.length;
  const a = r.tracepoints[n - 2];
  const b = r.tracepoints[n - 1];
  if (a == null || b == null || a.matchingsIndex !== b.matchingsIndex) return straight(prev, cur);
  const coords = r.matchings[a.matchingsIndex]?.coordinates;
  if (coords === undefined) return straight(prev, cur);
  // Search from the vertex of the fix before `a` in the same matching, so that a car passing the same
  // spot twice is cut at the right visit.
  let from = 0;
  for (let i = 0; i < n - 2; i++) {
    const tp = r.tracepoints[i];
    if (tp != null && tp.matchingsIndex === a.matchingsIndex)
      from = Math.max(from, vertexOf(coords, tp.location, from));
  }
  const i = vertexOf(coords, a.location, from);
  const j = i < 0 ? -1 : vertexOf(coords, b.location, i);
  if (i < 0 || j < 0) return straight(prev, cur);
  const stretch = coords.slice(i, j + 1);
  if (stretch.length < 2) return { path: [[cur.lon, cur.lat, cur.time]], matched: true };
  return { path: timed(stretch, prev.time, cur.time), matched: true };
}

/** Index of the first vertex at `loc` (to 1e-6 degree, the geometry's precision), from `start`. */
function vertexOf(coords: Array<[number, number]>, loc: [number, number], start: number): number {
  for (let i = Math.max(0, start); i < coords.length; i++) {
    const c = coords[i]!;
    if (Math.abs(c[0] - loc[0]) < 1.5e-6 && Math.abs(c[1] - loc[1]) < 1.5e-6) return i;
  }
  return -1;
}

/** Spreads the time from t0 to t1 along the vertices in proportion to distance travelled. */
function timed(coords: Array<[number, number]>, t0: number, t1: number): Array<[number, number, number]> {
  const cum = [0];
  for (let i = 1; i < coords.length; i++) {
    const p = coords[i - 1]!;
    const q = coords[i]!;
    cum.push(cum[i - 1]! + haversineM(p[1], p[0], q[1], q[0]));
  }
  const total = cum[cum.length - 1]!;
  return coords.map((c, i) => [
    c[0],
    c[1],
    Math.round((t0 + (total > 0 ? (cum[i]! / total) * (t1 - t0) : 0)) * 1000) / 1000,
  ]);
}
