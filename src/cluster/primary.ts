import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Config } from '../config.ts';
import { type Backend, createApi, type Tokens } from '../http/api.ts';
import { HttpError } from '../http/errors.ts';
import { log } from '../log.ts';
import { addRedisMetrics, clusterMetricsText, metricsContentType, primaryMetrics } from '../metrics.ts';
import { connectRedis } from '../redis/connect.ts';
import { RedisRegistry } from '../sessions/redis-registry.ts';
import type { SessionInfo } from '../sessions/registry.ts';
import type { DriverState, TripRecord } from '../store/driver.ts';
import { U64Map } from '../store/u64-map.ts';
import { TripStore } from '../trips/trip-store.ts';
import { Directory } from './directory.ts';
import type { DriverView, FromWorker, QueryOp, ToWorker } from './messages.ts';

interface Member {
  worker: Worker;
  /** It is listening, so it must be told of every session change from now on. */
  synced: boolean;
  /** Its UDP socket is bound: it takes part in queries. */
  ready: boolean;
}

/** A worker that dies sooner than this after starting is restarted with a growing delay. */
const CRASH_LOOP_MS = 5000;
const MAX_RESTART_DELAY_MS = 10_000;

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
 * The primary: forks the workers and restarts those that die, keeps the authoritative session registry
 * and the directory of which worker owns which driver, and serves the HTTP API by fanning queries out
 * to every worker and merging their answers.
 */
export async function startPrimary(config: Config): Promise<{ server: Server; stop: () => Promise<void> }> {
  cluster.setupPrimary({ serialization: 'advanced' });
  const members = new Map<number, Member>();
  const directory = new Directory();
  /** Without Redis, the sessions (the only copy: workers ask for them, src/sessions/primary-registry.ts). */
  const sessions = new U64Map<SessionInfo>();
  const waiting = new Map<number, { resolve: (v: unknown) => void; timer: NodeJS.Timeout; worker: number }>();
  let nextReq = 1;
  let stopping = false;
  let restartDelay = 0;
  const metrics = primaryMetrics(
    () => sessions.size,
    () => readyMembers().length,
    () => directory.size,
    config.udpPort,
  );
  const tokens = resolveTokens(config);
  const redis = connectRedis(config, 'primary');
  // With Redis, sessions live there (the dispatch system writes them); the primary only writes the
  // API's PUT and DELETE, and the workers look sessions up themselves.
  const redisSessions =
    redis === null ? null : new RedisRegistry({ redis, subscribe: false, onResolved: () => {} });
  const tripStore = redis === null ? null : new TripStore({ redis });
  if (redis !== null) {
    addRedisMetrics(metrics.register, {
      up: () => redis.status === 'ready',
      sessionRechecks: null,
      tripWrites: null,
      tripBuffer: null,
    });
  }
  /**
   * Active trips read back from Redis whose drivers no worker holds (after a restart, or after their
   * worker died), by driver id: the next worker to claim the driver resumes the trip.
   */
  const resumable = new Map<string, TripRecord>();
  let resumeLoaded: Promise<void> = Promise.resolve();
  const loadResumable = async (drivers?: ReadonlySet<string>): Promise<void> => {
    if (tripStore === null || redis === null) return;
    if (redis.status !== 'ready') {
      // Give a starting connection a moment; a Redis that is down leaves trips unresumed, not the daemon.
      await Promise.race([
        new Promise((r) => redis.once('ready', r)),
        new Promise((r) => setTimeout(r, 3000)),
      ]);
    }
    try {
      // At start every active trip is resumable; after a worker died, those of its drivers (whose new
      // claims are waiting for this read-back, so they may already have an owner).
      for (const t of await tripStore.activeTrips()) {
        if (drivers === undefined ? directory.owner(t.driverId) === undefined : drivers.has(t.driverId)) {
          resumable.set(t.driverId, t);
        }
      }
      log.info('active trips read back from redis', { resumable: resumable.size });
    } catch (err) {
      log.warn('could not read active trips back from redis', { err: String(err) });
    }
  };

  const readyMembers = (): Member[] => [...members.values()].filter((m) => m.ready && m.worker.isConnected());
  const syncedMembers = (): Member[] =>
    [...members.values()].filter((m) => m.synced && m.worker.isConnected());

  const send = (w: Worker, m: ToWorker): void => {
    if (w.isConnected()) w.send(m);
  };

  /**
   * Sends a request to one worker; `done` gets its answer, or undefined on timeout or the worker's
   * death. `done` runs synchronously in the message handler, before any later message from any worker
   * is handled: a handoff depends on that (see onClaim).
   */
  const request = (w: Worker, make: (req: number) => ToWorker, done: (v: unknown) => void): void => {
    const req = nextReq++;
    const timer = setTimeout(() => {
      waiting.delete(req);
      metrics.queryTimeouts.inc();
      done(undefined);
    }, config.queryTimeoutMs);
    waiting.set(req, { resolve: done, timer, worker: w.id });
    send(w, make(req));
  };

  const ask = (w: Worker, make: (req: number) => ToWorker): Promise<unknown> =>
    new Promise((resolve) => request(w, make, resolve));

  const askAll = (make: (req: number) => ToWorker, who = readyMembers()): Promise<unknown[]> =>
    Promise.all(who.map((m) => ask(m.worker, make)));
  /** Session changes go to every worker holding the snapshot, bound yet or not. */
  const tellSynced = (make: (req: number) => ToWorker): Promise<unknown[]> => askAll(make, syncedMembers());

  const query = async (q: QueryOp): Promise<unknown[]> => {
    const answers = await askAll((req) => ({ t: 'query', req, q }));
    return answers.filter((a) => a !== undefined && a !== null);
  };

  const onClaim = (w: Worker, id: string): void => {
    const prev = directory.claim(id, w.id);
    const prevMember = prev === undefined ? undefined : members.get(prev);
    if (prevMember === undefined || !prevMember.worker.isConnected()) {
      // Nobody holds the driver: it may have a trip to resume, once the read-back is done.
      resumeLoaded.then(() => {
        if (directory.owner(id) !== w.id) return;
        const resume = resumable.get(id) ?? null;
        resumable.delete(id);
        send(w, { t: 'grant', id, state: null, resume });
      });
      return;
    }
    // The driver's fixes now reach another worker (its NAT mapping changed): move it, ring and trip.
    // The grant goes out synchronously when the release is answered, even if the driver has been
    // claimed again meanwhile: that claim's release then reaches `w` after this grant, on the same
    // channel, and `w` passes the state on. (A promise here would let a claim read in the same chunk
    // as the release overtake the grant, and the state would be lost.)
    request(
      prevMember.worker,
      (req) => ({ t: 'release', req, id }),
      (state) => {
        send(w, { t: 'grant', id, state: (state as DriverState | null | undefined) ?? null, resume: null });
      },
    );
  };

  const onMessage = (w: Worker, m: FromWorker): void => {
    switch (m.t) {
      case 'hello': {
        // The worker is listening for messages now: session changes made from here on reach it through
        // tellSynced(), in order on the same channel as the answers to its lookups.
        const member = members.get(w.id);
        if (member !== undefined) member.synced = true;
        break;
      }
      case 'lookup': {
        // Without Redis the sessions live only here; a worker asks for those it has no driver for.
        const found = m.his.map((hi, i): [string, string] | null => {
          const s = sessions.get(hi, m.los[i]!);
          return s === undefined ? null : [s.driverId, s.cab];
        });
        send(w, { t: 'found', id: m.id, found });
        break;
      }
      case 'ready': {
        const member = members.get(w.id);
        if (member !== undefined) member.ready = true;
        log.info('worker ready', { worker: w.id, pid: w.process.pid, recvBufferBytes: m.recvBufferBytes });
        if (readyMembers().length === config.workers) restartDelay = 0;
        break;
      }
      case 'claim':
        onClaim(w, m.id);
        break;
      case 'dropped':
        for (const id of m.ids) directory.drop(id, w.id);
        break;
      case 'released':
      case 'answer': {
        const r = waiting.get(m.req);
        if (r === undefined) return;
        waiting.delete(m.req);
        clearTimeout(r.timer);
        r.resolve(m.t === 'released' ? m.state : m.result);
        break;
      }
    }
  };

  const fork = (): void => {
    const worker = cluster.fork({ CABTRACK_ROLE: 'worker' });
    const started = Date.now();
    members.set(worker.id, { worker, synced: false, ready: false });
    worker.on('message', (m: FromWorker) => onMessage(worker, m));
    worker.on('exit', (code, signal) => {
      members.delete(worker.id);
      for (const [req, r] of waiting) {
        if (r.worker !== worker.id) continue;
        waiting.delete(req);
        clearTimeout(r.timer);
        r.resolve(undefined);
      }
      const orphaned = directory.dropWorker(worker.id);
      const orphans = orphaned.length;
      if (stopping) return;
      // Its drivers' trips are in Redis, at most a second behind: read them back before their next
      // claims are granted (the grants wait for resumeLoaded).
      if (tripStore !== null) {
        const ids = new Set(orphaned);
        const previous = resumeLoaded;
        resumeLoaded = previous.then(() => loadResumable(ids));
      }
      metrics.workerRestarts.inc();
      if (Date.now() - started < CRASH_LOOP_MS) {
        restartDelay = Math.min(MAX_RESTART_DELAY_MS, Math.max(100, restartDelay * 2));
      }
      log.error('worker died; forking a new one', {
        worker: worker.id,
        code,
        signal,
        orphans,
        delayMs: restartDelay,
      });
      setTimeout(fork, restartDelay).unref();
    });
  };

  const backend: Backend = {
    async nearest(lat, lon, k, radius, free, withPath) {
      const parts = (await query({ op: 'nearest', lat, lon, k, radius, free })) as Array<
        Array<DriverView & { distance: number }>
      >;
      const drivers = mergeUnique(parts.flat(), (a, b) => a.distance - b.distance || cmp(a.id, b.id)).slice(
        0,
        k,
      );
      if (!withPath || drivers.length === 0) return drivers;
      // Paths only for the k that made the cut, each from the worker that owns the driver, in parallel.
      const byOwner = new Map<number, string[]>();
      for (const d of drivers) {
        const owner = directory.owner(d.id);
        if (owner !== undefined) byOwner.set(owner, [...(byOwner.get(owner) ?? []), d.id]);
      }
      const found: Record<string, unknown> = {};
      await Promise.all(
        [...byOwner].map(async ([owner, ids]) => {
          const m = members.get(owner);
          if (m === undefined) return;
          const r = await ask(m.worker, (req) => ({
            t: 'query',
            req,
            q: { op: 'paths', ids, deadlineMs: config.pathDeadlineMs },
          }));
          if (r !== null && r !== undefined) Object.assign(found, r);
        }),
      );
      return drivers.map((d) => {
        const p = found[d.id] as { path: unknown; matched: boolean } | undefined;
        return { ...d, path: p?.path ?? [[d.lon, d.lat, d.time]], matched: p?.matched ?? false };
      });
    },
    async bbox(box, after, limit) {
      const [minLon, minLat, maxLon, maxLat] = box;
      const parts = (await query({
        op: 'bbox',
        minLon,
        minLat,
        maxLon,
        maxLat,
        after,
        limit,
      })) as DriverView[][];
      return mergeUnique(parts.flat(), (a, b) => cmp(a.id, b.id)).slice(0, limit + 1);
    },
    async driver(id) {
      return newest(await query({ op: 'driver', id }));
    },
    async cab(cab) {
      return newest(await query({ op: 'cab', cab }));
    },
    async trip(orderId) {
      const found = (await query({ op: 'trip', orderId })) as TripRecord[];
      // An active copy beats a finished one; among equals the latest update wins.
      found.sort((a, b) => Number(b.active) - Number(a.active) || b.lastTime - a.lastTime);
      // A trip no worker remembers may still be in Redis (finished long ago, or before a restart).
      return found[0] ?? (tripStore === null ? null : ((await redisDown(tripStore.get(orderId))) ?? null));
    },
    async putSession(hi, lo, driverId, cab) {
      let created: boolean;
      if (redisSessions !== null) {
        created = await redisDown(redisSessions.put(hi, lo, { driverId, cab }));
      } else {
        created = !sessions.has(hi, lo);
        sessions.set(hi, lo, { driverId, cab });
      }
      // The workers learn it now rather than at the driver's first fix (and past any negative cache).
      await tellSynced((req) => ({ t: 'session', req, hi, lo, driverId, cab }));
      return created;
    },
    async deleteSession(hi, lo) {
      const known =
        redisSessions !== null ? await redisDown(redisSessions.revoke(hi, lo)) : sessions.delete(hi, lo);
      // The workers also hear of it on the channel; asking them directly makes the delete take effect
      // before the API answers.
      const removed = await tellSynced((req) => ({ t: 'revoke', req, hi, lo }));
      return known || removed.some((r) => r === true);
    },
    async deleteDriver(id) {
      return removeDrivers((s) => s.driverId === id, [id]);
    },
    async deleteCab(cab) {
      const ids = new Set<string>();
      sessions.forEach((s) => {
        if (s.cab === cab) ids.add(s.driverId);
      });
      const live = (await query({ op: 'cab', cab })) as Array<{ id: string }>;
      for (const d of live) ids.add(d.id);
      if (ids.size === 0) return false;
      return removeDrivers((s) => ids.has(s.driverId), [...ids]);
    },
    async metrics() {
      const parts = await query({ op: 'metrics' });
      return { contentType: metricsContentType, body: await clusterMetricsText(metrics.register, parts) };
    },
    health() {
      const up = readyMembers().length;
      return { ok: up > 0, detail: { workers: up } };
    },
    ready() {
      const up = readyMembers().length;
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

  /**
   * Removing a driver also revokes its sessions: otherwise its next fix, a second later, would bring it
   * straight back, and an operator who removes a driver means it.
   */
  const removeDrivers = async (match: (s: SessionInfo) => boolean, ids: string[]): Promise<boolean> => {
    const revoked: Array<{ hi: number; lo: number }> = [];
    // Collected first: deleting from an open-addressing map while walking it would skip entries.
    sessions.forEach((s, hi, lo) => {
      if (match(s)) revoked.push({ hi, lo });
    });
    for (const s of revoked) sessions.delete(s.hi, s.lo);
    let found = revoked.length > 0;
    const removals = (
      await Promise.all(ids.map((id) => tellSynced((req) => ({ t: 'remove-driver', req, id }))))
    )
      .flat()
      .filter((r): r is { removed: boolean; session: [number, number] | null } => r != null);
    for (const r of removals) {
      found ||= r.removed;
      if (r.session !== null) revoked.push({ hi: r.session[0], lo: r.session[1] });
    }
    for (const id of ids) directory.forget(id);
    await Promise.all(
      revoked.map(async (s) => {
        // With Redis the session is deleted there too (and announced on the channel to every worker).
        if (redisSessions !== null) found = (await redisDown(redisSessions.revoke(s.hi, s.lo))) || found;
        await tellSynced((req) => ({ t: 'revoke', req, hi: s.hi, lo: s.lo }));
      }),
    );
    return found;
  };

  const api = createApi({
    backend,
    tokens,
    observe: (route, method, status, seconds) =>
      metrics.httpDuration.observe({ route, method, status: String(status) }, seconds),
  });
  // Node checks these timeouts every connectionsCheckingInterval (30 s by default): check every second,
  // so a slow-headers client is cut off after 5 s, not up to 35.
  const server = createServer(
    { requestTimeout: 10_000, headersTimeout: 5_000, connectionsCheckingInterval: 1000 },
    api,
  );
  server.keepAliveTimeout = 5_000;
  server.maxRequestsPerSocket = 0;

  resumeLoaded = loadResumable();
  // Trips read back whose drivers never return are ended as expired, as a live driver's would be.
  const resumeSweep = setInterval(() => {
    const cutoff = Date.now() / 1000 - config.idleTimeoutS;
    for (const [id, t] of resumable) {
      if (t.lastTime > cutoff) continue;
      resumable.delete(id);
      tripStore?.end({ ...t, active: false, endReason: 'expired' });
    }
  }, 10_000);
  resumeSweep.unref();
  for (let i = 0; i < config.workers; i++) fork();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.httpPort, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info('cabtrack listening', {
    http: `${config.host}:${config.httpPort}`,
    udp: `${config.host}:${config.udpPort}`,
    workers: config.workers,
  });

  const stop = async (): Promise<void> => {
    stopping = true;
    clearInterval(resumeSweep);
    server.close();
    server.closeAllConnections();
    await Promise.all(
      [...members.values()].map(
        (m) =>
          new Promise<void>((resolve) => {
            m.worker.once('exit', () => resolve());
            m.worker.kill('SIGTERM');
          }),
      ),
    );
    await tripStore?.close();
    redis?.disconnect();
  };
  return { server, stop };
}

/** A Redis command that failed (Redis down, or too slow) is the API's 503, not a 500. */
async function redisDown<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new HttpError(
      503,
      'unavailable',
      `redis is unavailable: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Sorts the shards' answers and keeps one entry per driver id. A driver is owned by one worker at a
 * time, but an answer can race a handoff; the newest fix wins then, so no driver is listed twice.
 */
function mergeUnique<T extends { id: string; time: number }>(all: T[], order: (a: T, b: T) => number): T[] {
  const best = new Map<string, T>();
  for (const d of all) {
    const seen = best.get(d.id);
    if (seen === undefined || d.time > seen.time) best.set(d.id, d);
  }
  return [...best.values()].sort(order);
}

function newest(found: unknown[]): unknown {
  let best: { time: number } | null = null;
  for (const f of found as Array<{ time: number }>) if (best === null || f.time > best.time) best = f;
  return best;
}
