import { decodeTrack } from '../codec/decode.ts';
import { Fix } from '../codec/fix.ts';
import { MAX_DATAGRAM_BYTES, Reason, type ReasonCode } from '../reasons.ts';
import { FAILED, type Lookup, PENDING, type SessionInfo, THROTTLED } from '../sessions/registry.ts';
import type { DriverState, TripRecord } from '../store/driver.ts';
import { NO_SLOT, type RemoveReason, type Shard } from '../store/shard.ts';
import { U64Map } from '../store/u64-map.ts';
import { IngestCounters } from './counters.ts';
import { checkFix } from './filter.ts';

/** Fixes held per driver while its ownership is being settled with the primary. */
export const MAX_PENDING_FIXES = 32;
/** A claim the primary has not answered by then is given up (its fixes counted as lookup_failed). */
export const CLAIM_TIMEOUT_MS = 5000;
/** Fixes held, in all, while their sessions are looked up; past it they count as queue_full. */
export const MAX_WAITING_FIXES = 20_000;
/**
 * Datagrams applied together, at most. libuv reads up to 32 datagrams from a socket per event-loop
 * turn (uv__udp_io), each one a call of datagram(); the batch is applied when the turn's reads are
 * done, or as soon as it is full.
 */
export const BATCH = 32;

/** What the ingest path asks of the world around it. */
export interface IngestPorts {
  /** Asks the directory for a driver whose fixes now reach this worker; grant() answers. */
  claim(id: string): void;
  /** This worker let a driver go on its own (it expired, its session was revoked): the directory may
   * forget it, if it still records this ownership (epoch). */
  dropped(id: string, epoch: number): void;
}

export interface IngestOptions {
  shard: Shard;
  /** Looks up sessions of drivers the shard does not hold; calls resolved() for those it answers PENDING. */
  registry: { lookup(hi: number, lo: number): Lookup };
  ports: IngestPorts;
  /** The coarse clock, read by the hot path instead of a clock call per datagram. */
  clock: { readonly nowMs: number; readonly nowS: number };
  idleTimeoutS: number;
  /**
   * Schedules flush() for when the current burst of datagrams has been read (the worker passes
   * setImmediate: after the event loop's I/O phase). Without it every datagram is applied at once, a
   * batch of one.
   */
  defer?: (flush: () => void) => void;
}

/** A driver claimed from the directory, and its fixes held until the grant. */
interface Claim {
  hi: number;
  lo: number;
  cab: string;
  since: number;
  fixes: Fix[];
}

/** A staged fix that passed the checks that need no driver, and whose session is not looked up yet. */
const UNSEEN = -2;

/**
 * A worker's ingest: the per-datagram path, the fixes held while their session is looked up or their
 * driver claimed, and the counting. Every datagram is counted once, in one place (#settle): as
 * accepted, or as rejected for one reason, at once or when the fix it was held for is settled, so
 *
 *   received = accepted + rejected + held          at every moment, exactly
 *
 * (datagrams staged for the next flush count as held).
 *
 * Datagrams are applied in batches (up to BATCH, what one event-loop turn reads), in stages, each a
 * loop over the batch: decode and check every datagram; prefetch every session's place in the index;
 * look every session up and prefetch its driver's lines; apply every fix, in arrival order. With a
 * million drivers the index and the drivers' records are far bigger than the caches, and a fix looked
 * up and applied on its own waits for each of its cache misses in turn (about 150 ns each here); in
 * tight loops over a batch the misses of different fixes overlap (bench/cost-growth.ts: 473 ns a
 * datagram at 1M drivers one at a time, 315 ns in batches; 182 and 248 ns at 10k). Everything else
 * that touches the drivers (lookups answered, grants, releases, revocations, removals) first applies
 * the staged batch, so the order of events is the order they arrived in. The clock is read once a batch.
 *
 * Decoded fixes live in a pool of BATCH scratch Fixes; a fix that has to wait is copied into a Fix of
 * its own, and every later step takes the fix it works on as an argument, so nothing overwrites a
 * scratch fix while a held fix is being applied (issue 15).
 *
 * Pure of I/O: the registry, the directory, the clock and the scheduling of flushes are passed in
 * (src/cluster/ingest-worker.ts wires them to Redis or the primary, cluster IPC and setImmediate).
 */
export class Ingest {
  readonly counters = new IngestCounters();
  readonly #shard: Shard;
  readonly #registry: IngestOptions['registry'];
  readonly #ports: IngestPorts;
  readonly #clock: IngestOptions['clock'];
  readonly #idleS: number;
  readonly #defer: ((flush: () => void) => void) | null;
  readonly #deferred = (): void => {
    this.#scheduled = false;
    this.flush();
  };
  /** The staged batch: datagrams (held until flushed), then per datagram its fix, verdict and slot. */
  readonly #bufs: Array<Uint8Array | null> = new Array<Uint8Array | null>(BATCH).fill(null);
  readonly #fixes: Fix[] = Array.from({ length: BATCH }, () => new Fix());
  readonly #verdicts = new Uint8Array(BATCH);
  readonly #slots = new Int32Array(BATCH);
  /** What the prefetches loaded, kept so that the loads are not optimised away. */
  readonly #warmed = new Int32Array(BATCH);
  #staged = 0;
  /** Staged datagrams not settled yet (counted in held). */
  #unsettled = 0;
  #scheduled = false;
  #flushing = false;
  /** Fixes whose session is being looked up, by session. */
  readonly #waiting = new U64Map<Fix[]>();
  #waitingFixes = 0;
  readonly #claims = new Map<string, Claim>();
  #claimedFixes = 0;

  constructor(o: IngestOptions) {
    this.#shard = o.shard;
    this.#registry = o.registry;
    this.#ports = o.ports;
    this.#clock = o.clock;
    this.#idleS = o.idleTimeoutS;
    this.#defer = o.defer ?? null;
  }

  /** Fixes held, not yet counted as accepted or rejected. */
  get held(): number {
    return this.#unsettled + this.#waitingFixes + this.#claimedFixes;
  }

  /** Drivers claimed and not granted yet. */
  get claims(): number {
    return this.#claims.size;
  }

  /**
   * The per-datagram path. Never throws: everything that can be wrong with a datagram is a reason.
   * `buf` is read when the batch is flushed: it must not change until then (dgram gives each datagram
   * a buffer of its own).
   */
  datagram(buf: Uint8Array): void {
    this.counters.received++;
    if (buf.length > MAX_DATAGRAM_BYTES) {
      this.#settle(Reason.oversize);
      return;
    }
    this.#bufs[this.#staged++] = buf;
    this.#unsettled++;
    if (this.#staged === BATCH || this.#defer === null) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      this.#defer(this.#deferred);
    }
  }

  /** Applies the staged datagrams. Called from within itself (a grant inside a claim), it does nothing. */
  flush(): void {
    const n = this.#staged;
    if (n === 0 || this.#flushing) return;
    this.#flushing = true;
    const shard = this.#shard;
    const bufs = this.#bufs;
    const fixes = this.#fixes;
    const verdicts = this.#verdicts;
    const slots = this.#slots;
    const warmed = this.#warmed;
    const nowS = this.#clock.nowS;
    const nowMs = this.#clock.nowMs;
    try {
      // Decode and check each datagram on its own.
      for (let i = 0; i < n; i++) {
        const buf = bufs[i]!;
        bufs[i] = null;
        const fix = fixes[i]!;
        verdicts[i] = decodeTrack(buf, buf.length, fix) ? checkFix(fix, nowS, this.#idleS) : Reason.malformed;
      }
      // Prefetch every session's place in the index, then look each up and prefetch its driver.
      for (let i = 0; i < n; i++) {
        if (verdicts[i] === Reason.ok)
          warmed[i] = shard.warmSession(fixes[i]!.sessionHi, fixes[i]!.sessionLo);
      }
      for (let i = 0; i < n; i++) {
        slots[i] = UNSEEN;
        if (verdicts[i] !== Reason.ok) continue;
        const slot = shard.bySession(fixes[i]!.sessionHi, fixes[i]!.sessionLo);
        slots[i] = slot;
        if (slot !== NO_SLOT) warmed[i] = shard.warmDriver(slot);
      }
      // Apply, in arrival order. A driver added or removed meanwhile (a grant) may move a session to
      // another slot: then look the rest up again.
      const version = shard.version;
      for (let i = 0; i < n; i++) {
        this.#unsettled--;
        const r = verdicts[i]! as ReasonCode;
        if (r !== Reason.ok) {
          this.#settle(r);
          continue;
        }
        const fix = fixes[i]!;
        let slot = slots[i]!;
        if (shard.version !== version) slot = shard.bySession(fix.sessionHi, fix.sessionLo);
        if (slot !== NO_SLOT) this.#settle(shard.ingest(slot, fix, nowMs));
        else this.#unknownSession(fix);
      }
    } finally {
      this.#staged = 0;
      this.#flushing = false;
    }
  }

  /**
   * The registry's answer for a session it said was PENDING. Unlike the other events, the fixes that
   * waited for it go before the staged batch: they arrived first, and the registry has cached its
   * answer by now, so a staged fix of the same session applied first would claim (or reach) the driver
   * ahead of them and they would be refused as stale (a CI failure of daemon-handoff: two fixes a
   * second apart, the second one staged when the lookup of the first was answered). The staged batch
   * is held back until they are applied, even from a grant that arrives inside a claim.
   */
  resolved(hi: number, lo: number, result: SessionInfo | undefined | typeof FAILED): void {
    const list = this.#waiting.get(hi, lo);
    if (list === undefined) {
      this.flush();
      return;
    }
    this.#waiting.delete(hi, lo);
    this.#waitingFixes -= list.length;
    const nested = this.#flushing;
    this.#flushing = true;
    try {
      for (const f of list) {
        if (result === undefined) this.#settle(Reason.unknownSession);
        else if (result === FAILED) this.#settle(Reason.lookupFailed);
        else {
          // A fix of the same session may have been applied meanwhile (it created the driver).
          const slot = this.#shard.bySession(hi, lo);
          if (slot === NO_SLOT) this.#known(result, f, true);
          else this.#settle(this.#shard.ingest(slot, f, this.#clock.nowMs));
        }
      }
    } finally {
      this.#flushing = nested;
    }
    this.flush();
  }

  /**
   * The directory gives this worker the driver: with its state from the previous owner, or the trip it
   * had in progress (read back from Redis), or neither. Its held fixes are applied now.
   */
  grant(id: string, epoch: number, state: DriverState | null, resume: TripRecord | null): void {
    this.flush();
    const c = this.#claims.get(id);
    const nowMs = this.#clock.nowMs;
    if (c === undefined) {
      // Revoked or deleted while the claim was in flight. A trip that came with the driver still ends
      // here, as the deletion's, rather than vanish; then the directory is told to forget the driver.
      if (state?.trip != null) {
        const slot = this.#shard.add(id, state.cab, state.sessionHi, state.sessionLo, nowMs, state);
        this.#shard.remove(slot, 'deleted');
      }
      this.#ports.dropped(id, epoch);
      return;
    }
    this.#claims.delete(id);
    this.#claimedFixes -= c.fixes.length;
    const slot = this.#shard.add(id, c.cab, c.hi, c.lo, nowMs, state ?? undefined);
    this.#shard.setEpoch(slot, epoch);
    if (state !== null) this.counters.handoffs++;
    else if (resume !== null) this.#shard.resumeTrip(slot, resume);
    for (const f of c.fixes) this.#settle(this.#shard.ingest(slot, f, nowMs));
  }

  /** The directory moves the driver to another worker: its state goes with it (null if not here). */
  release(id: string): DriverState | null {
    this.flush();
    const slot = this.#shard.byId(id);
    if (slot === NO_SLOT) return null;
    const state = this.#shard.exportState(slot);
    this.#shard.remove(slot, 'released');
    return state;
  }

  /** The session was revoked (the API, or dispatch on the channel): its driver goes at once. */
  revoke(hi: number, lo: number): boolean {
    this.flush();
    const slot = this.#shard.bySession(hi, lo);
    if (slot !== NO_SLOT) this.#shard.remove(slot, 'revoked');
    for (const [id, c] of this.#claims) if (c.hi === hi && c.lo === lo) this.#dropClaim(id, c);
    const list = this.#waiting.get(hi, lo);
    if (list !== undefined) {
      this.#waiting.delete(hi, lo);
      this.#waitingFixes -= list.length;
      for (let i = 0; i < list.length; i++) this.#settle(Reason.unknownSession);
    }
    return slot !== NO_SLOT;
  }

  /** An operator removed the driver: it goes at once; returns whether it was here, and its session. */
  remove(id: string): { removed: boolean; session: [number, number] | null } {
    this.flush();
    const c = this.#claims.get(id);
    if (c !== undefined) this.#dropClaim(id, c);
    const slot = this.#shard.byId(id);
    if (slot === NO_SLOT) return { removed: false, session: null };
    const session: [number, number] = [this.#shard.sessionHi(slot), this.#shard.sessionLo(slot)];
    this.#shard.remove(slot, 'deleted');
    return { removed: true, session };
  }

  /** Claims the primary never answered (it was busy or gone) are given up: their fixes fail. */
  expireClaims(): number {
    this.flush();
    const cutoff = this.#clock.nowMs - CLAIM_TIMEOUT_MS;
    let n = 0;
    for (const [id, c] of this.#claims) {
      if (c.since > cutoff) continue;
      this.#claims.delete(id);
      this.#claimedFixes -= c.fixes.length;
      for (let i = 0; i < c.fixes.length; i++) this.#settle(Reason.lookupFailed);
      n++;
    }
    return n;
  }

  /** The shard let a driver go on its own: the directory hears of it (with the ownership's epoch). */
  driverRemoved(id: string, epoch: number, why: RemoveReason): void {
    if (why === 'expired' || why === 'revoked') this.#ports.dropped(id, epoch);
  }

  /** One datagram's fate: the only place that counts accepted and rejected. */
  #settle(r: ReasonCode): void {
    if (r === Reason.ok) this.counters.accepted++;
    else this.counters.rejected[r]!++;
  }

  /** A fix from a session this worker has no driver for. */
  #unknownSession(fix: Fix): void {
    const info = this.#registry.lookup(fix.sessionHi, fix.sessionLo);
    if (info === undefined) this.#settle(Reason.unknownSession);
    else if (info === FAILED) this.#settle(Reason.lookupFailed);
    else if (info === THROTTLED) this.#settle(Reason.throttled);
    else if (info === PENDING) this.#wait(fix);
    else this.#known(info, fix, false);
  }

  /** Holds the fix until its session's lookup is answered. */
  #wait(fix: Fix): void {
    if (this.#waitingFixes >= MAX_WAITING_FIXES) {
      this.#settle(Reason.queueFull);
      return;
    }
    let list = this.#waiting.get(fix.sessionHi, fix.sessionLo);
    if (list === undefined) {
      list = [];
      this.#waiting.set(fix.sessionHi, fix.sessionLo, list);
    }
    list.push(copyOf(fix));
    this.#waitingFixes++;
  }

  /** A fix from a known session whose driver this worker does not hold (yet). `own`: the fix is a held copy. */
  #known(info: SessionInfo, fix: Fix, own: boolean): void {
    const local = this.#shard.byId(info.driverId);
    if (local !== NO_SLOT) {
      // The driver logged in again: same driver, new session.
      this.#shard.rebindSession(local, fix.sessionHi, fix.sessionLo, info.cab);
      this.#settle(this.#shard.ingest(local, fix, this.#clock.nowMs));
      return;
    }
    let c = this.#claims.get(info.driverId);
    const fresh = c === undefined;
    if (c === undefined) {
      c = { hi: fix.sessionHi, lo: fix.sessionLo, cab: info.cab, since: this.#clock.nowMs, fixes: [] };
      this.#claims.set(info.driverId, c);
    }
    if (c.fixes.length >= MAX_PENDING_FIXES) {
      this.#settle(Reason.queueFull);
      return;
    }
    c.fixes.push(own ? fix : copyOf(fix));
    this.#claimedFixes++;
    // Held before the claim goes out: a directory that grants at once, inside claim(), finds it.
    if (fresh) this.#ports.claim(info.driverId);
  }

  /** A claim given up (its driver revoked or removed meanwhile): its held fixes are refused. */
  #dropClaim(id: string, c: Claim): void {
    this.#claims.delete(id);
    this.#claimedFixes -= c.fixes.length;
    for (let i = 0; i < c.fixes.length; i++) this.#settle(Reason.unknownSession);
  }
}

function copyOf(fix: Fix): Fix {
  return Object.assign(new Fix(), fix);
}
