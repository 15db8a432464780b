import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import type { DriverDetail } from '../cluster/protocol.ts';
import type { Config } from '../config.ts';
import { unavailable } from '../errors.ts';
import { log } from '../log.ts';
import type { DriverState, TripRecord } from '../store/driver.ts';
import type { TripStore } from '../trips/trip-store.ts';
import { Directory } from './directory.ts';
import { parseDriverState } from './driver-state.ts';
import { HostLink } from './host-link.ts';
import { LIVE_RELAY_SOCKET } from './live-cells.ts';
import { Peers } from './peers.ts';

/**
 * One host among several, as its primary sees it: the directory (src/hosts/directory.ts), the calls to
 * the other hosts (src/hosts/peers.ts) and the live link (src/hosts/host-link.ts), behind the few
 * questions the primary asks:
 *
 * - acquire(id): a driver no worker here holds is claimed for this host in the directory; if another
 *   host had it, that host is asked for its state (ring and trip), and when it cannot answer (killed)
 *   the driver's trip is read from Redis. The Handoff (src/cluster/handoff.ts) calls it before it grants
 *   such a driver, so a driver is granted on one host at a time.
 * - the operator routes for one driver, when this host does not have it: asked of its owner.
 * - renewals: every owned driver's directory entry is renewed once every entry TTL / 3, a slice each
 *   second; a renewal that finds the entry taken (a release request that never arrived) makes this host
 *   let the driver go.
 */
export interface Acquired {
  state: DriverState | null;
  trip: TripRecord | null;
}

export interface HostLayerOptions {
  config: Config;
  operatorToken: string;
  /** The primary's client (commands), and the link's (publishing and sharded subscriptions). */
  redis: Redis | Cluster;
  linkRedis: Redis | Cluster;
  trips: TripStore;
  runDir: string;
  /** The drivers this host's workers hold now (for renewals). */
  owned: () => string[];
  /** Another host has the driver now: let it go here (its state is not needed). */
  lost: (id: string) => void;
  /** A host lost its lease: its cells leave the HTTP workers' replicas. */
  onHostGone: (host: string) => void;
}

export class HostLayer {
  readonly directory: Directory;
  readonly peers: Peers;
  readonly link: HostLink;
  /** Drivers taken over from another host, by what came with them. */
  readonly takeovers = { state: 0, trip: 0, none: 0, directory_error: 0 };
  readonly #o: HostLayerOptions;
  readonly #timers: NodeJS.Timeout[] = [];
  /** This renewal round's drivers, and how far through them it is. */
  #round: string[] = [];
  #roundAt = 0;

  constructor(o: HostLayerOptions) {
    this.#o = o;
    const c = o.config;
    this.directory = new Directory({ redis: o.redis, hostId: c.hostId });
    this.peers = new Peers({ operatorToken: o.operatorToken, hostId: c.hostId, timeoutMs: 2000 });
    this.link = new HostLink({
      redis: o.linkRedis,
      directory: this.directory,
      hostId: c.hostId,
      hostUrl: c.hostUrl,
      zoom: c.liveZoom,
      region: c.region,
      publishMs: c.publishMs,
      keyframeTicks: Math.max(1, Math.round(c.liveKeyframeMs / c.publishMs)),
      relayPath: join(o.runDir, LIVE_RELAY_SOCKET),
      onHostGone: o.onHostGone,
    });
  }

  async start(): Promise<void> {
    // A cluster client starts by discovering the slots; the lease and the cells wait for it (a few
    // seconds at most: they are retried every second anyway).
    const redis = this.#o.redis;
    if (redis.status !== 'ready') {
      await Promise.race([
        new Promise((r) => redis.once('ready', r)),
        new Promise((r) => setTimeout(r, 5000)),
      ]);
    }
    // Two hosts with one id would each take the other's drivers for its own: refuse to start while a
    // live lease of this id names another URL (a restart of this host finds its own URL there).
    const holder = await this.directory.hostUrl(this.#o.config.hostId).catch(() => '');
    if (holder !== '' && holder !== this.#o.config.hostUrl) {
      throw new Error(
        `CABTRACK_HOST_ID ${this.#o.config.hostId} is in use by a live host at ${holder}: each host needs its own id`,
      );
    }
    await this.link.start();
    const renew = setInterval(() => {
      this.#renewSlice().catch((err: unknown) => log.warn('directory renewal', { err: String(err) }));
    }, 1000);
    renew.unref();
    this.#timers.push(renew);
    log.info('host joined', {
      host: this.#o.config.hostId,
      url: this.#o.config.hostUrl,
      liveZoom: this.#o.config.liveZoom,
      region: this.#o.config.region.length === 0 ? 'world' : this.#o.config.region,
    });
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    await this.link.close();
    await this.peers.close();
  }

  /**
   * Makes the driver this host's; what another host had of it, or null when it had no other owner (a
   * new driver, or this host's already: the local read-back has its trip). Never rejects: with Redis
   * unreachable the driver is served here (counted), as a single host would.
   */
  async acquire(id: string): Promise<Acquired | null> {
    let claimed: Awaited<ReturnType<Directory['claim']>>;
    try {
      claimed = await this.directory.claim(id);
    } catch (err) {
      this.takeovers.directory_error++;
      log.debug('directory claim failed; serving the driver here', { id, err: String(err) });
      return null;
    }
    if (claimed.from === '') return null;
    if (claimed.fromAlive) {
      try {
        const r = await this.peers.call(
          claimed.fromUrl,
          'POST',
          `/internal/v1/handoff/${encodeURIComponent(id)}`,
        );
        const state =
          r.status === 200 ? parseDriverState((r.body as { state?: unknown } | null)?.state) : null;
        if (state !== null && state.id === id) {
          this.takeovers.state++;
          return { state, trip: null };
        }
      } catch (err) {
        log.info('the driver’s previous host did not answer; its trip comes from redis', {
          id,
          from: claimed.from,
          err: String(err),
        });
      }
    }
    const trip = (await this.#o.trips.activeTripOf(id).catch(() => undefined)) ?? null;
    if (trip !== null) this.takeovers.trip++;
    else this.takeovers.none++;
    return { state: null, trip };
  }

  /** Drivers that left this host on their own (expired, revoked, deleted): their entries go. */
  dropped(ids: string[]): void {
    this.directory.drop(ids).catch(() => {
      // Left to expire (entry TTL): a claim by another host takes it from this one meanwhile.
    });
  }

  /** The driver as its owner host shows it; null when no other host has it. */
  async driver(id: string): Promise<DriverDetail | null> {
    const owner = await this.#ask(this.directory.owner(id));
    if (owner === '' || owner === this.#o.config.hostId) return null;
    const url = await this.#ask(this.directory.hostUrl(owner));
    if (url === '') return null;
    return this.#get<DriverDetail>(url, `/v1/drivers/${encodeURIComponent(id)}`);
  }

  /** The cab's driver on whichever other host has it (each live host asked; the newest fix wins). */
  async cab(cab: string): Promise<DriverDetail | null> {
    const hosts = await this.#ask(this.directory.liveHosts());
    const found = await Promise.allSettled(
      hosts.map((h) => this.#get<DriverDetail>(h.url, `/v1/cabs/${encodeURIComponent(cab)}`)),
    );
    let best: DriverDetail | null = null;
    for (const f of found) {
      if (f.status === 'fulfilled' && f.value !== null && (best === null || f.value.time > best.time))
        best = f.value;
    }
    return best;
  }

  /** An active trip of a driver on another host, as that host has it now (Redis has it a second behind). */
  async trip(record: TripRecord): Promise<TripRecord | null> {
    const owner = await this.directory.owner(record.driverId).catch(() => '');
    if (owner === '' || owner === this.#o.config.hostId) return null;
    const url = await this.directory.hostUrl(owner).catch(() => '');
    if (url === '') return null;
    return this.#get<TripRecord>(url, `/v1/trips/${record.orderId}`).catch(() => null);
  }

  async #get<T>(url: string, path: string): Promise<T | null> {
    let r: Awaited<ReturnType<Peers['call']>>;
    try {
      r = await this.peers.call(url, 'GET', path);
    } catch (err) {
      throw unavailable('the host that has the driver', err);
    }
    if (r.status === 200) return r.body as T;
    if (r.status === 404) return null;
    throw unavailable('the host that has the driver', new Error(`answered ${r.status}`));
  }

  async #ask<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw unavailable('redis', err);
    }
  }

  /** A slice of the owned drivers' renewals: all of them once per entry TTL / 3. */
  async #renewSlice(): Promise<void> {
    const periodS = Math.max(1, Math.floor(this.directory.entryTtlMs / 3000));
    if (this.#roundAt >= this.#round.length) {
      this.#round = this.#o.owned();
      this.#roundAt = 0;
    }
    const n = Math.ceil(this.#round.length / periodS);
    const slice = this.#round.slice(this.#roundAt, this.#roundAt + n);
    this.#roundAt += n;
    for (const id of await this.directory.renew(slice)) {
      log.info('another host has taken the driver: letting it go here', { id });
      this.#o.lost(id);
    }
  }
}
