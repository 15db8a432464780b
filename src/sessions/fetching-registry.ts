import { U64Map } from '../store/u64-map.ts';
import {
  FAILED,
  type Lookup,
  PENDING,
  type SessionInfo,
  type SessionRegistry,
  THROTTLED,
} from './registry.ts';

/** What `onResolved` is told for a lookup that answered PENDING. */
export type Resolved = SessionInfo | undefined | typeof FAILED;

/**
 * Where a worker's sessions are fetched from: Redis (src/sessions/redis-registry.ts) or, with no Redis,
 * the primary over cluster IPC (src/sessions/primary-registry.ts).
 */
export interface SessionSource {
  /** Able to answer now; when false, lookups fail at once (FAILED) instead of queueing. */
  up(): boolean;
  /**
   * Fetches a batch of sessions. Calls settle(i, result) for each index, in any order, any number of
   * times (only the first counts); an index left unsettled fails at the registry's timeout.
   */
  fetch(his: readonly number[], los: readonly number[], settle: (i: number, result: Resolved) => void): void;
}

/** Counters by outcome, as `cabtrack_session_lookups_total{outcome}` exports them. */
export type LookupOutcomes = Record<string, number>;

/** The caches' and the cap's settings, shared by every registry built on FetchingRegistry. */
export interface LookupOptions {
  /** Known sessions cached per process. */
  cacheMax?: number;
  /** How long a known session is trusted without asking again, ms. */
  cacheTtlMs?: number;
  /** Unknown sessions remembered per process. */
  negativeMax?: number;
  /** How long an unknown session is refused without asking again, ms. */
  negativeTtlMs?: number;
  /** Fetches per second, at most (a token bucket); Infinity for none (see maxInFlight). */
  lookupsPerSecond?: number;
  /** Sessions queued or being fetched, at most; past it lookups are THROTTLED. */
  maxInFlight?: number;
  /** Fetches that may be spent at once after a quiet spell (the bucket's size). */
  lookupBurst?: number;
  /** A fetch not answered by then is reported FAILED, ms. */
  lookupTimeoutMs?: number;
  /** The clock, ms. A caller with a coarse clock can pass it to save a Date.now() per lookup. */
  now?: () => number;
}

export interface FetchingRegistryOptions extends LookupOptions {
  source: SessionSource;
  /** The outcome label of a lookup the source answered with a session ('redis_hit', 'primary_hit'). */
  hitOutcome: string;
  /** The answer for a session that lookup() answered PENDING: once per fetch. */
  onResolved: (hi: number, lo: number, result: Resolved) => void;
}

const FETCH_DEFAULTS = {
  cacheMax: 200_000,
  cacheTtlMs: 60_000,
  negativeMax: 100_000,
  // Short: a driver app may send its first fix a moment before the dispatch system has written the session.
  negativeTtlMs: 5_000,
  // A 100k fleet all coming back within a minute needs about 1,700 lookups a second in all; this is
  // several times that per worker, yet a small fraction of what one Redis (or the primary) answers in
  // batches, so a flood of random sessions cannot take the source away from the fleet.
  lookupsPerSecond: 10_000,
  lookupTimeoutMs: 1_000,
  // Far above what one batch per event-loop turn carries at the cap; a bound on memory when the source
  // answers slowly, not a limit anyone should meet.
  maxInFlight: 100_000,
} as const;

function positiveOption(
  owner: string,
  value: unknown,
  name: string,
  fallback: number,
  infinite = false,
): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0 || (!infinite && v === Number.POSITIVE_INFINITY)) {
    throw new RangeError(`${owner} option ${name} must be a positive number, got ${String(v)}`);
  }
  return v;
}

/**
 * A worker's session registry when the sessions live elsewhere (Redis, or the primary's memory).
 *
 * lookup() is on the per-datagram path (for sessions the worker has no driver for) and answers at once:
 *
 *   known cache hit ─────────────────────────────▶ SessionInfo
 *   unknown cache hit ───────────────────────────▶ undefined
 *   already being fetched ───────────────────────▶ PENDING
 *   source not up ───────────────────────────────▶ FAILED
 *   no token left this second, or ───────────────▶ THROTTLED (rate_limited)
 *     maxInFlight sessions already waiting
 *   otherwise: queue a fetch ────────────────────▶ PENDING, then onResolved(hi, lo, info | undefined | FAILED)
 *
 * Queued lookups go to the source as one batch per event-loop turn. Each unknown session costs at most
 * one fetch per negative-cache period, and all of them together at most lookupsPerSecond, so a flood of
 * random sessions costs the source a bounded number of lookups.
 *
 * Sessions stay as their two uint32 halves: both caches are U64Maps, and a cache hit builds no string.
 */
export class FetchingRegistry implements SessionRegistry {
  readonly outcomes: LookupOutcomes;
  readonly #hit: string;
  readonly #source: SessionSource;
  readonly #onResolved: (hi: number, lo: number, result: Resolved) => void;
  readonly #now: () => number;
  readonly #known: U64TtlCache<SessionInfo>;
  readonly #unknown: U64TtlCache<true>;
  readonly #timeoutMs: number;
  /** Sessions queued or in flight, so a session is fetched once however many fixes ask for it. */
  readonly #inflight = new U64Map<InFlight>();
  #queueHi: number[] = [];
  #queueLo: number[] = [];
  #scheduled = false;
  #batch = 0;
  /** Token bucket: tokens left, refilled at #rate per ms up to #burst. */
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #refilledAt: number;
  readonly #maxInFlight: number;
  #closed = false;
  readonly #flush = (): void => this.#send();

  constructor(options: FetchingRegistryOptions) {
    if (options.source == null) throw new TypeError('FetchingRegistry needs a source');
    if (typeof options.onResolved !== 'function') throw new TypeError('FetchingRegistry needs onResolved');
    const opt = (name: keyof typeof FETCH_DEFAULTS | 'lookupBurst', fallback: number): number =>
      positiveOption(
        'session registry',
        options[name],
        name,
        fallback,
        name === 'lookupsPerSecond' || name === 'lookupBurst',
      );
    this.#hit = options.hitOutcome;
    this.outcomes = { cache_hit: 0, [this.#hit]: 0, unknown: 0, error: 0, rate_limited: 0 };
    this.#source = options.source;
    this.#onResolved = options.onResolved;
    this.#now = options.now ?? Date.now;
    this.#known = new U64TtlCache(
      opt('cacheMax', FETCH_DEFAULTS.cacheMax),
      opt('cacheTtlMs', FETCH_DEFAULTS.cacheTtlMs),
    );
    this.#unknown = new U64TtlCache(
      opt('negativeMax', FETCH_DEFAULTS.negativeMax),
      opt('negativeTtlMs', FETCH_DEFAULTS.negativeTtlMs),
    );
    const perSecond = opt('lookupsPerSecond', FETCH_DEFAULTS.lookupsPerSecond);
    this.#rate = perSecond / 1000;
    this.#burst = opt('lookupBurst', perSecond);
    this.#tokens = this.#burst;
    this.#refilledAt = this.#now();
    this.#timeoutMs = opt('lookupTimeoutMs', FETCH_DEFAULTS.lookupTimeoutMs);
    this.#maxInFlight = opt('maxInFlight', FETCH_DEFAULTS.maxInFlight);
  }

  /** Sessions cached as known, and as unknown: for tests and debugging. */
  get cached(): { known: number; unknown: number } {
    return { known: this.#known.size, unknown: this.#unknown.size };
  }

  lookup(hi: number, lo: number): Lookup {
    const now = this.#now();
    const info = this.#known.get(hi, lo, now);
    if (info !== undefined) {
      this.outcomes['cache_hit']!++;
      return info;
    }
    if (this.#unknown.get(hi, lo, now) !== undefined) {
      this.outcomes['unknown']!++;
      return undefined;
    }
    if (this.#inflight.get(hi, lo) !== undefined) return PENDING;
    if (this.#closed || !this.#source.up()) {
      this.outcomes['error']!++;
      return FAILED;
    }
    if (this.#inflight.size >= this.#maxInFlight || !this.#take(now)) {
      // Not negative-cached: the session may be real (a login storm); the app sends again in a second.
      this.outcomes['rate_limited']!++;
      return THROTTLED;
    }
    this.#inflight.set(hi, lo, new InFlight(this.#batch + 1));
    this.#queueHi.push(hi >>> 0);
    this.#queueLo.push(lo >>> 0);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
    return PENDING;
  }

  /** Caches a session registered through this cluster's API, so no lookup is needed. */
  remember(hi: number, lo: number, info: SessionInfo): void {
    this.#unknown.delete(hi, lo);
    this.#known.set(hi, lo, { driverId: info.driverId, cab: info.cab }, this.#now());
  }

  /**
   * A session revoked: refused from now on, including by a fetch already in flight (whatever it
   * answers), until it is registered again.
   */
  forget(hi: number, lo: number): void {
    this.#known.delete(hi, lo);
    this.#unknown.set(hi, lo, true, this.#now());
    const f = this.#inflight.get(hi, lo);
    if (f !== undefined) f.revoked = true;
  }

  /**
   * A session registered again: drops whatever is cached for it, known or unknown, so its next lookup
   * asks the source. Only for a source whose answers come in order with the changes (the primary's): a
   * fetch in flight is then answered after this registration and is trusted, even if a revocation came
   * before it.
   */
  invalidate(hi: number, lo: number): void {
    this.#known.delete(hi, lo);
    this.#unknown.delete(hi, lo);
    const f = this.#inflight.get(hi, lo);
    if (f !== undefined) f.revoked = false;
  }

  /**
   * Lets go of the cached answers that have expired. Once a second (the worker's housekeeping): the
   * caches otherwise shed expired entries only as new ones arrive, and after a fleet's first fixes
   * (a cold start) nothing new may arrive for hours while up to cacheMax answers, objects and strings,
   * sit in the worker's heap: about 200 B a session (bench/memory.ts, issue 14).
   */
  purge(): void {
    const now = this.#now();
    this.#known.purge(now);
    this.#unknown.purge(now);
  }

  /** Forgets every known session, so each is fetched again (revocations may have been missed). */
  clearKnown(): void {
    this.#known.clear();
  }

  /** Stops fetching: later lookups of uncached sessions fail. */
  close(): void {
    this.#closed = true;
  }

  #take(now: number): boolean {
    if (this.#rate === Number.POSITIVE_INFINITY) return true;
    const elapsed = now - this.#refilledAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#rate);
      this.#refilledAt = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /** Sends the queued lookups: one batch per event-loop turn. */
  #send(): void {
    this.#scheduled = false;
    const his = this.#queueHi;
    const los = this.#queueLo;
    this.#queueHi = [];
    this.#queueLo = [];
    const batch = ++this.#batch;
    if (his.length === 0) return;
    let open = his.length;
    const settled = new Uint8Array(his.length);
    const timer = setTimeout(() => {
      for (let i = 0; i < his.length; i++) settle(i, FAILED);
    }, this.#timeoutMs);
    timer.unref();
    const settle = (i: number, result: Resolved): void => {
      if (i < 0 || i >= his.length || settled[i] === 1) return;
      settled[i] = 1;
      this.#settle(his[i]!, los[i]!, batch, result);
      if (--open === 0) clearTimeout(timer);
    };
    try {
      this.#source.fetch(his, los, settle);
    } catch {
      for (let i = 0; i < his.length; i++) settle(i, FAILED);
    }
  }

  /** The source answered (or the lookup timed out). */
  #settle(hi: number, lo: number, batch: number, result: Resolved): void {
    const f = this.#inflight.get(hi, lo);
    // An answer arriving after its lookup timed out is dropped, caches included: a revocation may have
    // been handled since the source answered, and caching its answer would bring the session back.
    if (f === undefined || f.batch !== batch) return;
    this.#inflight.delete(hi, lo);
    if (f.revoked && result !== FAILED) result = undefined;
    const now = this.#now();
    if (result === FAILED) {
      this.outcomes['error']!++;
    } else if (result === undefined) {
      this.#unknown.set(hi, lo, true, now);
      this.outcomes['unknown']!++;
    } else {
      this.#known.set(hi, lo, result, now);
      this.outcomes[this.#hit]!++;
    }
    this.#onResolved(hi, lo, result);
  }
}

class InFlight {
  readonly batch: number;
  /** Revoked while its HGETALL was in flight: whatever Redis answers, the session is unknown. */
  revoked = false;
  constructor(batch: number) {
    this.batch = batch;
  }
}

class CacheEntry<V> {
  readonly hi: number;
  readonly lo: number;
  value: V;
  expiresAt: number;
  prev: CacheEntry<V> | null = null;
  next: CacheEntry<V> | null = null;
  constructor(hi: number, lo: number, value: V, expiresAt: number) {
    this.hi = hi;
    this.lo = lo;
    this.value = value;
    this.expiresAt = expiresAt;
  }
}

/**
 * A bounded cache with a TTL keyed by uint64 halves, over a U64Map and a list of entries in the order
 * they were written. Every entry lives ttlMs, so that order is also expiry order: set() lets go of the
 * expired entries at the head, so memory is given back as entries expire, and past `max` of the oldest
 * one, which is the closest to expiring anyway. (lru-cache evicts the least recently read instead; with
 * every entry gone within one TTL, the two differ only in a cache that is full within one TTL.)
 *
 * Why not lru-cache: a hit here is one U64Map probe and a comparison with the clock, with no string
 * built; a string-keyed cache has to build its key on every lookup. Measured on this project's 2-core
 * machine, 100k cached sessions, 1M random hits (medians of 5): a bare U64Map get 36 ns, this cache
 * 139 ns (the extra is mostly the cache miss on the entry), the same with LRU moves 148 ns, lru-cache
 * keyed by a 4-character string of the halves 639 ns, lru-cache keyed by the hex text 1653 ns.
 */
export class U64TtlCache<V> {
  readonly max: number;
  readonly ttlMs: number;
  readonly #map = new U64Map<CacheEntry<V>>();
  /** Oldest written first. */
  #head: CacheEntry<V> | null = null;
  #tail: CacheEntry<V> | null = null;

  constructor(max: number, ttlMs: number) {
    this.max = max;
    this.ttlMs = ttlMs;
  }

  get size(): number {
    return this.#map.size;
  }

  get(hi: number, lo: number, now: number): V | undefined {
    const e = this.#map.get(hi, lo);
    if (e === undefined) return undefined;
    if (e.expiresAt <= now) {
      this.#remove(e);
      return undefined;
    }
    return e.value;
  }

  /** Lets go of the expired entries (at the head: no scan). */
  purge(now: number): void {
    while (this.#head !== null && this.#head.expiresAt <= now) this.#remove(this.#head);
  }

  set(hi: number, lo: number, value: V, now: number): void {
    this.purge(now);
    const e = this.#map.get(hi, lo);
    if (e !== undefined) {
      e.value = value;
      e.expiresAt = now + this.ttlMs;
      this.#unlink(e);
      this.#append(e);
      return;
    }
    if (this.#map.size >= this.max) this.#remove(this.#head!);
    const n = new CacheEntry(hi >>> 0, lo >>> 0, value, now + this.ttlMs);
    this.#map.set(hi, lo, n);
    this.#append(n);
  }

  delete(hi: number, lo: number): boolean {
    const e = this.#map.get(hi, lo);
    if (e === undefined) return false;
    this.#remove(e);
    return true;
  }

  clear(): void {
    this.#map.clear();
    this.#head = null;
    this.#tail = null;
  }

  #remove(e: CacheEntry<V>): void {
    this.#map.delete(e.hi, e.lo);
    this.#unlink(e);
  }

  #append(e: CacheEntry<V>): void {
    e.prev = this.#tail;
    if (this.#tail !== null) this.#tail.next = e;
    else this.#head = e;
    this.#tail = e;
  }

  #unlink(e: CacheEntry<V>): void {
    if (e.prev !== null) e.prev.next = e.next;
    else if (this.#head === e) this.#head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    else if (this.#tail === e) this.#tail = e.prev;
    e.prev = null;
    e.next = null;
  }
}
