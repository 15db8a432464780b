import type { DriverState, TripRecord } from '../store/driver.ts';

/**
 * The directory of which ingest worker owns which driver, and the handoffs between them, with trip
 * resume: the primary's single source of truth. Pure: the workers, the clock and Redis are ports.
 *
 * A driver's fixes reach the worker the kernel hashes its source address to (SO_REUSEPORT). A worker
 * that gets a fix for a driver it does not hold *claims* it; the directory then gives it the driver:
 *
 *   claim(id, w) ── nobody holds it ─────────▶ resume(id) (its trip, read back from Redis after a
 *                │                              restart or a worker's death) ─▶ grant(w, state null, trip)
 *                └─ worker v holds it ───────▶ release(v, id) ─▶ state (position, ring, trip)
 *                                                              ─▶ grant(w, state, null)
 *
 * One handoff per driver at a time. A claim that arrives while one is under way waits its turn, and
 * is then served from the driver's new owner: claims by w2 and then w3 during a slow read-back give
 * the resumed trip to w2 and then hand it, with its ring, to w3. (Before, w3's claim asked w2, which
 * only had the driver pending, to release it: w2 answered with no state, w3 started a second trip with
 * the same order id, and the Redis copy stayed resumable until it was ended as expired: issue 15.)
 *
 * Each grant carries an epoch, the count of the driver's grants. A worker that lets a driver go on its
 * own (expired, revoked) reports the epoch of its ownership; a report for an ownership that has since
 * been replaced is ignored, however late it arrives, so the directory never forgets an owner that has
 * the driver again.
 */
export interface HandoffPorts {
  /** Sends the driver to worker w. Messages to one worker arrive in the order they are sent. */
  grant(w: number, id: string, epoch: number, state: DriverState | null, resume: TripRecord | null): void;
  /** Asks worker w to let the driver go; done(state) with its state, null if it did not hold it, or
   * undefined if the worker died or did not answer. */
  release(w: number, id: string, done: (state: DriverState | null | undefined) => void): void;
  /** The worker is alive (a grant to it would arrive). */
  alive(w: number): boolean;
  /** Reads back the active trips of these drivers (all of them with `null`), by driver id. */
  readBack(drivers: ReadonlySet<string> | null): Promise<Map<string, TripRecord>>;
  /** A trip read back whose driver never came back: ends it (as expired). */
  endTrip(record: TripRecord): void;
}

interface Entry {
  /** The worker that holds the driver, or -1 while none does. */
  owner: number;
  epoch: number;
  /** A handoff is under way: its claimant. -1 when none is. */
  busy: number;
  /** Claims waiting for the handoff under way, oldest first. */
  waiting: number[];
  /**
   * State released for a claimant that died before its grant: the next claimant gets it (the ring and
   * the trip), instead of it being lost.
   */
  stash: DriverState | null;
}

const NONE = -1;

export class Handoff {
  readonly #ports: HandoffPorts;
  readonly #entries = new Map<string, Entry>();
  /** Trips read back whose drivers no worker holds, by driver id: the next grant resumes each. */
  readonly #resumable = new Map<string, TripRecord>();
  /** Read-backs in order: a claim of a driver no one holds waits for all of them. */
  #readBacks: Promise<void> = Promise.resolve();

  constructor(ports: HandoffPorts) {
    this.#ports = ports;
  }

  /** Drivers in the directory (owned, or being handed over). */
  get size(): number {
    return this.#entries.size;
  }

  /** Trips read back and waiting for their drivers. */
  get resumable(): number {
    return this.#resumable.size;
  }

  /** The worker that holds the driver, if any (during a handoff: the one that held it before). */
  owner(id: string): number | undefined {
    const e = this.#entries.get(id);
    return e === undefined || e.owner === NONE ? undefined : e.owner;
  }

  /**
   * Reads back every active trip (at start-up), or those of some drivers (after their worker died); a
   * claim for a driver that no worker holds waits for the read-backs begun before it.
   */
  readBack(drivers: ReadonlySet<string> | null): Promise<void> {
    const load = async (): Promise<void> => {
      const found = await this.#ports.readBack(drivers);
      for (const [id, trip] of found) {
        // At start-up a driver may already be held (a claim raced the read-back); it has its trip then.
        if (drivers === null && this.owner(id) !== undefined) continue;
        this.#resumable.set(id, trip);
      }
    };
    this.#readBacks = this.#readBacks.then(load, load);
    return this.#readBacks;
  }

  claim(id: string, w: number): void {
    let e = this.#entries.get(id);
    if (e === undefined) {
      e = { owner: NONE, epoch: 0, busy: NONE, waiting: [], stash: null };
      this.#entries.set(id, e);
    }
    if (e.busy !== NONE) {
      // Its turn comes when the handoff under way is done; repeats of one claim count once.
      if (e.busy !== w && e.waiting.at(-1) !== w) e.waiting.push(w);
      return;
    }
    this.#start(id, e, w);
  }

  /** The worker let the driver go on its own (expired, revoked) while it owned it with this epoch. */
  drop(id: string, w: number, epoch: number): void {
    const e = this.#entries.get(id);
    if (e === undefined || e.busy !== NONE || e.owner !== w || e.epoch !== epoch) return;
    this.#entries.delete(id);
  }

  /** The driver was deleted through the API: forget it (a handoff under way still completes). */
  forget(id: string): void {
    const e = this.#entries.get(id);
    if (e !== undefined && e.busy === NONE) this.#entries.delete(id);
    this.#resumable.delete(id);
  }

  /**
   * A worker died: its drivers are nobody's until their next fix lands somewhere, and their trips are
   * read back from Redis (at most a second behind) before those claims are granted. Returns them.
   */
  workerDied(w: number): string[] {
    const orphans: string[] = [];
    for (const [id, e] of this.#entries) {
      if (e.owner !== w) continue;
      e.owner = NONE;
      if (e.busy === NONE && e.waiting.length === 0) this.#entries.delete(id);
      orphans.push(id);
    }
    for (const [, e] of this.#entries) e.waiting = e.waiting.filter((x) => x !== w);
    if (orphans.length > 0) void this.readBack(new Set(orphans));
    return orphans;
  }

  /** Trips read back whose drivers have not come back within maxAgeS of their last fix end as expired. */
  sweep(nowS: number, maxAgeS: number): number {
    let n = 0;
    for (const [id, t] of this.#resumable) {
      if (t.lastTime > nowS - maxAgeS) continue;
      this.#resumable.delete(id);
      this.#ports.endTrip({ ...t, active: false, endReason: 'expired' });
      n++;
    }
    return n;
  }

  #start(id: string, e: Entry, w: number): void {
    e.busy = w;
    const prev = e.owner;
    if (e.stash !== null) {
      const state = e.stash;
      e.stash = null;
      this.#finish(id, e, w, state, null);
    } else if (prev !== NONE && prev !== w && this.#ports.alive(prev)) {
      // The driver's fixes now reach another worker (its NAT mapping changed): move it, ring and trip.
      this.#ports.release(prev, id, (state) => {
        if (state === undefined) this.#resume(id, e, w);
        else this.#finish(id, e, w, state, null);
      });
    } else {
      // Nobody holds it (or w itself had let it go): it may have a trip to resume.
      this.#resume(id, e, w);
    }
  }

  #resume(id: string, e: Entry, w: number): void {
    this.#readBacks.then(() => {
      const trip = this.#resumable.get(id) ?? null;
      this.#resumable.delete(id);
      this.#finish(id, e, w, null, trip);
    });
  }

  #finish(id: string, e: Entry, w: number, state: DriverState | null, resume: TripRecord | null): void {
    e.busy = NONE;
    if (this.#ports.alive(w)) {
      e.owner = w;
      e.epoch++;
      this.#ports.grant(w, id, e.epoch, state, resume);
    } else {
      // The claimant died meanwhile: keep what it would have got for the next claimant.
      e.owner = NONE;
      if (state !== null) e.stash = state;
      else if (resume !== null) this.#resumable.set(id, resume);
    }
    const next = e.waiting.shift();
    if (next !== undefined) this.#start(id, e, next);
    else if (e.owner === NONE && e.stash === null && this.#entries.get(id) === e) this.#entries.delete(id);
  }
}
