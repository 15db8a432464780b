import cluster from 'node:cluster';
import dgram from 'node:dgram';
import { decodeTrack } from '../codec/decode.ts';
import { Fix } from '../codec/fix.ts';
import type { Config } from '../config.ts';
import { IngestCounters } from '../ingest/counters.ts';
import { checkFix } from '../ingest/filter.ts';
import { MAX_DATAGRAM_BYTES, Reason } from '../ingest/reasons.ts';
import { log } from '../log.ts';
import { workerRegistry } from '../metrics.ts';
import { OsrmClient } from '../osrm/client.ts';
import { PathMatcher } from '../paths/path-matcher.ts';
import { MemoryRegistry } from '../sessions/registry.ts';
import type { Driver, DriverState } from '../store/driver.ts';
import { Shard } from '../store/shard.ts';
import type { DriverView, FromWorker, QueryOp, ToWorker } from './messages.ts';

/** Fixes held per driver while its ownership is being settled with the primary. */
const MAX_PENDING_FIXES = 32;
/** A claim the primary has not answered by then is given up (its fixes counted as lookup_failed). */
const CLAIM_TIMEOUT_MS = 5000;

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
  const registry = new MemoryRegistry();
  const clock = new CoarseClock();
  const pending = new Map<string, PendingClaim>();
  let dropped: string[] = [];
  const shard = new Shard({
    trackPoints: config.trackPoints,
    idleTimeoutS: config.idleTimeoutS,
    maxSpeedKmh: config.maxSpeedKmh,
    finishedTrips: config.finishedTrips,
    onTripEnd: () => {
      counters.tripsEnded++;
    },
    onDriverRemoved: (d, why) => {
      // The primary already knows of removals it asked for; an expiry it must be told about.
      if (why === 'expired') dropped.push(d.id);
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

  const reject = (reason: number): void => {
    counters.rejected[reason]!++;
  };

  /** A fix from a session this worker has no driver for. */
  const unknownSession = (): void => {
    const info = registry.lookup(fix.sessionHi, fix.sessionLo);
    if (info === undefined) {
      reject(Reason.unknownSession);
      return;
    }
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

  const grant = (id: string, state: DriverState | null): void => {
    const p = pending.get(id);
    if (p === undefined) {
      // Revoked or deleted while the claim was in flight: let the primary forget the driver.
      dropped.push(id);
      return;
    }
    pending.delete(id);
    const d = shard.add(id, p.cab, p.hi, p.lo, clock.nowMs, state ?? undefined);
    if (state !== null) counters.handoffs++;
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
      case 'sessions':
        for (const [hi, lo, driverId, cab] of m.entries) registry.put(hi, lo, { driverId, cab });
        break;
      case 'session': {
        registry.put(m.hi, m.lo, { driverId: m.driverId, cab: m.cab });
        send({ t: 'answer', req: m.req, result: true });
        break;
      }
      case 'revoke': {
        registry.delete(m.hi, m.lo);
        const removed = removeDriver(shard.bySession(m.hi, m.lo), 'revoked');
        for (const [id, p] of pending) if (p.hi === m.hi && p.lo === m.lo) pending.delete(id);
        send({ t: 'answer', req: m.req, result: removed });
        break;
      }
      case 'remove-driver': {
        pending.delete(m.id);
        send({ t: 'answer', req: m.req, result: removeDriver(shard.drivers.get(m.id), 'deleted') });
        break;
      }
      case 'grant':
        grant(m.id, m.state);
        break;
      case 'release': {
        const d = shard.drivers.get(m.id);
        let state: DriverState | null = null;
        if (d !== undefined) {
          state = shard.exportState(d);
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
    if (ticks % 200 === 0) shard.retunePadding();
    for (const [id, p] of pending) {
      if (clock.nowMs - p.since < CLAIM_TIMEOUT_MS) continue;
      pending.delete(id);
      counters.rejected[Reason.lookupFailed]! += p.fixes.length;
    }
    if (dropped.length > 0) {
      send({ t: 'dropped', ids: dropped });
      dropped = [];
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
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  log.debug('worker started', { id: cluster.worker?.id });
}
