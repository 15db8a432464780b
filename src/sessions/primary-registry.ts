import { FetchingRegistry, type LookupOutcomes, type Resolved } from './fetching-registry.ts';
import { FAILED, type Lookup, type SessionInfo, type SessionRegistry } from './registry.ts';

/** The primary's answer to a batch of lookups: per session [driverId, cab] or null; null for none at all. */
export type PrimaryAnswer = ReadonlyArray<readonly [string, string] | null> | null;

export interface PrimaryRegistryOptions {
  /**
   * Asks the primary for a batch of sessions (cluster IPC, src/cluster/rpc.ts request()); `done` gets
   * its answer, or null when the call failed. `done` must run while the answer's message is handled,
   * before later messages from the primary (see the class comment).
   */
  fetch: (his: number[], los: number[], done: (answer: PrimaryAnswer) => void) => void;
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
 * writes them there, src/sessions/session-table.ts) and the worker asks it, over cluster IPC, for
 * sessions it has no driver for. Before this, every worker held a full copy: about 150 B a session per
 * worker, so the registry's memory grew with the number of cores, and a restarted worker had to be sent
 * every session before it could start.
 *
 * The caching, batching and one-fetch-per-session are FetchingRegistry's, as with Redis. The primary
 * tells every worker of each change through the API (src/cluster/primary.ts): a new session clears a
 * negative-cache entry (`remember`), a revoked one is refused at once (`forget`). Those messages and the
 * answers to lookups travel on one ordered channel, and answers are delivered as their messages are
 * handled, so an answer never overtakes a change the primary made before it, and a change never reaches
 * the worker before an answer the primary gave before the change.
 */
export class PrimaryRegistry implements SessionRegistry {
  readonly #core: FetchingRegistry;

  constructor(options: PrimaryRegistryOptions) {
    this.#core = new FetchingRegistry({
      hitOutcome: 'primary_hit',
      onResolved: options.onResolved,
      now: options.now ?? Date.now,
      ...(options.lookupTimeoutMs === undefined ? {} : { lookupTimeoutMs: options.lookupTimeoutMs }),
      // No cap a second: the sessions are local, and a fleet coming back after a restart (100k first
      // fixes within a second) is looked up as fast as the primary answers; 10,000 a second refused half
      // of it as unknown (issue 12). What bounds a flood is the in-flight limit and the negative cache.
      lookupsPerSecond: options.lookupsPerSecond ?? Number.POSITIVE_INFINITY,
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      source: {
        up: options.up,
        fetch: (his, los, settle) => {
          options.fetch([...his], [...los], (answer) => {
            for (let i = 0; i < his.length; i++) {
              if (answer === null) settle(i, FAILED);
              else {
                const f = answer[i];
                settle(i, f == null ? undefined : { driverId: f[0], cab: f[1] });
              }
            }
          });
        },
      },
    });
  }

  /** Lookups by outcome, for `cabtrack_session_lookups_total`. */
  get outcomes(): LookupOutcomes {
    return this.#core.outcomes;
  }

  /** Sessions cached as known and as unknown. */
  get cached(): { known: number; unknown: number } {
    return this.#core.cached;
  }

  lookup(hi: number, lo: number): Lookup {
    return this.#core.lookup(hi, lo);
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

  /** Lets go of expired cache entries (the worker's housekeeping, once a second). */
  purge(): void {
    this.#core.purge();
  }

  close(): void {
    this.#core.close();
  }
}
