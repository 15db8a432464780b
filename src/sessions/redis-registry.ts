import type { Cluster, Redis } from 'ioredis';
import { parseSessionHex, sessionToHex } from '../codec/session.ts';
import { byNode } from '../redis/pipelines.ts';
import { U64Map } from '../store/u64-map.ts';
import { FAILED, type Lookup, PENDING, type SessionInfo, type SessionRegistry } from './registry.ts';

/**
 * Sessions in Redis: the contract with the dispatch system (the system that logs drivers in).
 *
 *   key      cabtrack:session:0123456789abcdef    hash { driverId, cab }, with whatever expiry dispatch sets
 *   channel  cabtrack:revoke                       message: the session's 16 lowercase hex digits
 *
 * - At login the dispatch system writes the hash (HSET, and EXPIRE if sessions should lapse). cabtrack's
 *   own `PUT /v1/sessions/{session}` writes the same hash.
 * - To revoke a session, DEL the key, then PUBLISH its hex on `cabtrack:revoke`. The message makes every
 *   worker forget the session and drop its driver at once; a key that is only deleted (or expires) stops
 *   being accepted for new drivers within the cache TTL (60 s by default), but a driver already live keeps
 *   the session until it idles out. `DELETE /v1/sessions/{session}` does both steps in one MULTI.
 * - The session's text form is the one of src/codec/session.ts: 16 lowercase hex digits, high word first.
 *
 * No hash-tag braces in the key: the `{session}` of the issue is a placeholder, as `{orderId}` is in the
 * HTTP routes. In Redis Cluster each session is one key, so its data is in one slot whatever that slot
 * is; a hash tag matters only when several keys must meet in one slot (MULTI, Lua), and no operation here
 * touches two keys of one session (revocation is DEL plus a PUBLISH, which has no key). Hashing the whole
 * key spreads sessions evenly over the slots. Literal braces would also be a trap in the contract: a
 * dispatch system that wrote the key without them would have every driver refused, silently.
 */
export const SESSION_KEY_PREFIX = 'cabtrack:session:';
export const REVOKE_CHANNEL = 'cabtrack:revoke';

export function sessionKey(hi: number, lo: number): string {
  return SESSION_KEY_PREFIX + sessionToHex(hi, lo);
}

/** What `onResolved` is told for a lookup that answered PENDING. */
export type Resolved = SessionInfo | undefined | typeof FAILED;

/**
 * Counters for `cabtrack_session_lookups_total{outcome}`, keyed by the label value. A lookup answered at
 * once counts once (cache_hit; unknown from the negative cache; rate_limited; error while Redis is down).
 * A lookup that goes to Redis counts once when Redis answers (redis_hit, unknown, error), however many
 * lookup() calls for that session answered PENDING while it was in flight.
 */
export interface LookupOutcomes {
  cache_hit: number;
  redis_hit: number;
  unknown: number;
  error: number;
  rate_limited: number;
}

export interface RedisRegistryOptions {
  /** An ioredis client, or a Cluster for Redis Cluster. The registry uses it but does not close it. */
  redis: Redis | Cluster;
  /** The answer for a session that lookup() answered PENDING: once per Redis lookup. */
  onResolved: (hi: number, lo: number, result: Resolved) => void;
  /** A session was revoked through `cabtrack:revoke`: drop its driver. */
  onRevoked?: (hi: number, lo: number) => void;
  /** Something worth logging: the subscriber connection's errors, a malformed hash or message. */
  onError?: (err: Error) => void;
  /** Subscribe to `cabtrack:revoke` (a second connection). Off for a process that only writes sessions. */
  subscribe?: boolean;
  /** Known sessions cached per process. */
  cacheMax?: number;
  /** How long a known session is trusted without asking Redis again, ms. */
  cacheTtlMs?: number;
  /** Unknown sessions remembered per process. */
  negativeMax?: number;
  /** How long an unknown session is refused without asking Redis again, ms. */
  negativeTtlMs?: number;
  /** Redis lookups per second, at most (a token bucket). */
  lookupsPerSecond?: number;
  /** Lookups that may be spent at once after a quiet spell (the bucket's size). */
  lookupBurst?: number;
  /** A Redis lookup not answered by then is reported FAILED, ms. */
  lookupTimeoutMs?: number;
  /** The clock, ms. A caller with a coarse clock can pass it to save a Date.now() per lookup. */
  now?: () => number;
}

const DEFAULTS = {
  subscribe: true,
  cacheMax: 200_000,
  cacheTtlMs: 60_000,
  negativeMax: 100_000,
  // Short: a driver app may send its first fix a moment before the dispatch system has written the session.
  negativeTtlMs: 5_000,
  // A 100k fleet all coming back within a minute needs about 1,700 lookups a second in all; this is
  // several times that per worker, yet a small fraction of what one Redis answers pipelined, so a flood
  // of random sessions cannot take Redis away from the fleet.
  lookupsPerSecond: 10_000,
  lookupTimeoutMs: 1_000,
} as const;

/** The same rule as the API's (src/http/params.ts): 1-64 characters of A-Z a-z 0-9 . _ : - */
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

const noop = (): void => {};

function positive(options: RedisRegistryOptions, name: keyof RedisRegistryOptions, fallback: number): number {
  const v = options[name] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`RedisRegistry option ${name} must be a positive number, got ${String(v)}`);
  }
  return v;
}

/**
 * The session registry of a worker when sessions live in Redis (see the contract above).
 *
 * lookup() is on the per-datagram path (for sessions the worker has no driver for) and answers at once:
 *
 *   known cache hit ─────────────────────────────▶ SessionInfo
 *   unknown cache hit ───────────────────────────▶ undefined
 *   already being fetched ───────────────────────▶ PENDING
 *   Redis not connected ─────────────────────────▶ FAILED
 *   no token left this second ───────────────────▶ undefined (rate_limited)
 *   otherwise: queue an HGETALL ─────────────────▶ PENDING, then onResolved(hi, lo, info | undefined | FAILED)
 *
 * Queued lookups go out as one pipeline per event-loop turn (one per node in cluster mode). Each unknown
 * session costs at most one HGETALL per negative-cache period, and all of them together at most
 * lookupsPerSecond, so a flood of random sessions costs Redis a bounded number of lookups.
 *
 * Sessions stay as their two uint32 halves: both caches are U64Maps, and a cache hit builds no string.
 * The text key is built only when a lookup goes to Redis.
 */
export class RedisRegistry implements SessionRegistry {
  readonly outcomes: LookupOutcomes = { cache_hit: 0, redis_hit: 0, unknown: 0, error: 0, rate_limited: 0 };
  readonly #redis: Redis | Cluster;
  readonly #sub: Redis | Cluster | null;
  readonly #subscribed: Promise<void>;
  readonly #onResolved: (hi: number, lo: number, result: Resolved) => void;
  readonly #onRevoked: (hi: number, lo: number) => void;
  readonly #onError: (err: Error) => void;
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
  #closed = false;
  readonly #flush = (): void => this.#send();

  constructor(options: RedisRegistryOptions) {
    if (options.redis == null) throw new TypeError('RedisRegistry needs redis');
    if (typeof options.onResolved !== 'function') throw new TypeError('RedisRegistry needs onResolved');
    this.#redis = options.redis;
    this.#onResolved = options.onResolved;
    this.#onRevoked = options.onRevoked ?? noop;
    this.#onError = options.onError ?? noop;
    this.#now = options.now ?? Date.now;
    this.#known = new U64TtlCache(
      positive(options, 'cacheMax', DEFAULTS.cacheMax),
      positive(options, 'cacheTtlMs', DEFAULTS.cacheTtlMs),
    );
    this.#unknown = new U64TtlCache(
      positive(options, 'negativeMax', DEFAULTS.negativeMax),
      positive(options, 'negativeTtlMs', DEFAULTS.negativeTtlMs),
    );
    const perSecond = positive(options, 'lookupsPerSecond', DEFAULTS.lookupsPerSecond);
    this.#rate = perSecond / 1000;
    this.#burst = positive(options, 'lookupBurst', perSecond);
    this.#tokens = this.#burst;
    this.#refilledAt = this.#now();
    this.#timeoutMs = positive(options, 'lookupTimeoutMs', DEFAULTS.lookupTimeoutMs);

    if (options.subscribe ?? DEFAULTS.subscribe) {
      const sub = this.#redis.duplicate();
      this.#sub = sub;
      let subscribed: () => void = noop;
      this.#subscribed = new Promise((resolve) => {
        subscribed = resolve;
      });
      // Subscribed, or a SUBSCRIBE is on its way.
      let listening = false;
      let asking = false;
      const subscribe = (): void => {
        asking = true;
        sub.subscribe(REVOKE_CHANNEL).then(
          () => {
            asking = false;
            listening = true;
            subscribed();
          },
          // Redis was down for longer than ioredis keeps a command waiting; asked again on 'ready'.
          (err: Error) => {
            asking = false;
            this.#onError(err);
          },
        );
      };
      sub.on('error', (err: Error) => this.#onError(err));
      sub.on('message', (channel: string, message: string) => {
        if (channel === REVOKE_CHANNEL) this.#revoked(message);
      });
      let readyBefore = false;
      sub.on('ready', () => {
        // Revocations published while the subscriber was away are lost: forget every cached session so
        // they are checked again. Live drivers are not affected (a worker looks up only sessions it has
        // no driver for). ioredis subscribes again by itself once a subscription has been acknowledged.
        if (readyBefore) this.#known.clear();
        readyBefore = true;
        if (!listening && !asking) subscribe();
      });
      subscribe();
    } else {
      this.#sub = null;
      this.#subscribed = Promise.resolve();
    }
  }

  /** For `cabtrack_redis_up`: the command connection is connected and ready. */
  get up(): boolean {
    return this.#redis.status === 'ready';
  }

  /** Resolves once the revocation channel is subscribed (at once with subscribe: false); never rejects. */
  subscribed(): Promise<void> {
    return this.#subscribed;
  }

  /** Sessions cached as known, and as unknown: for tests and debugging. */
  get cached(): { known: number; unknown: number } {
    return { known: this.#known.size, unknown: this.#unknown.size };
  }

  lookup(hi: number, lo: number): Lookup {
    const now = this.#now();
    const info = this.#known.get(hi, lo, now);
    if (info !== undefined) {
      this.outcomes.cache_hit++;
      return info;
    }
    if (this.#unknown.get(hi, lo, now) !== undefined) {
      this.outcomes.unknown++;
      return undefined;
    }
    if (this.#inflight.get(hi, lo) !== undefined) return PENDING;
    if (this.#closed || this.#redis.status !== 'ready') {
      this.outcomes.error++;
      return FAILED;
    }
    if (!this.#take(now)) {
      // Not negative-cached: the session may be real (a login storm); the app sends again in a second.
      this.outcomes.rate_limited++;
      return undefined;
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

  /**
   * Registers a session (the API's PUT): writes the hash and caches it here. Resolves true when the
   * session is new, false when an existing one was replaced (201 and 200).
   */
  async put(hi: number, lo: number, info: SessionInfo): Promise<boolean> {
    const added = await this.#redis.hset(sessionKey(hi, lo), 'driverId', info.driverId, 'cab', info.cab);
    this.#unknown.delete(hi, lo);
    this.#known.set(hi, lo, { driverId: info.driverId, cab: info.cab }, this.#now());
    return added > 0;
  }

  /**
   * Revokes a session (the API's DELETE): DEL and PUBLISH in one MULTI, so every worker, this one
   * included, hears of it. Resolves true when the session existed.
   */
  async revoke(hi: number, lo: number): Promise<boolean> {
    const results = await this.#redis
      .multi()
      .del(sessionKey(hi, lo))
      .publish(REVOKE_CHANNEL, sessionToHex(hi, lo))
      .exec();
    if (results === null) throw new Error('revoke: the transaction was discarded');
    for (const [err] of results) if (err) throw err;
    this.#forget(hi, lo);
    return (results[0]![1] as number) > 0;
  }

  /** Caches a session registered elsewhere in this cluster (the primary's PUT), so no lookup is needed. */
  remember(hi: number, lo: number, info: SessionInfo): void {
    this.#unknown.delete(hi, lo);
    this.#known.set(hi, lo, { driverId: info.driverId, cab: info.cab }, this.#now());
  }

  /** Forgets a session revoked elsewhere in this cluster, before its channel message arrives. */
  forget(hi: number, lo: number): void {
    this.#forget(hi, lo);
  }

  /** Unsubscribes and stops answering from Redis. The command connection is the caller's to close. */
  close(): void {
    this.#closed = true;
    // disconnect, not quit: a subscriber has no replies to wait for, and quit would wait for a Redis
    // that is down.
    this.#sub?.disconnect();
  }

  #take(now: number): boolean {
    const elapsed = now - this.#refilledAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#rate);
      this.#refilledAt = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /** Sends the queued lookups: one pipeline per event-loop turn (per node in cluster mode). */
  #send(): void {
    this.#scheduled = false;
    const his = this.#queueHi;
    const los = this.#queueLo;
    this.#queueHi = [];
    this.#queueLo = [];
    const batch = ++this.#batch;
    if (his.length === 0) return;
    const keys = his.map((hi, i) => sessionKey(hi, los[i]!));
    const timer = setTimeout(() => {
      for (let i = 0; i < his.length; i++) this.#settle(his[i]!, los[i]!, batch, FAILED);
    }, this.#timeoutMs);
    timer.unref();
    const groups = byNode(this.#redis, keys);
    let open = groups.length;
    const done = (): void => {
      if (--open === 0) clearTimeout(timer);
    };
    for (const group of groups) {
      const pipeline = this.#redis.pipeline();
      for (const i of group) pipeline.hgetall(keys[i]!);
      pipeline.exec().then(
        (results) => {
          for (let j = 0; j < group.length; j++) {
            const i = group[j]!;
            const r = results?.[j];
            if (r === undefined || r[0]) this.#settle(his[i]!, los[i]!, batch, FAILED);
            else this.#settle(his[i]!, los[i]!, batch, this.#parse(r[1], keys[i]!));
          }
          done();
        },
        () => {
          for (const i of group) this.#settle(his[i]!, los[i]!, batch, FAILED);
          done();
        },
      );
    }
  }

  /** Redis answered (or the lookup timed out). */
  #settle(hi: number, lo: number, batch: number, result: Resolved): void {
    const f = this.#inflight.get(hi, lo);
    // An answer arriving after its lookup timed out is dropped, caches included: a revocation may have
    // been handled since the HGETALL ran, and caching its answer would bring the session back.
    if (f === undefined || f.batch !== batch) return;
    this.#inflight.delete(hi, lo);
    if (f.revoked && result !== FAILED) result = undefined;
    const now = this.#now();
    if (result === FAILED) {
      this.outcomes.error++;
    } else if (result === undefined) {
      this.#unknown.set(hi, lo, true, now);
      this.outcomes.unknown++;
    } else {
      this.#known.set(hi, lo, result, now);
      this.outcomes.redis_hit++;
    }
    this.#onResolved(hi, lo, result);
  }

  #parse(value: unknown, key: string): SessionInfo | undefined {
    const h = value as Record<string, string>;
    const driverId = h['driverId'];
    const cab = h['cab'];
    if (driverId === undefined && cab === undefined) return undefined;
    if (driverId === undefined || cab === undefined || !ID.test(driverId) || !ID.test(cab)) {
      this.#onError(new Error(`${key} is not a session hash with a valid driverId and cab: refused`));
      return undefined;
    }
    return { driverId, cab };
  }

  #revoked(message: string): void {
    const s = parseSessionHex(message);
    if (s === undefined) {
      this.#onError(
        new Error(`${REVOKE_CHANNEL}: ignored a message that is not a session: ${message.slice(0, 40)}`),
      );
      return;
    }
    this.#forget(s.hi, s.lo);
    this.#onRevoked(s.hi, s.lo);
  }

  #forget(hi: number, lo: number): void {
    this.#known.delete(hi, lo);
    this.#unknown.set(hi, lo, true, this.#now());
    const f = this.#inflight.get(hi, lo);
    if (f !== undefined) f.revoked = true;
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

  set(hi: number, lo: number, value: V, now: number): void {
    while (this.#head !== null && this.#head.expiresAt <= now) this.#remove(this.#head);
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
