import cluster from 'node:cluster';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { Ingest } from '../ingest/ingest.ts';
import { log } from '../log.ts';
import {
  addPublisherMetrics,
  addRedisMetrics,
  addSessionLookupMetrics,
  type WorkerMetrics,
  workerRegistry,
} from '../metrics.ts';
import { OsrmClient } from '../osrm/client.ts';
import { PathMatcher } from '../paths/path-matcher.ts';
import { connectRedis } from '../redis/connect.ts';
import { Publisher, type Subscriber } from '../replica/publisher.ts';
import { PrimaryRegistry } from '../sessions/primary-registry.ts';
import { RedisRegistry } from '../sessions/redis-registry.ts';
import type { SessionRegistry } from '../sessions/registry.ts';
import { SessionRecheck } from '../sessions/session-recheck.ts';
import { NO_SLOT, Shard } from '../store/shard.ts';
import { noTrips, type TripSink, TripStore } from '../trips/trip-store.ts';
import { CoarseClock } from './clock.ts';
import type { DriverDetail, IngestApi, PrimaryForIngest } from './protocol.ts';
import { Rpc } from './rpc.ts';

/**
 * An ingest worker: one UDP socket on the shared port (SO_REUSEPORT, so the kernel spreads drivers
 * across workers by source address and keeps each driver on one), the shard of the drivers it receives,
 * and the batch stream the read replicas follow. A thin adapter: the per-datagram path, the held fixes
 * and the counting are src/ingest/ingest.ts's; the handoff is the primary's (src/cluster/handoff.ts).
 */
export function startIngestWorker(config: Config, runDir: string): void {
  const id = cluster.worker!.id;
  const clock = new CoarseClock();
  const redis = connectRedis(config, `ingest-${id}`);
  // Mode choices, made once: Redis or not (sessions, trips, rechecks), OSRM or not (paths).
  const trips: TripSink =
    redis === null
      ? noTrips
      : new TripStore({ redis, onError: (err) => log.warn('trip store', { err: err.message }) });
  // Drivers let go of on their own, for the directory: sent once a tick.
  let dropped: Array<[string, number]> = [];
  let ingest!: Ingest;
  const shard = new Shard({
    trackPoints: config.trackPoints,
    idleTimeoutS: config.idleTimeoutS,
    maxSpeedKmh: config.maxSpeedKmh,
    finishedTrips: config.finishedTrips,
    onTripEnd: (record) => {
      ingest.counters.tripsEnded++;
      trips.end(record);
    },
    onDriverRemoved: (driverId, epoch, why) => ingest.driverRemoved(driverId, epoch, why),
  });

  const rpc = new Rpc<IngestApi, PrimaryForIngest>(
    {
      send: (m) => process.send!(m),
      connected: () => process.connected === true,
    },
    {
      grant: (driverId, epoch, state, resume) => ingest.grant(driverId, epoch, state, resume),
      release: (driverId) => {
        const state = ingest.release(driverId);
        // The new owner writes the trip from now on: a late write from here must not overtake it.
        if (state?.trip != null) trips.release(state.trip.orderId);
        return state;
      },
      registered: (hi, lo, driverId, cab) => {
        registry.remember(hi, lo, { driverId, cab });
        return true;
      },
      revoke: (hi, lo) => {
        registry.forget(hi, lo);
        const removed = ingest.revoke(hi, lo);
        if (removed) publishNow();
        return removed;
      },
      remove: (driverId) => {
        const slot = shard.byId(driverId);
        // The primary revokes the driver's session too; with Redis it only learns the session from here.
        if (slot !== NO_SLOT) registry.forget(shard.sessionHi(slot), shard.sessionLo(slot));
        const r = ingest.remove(driverId);
        if (r.removed) publishNow();
        return r;
      },
      driver: (driverId) => detail(shard.byId(driverId)),
      cab: (cab) => detail(shard.byCab(cab)),
      trip: (orderId) => shard.trip(orderId) ?? null,
      paths: async (ids, deadlineMs) => {
        const out: Record<string, Awaited<ReturnType<PathMatcher['path']>>> = {};
        await Promise.all(
          ids.map(async (driverId) => {
            const slot = shard.byId(driverId);
            if (slot !== NO_SLOT) out[driverId] = await paths.path(driverId, shard.points(slot), deadlineMs);
          }),
        );
        return out;
      },
      metrics: () => metrics.register.getMetricsAsJSON(),
    },
    { timeoutMs: config.queryTimeoutMs, peer: 'primary' },
  );

  const registry: SessionRegistry & { outcomes: Record<string, number>; purge(): void; close(): void } =
    redis === null
      ? new PrimaryRegistry({
          fetch: (his, los, done) =>
            rpc.request('lookup', [his, los], (err, found) => done(err ? null : found!)),
          up: () => process.connected === true,
          now: () => clock.nowMs,
          onResolved: (hi, lo, result) => ingest.resolved(hi, lo, result),
        })
      : new RedisRegistry({
          redis,
          lookupsPerSecond: config.sessionLookupsPerS,
          now: () => clock.nowMs,
          onResolved: (hi, lo, result) => ingest.resolved(hi, lo, result),
          onRevoked: (hi, lo) => ingest.revoke(hi, lo),
          onError: (err) => log.warn('session registry', { err: err.message }),
        });
  const recheck =
    registry instanceof RedisRegistry
      ? new SessionRecheck({
          shard,
          exist: (his, los) => registry.exist(his, los),
          up: () => registry.up,
          periodS: config.sessionRecheckS,
          gone: (slot) => shard.remove(slot, 'revoked'),
        })
      : null;

  ingest = new Ingest({
    shard,
    registry,
    clock,
    idleTimeoutS: config.idleTimeoutS,
    // A burst of datagrams (up to 32 a socket per event-loop turn) is applied after the turn's reads.
    defer: (flush) => {
      setImmediate(flush);
    },
    ports: {
      // Coalesced: a fleet coming back at once claims its drivers by the thousand a turn.
      claim: (driverId) => rpc.tellSoon('claim', driverId),
      dropped: (driverId, epoch) => dropped.push([driverId, epoch]),
    },
  });

  let recvBufferBytes = 0;
  const paths = new PathMatcher({ match: null });
  const osrm =
    config.osrmUrl === ''
      ? null
      : new OsrmClient({
          url: config.osrmUrl,
          timeoutMs: config.osrmTimeoutMs,
          onOutcome: (outcome, seconds) => metrics.osrmRequest(outcome, seconds),
        });
  paths.setMatcher(osrm === null ? null : (points, signal) => osrm.match(points, signal));

  const publisher = new Publisher({ shard, source: id });
  const metrics: WorkerMetrics = workerRegistry(
    ingest.counters,
    {
      drivers: () => shard.size,
      activeTrips: () => shard.activeTrips,
      recvBufferBytes: () => recvBufferBytes,
      osrmBreakerOpen: () => osrm !== null && osrm.breakerState !== 'closed',
    },
    paths.counters,
  );
  addSessionLookupMetrics(metrics.register, registry.outcomes);
  addPublisherMetrics(metrics.register, publisher);
  if (redis !== null && trips instanceof TripStore && recheck !== null) {
    addRedisMetrics(metrics.register, {
      up: () => redis.status === 'ready',
      sessionRechecks: recheck.outcomes,
      tripWrites: trips.writes,
      tripBuffer: () => trips.buffered,
    });
  }

  const detail = async (slot: number): Promise<DriverDetail | null> => {
    if (slot === NO_SLOT || shard.time(slot) === 0) return null;
    const d = shard.view(slot);
    const p = shard.points(slot);
    const points: DriverDetail['points'] = [];
    for (let i = 0; i < p.length; i += 3)
      points.push({ lat: p[i]! / 1e6, lon: p[i + 1]! / 1e6, time: p[i + 2]! });
    return {
      id: d.id,
      cab: d.cab,
      lat: d.lat,
      lon: d.lon,
      time: d.time,
      speed: d.speed,
      bearing: d.bearing,
      free: d.free,
      orderId: d.orderId,
      seenAt: new Date(d.seenAtMs).toISOString(),
      points,
      // The recent points along the roads (raw fixes, matched false, when OSRM cannot match them).
      track: await paths.track(d.id, p, config.pathDeadlineMs),
      trip: d.orderId === null ? null : (shard.trip(d.orderId) ?? null),
    };
  };

  process.on('message', (m: unknown) => {
    rpc.receive(m);
  });
  rpc.tell('hello');

  // The read replicas follow this worker on a Unix socket: a snapshot at the next tick, then deltas.
  const feedPath = join(runDir, `ingest-${id}.sock`);
  rmSync(feedPath, { force: true });
  const followers = new Set<Socket>();
  const feed = createServer((sock) => {
    followers.add(sock);
    const sub: Subscriber = {
      write: (frame) => {
        sock.write(frame);
      },
      backlog: () => sock.writableLength,
      close: (reason) => {
        log.warn('replica cut off', { reason });
        sock.destroy();
      },
    };
    publisher.subscribe(sub);
    // Replicas only read; anything they send is ignored.
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => {
      followers.delete(sock);
      publisher.unsubscribe(sub);
    });
  });

  // The clock every 10 ms (the lag of a fix is measured from it), the batch every tick, housekeeping
  // once a second.
  const clockTimer = setInterval(() => clock.tick(), 10);
  const publishNow = (): void => {
    clock.tick();
    publisher.tick(clock.nowMs);
    if (dropped.length > 0) {
      rpc.tell('dropped', dropped);
      dropped = [];
    }
  };
  const publishTimer = setInterval(publishNow, config.publishMs);
  // Without Redis there is nowhere to write trips: no scan of the shard for them.
  // The scan's updates are written at once, not at the store's next flush: its timer and this one are not
  // in step, so a trip in Redis would otherwise be up to two seconds behind, and a host or worker killed
  // would cost its trips up to two seconds of points (test/daemon-hosts.test.ts caught it).
  const syncTrips =
    trips === noTrips
      ? () => {}
      : () => {
          shard.syncTrips((record) => trips.update(record));
          trips.flush().catch((err: unknown) => log.warn('trip store', { err: String(err) }));
        };
  const houseTimer = setInterval(() => {
    clock.tick();
    ingest.counters.expired += shard.expire(clock.nowMs);
    recheck?.tick();
    ingest.expireClaims();
    registry.purge();
    // Trips that moved since their last write go to Redis once a second: a crash loses at most that.
    syncTrips();
  }, 1000);

  const socket = dgram.createSocket({
    type: 'udp4',
    reusePort: true,
    recvBufferSize: config.recvBufferBytes > 0 ? config.recvBufferBytes : undefined,
  });
  socket.on('message', (buf) => ingest.datagram(buf));
  socket.on('error', (err) => {
    log.error('udp socket error', { err: err.message });
    process.exit(1);
  });
  feed.listen(feedPath, () => {
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
      rpc.tell('ready', { udpPort: config.udpPort, recvBufferBytes, feedPath });
    });
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(clockTimer);
    clearInterval(publishTimer);
    clearInterval(houseTimer);
    socket.close();
    feed.close();
    for (const s of followers) s.destroy();
    rmSync(feedPath, { force: true });
    rpc.close();
    void osrm?.close();
    registry.close();
    // Trips ended or updated in the last second still reach Redis before the worker goes.
    trips.close().finally(() => {
      redis?.disconnect();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  log.debug('ingest worker started', { id });
}
