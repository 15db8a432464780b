import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { HttpError, PeerGoneError, RemoteError, RpcTimeoutError, unavailable } from '../errors.ts';
import { LIVE_RELAY_SOCKET } from '../hosts/live-cells.ts';
import { RemoteFeed } from '../hosts/remote-feed.ts';
import { type Backend, createApi, JsonText, type StreamView, type Tokens } from '../http/api.ts';
import { createPages } from '../http/pages.ts';
import { log } from '../log.ts';
import {
  Buckets,
  httpWorkerRegistry,
  metricsContentType,
  REPLICA_LAG_BUCKETS,
  STREAM_LATENCY_BUCKETS,
} from '../metrics.ts';
import { FrameReader } from '../replica/batch.ts';
import { Feeds } from '../replica/feed.ts';
import { JsonBytes } from '../replica/json-bytes.ts';
import { type DriverView, Replica } from '../replica/replica.ts';
import { cellBox, cellsForBox, cellsNear, type NearCover } from '../stream/cells.ts';
import { CellFrames, freeLayer } from '../stream/frames.ts';
import { type MovingView, StreamHub } from '../stream/hub.ts';
import { sseSink } from '../stream/sse.ts';
import { StreamTokens } from '../stream/tokens.ts';
import type { HttpApi, PrimaryForHttp } from './protocol.ts';
import { Rpc } from './rpc.ts';

/** How long a starting HTTP worker waits for its replica to sync before it takes connections anyway. */
const LISTEN_WAIT_MS = 10_000;

/**
 * An HTTP worker: serves the API on the shared HTTP port (SO_REUSEPORT: the kernel spreads the
 * connections over the HTTP workers) from its own read replica, which follows every ingest worker's
 * batches.
 * nearest and bbox are answered here, with no call to any other process; the operator routes for one
 * driver, the writes and /metrics go to the primary, which asks the drivers' owners.
 */
export function startHttpWorker(config: Config, tokens: Tokens, runDir: string): void {
  const lag = new Buckets(REPLICA_LAG_BUCKETS);
  const replica = new Replica({
    onLag: (ms) => lag.observe(ms / 1000),
    // A handed-off driver waits for its new owner's batch: that owner publishes within a tick.
    handoffGraceMs: Math.max(1000, 3 * config.publishMs),
  });
  const feeds = new Feeds({
    replica,
    onResync: (source, why) => log.info('replica resynchronising', { source, why }),
  });
  // Several hosts: the other hosts' drivers too, from the live cells this host's primary relays.
  const crossLag = new Buckets(REPLICA_LAG_BUCKETS);
  const remote =
    config.hostId === ''
      ? null
      : followRelay(
          new RemoteFeed({
            replica,
            hostId: config.hostId,
            // A live cell sends a snapshot every keyframe interval even when nothing moved.
            staleMs: 3 * config.liveKeyframeMs,
            onLag: (ms) => crossLag.observe(ms / 1000),
          }),
          join(runDir, LIVE_RELAY_SOCKET),
        );
  // Streams: the cells' frames are built once a second from the replica and shared by every viewer.
  const frames = new CellFrames(replica);
  const hub = new StreamHub({
    frames,
    maxViewers: config.streamMaxViewers,
    maxBehindMs: config.streamMaxBehindMs,
  });
  const streamTokens = new StreamTokens(tokens.operator);
  const streamLatency = new Buckets(STREAM_LATENCY_BUCKETS);
  const metrics = httpWorkerRegistry({
    replicaDrivers: () => replica.size,
    replicaResyncs: () => feeds.resyncs,
    lag,
    live:
      remote === null
        ? null
        : { crossLag, sources: () => remote.feed.sources, counters: remote.feed.counters },
    stream: {
      viewers: () => hub.viewers,
      backlogBytes: () => hub.backlogBytes(),
      counters: hub.counters,
      latency: streamLatency,
    },
  });
  // Several hosts: the other hosts' cells arrive with their snapshots, one keyframe interval after the
  // relay is followed; until then nearest would miss their drivers.
  const remoteLive = (): boolean =>
    remote === null || remote.since() >= config.liveKeyframeMs + config.publishMs;
  /** How many ingest workers' feeds the primary last named (-1: none named yet). */
  let feedsKnown = -1;
  const rpc = new Rpc<HttpApi, PrimaryForHttp>(
    { send: (m) => process.send!(m), connected: () => process.connected === true },
    {
      feeds: (sources) => {
        feeds.set(sources);
        feedsKnown = sources.length;
      },
      hostGone: (host) => {
        const n = remote?.feed.dropHost(host) ?? 0;
        if (n > 0) log.info('a host is gone: its cells left the replica', { host, cells: n });
      },
      metrics: () => metrics.register.getMetricsAsJSON(),
    },
    { timeoutMs: config.queryTimeoutMs + 1000, peer: 'primary' },
  );
  process.on('message', (m: unknown) => {
    rpc.receive(m);
  });
  // The feeds to follow, now: the port is taken only once the replica holds them (listenWhenSynced).
  rpc.tell('hello');

  /** The primary did not answer (busy, or restarting): the API's 503, not a 500. */
  const ask = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      if (err instanceof PeerGoneError || err instanceof RpcTimeoutError)
        throw unavailable('the daemon', err);
      // An API answer decided by the primary (Redis down: 503) is answered as it was decided.
      if (err instanceof RemoteError) throw err.toHttp() ?? err;
      throw err;
    }
  };

  const slots: number[] = [];
  const distances: number[] = [];
  const answer = new JsonBytes();
  const backend: Backend = {
    async nearest(lat, lon, k, radius, free, withPath) {
      const n = replica.nearest(lat, lon, k, radius, free, slots, distances);
      if (!withPath) {
        // The common case, the client app's poll: the answer written straight from the replica.
        const out = answer.reset();
        replica.writeAnswer(n, slots, distances, out);
        return new JsonText(out.take());
      }
      const drivers: Array<DriverView & { distance: number }> = new Array(n);
      const owners = new Map<number, string[]>();
      for (let i = 0; i < n; i++) {
        const slot = slots[i]!;
        drivers[i] = { ...replica.view(slot), distance: Math.round(distances[i]! * 10) / 10 };
        const owner = replica.owner(slot);
        // Another host's driver (its owner is a live cell, not a worker here) gets a straight path.
        if (owner !== null && owner.host === '')
          owners.set(owner.source, [...(owners.get(owner.source) ?? []), drivers[i]!.id]);
      }
      if (n === 0) return drivers;
      // Paths only for the k that made the cut, each from the worker that owns the driver, in parallel.
      const found: Record<string, { path: unknown; matched: boolean }> = {};
      await Promise.all(
        [...owners].map(async ([source, ids]) => {
          try {
            Object.assign(found, await rpc.call('paths', source, ids, config.pathDeadlineMs));
          } catch {
            // Straight paths for these: the answer must not wait on a worker being replaced.
          }
        }),
      );
      return drivers.map((d) => {
        const p = found[d.id];
        return { ...d, path: p?.path ?? [[d.lon, d.lat, d.time]], matched: p?.matched ?? false };
      });
    },
    async bbox([minLon, minLat, maxLon, maxLat], after, limit) {
      return replica.within(minLon, minLat, maxLon, maxLat, after, limit + 1).map((s) => replica.view(s));
    },
    driver: (id, hop) => ask(rpc.call('driver', id, hop)),
    cab: (cab, hop) => ask(rpc.call('cab', cab, hop)),
    trip: (orderId, hop) => ask(rpc.call('trip', orderId, hop)),
    handOver: (id, to) => ask(rpc.call('handOver', id, to)),
    putSession: (hi, lo, driverId, cab) => ask(rpc.call('putSession', hi, lo, driverId, cab)),
    deleteSession: (hi, lo) => ask(rpc.call('deleteSession', hi, lo)),
    deleteDriver: (id) => ask(rpc.call('deleteDriver', id)),
    deleteCab: (cab) => ask(rpc.call('deleteCab', cab)),
    async metrics() {
      return { contentType: metricsContentType, body: await ask(rpc.call('metrics')) };
    },
    health() {
      // Alive: this process answers. `workers`: the ingest workers whose batches it follows; with
      // several hosts, `remoteCells`: the other hosts' live cells it has.
      const detail: Record<string, unknown> = { workers: feeds.size };
      if (remote !== null) detail['remoteCells'] = remote.feed.sources;
      return { ok: true, detail };
    },
    async ready() {
      const r = await ask(rpc.call('readiness'));
      const synced = feeds.synced;
      const live = remoteLive();
      const detail: Record<string, unknown> = { ...r.detail, replica: synced ? 'synced' : 'syncing' };
      if (remote !== null) detail['live'] = live ? 'synced' : 'syncing';
      return { ok: r.ok && synced && live, detail };
    },
    issueStreamToken: (role) => streamTokens.issue(role, config.streamTokenTtlS),
    verifyStreamToken: (token) => streamTokens.verify(token),
    openStream(view, req, res) {
      if (hub.viewers >= config.streamMaxViewers) {
        res.setHeader('retry-after', '5');
        throw new HttpError(
          503,
          'unavailable',
          `this server takes ${config.streamMaxViewers} stream viewers at most`,
        );
      }
      const v = hub.add(view.kind === 'bbox' ? cellsForBox(...view.box) : nearView(view), sseSink(req, res))!;
      req.on('close', () => hub.remove(v));
    },
  };

  /**
   * A rider's view: the cells nearest it that hold its `limit` cars (of the free layer with `free`),
   * chosen again by the hub as cars come and go. A cell's cars are counted from the last tick's frames
   * when some viewer covers it already, otherwise from the replica.
   */
  const nearView = (view: Extract<StreamView, { kind: 'nearby' }>): MovingView => {
    const layer = view.free ? freeLayer : (key: number): number => key;
    const count = (key: number): number => {
      const known = frames.count(layer(key));
      if (known !== undefined) return known;
      let n = 0;
      const [a, b, c, d] = cellBox(key);
      replica.forEachIn(a, b, c, d, (slot) => {
        if (!view.free || replica.free(slot)) n++;
      });
      return n;
    };
    const choose = (): NearCover => {
      const cover = cellsNear(view.lat, view.lon, view.radius, view.limit, count);
      if (view.free) cover.cells = cover.cells.map(freeLayer);
      return cover;
    };
    return { cover: choose(), choose };
  };

  // Once a second: the cells' frames, then every viewer's. With OSRM the cars that moved get their road
  // paths from their owners first (matched once per fix there, and shared), within the path deadline.
  const roadPaths = new Map<number, string>();
  const streamTick = async (): Promise<void> => {
    hub.rechoose();
    const moved = frames.prepare(hub.activeCells(), config.osrmUrl !== '');
    roadPaths.clear();
    if (config.osrmUrl !== '' && moved.length > 0) await fetchRoadPaths(moved);
    const nowMs = Date.now();
    frames.build(
      (slot) => roadPaths.get(slot),
      (slot) => streamLatency.observe((nowMs - replica.receivedMs(slot)) / 1000),
    );
    hub.tick();
  };
  const fetchRoadPaths = async (moved: number[]): Promise<void> => {
    const byOwner = new Map<number, Map<string, number>>();
    for (const slot of moved) {
      const owner = replica.owner(slot);
      if (owner === null || owner.host !== '') continue;
      let ids = byOwner.get(owner.source);
      if (ids === undefined) {
        ids = new Map();
        byOwner.set(owner.source, ids);
      }
      ids.set(replica.id(slot), slot);
    }
    await Promise.all(
      [...byOwner].map(async ([source, ids]) => {
        try {
          const found = await rpc.call('paths', source, [...ids.keys()], config.pathDeadlineMs);
          for (const [id, p] of Object.entries(found)) {
            const slot = ids.get(id);
            if (slot !== undefined && p.matched) roadPaths.set(slot, JSON.stringify(p.path));
          }
        } catch {
          // Straight paths this second.
        }
      }),
    );
  };
  let ticking = false;
  const streamTimer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    streamTick().finally(() => {
      ticking = false;
    });
  }, 1000);

  const api = createApi({
    backend,
    tokens,
    pages: createPages({ tileUrl: config.mapTileUrl, attribution: config.mapAttribution }),
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
  server.on('error', (err) => {
    log.error('http server error', { err: err.message });
    process.exit(1);
  });
  // Each HTTP worker its own listening socket on the shared port (SO_REUSEPORT; exclusive: not a handle
  // shared through the primary): the kernel spreads connections over them, and the primary is not on
  // the path of any. With the cluster's round-robin the primary accepted every connection and handed
  // it over; one handed to a worker that died meanwhile was never answered nor closed (a client hung
  // until its own timeout), and a busy primary delayed every new connection.
  //
  // The socket is opened only once the replica holds every ingest worker's snapshot: the kernel would
  // hand a process that is still syncing its share of the connections, and it would answer nearest
  // from a partial replica (an empty one, just after a restart). A replica that cannot sync within
  // LISTEN_WAIT_MS (an ingest worker stuck or crash-looping) opens anyway: /healthz, /metrics and the
  // operator routes still serve, and its /readyz says 503 `syncing` until it is whole.
  const listenAt = Date.now() + LISTEN_WAIT_MS;
  const listenWhenSynced = (): void => {
    const whole = feedsKnown >= config.workers && feeds.synced && remoteLive();
    if (!whole && Date.now() < listenAt) {
      setTimeout(listenWhenSynced, 10);
      return;
    }
    if (!whole) log.warn('replica not synced: taking connections anyway', { waitedMs: LISTEN_WAIT_MS });
    server.listen({ port: config.httpPort, host: config.host, reusePort: true, exclusive: true }, () =>
      rpc.tell('listening'),
    );
  };
  listenWhenSynced();

  const stop = (): void => {
    clearInterval(streamTimer);
    hub.close();
    server.close();
    server.closeAllConnections();
    feeds.close();
    remote?.close();
    rpc.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  log.debug('http worker started', { id: cluster.worker?.id });
}

/**
 * Follows the primary's live relay (src/hosts/host-link.ts): every message of the other hosts' live
 * cells, applied by the RemoteFeed. A relay that breaks (the primary cut this reader off for falling
 * behind) drops every remote source: they come back at their cells' next snapshots.
 */
function followRelay(feed: RemoteFeed, path: string): { feed: RemoteFeed; close(): void; since(): number } {
  let socket: Socket | null = null;
  /** When the relay was last connected (0: not now). */
  let connectedAt = 0;
  let retry: NodeJS.Timeout | null = null;
  let closed = false;
  const open = (): void => {
    if (closed) return;
    const sock = netConnect(path);
    socket = sock;
    sock.on('connect', () => {
      connectedAt = Date.now();
    });
    const reader = new FrameReader((frame) => feed.frame(frame, Date.now()));
    sock.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        sock.destroy();
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      connectedAt = 0;
      feed.dropAll();
      if (socket === sock) socket = null;
      if (!closed) retry = setTimeout(open, 500);
    });
  };
  open();
  const sweep = setInterval(() => feed.sweep(Date.now()), 1000);
  sweep.unref();
  return {
    feed,
    /** How long the relay has been followed, ms (0 while it is not). */
    since: () => (connectedAt === 0 ? 0 : Date.now() - connectedAt),
    close() {
      closed = true;
      clearInterval(sweep);
      if (retry !== null) clearTimeout(retry);
      socket?.destroy();
    },
  };
}
