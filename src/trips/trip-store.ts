import type { Cluster, Redis } from 'ioredis';
import { byNode } from '../redis/pipelines.ts';
import type { TripEnd, TripRecord } from '../store/driver.ts';

/**
 * The server's copy of every trip in Redis, for billing and for resuming trips after a restart.
 *
 *   cabtrack:trip:<orderId>      hash, one per trip: orderId, driverId, cab, cost, distanceM, startTime,
 *                                lastTime, points (as in the stream below), active (1 or 0) and endReason
 *                                (empty while active); no expiry while active, finishedTtlS (7 days)
 *                                once ended
 *   cabtrack:trips:active        set of the order ids of active trips: what activeTrips() reads back
 *   cabtrack:trip-of:<driverId>  string, the order id of the driver's latest trip, finishedTtlS: written
 *                                with a trip's first write, so another host that takes over a driver
 *                                whose host died finds its trip (activeTripOf) without reading them all
 *   cabtrack:trips               stream: one entry per finished trip, appended exactly once
 *   cabtrack:streamed:{cabtrack:trips}:<orderId>:<startTime>
 *                                string, the stream entry id of that trip's record, finishedTtlS:
 *                                what makes the append happen once
 *
 * Stream entry fields (all strings, as Redis streams hold them), for billing:
 *   orderId     the order, decimal uint64
 *   driverId    the driver who drove it
 *   cab         the cab number
 *   cost        cost as last reported by the driver app, minor currency units
 *   distanceM   distance summed on the server from accepted fixes, metres (one decimal)
 *   startTime   fix time of the trip's first accepted fix, Unix seconds
 *   lastTime    fix time of its last accepted fix, Unix seconds
 *   points      accepted fixes in the trip
 *   endReason   order_changed (the app reported another order or none), expired (no fix for the idle
 *               timeout) or deleted (an operator removed the driver or revoked its session)
 * The entry id is Redis's (`<ms>-<seq>`, when it was appended). A trip is identified by orderId and
 * startTime: an order id that comes back later (a driver resuming an order) is a new trip, with its own
 * entry.
 *
 * Exactly once. A flush that fails, or whose reply is lost (the connection drops after Redis ran it, and
 * ioredis sends it again on reconnect, or the store retries it), runs again. Writing the hash twice is
 * harmless; the append goes through a Lua script that appends only if the trip's marker key does not
 * exist and sets it in the same step, so a second run appends nothing.
 *
 * The `{orderId}` of the issue's `cabtrack:trip:{orderId}` is a placeholder, as in the HTTP routes, not a
 * hash tag: a trip is one hash, so its data is in one slot whatever the slot is, and hashing the whole key
 * spreads trips over the cluster.
 *
 * Redis Cluster. A script can only touch keys of one slot, and the stream is one key in one slot while the
 * trip hashes are spread over all of them. The marker is therefore a key of its own carrying the stream's
 * hash tag, `{cabtrack:trips}`: a key with a tag hashes to the slot of the tag's text, and the stream's
 * name, which has no braces, hashes as a whole to the same slot. So the script's two keys always meet,
 * the stream keeps its plain name, and the trip hashes stay spread out. The trade-off: the node that owns
 * the stream also holds every marker (one small string key per finished trip, for finishedTtlS) and runs every
 * append; a single stream is on one node anyway, and billing reading one stream is the contract. The
 * alternative, a trip hash with a `streamed` field in the stream's slot, would have put every trip hash on
 * that one node. The hash and the append are not one atomic step (they are in different slots): the hash
 * may briefly show the finished trip before its entry is in the stream, and each is retried until done.
 */
export const TRIP_KEY_PREFIX = 'cabtrack:trip:';
export const ACTIVE_TRIPS_KEY = 'cabtrack:trips:active';
export const TRIP_STREAM = 'cabtrack:trips';
export const TRIP_OF_PREFIX = 'cabtrack:trip-of:';
const MARKER_PREFIX = `cabtrack:streamed:{${TRIP_STREAM}}:`;

export function tripKey(orderId: string): string {
  return TRIP_KEY_PREFIX + orderId;
}

const END_REASONS: readonly string[] = ['order_changed', 'expired', 'deleted'] satisfies TripEnd[];

/** KEYS[1] the trip's marker, KEYS[2] the stream; ARGV[1] the marker's TTL (s), ARGV[2..] field, value, ... */
const APPEND_ONCE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], id, 'EX', ARGV[1])
return id`;
const APPEND_COMMAND = 'cabtrackAppendTripOnce';

/** Commands per pipeline: keeps one flush of a large fleet from building one huge request. */
const PIPELINE_MAX = 10_000;
/** Trips read per pipeline when reading back: each chunk well within the 2 s command timeout. */
const READ_CHUNK = 2000;

export interface TripWrites {
  /** Records written. */
  ok: number;
  /** Record writes that failed; the record stays buffered and is written again. */
  error: number;
  /** Records given up because the buffer was full. */
  dropped: number;
}

export interface TripStoreOptions {
  /** An ioredis client, or a Cluster for Redis Cluster. The store uses it but does not close it. */
  redis: Redis | Cluster;
  /** How often buffered records are written, ms; also how far behind Redis may be. */
  flushIntervalMs?: number;
  /** How long a finished trip's hash (and its stream marker) is kept, seconds. */
  finishedTtlS?: number;
  /** Records waiting to be written, at most: updates of active trips and final records together. */
  maxBuffered?: number;
  /** A flush failed (Redis errors); the records are kept and written again. For logging. */
  onError?: (err: Error) => void;
}

const DEFAULTS = {
  flushIntervalMs: 1000,
  finishedTtlS: 7 * 24 * 3600,
  maxBuffered: 100_000,
} as const;

const noop = (): void => {};

function positiveInteger(options: TripStoreOptions, name: keyof TripStoreOptions, fallback: number): number {
  const v = options[name] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new RangeError(`TripStore option ${name} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

/** The kinds of command a flush sends for a record. */
const Op = { hset: 0, persist: 1, index: 2, expire: 3, unindex: 4, append: 5, pointer: 6 } as const;
type OpKind = (typeof Op)[keyof typeof Op];

interface AppendCommand {
  [APPEND_COMMAND](marker: string, stream: string, ttl: number, ...fields: string[]): unknown;
}

/**
 * Buffers trip records and writes them to Redis in batches (see the layout above).
 *
 * update() and end() only touch memory: the latest update of each active trip waits for the next flush
 * (so a trip updated every second costs one HSET per flush, however many fixes it had), and a final record
 * waits until it is in Redis. While Redis is down nothing is sent; records wait in the buffer, up to
 * maxBuffered, and go out once the connection is back. One flush runs at a time, so an older record
 * can never land after a newer one.
 */
/**
 * Where a worker's trips go: the TripStore with Redis, nothing without it. Chosen once at start-up, so
 * the shard's callbacks never ask whether Redis is configured.
 */
export interface TripSink {
  update(record: TripRecord): void;
  end(record: TripRecord): void;
  release(orderId: string): void;
  /** Writes what is buffered now (the worker calls it right after its once-a-second scan). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** No Redis: trips live only in the workers' memory. */
export const noTrips: TripSink = {
  update() {},
  end() {},
  release() {},
  flush: () => Promise.resolve(),
  close: () => Promise.resolve(),
};

export class TripStore implements TripSink {
  readonly writes: TripWrites = { ok: 0, error: 0, dropped: 0 };
  readonly #redis: Redis | Cluster;
  readonly #finishedTtlS: number;
  readonly #maxBuffered: number;
  readonly #onError: (err: Error) => void;
  /** Latest update of each active trip, by order id; oldest buffered first. */
  #dirty = new Map<string, TripRecord>();
  /** Final records, by orderId:startTime (two trips of one order id are two records). */
  #ending = new Map<string, TripRecord>();
  #inflight = 0;
  #flushing: Promise<void> | null = null;
  /** Order ids this store has put in the active set, so an update costs one HSET, not HSET + SADD. */
  readonly #indexed = new Set<string>();
  readonly #timer: NodeJS.Timeout;

  constructor(options: TripStoreOptions) {
    if (options.redis == null) throw new TypeError('TripStore needs redis');
    this.#redis = options.redis;
    // A Redis that comes back may have come back empty (no persistence, or a failover that lost writes):
    // forget which trips are in the active set, so the next write of each adds it again.
    this.#redis.on('ready', () => this.#indexed.clear());
    this.#finishedTtlS = positiveInteger(options, 'finishedTtlS', DEFAULTS.finishedTtlS);
    this.#maxBuffered = positiveInteger(options, 'maxBuffered', DEFAULTS.maxBuffered);
    this.#onError = options.onError ?? noop;
    const interval = positiveInteger(options, 'flushIntervalMs', DEFAULTS.flushIntervalMs);
    if (!(APPEND_COMMAND in this.#redis)) {
      // Defined on the client, so ioredis sends EVALSHA and falls back to EVAL after a restarted Redis
      // (NOSCRIPT), per connection, in pipelines too.
      this.#redis.defineCommand(APPEND_COMMAND, { lua: APPEND_ONCE, numberOfKeys: 2 });
    }
    this.#timer = setInterval(() => {
      this.flush().catch((err: unknown) =>
        this.#onError(err instanceof Error ? err : new Error(String(err))),
      );
    }, interval);
    this.#timer.unref();
  }

  /** Records waiting to be written, including those of a flush in progress: `cabtrack_trip_buffer`. */
  get buffered(): number {
    return this.#dirty.size + this.#ending.size + this.#inflight;
  }

  /** The latest state of an active trip; replaces any update of that trip not yet written. */
  update(record: TripRecord): void {
    if (!record.active) throw new TypeError(`update(): trip ${record.orderId} is not active; use end()`);
    const id = record.orderId;
    // Map.set on a present key keeps its place in the buffer's order (oldest first), the order in which
    // final records push updates out when the buffer is full.
    if (this.#dirty.has(id)) {
      this.#dirty.set(id, record);
      return;
    }
    if (this.buffered >= this.#maxBuffered) {
      this.writes.dropped++;
      return;
    }
    this.#dirty.set(id, record);
  }

  /**
   * A trip's final record: written to its hash and appended to the stream once. Never dropped unless
   * the buffer is full of other final records: an update of an active trip gives way to it first (that
   * trip sends a newer one within a second while it lasts; a final record is the only one of its trip).
   */
  end(record: TripRecord): void {
    if (record.active) throw new TypeError(`end(): trip ${record.orderId} is still active`);
    const k = endKey(record);
    const pending = this.#dirty.get(record.orderId);
    if (pending !== undefined && pending.startTime === record.startTime) this.#dirty.delete(record.orderId);
    if (!this.#ending.has(k) && this.buffered >= this.#maxBuffered) {
      const oldest = this.#dirty.keys().next();
      this.writes.dropped++;
      if (oldest.done) return;
      this.#dirty.delete(oldest.value);
    }
    this.#ending.set(k, record);
  }

  /**
   * The trip was handed to another worker, which writes it from now on: drops its update waiting here
   * (the new owner has the same state or newer, so an old write landing after the new owner's would only
   * set it back) and forgets that this store put it in the active set.
   */
  release(orderId: string): void {
    this.#dirty.delete(orderId);
    this.#indexed.delete(orderId);
  }

  /**
   * Writes what is buffered, if Redis is connected; resolves when that write is done (a failed write
   * keeps its records for the next flush and is reported to onError). If a flush is already running,
   * resolves when it is done.
   */
  flush(): Promise<void> {
    if (this.#flushing !== null) return this.#flushing;
    if (this.#dirty.size === 0 && this.#ending.size === 0) return Promise.resolve();
    if (this.#redis.status !== 'ready') return Promise.resolve();
    this.#flushing = this.#write().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  /**
   * Every active trip in Redis (all workers' trips), for resuming after a restart. A trip's record is as
   * of its last flush. Rejects when Redis cannot be read.
   */
  async activeTrips(): Promise<TripRecord[]> {
    const ids = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await this.#redis.sscan(ACTIVE_TRIPS_KEY, cursor, 'COUNT', 1000);
      for (const id of batch) ids.add(id);
      cursor = next;
    } while (cursor !== '0');
    const records = await this.#readMany([...ids]);
    return records.filter((r): r is TripRecord => r?.active === true);
  }

  /**
   * The driver's active trip in Redis, if it has one (as of its last flush, at most a second behind): for
   * a host taking over a driver whose host died. Rejects when Redis cannot be read.
   */
  async activeTripOf(driverId: string): Promise<TripRecord | undefined> {
    const orderId = await this.#redis.get(TRIP_OF_PREFIX + driverId);
    if (orderId === null) return undefined;
    const r = parseTrip(await this.#redis.hgetall(tripKey(orderId)));
    return r?.active === true && r.driverId === driverId ? r : undefined;
  }

  /** A trip by order id: a record still waiting to be written, else the one in Redis. */
  async get(orderId: string): Promise<TripRecord | undefined> {
    const dirty = this.#dirty.get(orderId);
    if (dirty !== undefined) return dirty;
    let ended: TripRecord | undefined;
    // Only non-empty while Redis is behind, and the API asks for trips rarely.
    for (const r of this.#ending.values()) if (r.orderId === orderId) ended = r;
    if (ended !== undefined) return ended;
    return parseTrip(await this.#redis.hgetall(tripKey(orderId)));
  }

  /** Stops the timer and makes one last flush (which does nothing while Redis is down). */
  close(): Promise<void> {
    clearInterval(this.#timer);
    return this.flush();
  }

  async #write(): Promise<void> {
    const records = [...this.#ending.values(), ...this.#dirty.values()];
    this.#ending = new Map();
    this.#dirty = new Map();
    this.#inflight = records.length;

    // Every command of the flush, as parallel arrays: the record it belongs to, its kind and its key.
    const opRec: number[] = [];
    const opKind: OpKind[] = [];
    const opKey: string[] = [];
    const add = (rec: number, kind: OpKind, key: string): void => {
      opRec.push(rec);
      opKind.push(kind);
      opKey.push(key);
    };
    // Final records go first, so a trip whose order id comes back as a new trip in the same flush ends
    // up with the new trip's hash, in the active set again.
    const endedNow = new Set<string>();
    for (const r of records) if (!r.active) endedNow.add(r.orderId);
    const firstWrite: boolean[] = [];
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const key = tripKey(r.orderId);
      add(i, Op.hset, key);
      firstWrite.push(r.active && (!this.#indexed.has(r.orderId) || endedNow.has(r.orderId)));
      if (r.active) {
        if (firstWrite[i]) {
          // A reused order id's hash may still carry the finished trip's expiry.
          add(i, Op.persist, key);
          add(i, Op.index, ACTIVE_TRIPS_KEY);
          add(i, Op.pointer, TRIP_OF_PREFIX + r.driverId);
        }
      } else {
        add(i, Op.expire, key);
        add(i, Op.unindex, ACTIVE_TRIPS_KEY);
        add(i, Op.append, MARKER_PREFIX + endKey(r));
      }
    }

    const failed = new Uint8Array(records.length);
    let firstError: unknown = null;
    const sends: Promise<void>[] = [];
    try {
      for (const group of byNode(this.#redis, opKey)) {
        for (let start = 0; start < group.length; start += PIPELINE_MAX) {
          const chunk = group.slice(start, start + PIPELINE_MAX);
          const pipeline = this.#redis.pipeline();
          for (const j of chunk) this.#command(pipeline, opKind[j]!, opKey[j]!, records[opRec[j]!]!);
          sends.push(
            pipeline.exec().then(
              (results) => {
                for (let c = 0; c < chunk.length; c++) {
                  const err = results === null ? new Error('pipeline discarded') : results[c]?.[0];
                  if (err) {
                    failed[opRec[chunk[c]!]!] = 1;
                    firstError ??= err;
                  }
                }
              },
              (err: unknown) => {
                for (const j of chunk) failed[opRec[j]!] = 1;
                firstError ??= err;
              },
            ),
          );
        }
      }
    } catch (err) {
      // Not a Redis error (those come back per command): whatever was sent is written again, harmlessly.
      failed.fill(1);
      firstError ??= err;
    }
    await Promise.all(sends);

    // A failed record holds back the later records of its order id: written after it on the retry, they
    // keep the order in which they happened.
    const heldBack = new Set<string>();
    const againEnding = new Map<string, TripRecord>();
    const againDirty = new Map<string, TripRecord>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (failed[i] === 0 && !heldBack.has(r.orderId)) {
        this.writes.ok++;
        if (!r.active) this.#indexed.delete(r.orderId);
        else if (firstWrite[i]) this.#indexed.add(r.orderId);
        continue;
      }
      heldBack.add(r.orderId);
      if (failed[i] !== 0) this.writes.error++;
      // Back in the buffer, ahead of what came in meanwhile, unless something newer of the same trip did.
      // They were counted in `buffered` all along, so this cannot overfill it.
      const k = endKey(r);
      if (!r.active) {
        if (!this.#ending.has(k)) againEnding.set(k, r);
      } else if (!this.#dirty.has(r.orderId) && !this.#ending.has(k)) {
        againDirty.set(r.orderId, r);
      }
    }
    if (againEnding.size > 0) this.#ending = new Map([...againEnding, ...this.#ending]);
    if (againDirty.size > 0) this.#dirty = new Map([...againDirty, ...this.#dirty]);
    this.#inflight = 0;
    if (firstError !== null) {
      const err = firstError instanceof Error ? firstError : new Error(String(firstError));
      this.#onError(err);
    }
  }

  #command(p: ReturnType<Redis['pipeline']>, kind: OpKind, key: string, r: TripRecord): void {
    switch (kind) {
      case Op.hset:
        p.hset(key, hashFields(r));
        break;
      case Op.persist:
        p.persist(key);
        break;
      case Op.index:
        p.sadd(key, r.orderId);
        break;
      case Op.expire:
        p.expire(tripKey(r.orderId), this.#finishedTtlS);
        break;
      case Op.unindex:
        p.srem(key, r.orderId);
        break;
      case Op.pointer:
        p.set(key, r.orderId, 'EX', this.#finishedTtlS);
        break;
      case Op.append:
        (p as unknown as AppendCommand)[APPEND_COMMAND](
          key,
          TRIP_STREAM,
          this.#finishedTtlS,
          ...streamFields(r),
        );
        break;
    }
  }

  /**
   * HGETALL of many trips: the nodes in parallel, each node's chunks one after the other. All at once,
   * the last of 150,000 reads waited behind the others longer than the command timeout on a busy Redis,
   * and the read-back after a worker's death failed (test/hostile-resume-race.test.ts).
   */
  async #readMany(ids: string[]): Promise<Array<TripRecord | undefined>> {
    const keys = ids.map(tripKey);
    const out = new Array<TripRecord | undefined>(ids.length);
    await Promise.all(
      byNode(this.#redis, keys).map(async (group) => {
        for (let start = 0; start < group.length; start += READ_CHUNK) {
          const chunk = group.slice(start, start + READ_CHUNK);
          const pipeline = this.#redis.pipeline();
          for (const i of chunk) pipeline.hgetall(keys[i]!);
          const results = await pipeline.exec();
          if (results === null) throw new Error('pipeline discarded');
          for (let c = 0; c < chunk.length; c++) {
            const [err, value] = results[c]!;
            if (err) throw err;
            out[chunk[c]!] = parseTrip(value as Record<string, string>);
          }
        }
      }),
    );
    return out;
  }
}

/** A trip's identity: its order id and start time (an order id may come back as a new trip). */
function endKey(r: TripRecord): string {
  return `${r.orderId}:${r.startTime}`;
}

/** The fields the trip hash and the stream entry share, in the stream's documented order. */
function recordFields(r: TripRecord): string[] {
  return [
    'orderId',
    r.orderId,
    'driverId',
    r.driverId,
    'cab',
    r.cab,
    'cost',
    String(r.cost),
    'distanceM',
    String(r.distanceM),
    'startTime',
    String(r.startTime),
    'lastTime',
    String(r.lastTime),
    'points',
    String(r.points),
  ];
}

function hashFields(r: TripRecord): string[] {
  return [...recordFields(r), 'active', r.active ? '1' : '0', 'endReason', r.endReason ?? ''];
}

function streamFields(r: TripRecord): string[] {
  return [...recordFields(r), 'endReason', r.endReason ?? ''];
}

/** A trip hash back as a record; undefined for a missing or malformed hash. */
export function parseTrip(h: Record<string, string>): TripRecord | undefined {
  const num = (f: string): number => {
    const s = h[f];
    return s === undefined || s === '' ? Number.NaN : Number(s);
  };
  const orderId = h['orderId'];
  const driverId = h['driverId'];
  const cab = h['cab'];
  if (orderId === undefined || driverId === undefined || cab === undefined) return undefined;
  const r: TripRecord = {
    orderId,
    driverId,
    cab,
    cost: num('cost'),
    distanceM: num('distanceM'),
    startTime: num('startTime'),
    lastTime: num('lastTime'),
    points: num('points'),
    active: h['active'] === '1',
  };
  if (![r.cost, r.distanceM, r.startTime, r.lastTime, r.points].every(Number.isFinite)) return undefined;
  const reason = h['endReason'];
  if (reason !== undefined && reason !== '') {
    if (!END_REASONS.includes(reason)) return undefined;
    r.endReason = reason as TripEnd;
  }
  return r;
}
