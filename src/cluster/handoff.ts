import type { DriverState, TripRecord } from '../store/driver.ts';
import { Names } from '../store/names.ts';

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
  /**
   * Several hosts (src/hosts/host-layer.ts): a driver no worker here holds is about to be granted; make
   * it this host's and bring what another host had of it, or null when no other host had it (the local
   * read-back decides then). Never rejects. Absent on a single host.
   */
  acquire?(id: string): Promise<{ state: DriverState | null; trip: TripRecord | null } | null>;
}

const NONE = -1;
/** The claimant when another host takes the driver (handOver): it is given the state, not a grant. */
const ANOTHER_HOST = -2;

export class Handoff {
  readonly #ports: HandoffPorts;
  /**
   * The directory, one entry per driver, with no object per driver (a Map of entry objects was about
   * 100 B a driver of the primary's memory at a million; bench/memory.ts, issue 14): the driver's id
   * interned in a Names arena (src/store/names.ts), whose slot is the entry's number in these arrays.
   */
  readonly #ids = new Names();
  /** The worker that holds the driver, or NONE while none does. */
  #owner = new Int32Array(1024);
  /** The count of the driver's grants. */
  #epoch = new Uint32Array(1024);
  /** A handoff is under way: its claimant. NONE when none is. */
  #busy = new Int32Array(1024);
  #free: number[] = [];
  #next = 0;
  /** Claims waiting for the handoff under way, oldest first, by entry (only while one is). */
  readonly #waiting = new Map<number, number[]>();
  /**
   * State released for a claimant that died before its grant, by entry: the next claimant gets it
   * (the ring and the trip), instead of it being lost.
   */
  readonly #stash = new Map<number, DriverState>();
  /** Trips read back whose drivers no worker holds, by driver id: the next grant resumes each. */
  readonly #resumable = new Map<string, TripRecord>();
  /** Read-backs in order: a claim of a driver no one holds waits for all of them. */
  #readBacks: Promise<void> = Promise.resolve();
  /** Hand-overs to other hosts waiting for their turn, by driver id, oldest first. */
  readonly #handOvers = new Map<string, Array<(state: DriverState | null) => void>>();

  constructor(ports: HandoffPorts) {
    this.#ports = ports;
  }

  /** Drivers in the directory (owned, or being handed over). */
  get size(): number {
    return this.#ids.size;
  }

  /** Trips read back and waiting for their drivers. */
  get resumable(): number {
    return this.#resumable.size;
  }

  /** The worker that holds the driver, if any (during a handoff: the one that held it before). */
  owner(id: string): number | undefined {
    const e = this.#ids.find(id);
    return e === NONE || this.#owner[e] === NONE ? undefined : this.#owner[e];
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
    let e = this.#ids.find(id);
    if (e === NONE) e = this.#add(id);
    if (this.#busy[e] !== NONE) {
      // Its turn comes when the handoff under way is done; repeats of one claim count once.
      const q = this.#waiting.get(e);
      if (this.#busy[e] !== w && q?.at(-1) !== w) {
        if (q === undefined) this.#waiting.set(e, [w]);
        else q.push(w);
      }
      return;
    }
    this.#start(id, e, w);
  }

  /**
   * Another host has taken the driver (src/hosts/): this host lets it go, and resolves with its state
   * (null when no worker here had it). It waits its turn behind a handoff under way, like a claim, and
   * a claim after it starts over (through the directory, from the host that has it now). A trip read
   * back here for the driver is forgotten: the other host has it, and ending it here would be wrong.
   */
  handOver(id: string): Promise<DriverState | null> {
    this.#resumable.delete(id);
    const e = this.#ids.find(id);
    if (e === NONE) return Promise.resolve(null);
    return new Promise((resolve) => {
      const q = this.#handOvers.get(id);
      if (q === undefined) this.#handOvers.set(id, [resolve]);
      else q.push(resolve);
      this.claim(id, ANOTHER_HOST);
    });
  }

  /** The drivers that workers of this host hold. */
  owned(): string[] {
    const out: string[] = [];
    for (let e = 0; e < this.#next; e++) {
      if (this.#owner[e]! >= 0 && this.#ids.has(e)) out.push(this.#ids.id(e));
    }
    return out;
  }

  /** The worker let the driver go on its own (expired, revoked) while it owned it with this epoch. */
  drop(id: string, w: number, epoch: number): void {
    const e = this.#ids.find(id);
    if (e === NONE || this.#busy[e] !== NONE || this.#owner[e] !== w || this.#epoch[e] !== epoch) return;
    this.#delete(e);
  }

  /** The driver was deleted through the API: forget it (a handoff under way still completes). */
  forget(id: string): void {
    const e = this.#ids.find(id);
    if (e !== NONE && this.#busy[e] === NONE) this.#delete(e);
    this.#resumable.delete(id);
  }

  /**
   * A worker died: its drivers are nobody's until their next fix lands somewhere, and their trips are
   * read back from Redis (at most a second behind) before those claims are granted. Returns them.
   */
  workerDied(w: number): string[] {
    const orphans: string[] = [];
    for (let e = 0; e < this.#next; e++) {
      if (this.#owner[e] !== w || !this.#ids.has(e)) continue;
      const id = this.#ids.id(e);
      this.#owner[e] = NONE;
      if (this.#busy[e] === NONE && !this.#waiting.has(e)) this.#delete(e);
      orphans.push(id);
    }
    for (const [e, q] of this.#waiting) {
      const left = q.filter((x) => x !== w);
      if (left.length > 0) this.#waiting.set(e, left);
      else this.#waiting.delete(e);
    }
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

  /** A new entry, nobody's. */
  #add(id: string): number {
    const e = this.#free.pop() ?? this.#next++;
    if (e >= this.#owner.length) {
      const n = this.#owner.length * 2;
      this.#owner = grown(this.#owner, new Int32Array(n));
      this.#epoch = grown(this.#epoch, new Uint32Array(n));
      this.#busy = grown(this.#busy, new Int32Array(n));
    }
    this.#ids.setText(e, id, '');
    this.#owner[e] = NONE;
    this.#epoch[e] = 0;
    this.#busy[e] = NONE;
    return e;
  }

  #delete(e: number): void {
    this.#ids.delete(e);
    this.#waiting.delete(e);
    this.#stash.delete(e);
    this.#free.push(e);
  }

  // An entry with a handoff under way (busy) is never deleted, so `e` stays this driver's through the
  // callbacks below.
  #start(id: string, e: number, w: number): void {
    this.#busy[e] = w;
    const prev = this.#owner[e]!;
    const stash = this.#stash.get(e);
    if (stash !== undefined) {
      this.#stash.delete(e);
      this.#finish(id, e, w, stash, null);
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

  #resume(id: string, e: number, w: number): void {
    if (w === ANOTHER_HOST) {
      // No worker here has it (any more): nothing to give.
      this.#finish(id, e, w, null, null);
      return;
    }
    const acquire = this.#ports.acquire;
    if (acquire === undefined) {
      this.#resumeHere(id, e, w);
      return;
    }
    // Several hosts: the directory first. What another host had wins over a trip read back here.
    acquire(id).then((got) => {
      if (got === null) {
        this.#resumeHere(id, e, w);
        return;
      }
      this.#resumable.delete(id);
      this.#finish(id, e, w, got.state, got.state === null ? got.trip : null);
    });
  }

  #resumeHere(id: string, e: number, w: number): void {
    this.#readBacks.then(() => {
      const trip = this.#resumable.get(id) ?? null;
      this.#resumable.delete(id);
      this.#finish(id, e, w, null, trip);
    });
  }

  #finish(id: string, e: number, w: number, state: DriverState | null, resume: TripRecord | null): void {
    this.#busy[e] = NONE;
    if (w === ANOTHER_HOST) {
      // Gone to another host: nobody's here.
      this.#owner[e] = NONE;
      // The first hand-over waiting gets the state; any others asked meanwhile (repeats) get none.
      const q = this.#handOvers.get(id) ?? [];
      this.#handOvers.delete(id);
      for (let i = 0; i < q.length; i++) q[i]!(i === 0 ? state : null);
    } else if (this.#ports.alive(w)) {
      this.#owner[e] = w;
      this.#epoch[e]!++;
      this.#ports.grant(w, id, this.#epoch[e]!, state, resume);
    } else {
      // The claimant died meanwhile: keep what it would have got for the next claimant.
      this.#owner[e] = NONE;
      if (state !== null) this.#stash.set(e, state);
      else if (resume !== null) this.#resumable.set(id, resume);
    }
    const q = this.#waiting.get(e);
    const next = q?.shift();
    if (q !== undefined && q.length === 0) this.#waiting.delete(e);
    if (next !== undefined) this.#start(id, e, next);
    else if (this.#owner[e] === NONE && !this.#stash.has(e) && this.#ids.has(e)) this.#delete(e);
  }
}

function grown<T extends Int32Array | Uint32Array>(from: T, to: T): T {
  to.set(from as never);
  return to;
}
