import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Cluster, type Redis } from 'ioredis';
import { log } from '../log.ts';
import { FrameReader, readHeader } from '../replica/batch.ts';
import type { FeedSource } from '../replica/feed.ts';
import { CellSplit } from './cell-split.ts';
import type { Directory } from './directory.ts';
import { channelCell, inRegion, type Region } from './live-cells.ts';

/**
 * A host's link to the others, in its primary: what makes N hosts one live view.
 *
 * - Out: it follows this host's ingest workers' batch streams (as the HTTP workers do), cuts them by
 *   live cell (src/hosts/cell-split.ts) and, once a tick, SPUBLISHes each cell's message on the cell's
 *   channel. Cells it publishes are listed in a sorted set, scored by when last announced:
 *
 *     cabtrack:live:cells     zset, member a live channel, score ms: the cells with drivers somewhere
 *
 * - In: every few seconds it reads that set, SSUBSCRIBEs to the listed cells in its region (all by
 *   default) and lets go of cells no longer listed; each message from another host goes, as is, to
 *   every HTTP worker of this host on a Unix socket (the "live relay"), whose RemoteFeed applies it.
 *   One subscription per host, not per HTTP worker: Redis sends each message once to each host.
 * - Liveness: it renews this host's lease, and tells the HTTP workers when a host it hears from loses
 *   its lease (killed), so its drivers leave their replicas at once rather than after the staleness
 *   timeout.
 */
export const ACTIVE_CELLS_KEY = 'cabtrack:live:cells';

export interface HostLinkOptions {
  /** Publishing and subscribing client: a Cluster with shardedSubscribers, or a standalone Redis. */
  redis: Redis | Cluster;
  directory: Directory;
  hostId: string;
  hostUrl: string;
  zoom: number;
  region: Region;
  publishMs: number;
  keyframeTicks: number;
  /** The relay socket's path (in the run directory). */
  relayPath: string;
  /** A host stopped renewing its lease: drop its drivers. */
  onHostGone: (hostId: string) => void;
  /** A message's bytes and the time it was published, for the cross-host figures. */
  now?: () => number;
}

/** How often the set of active cells is read, and how long a cell stays listed without news. */
const CELLS_POLL_MS = 2000;
const CELL_LISTED_MS = 90_000;
const CELL_ANNOUNCE_MS = 30_000;
/** A relay reader this far behind is cut off (it reconnects and waits for the cells' snapshots). */
const RELAY_MAX_BACKLOG = 64 * 1024 * 1024;

export class HostLink {
  readonly #o: HostLinkOptions;
  readonly #split: CellSplit;
  readonly #now: () => number;
  readonly #follows = new Map<
    number,
    { path: string; socket: Socket | null; retry: NodeJS.Timeout | null }
  >();
  readonly #relay: Server;
  readonly #readers = new Set<Socket>();
  /** Channels subscribed to. */
  readonly #subscribed = new Set<string>();
  /** When each cell of ours was last announced in the active set. */
  readonly #announced = new Map<string, number>();
  /** Hosts heard from, and when last. */
  readonly #heard = new Map<string, number>();
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #subscriber: Redis | Cluster;
  #closed = false;
  /** For the metrics and the cost model. */
  readonly counters = {
    published: 0,
    publishedBytes: 0,
    publishErrors: 0,
    received: 0,
    receivedBytes: 0,
    ownReceived: 0,
    relayCutOff: 0,
    redisOps: 0,
  };

  constructor(o: HostLinkOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#split = new CellSplit({ zoom: o.zoom, hostId: o.hostId, keyframeTicks: o.keyframeTicks });
    // Standalone Redis: a connection in subscriber mode can do nothing else, so it is a second one.
    this.#subscriber = o.redis instanceof Cluster ? o.redis : o.redis.duplicate();
    this.#subscriber.on('smessageBuffer', (channel: Buffer, message: Buffer) =>
      this.#message(channel, message),
    );
    rmSync(o.relayPath, { force: true });
    this.#relay = createServer((sock) => {
      this.#readers.add(sock);
      sock.on('data', () => {});
      sock.on('error', () => {});
      sock.on('close', () => this.#readers.delete(sock));
    });
  }

  /** Cells this host has drivers in. */
  get cells(): number {
    return this.#split.cells;
  }

  get subscriptions(): number {
    return this.#subscribed.size;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#relay.listen(this.#o.relayPath, resolve));
    const every = (ms: number, fn: () => unknown): void => {
      const timer = setInterval(() => {
        Promise.resolve()
          .then(fn)
          .catch((err: unknown) => log.warn('host link', { err: String(err) }));
      }, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(Math.max(250, Math.floor(this.#o.directory.leaseMs / 3)), () => this.#renewLease());
    every(this.#o.publishMs, () => this.#tick());
    every(CELLS_POLL_MS, () => this.#pollCells());
    every(1000, () => this.#checkHosts());
    await this.#renewLease().catch((err: unknown) => log.warn('host lease', { err: String(err) }));
    await this.#pollCells().catch(() => {});
  }

  /** The local ingest workers to follow (the primary sends the whole list when it changes). */
  setFeeds(sources: readonly FeedSource[]): void {
    const want = new Map(sources.map((s) => [s.source, s.path]));
    for (const [w, f] of this.#follows) {
      if (want.get(w) === f.path) continue;
      this.#stop(w);
    }
    for (const [w, path] of want) {
      if (this.#follows.has(w)) continue;
      this.#follows.set(w, { path, socket: null, retry: null });
      this.#follow(w);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    for (const w of [...this.#follows.keys()]) this.#stop(w);
    for (const s of this.#readers) s.destroy();
    this.#relay.close();
    rmSync(this.#o.relayPath, { force: true });
    await this.#o.directory.dropLease().catch(() => {});
    if (this.#subscriber !== this.#o.redis) this.#subscriber.disconnect();
  }

  #follow(w: number): void {
    const f = this.#follows.get(w);
    if (f === undefined || this.#closed) return;
    const sock = connect(f.path);
    f.socket = sock;
    const reader = new FrameReader((frame) => this.#split.push(w, frame));
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
    sock.on('error', () => {});
    sock.on('close', () => {
      if (f.socket !== sock) return;
      f.socket = null;
      // Its drivers leave their cells; a worker still listed is followed again, from a snapshot.
      this.#split.dropWorker(w);
      f.retry = setTimeout(() => {
        f.retry = null;
        this.#follow(w);
      }, 200);
    });
  }

  #stop(w: number): void {
    const f = this.#follows.get(w);
    if (f === undefined) return;
    this.#follows.delete(w);
    if (f.retry !== null) clearTimeout(f.retry);
    const s = f.socket;
    f.socket = null;
    s?.destroy();
    this.#split.dropWorker(w);
  }

  async #renewLease(): Promise<void> {
    this.counters.redisOps++;
    await this.#o.directory.renewLease(this.#o.hostUrl);
  }

  #tick(): void {
    const now = this.#now();
    const redis = this.#o.redis;
    const announce: Array<string | number> = [];
    for (const m of this.#split.tick(now)) {
      this.counters.published++;
      this.counters.publishedBytes += m.message.length;
      this.counters.redisOps++;
      redis.spublish(m.channel, m.message).catch(() => this.counters.publishErrors++);
      const last = this.#announced.get(m.channel);
      if (last === undefined || now - last > CELL_ANNOUNCE_MS) {
        this.#announced.set(m.channel, now);
        announce.push(now, m.channel);
      }
    }
    if (announce.length > 0) {
      this.counters.redisOps++;
      redis.zadd(ACTIVE_CELLS_KEY, ...announce).catch(() => {
        // Announced again at the next tick that publishes the cell.
        for (let i = 1; i < announce.length; i += 2) this.#announced.delete(String(announce[i]));
      });
    }
  }

  async #pollCells(): Promise<void> {
    const now = this.#now();
    this.counters.redisOps++;
    const listed = await this.#o.redis.zrangebyscore(ACTIVE_CELLS_KEY, now - CELL_LISTED_MS, '+inf');
    const want = new Set<string>();
    for (const ch of listed) {
      const cell = channelCell(ch, this.#o.zoom);
      if (cell >= 0 && inRegion(cell, this.#o.zoom, this.#o.region)) want.add(ch);
    }
    const sub = this.#subscriber;
    // One command per channel: in a cluster each channel may live on another node.
    for (const ch of want) {
      if (this.#subscribed.has(ch)) continue;
      this.#subscribed.add(ch);
      this.counters.redisOps++;
      await sub.ssubscribe(ch).catch((err: unknown) => {
        this.#subscribed.delete(ch);
        log.warn('could not subscribe to a live cell', { channel: ch, err: String(err) });
      });
    }
    for (const ch of [...this.#subscribed]) {
      if (want.has(ch)) continue;
      this.#subscribed.delete(ch);
      this.counters.redisOps++;
      await sub.sunsubscribe(ch).catch(() => {});
    }
    if (Math.random() < CELLS_POLL_MS / 600_000) {
      // Now and then (about every 10 minutes per host) the long-silent cells leave the set.
      this.counters.redisOps++;
      await this.#o.redis.zremrangebyscore(ACTIVE_CELLS_KEY, '-inf', now - CELL_LISTED_MS);
    }
  }

  #message(_channel: Buffer, message: Buffer): void {
    let host: string;
    try {
      host = readHeader(message.subarray(4)).host;
    } catch {
      return;
    }
    if (host === this.#o.hostId) {
      this.counters.ownReceived++;
      return;
    }
    this.counters.received++;
    this.counters.receivedBytes += message.length;
    this.#heard.set(host, this.#now());
    for (const sock of this.#readers) {
      if (sock.writableLength > RELAY_MAX_BACKLOG) {
        this.counters.relayCutOff++;
        sock.destroy();
        continue;
      }
      sock.write(message);
    }
  }

  async #checkHosts(): Promise<void> {
    const now = this.#now();
    for (const [host, at] of this.#heard) {
      if (now - at > CELL_LISTED_MS) {
        this.#heard.delete(host);
        continue;
      }
      this.counters.redisOps++;
      if ((await this.#o.directory.hostUrl(host)) === '') {
        this.#heard.delete(host);
        log.warn('host lost its lease: its drivers leave the live view until their next fix elsewhere', {
          host,
        });
        this.#o.onHostGone(host);
      }
    }
  }
}
