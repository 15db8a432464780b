import type { Shard } from '../store/shard.ts';

/** What the recheck needs of the shard and of Redis. */
export interface RecheckOptions {
  /** The live drivers, by slot. */
  shard: Pick<Shard, 'size' | 'slotLimit' | 'live' | 'sessionHi' | 'sessionLo'>;
  /** Which of these sessions still exist: true, false, or null when Redis could not say. */
  exist: (his: number[], los: number[]) => Promise<Array<boolean | null>>;
  /** Able to answer now. */
  up: () => boolean;
  /** Every live driver's session is checked at least this often, s. */
  periodS: number;
  /** The driver in this slot sends with a session that is gone from Redis: remove it. */
  gone: (slot: number) => void;
}

/**
 * With Redis, the sessions of live drivers are checked again, a slice a second, so each one at least
 * every periodS: a session key that dispatch let expire, or deleted without publishing on
 * cabtrack:revoke, removes its driver within that time instead of never (a live driver's fixes never
 * ask the registry). One EXISTS per live driver per period, pipelined. Without Redis there is nothing
 * to check: the worker does not make one.
 *
 * A pass walks the slots in order (a driver added behind the cursor waits for the next pass, at most
 * periodS). While Redis answers, a slot may be given to another driver: a slot is removed only if it
 * still sends with the session that was checked, which is then gone, whoever holds it.
 */
export class SessionRecheck {
  /** Live drivers' sessions checked again, by outcome (cabtrack_session_rechecks_total). */
  readonly outcomes = { valid: 0, gone: 0, error: 0 };
  readonly #o: RecheckOptions;
  #cursor = 0;
  #busy = false;

  constructor(o: RecheckOptions) {
    this.#o = o;
  }

  /** Once a second: checks the next slice. */
  tick(): void {
    const o = this.#o;
    const shard = o.shard;
    if (this.#busy || !o.up() || shard.size === 0) return;
    const want = Math.ceil(shard.size / o.periodS);
    const slots: number[] = [];
    const his: number[] = [];
    const los: number[] = [];
    const limit = shard.slotLimit;
    while (slots.length < want) {
      if (this.#cursor >= limit) {
        // A full pass: the next tick starts another.
        this.#cursor = 0;
        break;
      }
      const s = this.#cursor++;
      if (!shard.live(s)) continue;
      slots.push(s);
      his.push(shard.sessionHi(s));
      los.push(shard.sessionLo(s));
    }
    if (slots.length === 0) return;
    this.#busy = true;
    o.exist(his, los)
      .then((found) => {
        for (let i = 0; i < slots.length; i++) {
          const s = slots[i]!;
          if (found[i] === null) this.outcomes.error++;
          else if (found[i]) this.outcomes.valid++;
          else this.outcomes.gone++;
          // Still a live driver, on the session that was checked.
          if (found[i] !== false || !shard.live(s)) continue;
          if (shard.sessionHi(s) !== his[i] || shard.sessionLo(s) !== los[i]) continue;
          o.gone(s);
        }
      })
      .finally(() => {
        this.#busy = false;
      });
  }
}
