import cluster from 'node:cluster';
import dgram from 'node:dgram';
import { decodeTrack } from '../codec/decode.ts';
import { Fix } from '../codec/fix.ts';
import type { Config } from '../config.ts';
import { IngestCounters } from '../ingest/counters.ts';
import { checkFix } from '../ingest/filter.ts';
import { MAX_DATAGRAM_BYTES, Reason } from '../ingest/reasons.ts';
import { log } from '../log.ts';
import { addRedisMetrics, addSessionLookupMetrics, workerRegistry } from '../metrics.ts';
import { OsrmClient } from '../osrm/client.ts';
import { PathMatcher } from '../paths/path-matcher.ts';
import { connectRedis } from '../redis/connect.ts';
import { PrimaryRegistry } from '../sessions/primary-registry.ts';
import { RedisRegistry } from '../sessions/redis-registry.ts';
import { FAILED, PENDING, type SessionInfo, THROTTLED } from '../sessions/registry.ts';
import type { Driver, DriverState, TripRecord } from '../store/driver.ts';
import { tripRecord } from '../store/driver.ts';
import { Shard } from '../store/shard.ts';
import { U64Map } from '../store/u64-map.ts';
import { TripStore } from '../trips/trip-store.ts';
import type { DriverView, FromWorker, QueryOp, ToWorker } from './messages.ts';

/** Fixes held per driver while its ownership is being settled with the primary. */
const MAX_PENDING_FIXES = 32;
/** A claim the primary has not answered by then is given up (its fixes counted as lookup_failed). */
const CLAIM_TIMEOUT_MS = 5000;
/** Fixes held, in all, while their sessions are looked up; past it they count as queue_full. */
const MAX_WAITING_FIXES = 20_000;

interface PendingClaim {
  hi: number;
  lo: number;
  cab: string;
  since: number;
  fixes: Fix[];
}

/** The clock, read once per timer tick instead of once per datagram. */
class CoarseClock {
  nowMs = Date.now();
  nowS = Math.floor(this.nowMs / 1000);
  tick(): void {
    this.nowMs = Date.now();
    this.nowS = Math.floor(this.nowMs / 1000);
  }
}

/**
 * A worker: one UDP socket on the shared port (SO_REUSEPORT, so the kernel spreads drivers across
 * workers by source address and keeps each driver on one), and the shard of the drivers it receives.
 */
export function startWorker(config: Config): void {
  const send = (m: FromWorker): void => {
    if (process.connected) process.send!(m);
  };
  const counters = new IngestCounters();
  /** Live drivers' sessions checked again in Redis, by outcome (see recheckSessions). */
  const rechecks = { valid: 0, gone: 0, error: 0 };
  const clock = new CoarseClock();
  const pending = new Map<string, PendingClaim>();
  /**
   * Drivers this worker let go of on its own (expired, revoked), for the primary's directory: sent once a
   * second. A claim for one of them sent before then cancels its entry, so the primary never reads a stale
   * drop after the new claim and forgets an owner that has the driver again.
   */
  const dropped = new Set<string>();
  const redis = connectRedis(config, `worker-${cluster.worker?.id}`);
  /** Fixes whose session is being looked up (in Redis, or from the primary), by session. */
  const waiting = new U64Map<Fix[]>();
  let waitingFixes = 0;
  const registry =
    redis === null
      ? new PrimaryRegistry({
          ask: (id, his, los) => send({ t: 'lookup', id, his, los }),
          up: () => process.connected === true,
          now: () => clock.nowMs,
          onResolved: (hi, lo, result) => resolved(hi, lo, result),
        })
      : new RedisRegistry({
          redis,
          lookupsPerSecond: config.sessionLookupsPerS,
          now: () => clock.nowMs,
          onResolved: (hi, lo, result) => resolved(hi, lo, result),
          onRevoked: (hi, lo) => revoked(hi, lo),
          onError: (err) => log.warn('session registry', { err: err.message }),
        });
  const trips =
    redis === null
      ? null
      : new TripStore({ redis, onError: (err) => log.warn('trip store', { err: err.message }) });
  const shard = new Shard({
    trackPoints: config.trackPoints,
    idleTimeoutS: config.idleTimeoutS,
    maxSpeedKmh: config.maxSpeedKmh,
    finishedTrips: config.finishedTrips,
    onTripEnd: (record) => {
      counters.tripsEnded++;
      trips?.end(record);
    },
    onDriverRemoved: (d, why) => {
      // Expired or revoked (through the API or the channel): the primary's directory must let the driver
      // go, or it would keep an entry for every driver that logs out and never comes back. A release is
      // a handoff (the directory has the new owner already); a deletion the primary made itself.
      if (why === 'expired' || why === 'revoked') dropped.add(d.id);
    },
  });
  const fix = new Fix();
  let recvBufferBytes = 0;
  const paths = new PathMatcher({ match: null });
  const metrics = workerRegistry(
    counters,
    {
      drivers: () => shard.size,
      activeTrips: () => shard.activeTrips,
      paddingM: () => shard.paddingM,
      recvBufferBytes: () => recvBufferBytes,
      osrmBreakerOpen: () => osrm !== null && osrm.breakerState !== 'closed',
    },
    paths.counters,
  );
  const osrm =
    config.osrmUrl === ''
      ? null
      : new OsrmClient({
          url: config.osrmUrl,
          timeoutMs: config.osrmTimeoutMs,
          onOutcome: metrics.osrmRequest,
        });
  paths.setMatcher(osrm === null ? null : (points, signal) => osrm.match(points, signal));
  addSessionLookupMetrics(metrics.register, registry.outcomes);
  if (redis !== null && trips !== null) {
    addRedisMetrics(metrics.register, {
      up: () => redis.status === 'ready',
      sessionRechecks: rechecks,
      tripWrites: trips.writes,
      tripBuffer: () => trips.buffered,
    });
  }

  const reject = (reason: number): void => {
    counters.rejected[reason]!++;
  };

  /** A fix from a session this worker has no driver for. */
  const unknownSession = (): void => {
    const info = registry.lookup(fix.sessionHi, fix.sessionLo);
    if (info === undefined) reject(Reason.unknownSession);
    else if (info === FAILED) reject(Reason.lookupFailed);
    else if (info === PENDING) wait();
    else if (info === THROTTLED) reject(Reason.throttled);
    else known(info);
  };

  /** Holds the fix until its session's lookup is answered (a known driver never waits: it has a driver). */
  const wait = (): void => {
    if (waitingFixes >= MAX_WAITING_FIXES) {
      reject(Reason.queueFull);
      return;
    }
    let list = waiting.get(fix.sessionHi, fix.sessionLo);
    if (list === undefined) {
      list = [];
      waiting.set(fix.sessionHi, fix.sessionLo, list);
    }
    list.push(Object.assign(new Fix(), fix));
    waitingFixes++;
  };

  const resolved = (hi: number, lo: number, result: SessionInfo | undefined | typeof FAILED): void => {
    const list = waiting.get(hi, lo);
    if (list === undefined) return;
    waiting.delete(hi, lo);
    waitingFixes -= list.length;
    for (const f of list) {
      if (result === undefined) reject(Reason.unknownSession);
      else if (result === FAILED) reject(Reason.lookupFailed);
      else {
        Object.assign(fix, f);
        // A fix of the same session may have been applied meanwhile (it created the driver).
        const d = shard.bySession(hi, lo);
        if (d === undefined) known(result);
        else apply(d);
      }
    }
  };

  /** Revoked by the dispatch system (the channel) or through the API: the driver goes at once. */
  const revoked = (hi: number, lo: number): boolean => {
    const removed = removeDriver(shard.bySession(hi, lo), 'revoked');
    for (const [id, p] of pending) if (p.hi === hi && p.lo === lo) dropClaim(id, p);
    const list = waiting.get(hi, lo);
    if (list !== undefined) {
      waiting.delete(hi, lo);
      waitingFixes -= list.length;
      counters.rejected[Reason.unknownSession]! += list.length;
    }
    return removed;
  };

  /**
   * With Redis, the sessions of live drivers are checked again, a slice a second, so each one at least
   * every sessionRecheckS: a session key that dispatch let expire, or deleted without publishing on
   * cabtrack:revoke, removes its driver within that time instead of never (a live driver's fixes never
   * ask the registry). One EXISTS per live driver per period, pipelined.
   */
  let recheckCursor: Iterator<Driver> | null = null;
  let rechecking = false;
  const recheckSessions = (): void => {
    if (!(registry instanceof RedisRegistry) || rechecking || !registry.up || shard.size === 0) return;
    const want = Math.ceil(shard.size / config.sessionRecheckS);
    const batch: Driver[] = [];
    recheckCursor ??= shard.drivers.values();
    while (batch.length < want) {
      const next = recheckCursor.next();
      if (next.done === true) {
        // A full pass: the next tick starts another (a Map iterator sees drivers added meanwhile).
        recheckCursor = null;
        break;
      }
      batch.push(next.value);
    }
    if (batch.length === 0) return;
    const his = batch.map((d) => d.sessionHi);
    const los = batch.map((d) => d.sessionLo);
    rechecking = true;
    registry
      .exist(his, los)
      .then((found) => {
        for (let i = 0; i < batch.length; i++) {
          const d = batch[i]!;
          if (found[i] === null) rechecks.error++;
          else if (found[i]) rechecks.valid++;
          else rechecks.gone++;
          // Still this worker's driver, on the session that was checked.
          if (found[i] !== false || shard.drivers.get(d.id) !== d) continue;
          if (d.sessionHi !== his[i] || d.sessionLo !== los[i]) continue;
          removeDriver(d, 'revoked');
        }
      })
      .finally(() => {
        rechecking = false;
      });
  };

  /** A claim given up (its driver revoked or removed meanwhile): its held fixes are refused, and counted. */
  const dropClaim = (id: string, p: PendingClaim): void => {
    pending.delete(id);
    counters.rejected[Reason.unknownSession]! += p.fixes.length;
  };

  /** A fix from a known session whose driver this worker does not hold (yet). */
  const known = (info: SessionInfo): void => {
    const local = shard.drivers.get(info.driverId);
    if (local !== undefined) {
      // The driver logged in again: same driver, new session.
      shard.rebindSession(local, fix.sessionHi, fix.sessionLo, info.cab);
      apply(local);
      return;
    }
    let p = pending.get(info.driverId);
    if (p === undefined) {
      p = { hi: fix.sessionHi, lo: fix.sessionLo, cab: info.cab, since: clock.nowMs, fixes: [] };
      pending.set(info.driverId, p);
      dropped.delete(info.driverId);
      send({ t: 'claim', id: info.driverId });
    }
    if (p.fixes.length >= MAX_PENDING_FIXES) {
      reject(Reason.queueFull);
      return;
    }
    p.fixes.push(Object.assign(new Fix(), fix));
  };

  const apply = (d: Driver): void => {
    const r = shard.ingest(d, fix, clock.nowMs);
    if (r === Reason.ok) counters.accepted++;
    else reject(r);
  };

  /** The per-datagram path. Never throws: everything that can be wrong with a datagram is a reason. */
  const onDatagram = (buf: Buffer): void => {
    counters.received++;
    if (buf.length > MAX_DATAGRAM_BYTES) {
      reject(Reason.oversize);
      return;
    }
    let r = decodeTrack(buf, buf.length, fix);
    if (r !== Reason.ok) {
      reject(r);
      return;
    }
    r = checkFix(fix, clock.nowS, config.idleTimeoutS);
    if (r !== Reason.ok) {
      reject(r);
      return;
    }
    const d = shard.bySession(fix.sessionHi, fix.sessionLo);
    if (d === undefined) unknownSession();
    else apply(d);
  };

  const grant = (id: string, state: DriverState | null, resume: TripRecord | null): void => {
    const p = pending.get(id);
    if (p === undefined) {
      // Revoked or deleted while the claim was in flight: let the primary forget the driver.
      dropped.add(id);
      return;
    }
    pending.delete(id);
    const d = shard.add(id, p.cab, p.hi, p.lo, clock.nowMs, state ?? undefined);
    if (state !== null) counters.handoffs++;
    else if (resume !== null) shard.resumeTrip(d, resume);
    for (const f of p.fixes) {
      Object.assign(fix, f);
      apply(d);
    }
  };

  const view = (d: Driver): DriverView => ({
    id: d.id,
    cab: d.cab,
    lat: d.lat,
    lon: d.lon,
    time: d.time,
    speed: d.speed,
    bearing: d.bearing,
    free: d.free,
  });

  const detail = async (d: Driver | undefined): Promise<unknown> => {
    if (d === undefined || d.time === 0) return null;
    const p = shard.points(d);
    const points: Array<{ lat: number; lon: number; time: number }> = [];
    for (let i = 0; i < p.length; i += 3)
      points.push({ lat: p[i]! / 1e6, lon: p[i + 1]! / 1e6, time: p[i + 2]! });
    return {
      ...view(d),
      orderId: d.trip?.orderId ?? null,
      seenAt: new Date(d.seenAtMs).toISOString(),
      points,
      // The recent points along the roads (raw fixes, matched false, when OSRM cannot match them).
      track: await paths.track(d.id, p, config.pathDeadlineMs),
      trip: d.trip === null ? null : shard.trip(d.trip.orderId),
    };
  };

  const answer = async (q: QueryOp): Promise<unknown> => {
    switch (q.op) {
      case 'nearest':
        return shard.nearest(q.lat, q.lon, q.k, q.radius, q.free).map((n) => ({
          ...view(n.driver),
          distance: Math.round(n.distance * 10) / 10,
        }));
      case 'bbox': {
        const all = shard.within(q.minLon, q.minLat, q.maxLon, q.maxLat).filter((d) => d.id > q.after);
        all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        return all.slice(0, q.limit + 1).map(view);
      }
      case 'driver':
        return detail(shard.drivers.get(q.id));
      case 'cab':
        return detail(shard.byCab(q.cab));
      case 'trip':
        return shard.trip(q.orderId) ?? null;
      case 'paths': {
        const out: Record<string, unknown> = {};
        await Promise.all(
          q.ids.map(async (id) => {
            const d = shard.drivers.get(id);
            if (d !== undefined) out[id] = await paths.path(id, shard.points(d), q.deadlineMs);
          }),
        );
        return out;
      }
      case 'metrics':
        return metrics.register.getMetricsAsJSON();
      case 'stats':
        return {
          drivers: shard.size,
          pending: pending.size,
          ...counters,
          rejected: Array.from(counters.rejected),
        };
    }
  };

  const removeDriver = (d: Driver | undefined, why: 'deleted' | 'revoked'): boolean => {
    if (d === undefined) return false;
    shard.remove(d, why);
    return true;
  };

  process.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'found':
        if (registry instanceof PrimaryRegistry) registry.answer(m.id, m.found);
        break;
      case 'session': {
        registry.remember(m.hi, m.lo, { driverId: m.driverId, cab: m.cab });
        send({ t: 'answer', req: m.req, result: true });
        break;
      }
      case 'revoke': {
        registry.forget(m.hi, m.lo);
        send({ t: 'answer', req: m.req, result: revoked(m.hi, m.lo) });
        break;
      }
      case 'remove-driver': {
        const p = pending.get(m.id);
        if (p !== undefined) dropClaim(m.id, p);
        const d = shard.drivers.get(m.id);
        // The primary revokes the driver's session too; with Redis it only learns the session from here.
        const session = d === undefined ? null : [d.sessionHi, d.sessionLo];
        if (d !== undefined) registry.forget(d.sessionHi, d.sessionLo);
        send({ t: 'answer', req: m.req, result: { removed: removeDriver(d, 'deleted'), session } });
        break;
      }
      case 'grant':
        grant(m.id, m.state, m.resume);
        break;
      case 'release': {
        const d = shard.drivers.get(m.id);
        let state: DriverState | null = null;
        if (d !== undefined) {
          state = shard.exportState(d);
          // The new owner writes the trip from now on; a late write from here must not overtake it.
          if (d.trip !== null) trips?.release(d.trip.orderId);
          shard.remove(d, 'released');
        }
        send({ t: 'released', req: m.req, id: m.id, state });
        break;
      }
      case 'query':
        answer(m.q).then(
          (result) => send({ t: 'answer', req: m.req, result }),
          (err: unknown) => {
            log.error('query failed', { op: m.q.op, err: String(err) });
            send({ t: 'answer', req: m.req, result: null });
          },
        );
        break;
    }
  });

  send({ t: 'hello' });

  // Housekeeping, once a second: the clock, expiry, and claims the primary never answered.
  let ticks = 0;
  const tickTimer = setInterval(() => {
    clock.tick();
    counters.treeUpdates = shard.treeUpdates;
    if (++ticks % 20 !== 0) return;
    counters.expired += shard.expire(clock.nowMs);
    recheckSessions();
    if (ticks % 200 === 0) shard.retunePadding();
    if (registry instanceof PrimaryRegistry) registry.sweep();
    for (const [id, p] of pending) {
      if (clock.nowMs - p.since < CLAIM_TIMEOUT_MS) continue;
      pending.delete(id);
      counters.rejected[Reason.lookupFailed]! += p.fixes.length;
    }
    if (dropped.size > 0) {
      send({ t: 'dropped', ids: [...dropped] });
      dropped.clear();
    }
    // Trips that moved since their last write go to Redis once a second: a crash loses at most that.
    if (trips !== null) {
      shard.forEachActiveTrip((trip) => {
        if (trip.synced === trip.points) return;
        trip.synced = trip.points;
        trips.update(tripRecord(trip, true));
      });
    }
  }, 50);

  const socket = dgram.createSocket({
    type: 'udp4',
    reusePort: true,
    recvBufferSize: config.recvBufferBytes > 0 ? config.recvBufferBytes : undefined,
  });
  socket.on('message', onDatagram);
  socket.on('error', (err) => {
    log.error('udp socket error', { err: err.message });
    process.exit(1);
  });
  // exclusive: each worker gets its own socket rather than a handle shared through the primary; with
  // SO_REUSEPORT the kernel hashes each source address to one of them.
  socket.bind({ port: config.udpPort, address: config.host, exclusive: true }, () => {
    recvBufferBytes = socket.getRecvBufferSize();
    if (config.recvBufferBytes > 0 && recvBufferBytes < config.recvBufferBytes) {
      log.warn('UDP receive buffer is smaller than asked: raise net.core.rmem_max', {
        asked: config.recvBufferBytes,
        granted: recvBufferBytes,
      });
    }
    send({ t: 'ready', udpPort: config.udpPort, recvBufferBytes });
  });

  const stop = (): void => {
    clearInterval(tickTimer);
    socket.close();
    void osrm?.close();
    registry.close();
    // Trips ended or updated in the last second still reach Redis before the worker goes.
    const flushed = trips === null ? Promise.resolve() : trips.close();
    flushed.finally(() => {
      redis?.disconnect();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  log.debug('worker started', { id: cluster.worker?.id });
}
