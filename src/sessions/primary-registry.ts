import { FetchingRegistry, type LookupOutcomes, type Resolved } from './fetching-registry.ts';
import type { Lookup, SessionInfo, SessionRegistry } from './registry.ts';

/** A fetch sent to the primary and not answered yet. */
interface Asked {
  settle: (i: number, result: Resolved) => void;
  at: number;
}

export interface PrimaryRegistryOptions {
  /** Sends a batch of lookups to the primary (cluster IPC); its answer comes back through answer(). */
  ask: (id: number, his: number[], los: number[]) => void;
  /** Connected to the primary. */
  up: () => boolean;
  onResolved: (hi: number, lo: number, result: Resolved) => void;
  now?: () => number;
  lookupTimeoutMs?: number;
  /** See LookupOptions. Infinity by default: see the class. */
  lookupsPerSecond?: number;
  maxInFlight?: number;
}

/**
 * A worker's session registry without Redis: the primary holds the only copy of the sessions (the API
 * writes them there) and the worker asks it, over cluster IPC, for sessions it has no driver for. Before
 * this, every worker held a full copy: about 150 B a session per worker, so the registry's memory grew
 * with the number of cores, and a restarted worker had to be sent every session before it could start.
 *
 * The caching, batching, one-fetch-per-session and rate limit are FetchingRegistry's, as with Redis. The
 * primary tells every worker of each change through the API (src/cluster/primary.ts): a new session
 * clears a negative-cache entry (`remember`), a revoked one is refused at once (`forget`). Those messages
 * and the answers to lookups travel on one ordered channel, so an answer never overtakes a change the
 * primary made before it, and a change never reaches the worker before an answer the primary gave
 * before the change.
 */
export class PrimaryRegistry implements SessionRegistry {
  readonly #core: FetchingRegistry;
  readonly #asked = new Map<number, Asked>();
  readonly #now: () => number;
  #nextId = 1;

  constructor(options: PrimaryRegistryOptions) {
    this.#now = options.now ?? Date.now;
    this.#core = new FetchingRegistry({
      hitOutcome: 'primary_hit',
      onResolved: options.onResolved,
      now: this.#now,
      ...(options.lookupTimeoutMs === undefined ? {} : { lookupTimeoutMs: options.lookupTimeoutMs }),
      // No cap a second: the sessions are local, and a fleet coming back after a restart (100k first
      // fixes within a second) is looked up as fast as the primary answers; 10,000 a second refused half
      // of it as unknown (issue 12). What bounds a flood is the in-flight limit and the negative cache.
      lookupsPerSecond: options.lookupsPerSecond ?? Number.POSITIVE_INFINITY,
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      source: {
        up: options.up,
        fetch: (his, los, settle) => {
          const id = this.#nextId++;
          this.#asked.set(id, { settle, at: this.#now() });
          options.ask(id, [...his], [...los]);
        },
      },
    });
  }

  /** Lookups by outcome, for `cabtrack_session_lookups_total`. */
  get outcomes(): LookupOutcomes {
    return this.#core.outcomes;
  }

  /** Lookups sent to the primary and not answered yet. */
  get asked(): number {
    return this.#asked.size;
  }

  lookup(hi: number, lo: number): Lookup {
    return this.#core.lookup(hi, lo);
  }

  /** The primary's answer to ask(id): per session, [driverId, cab] or null (unknown). */
  answer(id: number, found: ReadonlyArray<readonly [string, string] | null>): void {
    const a = this.#asked.get(id);
    if (a === undefined) return;
    this.#asked.delete(id);
    for (let i = 0; i < found.length; i++) {
      const f = found[i];
      a.settle(i, f == null ? undefined : { driverId: f[0], cab: f[1] });
    }
  }

  /**
   * A session registered through the API. Not cached: the primary has it, and the driver's first fix
   * costs one lookup; caching every registration would hold up to cacheMax sessions in every worker.
   */
  remember(hi: number, lo: number, _info: SessionInfo): void {
    this.#core.invalidate(hi, lo);
  }

  forget(hi: number, lo: number): void {
    this.#core.forget(hi, lo);
  }

  /** Lets go of lookups the primary never answered (they failed at the registry's timeout already). */
  sweep(olderThanMs = 10_000): void {
    const before = this.#now() - olderThanMs;
    for (const [id, a] of this.#asked) if (a.at < before) this.#asked.delete(id);
  }

  close(): void {
    this.#core.close();
  }
}
