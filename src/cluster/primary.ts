import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { unavailable } from '../errors.ts';
import { HostLayer } from '../hosts/host-layer.ts';
import type { Tokens } from '../http/api.ts';
import { log } from '../log.ts';
import { addHostMetrics, addRedisMetrics, clusterMetricsText, primaryMetrics } from '../metrics.ts';
import { connectRedis } from '../redis/connect.ts';
import { RedisRegistry } from '../sessions/redis-registry.ts';
import type { SessionMatch } from '../sessions/registry.ts';
import { SessionTable } from '../sessions/session-table.ts';
import type { TripRecord } from '../store/driver.ts';
import { TripStore } from '../trips/trip-store.ts';
import { Handoff } from './handoff.ts';
import type {
  DriverDetail,
  FeedSource,
  HttpApi,
  IngestApi,
  MetricsJson,
  PrimaryForHttp,
  PrimaryForIngest,
} from './protocol.ts';
import { Rpc } from './rpc.ts';
import { Supervisor, type WorkerHandle } from './supervisor.ts';

export type Role = 'ingest' | 'http';

/**
 * The environment every worker starts with. glibc's malloc serves large blocks from its heap once a
 * large block has been freed (its mmap threshold rises to 32 MiB), and a heap with holes is not given
 * back: the typed arrays of the stores and replicas, which grow by doubling and free the old copy, then
 * leave tens of MiB of RSS behind (a 1M-driver replica: 115 B of RSS a driver instead of 75;
 * bench/replica.ts). A fixed threshold of 128 KiB keeps them in mmap, returned to the system when freed.
 * An operator's own GLIBC_TUNABLES wins. (No effect with another libc.)
 */
export const WORKER_ENV: Record<string, string> =
  process.env['GLIBC_TUNABLES'] === undefined ? { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' } : {};

interface IngestMember {
  worker: Worker;
  rpc: Rpc<PrimaryForIngest, IngestApi>;
  /** Listening for messages: session changes reach it from now on. */
  synced: boolean;
  /** Its batch stream, once its UDP socket is bound. */
  feedPath: string | null;
}

interface HttpMember {
  worker: Worker;
  rpc: Rpc<PrimaryForHttp, HttpApi>;
}

/**
 * Resolves the API tokens. With no operator token configured the daemon must not be open for writes,
 * so it makes one up and prints it once; with no client token, client routes take the operator token.
 */
export function resolveTokens(config: Config): Tokens {
  let operator = config.operatorToken;
  if (operator === '') {
    operator = randomBytes(24).toString('base64url');
    log.warn('CABTRACK_OPERATOR_TOKEN is not set: generated an operator token for this run only', {
      operatorToken: operator,
    });
  }
  if (config.clientToken === '') {
    log.warn('CABTRACK_CLIENT_TOKEN is not set: client routes accept the operator token only');
  }
  return { operator, client: config.clientToken };
}

/**
 * The primary: forks and supervises the ingest and HTTP workers, keeps the directory of which ingest
 * worker owns which driver (src/cluster/handoff.ts), the sessions when there is no Redis, and answers
 * the HTTP workers' operator routes by asking the drivers' owners. It serves no HTTP itself: the
 * cluster hands each connection on the HTTP port to an HTTP worker.
 */
export async function startPrimary(config: Config): Promise<{ stop: () => Promise<void> }> {
  cluster.setupPrimary({ serialization: 'advanced' });
  // The ingest workers' batch sockets live here (removed at stop; a tmpfs in containers).
  const runDir = mkdtempSync(join(tmpdir(), 'cabtrack-'));
  const tokens = resolveTokens(config);
  const ingest = new Map<number, IngestMember>();
  const http = new Map<number, HttpMember>();
  const redis = connectRedis(config, 'primary');
  // Mode choices, made once: without Redis the sessions live in this table; with it, in Redis (the
  // dispatch system writes them; the primary only writes the API's PUT and DELETE).
  const table = redis === null ? new SessionTable() : null;
  const redisSessions =
    redis === null ? null : new RedisRegistry({ redis, subscribe: false, onResolved: () => {} });
  const tripStore = redis === null ? null : new TripStore({ redis });
  // Several hosts (CABTRACK_HOST_ID): the directory, the other hosts and the live link. Config checked
  // that Redis is set then.
  const hosts: HostLayer | null =
    config.hostId === ''
      ? null
      : new HostLayer({
          config,
          operatorToken: tokens.operator,
          redis: redis!,
          linkRedis: connectRedis(config, 'live', { shardedSubscribers: true })!,
          trips: tripStore!,
          runDir,
          owned: (): string[] => handoff.owned(),
          lost: (id: string): void => void handoff.handOver(id),
          onHostGone: (host) => {
            for (const m of http.values()) m.rpc.tell('hostGone', host);
          },
        });

  const handoff: Handoff = new Handoff({
    // Coalesced, and sent before anything else to that worker (a release must not overtake a grant).
    grant: (w, id, epoch, state, resume) => ingest.get(w)?.rpc.tellSoon('grant', id, epoch, state, resume),
    release: (w, id, done) => {
      const m = ingest.get(w);
      if (m === undefined) done(undefined);
      else m.rpc.request('release', [id], (err, state) => done(err === null ? (state ?? null) : undefined));
    },
    alive: (w) => ingest.get(w)?.worker.isConnected() === true,
    readBack: async (drivers) => {
      const found = new Map<string, TripRecord>();
      if (tripStore === null || redis === null) return found;
      if (redis.status !== 'ready') {
        // Give a starting connection a moment; a Redis that is down leaves trips unresumed, not the daemon.
        await Promise.race([
          new Promise((r) => redis.once('ready', r)),
          new Promise((r) => setTimeout(r, 3000)),
        ]);
      }
      // A read that fails (Redis busy or away) is tried again: without it the orphans' trips would start
      // again at their next fix. Claims wait meanwhile; after the third failure they are granted without.
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          for (const t of await tripStore.activeTrips()) {
            if (drivers === null || drivers.has(t.driverId)) found.set(t.driverId, t);
          }
          log.info('active trips read back from redis', { resumable: found.size });
          return found;
        } catch (err) {
          log.warn('could not read active trips back from redis', { attempt, err: String(err) });
          await new Promise((r) => setTimeout(r, 500 * attempt));
        }
      }
      return found;
    },
    endTrip: (r) => {
      if (tripStore === null) return;
      if (hosts === null) {
        tripStore.end(r);
        return;
      }
      // Several hosts: the read-back at start-up sees every host's active trips. One whose driver is live
      // on another host (its trip written there since), or that another host took over, is not ended here.
      void (async () => {
        const now = await tripStore.get(r.orderId).catch(() => undefined);
        if (now === undefined || !now.active || now.lastTime !== r.lastTime) return;
        const owner = await hosts.directory.owner(r.driverId).catch(() => 'unknown');
        if (
          owner !== '' &&
          owner !== config.hostId &&
          (await hosts.directory.hostUrl(owner).catch(() => 'x')) !== ''
        )
          return;
        tripStore.end(r);
      })();
    },
    ...(hosts === null ? {} : { acquire: (id: string) => hosts.acquire(id) }),
  });

  const supervisor = new Supervisor<Role>({
    counts: { ingest: config.workers, http: config.httpWorkers },
    fork: (role) =>
      handleOf(
        cluster.fork({
          ...WORKER_ENV,
          CABTRACK_ROLE: role,
          CABTRACK_RUN_DIR: runDir,
          CABTRACK_OPERATOR_TOKEN: tokens.operator,
        }),
      ),
    onFork: (role, w) => (role === 'ingest' ? addIngest(ingest, w.id) : addHttp(w.id)),
    onDeath: (role, w, info) => {
      metrics.workerRestarts.inc();
      if (role === 'ingest') {
        ingest.get(w.id)?.rpc.close();
        ingest.delete(w.id);
        // Its drivers are nobody's until their next fix; their trips are read back before those grants.
        const orphans = handoff.workerDied(w.id).length;
        broadcastFeeds();
        log.error('worker died; forking a new one', { worker: w.id, ...info, orphans });
      } else {
        http.get(w.id)?.rpc.close();
        http.delete(w.id);
        log.error('http worker died; forking a new one', { worker: w.id, ...info });
      }
    },
  });

  const metrics = primaryMetrics(
    () => table?.size ?? 0,
    () => supervisor.readyCount('ingest'),
    () => supervisor.readyCount('http'),
    () => handoff.size,
    config.udpPort,
  );
  if (hosts !== null) {
    addHostMetrics(metrics.register, {
      link: hosts.link,
      directoryOps: hosts.directory.ops,
      peers: hosts.peers.counters,
      takeovers: hosts.takeovers,
    });
  }
  if (redis !== null) {
    addRedisMetrics(metrics.register, {
      up: () => redis.status === 'ready',
      sessionRechecks: null,
      tripWrites: null,
      tripBuffer: null,
    });
  }

  const readyIngest = (): IngestMember[] =>
    [...ingest.entries()]
      .filter(([id, m]) => supervisor.isReady(id) && m.worker.isConnected())
      .map(([, m]) => m);
  const syncedIngest = (): IngestMember[] =>
    [...ingest.values()].filter((m) => m.synced && m.worker.isConnected());
  const feedList = (): FeedSource[] =>
    [...ingest.entries()]
      .filter(([id, m]) => m.feedPath !== null && supervisor.isReady(id))
      .map(([id, m]) => ({ source: id, path: m.feedPath! }));
  const broadcastFeeds = (): void => {
    const list = feedList();
    for (const m of http.values()) m.rpc.tell('feeds', list);
    hosts?.link.setFeeds(list);
  };
  /** Every answer that came; a worker that failed or timed out is left out (and counted). */
  const askAll = async <T>(who: IngestMember[], call: (m: IngestMember) => Promise<T>): Promise<T[]> => {
    const out = await Promise.allSettled(who.map(call));
    const answers: T[] = [];
    for (const r of out) {
      if (r.status === 'fulfilled') answers.push(r.value);
      else metrics.queryTimeouts.inc();
    }
    return answers;
  };

  const forIngest = (w: number): PrimaryForIngest => ({
    hello: () => {
      const m = ingest.get(w);
      if (m !== undefined) m.synced = true;
    },
    ready: (info) => {
      const m = ingest.get(w);
      if (m === undefined) return;
      m.feedPath = info.feedPath;
      supervisor.ready(w);
      log.info('worker ready', {
        worker: w,
        pid: m.worker.process.pid,
        recvBufferBytes: info.recvBufferBytes,
      });
      broadcastFeeds();
    },
    // Without Redis the sessions live only here; a worker asks for those it has no driver for.
    lookup: (his, los) => table?.lookup(his, los) ?? his.map(() => null),
    claim: (id) => handoff.claim(id, w),
    dropped: (items) => {
      for (const [id, epoch] of items) handoff.drop(id, w, epoch);
      // Gone from this host (expired, revoked): its directory entry goes, unless a worker here has it again.
      if (hosts !== null)
        hosts.dropped(items.map(([id]) => id).filter((id) => handoff.owner(id) === undefined));
    },
  });

  function addIngest(into: Map<number, IngestMember>, id: number): void {
    const worker = cluster.workers![id]!;
    const rpc = new Rpc<PrimaryForIngest, IngestApi>(
      { send: (m) => worker.send(m as never), connected: () => worker.isConnected() },
      forIngest(id),
      { timeoutMs: config.queryTimeoutMs, peer: `ingest worker ${id}` },
    );
    into.set(id, { worker, rpc, synced: false, feedPath: null });
    worker.on('message', (m: unknown) => rpc.receive(m));
  }

  const newest = <T extends { time: number }>(found: Array<T | null>): T | null => {
    let best: T | null = null;
    for (const f of found) if (f !== null && (best === null || f.time > best.time)) best = f;
    return best;
  };

  const forHttp: PrimaryForHttp = {
    hello: () => {},
    listening: () => {},
    async driver(id, hop) {
      const owner = handoff.owner(id);
      const m = owner === undefined ? undefined : ingest.get(owner);
      if (m !== undefined) {
        const d = await m.rpc.call('driver', id).catch(() => null);
        if (d !== null) return d;
      }
      // Between owners (a handoff under way): whoever has it.
      const here = newest(await askAll(readyIngest(), (x) => x.rpc.call('driver', id)));
      // Several hosts: the host the directory names, asked once (never from a request another host sent).
      if (here !== null || hosts === null || hop) return here;
      return hosts.driver(id);
    },
    async cab(cab, hop) {
      const here = newest<DriverDetail>(await askAll(readyIngest(), (x) => x.rpc.call('cab', cab)));
      if (here !== null || hosts === null || hop) return here;
      return hosts.cab(cab);
    },
    handOver: (id) => handoff.handOver(id),
    async trip(orderId, hop) {
      const found = (await askAll(readyIngest(), (x) => x.rpc.call('trip', orderId))).filter(
        (t): t is TripRecord => t !== null,
      );
      // An active copy beats a finished one; among equals the latest update wins.
      found.sort((a, b) => Number(b.active) - Number(a.active) || b.lastTime - a.lastTime);
      if (found[0] !== undefined) return found[0];
      // A trip no worker remembers may still be in Redis (finished long ago, or before a restart, or
      // another host's: active there, it is asked for its latest, a second newer than Redis's).
      if (tripStore === null) return null;
      const stored = (await redisCall(tripStore.get(orderId))) ?? null;
      if (stored === null || !stored.active || hosts === null || hop) return stored;
      return (await hosts.trip(stored)) ?? stored;
    },
    async paths(source, ids, deadlineMs) {
      const m = ingest.get(source);
      return m === undefined ? {} : m.rpc.call('paths', ids, deadlineMs);
    },
    async putSession(hi, lo, driverId, cab) {
      const created =
        redisSessions !== null
          ? await redisCall(redisSessions.put(hi, lo, { driverId, cab }))
          : table!.put(hi, lo, { driverId, cab });
      // The workers learn it now rather than at the driver's first fix (and past any negative cache).
      await askAll(syncedIngest(), (m) => m.rpc.call('registered', hi, lo, driverId, cab));
      return created;
    },
    async deleteSession(hi, lo) {
      const known =
        redisSessions !== null ? await redisCall(redisSessions.revoke(hi, lo)) : table!.delete(hi, lo);
      // The workers also hear of it on the channel; asking them directly makes the delete take effect
      // before the API answers.
      const removed = await askAll(syncedIngest(), (m) => m.rpc.call('revoke', hi, lo));
      return known || removed.some((r) => r);
    },
    deleteDriver: (id) => removeDrivers({ driverIds: new Set([id]) }, [id]),
    async deleteCab(cab) {
      const ids = new Set<string>();
      const live = await askAll(readyIngest(), (m) => m.rpc.call('cab', cab));
      for (const d of live) if (d !== null) ids.add(d.id);
      // Offline drivers of the cab are found through their sessions (removeDrivers revokes them).
      return removeDrivers({ driverIds: ids, cab }, [...ids]);
    },
    async metrics() {
      const parts: MetricsJson[] = [
        ...(await askAll([...ingest.values()], (m) => m.rpc.call('metrics'))),
        ...(await Promise.allSettled([...http.values()].map((m) => m.rpc.call('metrics'))))
          .filter((r) => r.status === 'fulfilled')
          .map((r) => (r as PromiseFulfilledResult<MetricsJson>).value),
      ];
      return clusterMetricsText(metrics.register, parts);
    },
    readiness() {
      const up = supervisor.readyCount('ingest');
      const detail: Record<string, unknown> = { workers: up, expected: config.workers };
      if (redis !== null) {
        // Degraded, not down: known drivers keep updating and queries answer from memory; new sessions
        // are refused (lookup_failed) and trip writes wait in their buffer until Redis is back.
        detail['redis'] = redis.status === 'ready' ? 'up' : 'down';
        if (redis.status !== 'ready')
          detail['degraded'] = 'redis is down: new sessions are refused, trip writes are buffered';
      }
      return { ok: up === config.workers, detail };
    },
  };

  function addHttp(id: number): void {
    const worker = cluster.workers![id]!;
    const rpc = new Rpc<PrimaryForHttp, HttpApi>(
      { send: (m) => worker.send(m as never), connected: () => worker.isConnected() },
      {
        ...forHttp,
        hello: () => rpc.tell('feeds', feedList()),
        listening: () => {
          supervisor.ready(id);
          log.info('http worker ready', { worker: id, pid: worker.process.pid });
        },
      },
      { timeoutMs: config.queryTimeoutMs, peer: `http worker ${id}` },
    );
    http.set(id, { worker, rpc });
    worker.on('message', (m: unknown) => rpc.receive(m));
  }

  /**
   * Removing a driver also revokes its sessions: otherwise its next fix, a second later, would bring it
   * straight back, and an operator who removes a driver means it. The sessions are found where they
   * live: this table, or Redis (a SCAN; before, with Redis nothing was found for a driver that was not
   * live, and the API answered 404: issue 15).
   */
  const removeDrivers = async (match: SessionMatch, ids: string[]): Promise<boolean> => {
    const sessions: Array<[number, number]> =
      redisSessions !== null ? await redisCall(redisSessions.find(match)) : table!.find(match);
    if (table !== null) for (const [hi, lo] of sessions) table.delete(hi, lo);
    let found = sessions.length > 0;
    const removals = (
      await Promise.all(ids.map((id) => askAll(syncedIngest(), (m) => m.rpc.call('remove', id))))
    ).flat();
    for (const r of removals) {
      found ||= r.removed;
      // A live driver's session (with Redis, only its worker knew it).
      if (r.session !== null && !sessions.some(([hi, lo]) => hi === r.session![0] && lo === r.session![1])) {
        sessions.push(r.session);
      }
    }
    for (const id of ids) handoff.forget(id);
    await Promise.all(
      sessions.map(async ([hi, lo]) => {
        // With Redis the session is deleted there too (and announced on the channel to every worker).
        if (redisSessions !== null) found = (await redisCall(redisSessions.revoke(hi, lo))) || found;
        await askAll(syncedIngest(), (m) => m.rpc.call('revoke', hi, lo));
      }),
    );
    return found;
  };

  // Trips read back whose drivers never return are ended as expired, as a live driver's would be.
  const resumeSweep = setInterval(() => handoff.sweep(Date.now() / 1000, config.idleTimeoutS), 10_000);
  resumeSweep.unref();
  void handoff.readBack(null);
  await hosts?.start();
  supervisor.start();
  log.info('cabtrack listening', {
    http: `${config.host}:${config.httpPort}`,
    udp: `${config.host}:${config.udpPort}`,
    workers: config.workers,
    httpWorkers: config.httpWorkers,
  });

  const stop = async (): Promise<void> => {
    clearInterval(resumeSweep);
    await supervisor.stop();
    // The lease goes with the host: the others take its drivers at their next fix, not a lease later.
    await hosts?.stop();
    await tripStore?.close();
    redis?.disconnect();
    rmSync(runDir, { recursive: true, force: true });
  };
  return { stop };
}

function handleOf(worker: Worker): WorkerHandle {
  return {
    id: worker.id,
    onExit: (fn) => worker.once('exit', (code, signal) => fn(code, signal)),
    kill: (signal) => worker.kill(signal),
  };
}

/** A Redis command that failed (Redis down, or too slow) is the API's 503, not a 500. */
async function redisCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw unavailable('redis', err);
  }
}
