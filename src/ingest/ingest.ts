import { decodeTrack } from '../codec/decode.ts';
import { Fix } from '../codec/fix.ts';
import { MAX_DATAGRAM_BYTES, Reason, type ReasonCode } from '../reasons.ts';
import { FAILED, type Lookup, PENDING, type SessionInfo, THROTTLED } from '../sessions/registry.ts';
import type { Driver, DriverState, TripRecord } from '../store/driver.ts';
import type { Shard } from '../store/shard.ts';
import { U64Map } from '../store/u64-map.ts';
import { IngestCounters } from './counters.ts';
import { checkFix } from './filter.ts';

/** Fixes held per driver while its ownership is being settled with the primary. */
export const MAX_PENDING_FIXES = 32;
/** A claim the primary has not answered by then is given up (its fixes counted as lookup_failed). */
export const CLAIM_TIMEOUT_MS = 5000;
/** Fixes held, in all, while their sessions are looked up; past it they count as queue_full. */
export const MAX_WAITING_FIXES = 20_000;

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
}

/** A driver claimed from the directory, and its fixes held until the grant. */
interface Claim {
  hi: number;
  lo: number;
  cab: string;
  since: number;
  fixes: Fix[];
}

/**
 * A worker's ingest: the per-datagram path, the fixes held while their session is looked up or their
 * driver claimed, and the counting. Every datagram is counted once, in one place (#settle): as
 * accepted, or as rejected for one reason, at once or when the fix it was held for is settled, so
 *
 *   received = accepted + rejected + held          at every moment, exactly.
 *
 * The hot path decodes into one scratch Fix; a fix that has to wait is copied into a Fix of its own,
 * and every later step takes the fix it works on as an argument, so nothing overwrites the scratch
 * while a held fix is being applied (issue 15).
 *
 * Pure of I/O: the registry, the directory and the clock are passed in (src/cluster/ingest-worker.ts
 * wires them to Redis or the primary, and to cluster IPC).
 */
export class Ingest {
  readonly counters = new IngestCounters();
  readonly #shard: Shard;
  readonly #registry: IngestOptions['registry'];
  readonly #ports: IngestPorts;
  readonly #clock: IngestOptions['clock'];
  readonly #idleS: number;
  readonly #fix = new Fix();
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
  }

  /** Fixes held, not yet counted as accepted or rejected. */
  get held(): number {
    return this.#waitingFixes + this.#claimedFixes;
  }

  /** Drivers claimed and not granted yet. */
  get claims(): number {
    return this.#claims.size;
  }

  /** The per-datagram path. Never throws: everything that can be wrong with a datagram is a reason. */
  datagram(buf: Uint8Array): void {
    this.counters.received++;
    if (buf.length > MAX_DATAGRAM_BYTES) {
      this.#settle(Reason.oversize);
      return;
    }
    const fix = this.#fix;
    if (!decodeTrack(buf, buf.length, fix)) {
      this.#settle(Reason.malformed);
      return;
    }
    const r = checkFix(fix, this.#clock.nowS, this.#idleS);
    if (r !== Reason.ok) {
      this.#settle(r);
      return;
    }
    const d = this.#shard.bySession(fix.sessionHi, fix.sessionLo);
    if (d !== undefined) this.#settle(this.#shard.ingest(d, fix, this.#clock.nowMs));
    else this.#unknownSession(fix);
  }

  /** The registry's answer for a session it said was PENDING. */
  resolved(hi: number, lo: number, result: SessionInfo | undefined | typeof FAILED): void {
    const list = this.#waiting.get(hi, lo);
    if (list === undefined) return;
    this.#waiting.delete(hi, lo);
    this.#waitingFixes -= list.length;
    for (const f of list) {
      if (result === undefined) this.#settle(Reason.unknownSession);
      else if (result === FAILED) this.#settle(Reason.lookupFailed);
      else {
        // A fix of the same session may have been applied meanwhile (it created the driver).
        const d = this.#shard.bySession(hi, lo);
        if (d === undefined) this.#known(result, f, true);
        else this.#settle(this.#shard.ingest(d, f, this.#clock.nowMs));
      }
    }
  }

  /**
   * The directory gives this worker the driver: with its state from the previous owner, or the trip it
   * had in progress (read back from Redis), or neither. Its held fixes are applied now.
   */
  grant(id: string, epoch: number, state: DriverState | null, resume: TripRecord | null): void {
    const c = this.#claims.get(id);
    const nowMs = this.#clock.nowMs;
    if (c === undefined) {
      // Revoked or deleted while the claim was in flight. A trip that came with the driver still ends
      // here, as the deletion's, rather than vanish; then the directory is told to forget the driver.
      if (state?.trip != null) {
        const d = this.#shard.add(id, state.cab, state.sessionHi, state.sessionLo, nowMs, state);
        this.#shard.remove(d, 'deleted');
      }
      this.#ports.dropped(id, epoch);
      return;
    }
    this.#claims.delete(id);
    this.#claimedFixes -= c.fixes.length;
    const d = this.#shard.add(id, c.cab, c.hi, c.lo, nowMs, state ?? undefined);
    d.epoch = epoch;
    if (state !== null) this.counters.handoffs++;
    else if (resume !== null) this.#shard.resumeTrip(d, resume);
    for (const f of c.fixes) this.#settle(this.#shard.ingest(d, f, nowMs));
  }

  /** The directory moves the driver to another worker: its state goes with it (null if not here). */
  release(id: string): DriverState | null {
    const d = this.#shard.drivers.get(id);
    if (d === undefined) return null;
    const state = this.#shard.exportState(d);
    this.#shard.remove(d, 'released');
    return state;
  }

  /** The session was revoked (the API, or dispatch on the channel): its driver goes at once. */
  revoke(hi: number, lo: number): boolean {
    const d = this.#shard.bySession(hi, lo);
    if (d !== undefined) this.#shard.remove(d, 'revoked');
    for (const [id, c] of this.#claims) if (c.hi === hi && c.lo === lo) this.#dropClaim(id, c);
    const list = this.#waiting.get(hi, lo);
    if (list !== undefined) {
      this.#waiting.delete(hi, lo);
      this.#waitingFixes -= list.length;
      for (let i = 0; i < list.length; i++) this.#settle(Reason.unknownSession);
    }
    return d !== undefined;
  }

  /** An operator removed the driver: it goes at once; returns whether it was here, and its session. */
  remove(id: string): { removed: boolean; session: [number, number] | null } {
    const c = this.#claims.get(id);
    if (c !== undefined) this.#dropClaim(id, c);
    const d = this.#shard.drivers.get(id);
    if (d === undefined) return { removed: false, session: null };
    const session: [number, number] = [d.sessionHi, d.sessionLo];
    this.#shard.remove(d, 'deleted');
    return { removed: true, session };
  }

  /** Claims the primary never answered (it was busy or gone) are given up: their fixes fail. */
  expireClaims(): number {
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
  driverRemoved(d: Driver, why: string): void {
    if (why === 'expired' || why === 'revoked') this.#ports.dropped(d.id, d.epoch);
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
    const local = this.#shard.drivers.get(info.driverId);
    if (local !== undefined) {
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
