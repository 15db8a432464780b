import { U64Map } from '../store/u64-map.ts';
import type { SessionInfo } from './registry.ts';

/**
 * The sessions when there is no Redis: the primary's table, the only copy (workers ask it for the
 * sessions they have no driver for: src/sessions/primary-registry.ts). Filled by PUT /v1/sessions.
 * Keyed by the session's two uint32 halves, as everywhere on the ingest side.
 */
export class SessionTable {
  readonly #sessions = new U64Map<SessionInfo>();

  get size(): number {
    return this.#sessions.size;
  }

  /** Registers a session; true when it is new (201), false when it replaced one (200). */
  put(hi: number, lo: number, info: SessionInfo): boolean {
    const created = !this.#sessions.has(hi, lo);
    this.#sessions.set(hi, lo, { driverId: info.driverId, cab: info.cab });
    return created;
  }

  get(hi: number, lo: number): SessionInfo | undefined {
    return this.#sessions.get(hi, lo);
  }

  /** Revokes a session; true when it existed. */
  delete(hi: number, lo: number): boolean {
    return this.#sessions.delete(hi, lo);
  }

  /** A worker's batch of lookups: per session [driverId, cab], or null for an unknown one. */
  lookup(his: readonly number[], los: readonly number[]): Array<[string, string] | null> {
    const out: Array<[string, string] | null> = new Array(his.length);
    for (let i = 0; i < his.length; i++) {
      const s = this.#sessions.get(his[i]!, los[i]!);
      out[i] = s === undefined ? null : [s.driverId, s.cab];
    }
    return out;
  }

  /**
   * The sessions that match, as [hi, lo] (an operator removing a driver or a cab revokes them all). A
   * scan of the table: rare, and cheaper than an index by driver and by cab on every session.
   */
  find(match: (s: SessionInfo) => boolean): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    this.#sessions.forEach((s, hi, lo) => {
      if (match(s)) out.push([hi, lo]);
    });
    return out;
  }
}
