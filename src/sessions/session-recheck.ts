import type { Driver } from '../store/driver.ts';

/** What the recheck needs of the shard and of Redis. */
export interface RecheckOptions {
  /** The live drivers (a Map iterator sees drivers added meanwhile). */
  drivers: Map<string, Driver>;
  /** Which of these sessions still exist: true, false, or null when Redis could not say. */
  exist: (his: number[], los: number[]) => Promise<Array<boolean | null>>;
  /** Able to answer now. */
  up: () => boolean;
  /** Every live driver's session is checked at least this often, s. */
  periodS: number;
  /** The driver's session is gone from Redis: remove it. */
  gone: (d: Driver) => void;
}

/**
 * With Redis, the sessions of live drivers are checked again, a slice a second, so each one at least
 * every periodS: a session key that dispatch let expire, or deleted without publishing on
 * cabtrack:revoke, removes its driver within that time instead of never (a live driver's fixes never
 * ask the registry). One EXISTS per live driver per period, pipelined. Without Redis there is nothing
 * to check: the worker does not make one.
 */
export class SessionRecheck {
  /** Live drivers' sessions checked again, by outcome (cabtrack_session_rechecks_total). */
  readonly outcomes = { valid: 0, gone: 0, error: 0 };
  readonly #o: RecheckOptions;
  #cursor: Iterator<Driver> | null = null;
  #busy = false;

  constructor(o: RecheckOptions) {
    this.#o = o;
  }

  /** Once a second: checks the next slice. */
  tick(): void {
    const o = this.#o;
    if (this.#busy || !o.up() || o.drivers.size === 0) return;
    const want = Math.ceil(o.drivers.size / o.periodS);
    const batch: Driver[] = [];
    this.#cursor ??= o.drivers.values();
    while (batch.length < want) {
      const next = this.#cursor.next();
      if (next.done === true) {
        // A full pass: the next tick starts another.
        this.#cursor = null;
        break;
      }
      batch.push(next.value);
    }
    if (batch.length === 0) return;
    const his = batch.map((d) => d.sessionHi);
    const los = batch.map((d) => d.sessionLo);
    this.#busy = true;
    o.exist(his, los)
      .then((found) => {
        for (let i = 0; i < batch.length; i++) {
          const d = batch[i]!;
          if (found[i] === null) this.outcomes.error++;
          else if (found[i]) this.outcomes.valid++;
          else this.outcomes.gone++;
          // Still this worker's driver, on the session that was checked.
          if (found[i] !== false || o.drivers.get(d.id) !== d) continue;
          if (d.sessionHi !== his[i] || d.sessionLo !== los[i]) continue;
          o.gone(d);
        }
      })
      .finally(() => {
        this.#busy = false;
      });
  }
}
