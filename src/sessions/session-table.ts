import { Names } from '../store/names.ts';
import { U64Index } from '../store/u64-index.ts';
import type { SessionInfo, SessionMatch } from './registry.ts';

/**
 * The sessions when there is no Redis: the primary's table, the only copy (workers ask it for the
 * sessions they have no driver for: src/sessions/primary-registry.ts). Filled by PUT /v1/sessions.
 * Keyed by the session's two uint32 halves, as everywhere on the ingest side.
 *
 * No object per session: the session finds a record number in a U64Index, and the record's driver id
 * and cab are bytes in a Names arena (src/store/names.ts, without its indexes). About 60 B a session
 * at a million (32 B of index, 26 of names); a Map of {driverId, cab} objects took 156 B
 * (bench/memory.ts, issue 14). Strings are made only for the sessions a worker asks for.
 */
export class SessionTable {
  readonly #index = new U64Index();
  readonly #names = new Names({ byId: false });
  #free: number[] = [];
  #next = 0;

  get size(): number {
    return this.#index.size;
  }

  /** Registers a session; true when it is new (201), false when it replaced one (200). */
  put(hi: number, lo: number, info: SessionInfo): boolean {
    let rec = this.#index.get(hi, lo);
    const created = rec < 0;
    if (created) {
      rec = this.#free.pop() ?? this.#next++;
      this.#index.set(hi, lo, rec);
    }
    this.#names.setText(rec, info.driverId, info.cab);
    return created;
  }

  get(hi: number, lo: number): SessionInfo | undefined {
    const rec = this.#index.get(hi, lo);
    return rec < 0 ? undefined : { driverId: this.#names.id(rec), cab: this.#names.cab(rec) };
  }

  /** Revokes a session; true when it existed. */
  delete(hi: number, lo: number): boolean {
    const rec = this.#index.get(hi, lo);
    if (rec < 0) return false;
    this.#index.delete(hi, lo);
    this.#names.delete(rec);
    this.#free.push(rec);
    return true;
  }

  /** A worker's batch of lookups: per session [driverId, cab], or null for an unknown one. */
  lookup(his: readonly number[], los: readonly number[]): Array<[string, string] | null> {
    const out: Array<[string, string] | null> = new Array(his.length);
    for (let i = 0; i < his.length; i++) {
      const rec = this.#index.get(his[i]!, los[i]!);
      out[i] = rec < 0 ? null : [this.#names.id(rec), this.#names.cab(rec)];
    }
    return out;
  }

  /**
   * The sessions that match, as [hi, lo]. A scan of the table, comparing bytes (no string made): rare,
   * and cheaper than an index by driver and by cab on every session.
   */
  find(match: SessionMatch): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const names = this.#names;
    this.#index.forEach((rec, hi, lo) => {
      let hit = match.cab !== undefined && names.cabIsText(rec, match.cab);
      for (const id of match.driverIds) hit ||= names.idIs(rec, id);
      if (hit) out.push([hi, lo]);
    });
    return out;
  }
}
