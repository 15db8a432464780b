import { Cluster, type Redis } from 'ioredis';
import { parseSessionHex, sessionToHex } from '../codec/session.ts';
import { byNode } from '../redis/pipelines.ts';
import {
  FetchingRegistry,
  type LookupOptions,
  type LookupOutcomes,
  type Resolved,
} from './fetching-registry.ts';
import {
  FAILED,
  type Lookup,
  type SessionInfo,
  type SessionMatch,
  type SessionRegistry,
  sessionMatches,
} from './registry.ts';

export type { Resolved } from './fetching-registry.ts';

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
 *   being accepted for new drivers within the cache TTL (60 s by default), and a driver already live on it
 *   is removed when its worker next checks the session (exist(), every CABTRACK_SESSION_RECHECK_S, 60 s by
 *   default). `DELETE /v1/sessions/{session}` does both steps in one MULTI.
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

/**
 * Counters for `cabtrack_session_lookups_total{outcome}`: cache_hit, redis_hit, unknown, error,
 * rate_limited. A lookup answered at once counts once (cache_hit; unknown from the negative cache;
 * rate_limited; error while Redis is down). A lookup that goes to Redis counts once when Redis answers
 * (redis_hit, unknown, error), however many lookup() calls for that session answered PENDING meanwhile.
 */
export type { LookupOutcomes } from './fetching-registry.ts';

/** The caches and the cap (LookupOptions) work as src/sessions/fetching-registry.ts says, with Redis as the source. */
export interface RedisRegistryOptions extends LookupOptions {
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
}

/** The same rule as the API's (src/http/params.ts): 1-64 characters of A-Z a-z 0-9 . _ : - */
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

const noop = (): void => {};

/**
 * The session registry of a worker when sessions live in Redis (see the contract above): a
 * FetchingRegistry (caches, one fetch per session in flight, a cap on lookups a second; see
 * src/sessions/fetching-registry.ts) whose source is HGETALL, pipelined once per event-loop turn (one
 * pipeline per node in cluster mode), plus the revocation channel and the API's writes.
 */
export class RedisRegistry implements SessionRegistry {
  readonly #redis: Redis | Cluster;
  readonly #sub: Redis | Cluster | null;
  readonly #subscribed: Promise<void>;
  readonly #onRevoked: (hi: number, lo: number) => void;
  readonly #onError: (err: Error) => void;
  readonly #core: FetchingRegistry;

  constructor(options: RedisRegistryOptions) {
    if (options.redis == null) throw new TypeError('RedisRegistry needs redis');
    if (typeof options.onResolved !== 'function') throw new TypeError('RedisRegistry needs onResolved');
    this.#redis = options.redis;
    this.#onRevoked = options.onRevoked ?? noop;
    this.#onError = options.onError ?? noop;
    const redis = this.#redis;
    this.#core = new FetchingRegistry({
      ...options,
      hitOutcome: 'redis_hit',
      source: {
        up: () => redis.status === 'ready',
        fetch: (his, los, settle) => {
          const keys = his.map((hi, i) => sessionKey(hi, los[i]!));
          for (const group of byNode(redis, keys)) {
            const pipeline = redis.pipeline();
            for (const i of group) pipeline.hgetall(keys[i]!);
            pipeline.exec().then(
              (results) => {
                for (let j = 0; j < group.length; j++) {
                  const i = group[j]!;
                  const r = results?.[j];
                  settle(i, r === undefined || r[0] ? FAILED : this.#parse(r[1], keys[i]!));
                }
              },
              () => {
                for (const i of group) settle(i, FAILED);
              },
            );
          }
        },
      },
    });

    if (options.subscribe ?? true) {
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
        if (readyBefore) this.#core.clearKnown();
        readyBefore = true;
        if (!listening && !asking) subscribe();
      });
      subscribe();
    } else {
      this.#sub = null;
      this.#subscribed = Promise.resolve();
    }
  }

  /** Lookups by outcome, for `cabtrack_session_lookups_total`. */
  get outcomes(): LookupOutcomes {
    return this.#core.outcomes;
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
    return this.#core.cached;
  }

  lookup(hi: number, lo: number): Lookup {
    return this.#core.lookup(hi, lo);
  }

  /**
   * Registers a session (the API's PUT): writes the hash and caches it here. Resolves true when the
   * session is new, false when an existing one was replaced (201 and 200).
   */
  async put(hi: number, lo: number, info: SessionInfo): Promise<boolean> {
    const added = await this.#redis.hset(sessionKey(hi, lo), 'driverId', info.driverId, 'cab', info.cab);
    this.#core.remember(hi, lo, info);
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
    this.#core.forget(hi, lo);
    return (results[0]![1] as number) > 0;
  }

  /**
   * Which of these sessions still exist in Redis (EXISTS, pipelined per node): true, false, or null when
   * Redis could not say. A session found gone is refused from now on (negative-cached). This is how a
   * worker notices keys that dispatch let expire, or deleted without publishing: for sessions it has a
   * driver for, lookup() is never asked again.
   */
  async exist(his: readonly number[], los: readonly number[]): Promise<Array<boolean | null>> {
    const out: Array<boolean | null> = his.map(() => null);
    if (this.#redis.status !== 'ready') return out;
    const keys = his.map((hi, i) => sessionKey(hi, los[i]!));
    await Promise.all(
      byNode(this.#redis, keys).map(async (group) => {
        const pipeline = this.#redis.pipeline();
        for (const i of group) pipeline.exists(keys[i]!);
        try {
          const results = await pipeline.exec();
          for (let j = 0; j < group.length; j++) {
            const r = results?.[j];
            if (r !== undefined && !r[0]) out[group[j]!] = (r[1] as number) > 0;
          }
        } catch {
          // Left null: unknown, not gone.
        }
      }),
    );
    for (let i = 0; i < his.length; i++) if (out[i] === false) this.#core.forget(his[i]!, los[i]!);
    return out;
  }

  /**
   * The sessions in Redis that match, as [hi, lo]: for an operator who removes a driver or a cab that
   * is not live (issue 15: with Redis the primary holds no sessions, so before this nothing was revoked
   * and the API answered 404). A SCAN of `cabtrack:session:*` (on every master in cluster mode), each
   * batch of keys read with one pipelined HMGET per node: O(sessions), for a rare operator action;
   * about 0.3 s per 100,000 sessions here. Throws when Redis fails (the API's 503).
   */
  async find(match: SessionMatch): Promise<Array<[number, number]>> {
    const nodes = this.#redis instanceof Cluster ? this.#redis.nodes('master') : [this.#redis];
    const out: Array<[number, number]> = [];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${SESSION_KEY_PREFIX}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length === 0) continue;
        const p = node.pipeline();
        for (const k of keys) p.hmget(k, 'driverId', 'cab');
        const results = (await p.exec()) ?? [];
        for (let i = 0; i < keys.length; i++) {
          const r = results[i];
          if (r === undefined || r[0]) throw r?.[0] ?? new Error('find: no answer from Redis');
          const [driverId, cab] = r[1] as [string | null, string | null];
          if (driverId === null || cab === null || !sessionMatches({ driverId, cab }, match)) continue;
          const s = parseSessionHex(keys[i]!.slice(SESSION_KEY_PREFIX.length));
          if (s !== undefined) out.push([s.hi, s.lo]);
        }
      } while (cursor !== '0');
    }
    return out;
  }

  /** Caches a session registered elsewhere in this cluster (the primary's PUT), so no lookup is needed. */
  remember(hi: number, lo: number, info: SessionInfo): void {
    this.#core.remember(hi, lo, info);
  }

  /** Forgets a session revoked elsewhere in this cluster, before its channel message arrives. */
  forget(hi: number, lo: number): void {
    this.#core.forget(hi, lo);
  }

  /** Unsubscribes and stops answering from Redis. The command connection is the caller's to close. */
  /** Lets go of expired cache entries (the worker's housekeeping, once a second). */
  purge(): void {
    this.#core.purge();
  }

  close(): void {
    this.#core.close();
    // disconnect, not quit: a subscriber has no replies to wait for, and quit would wait for a Redis
    // that is down.
    this.#sub?.disconnect();
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
    this.#core.forget(s.hi, s.lo);
    this.#onRevoked(s.hi, s.lo);
  }
}
