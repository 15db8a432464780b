import type { Cluster, Redis } from 'ioredis';
import { byNode } from '../redis/pipelines.ts';

/**
 * The driver directory of a cabtrack made of several hosts, on Redis (Cluster): which host owns each
 * live driver, and which hosts are alive. Redis is the whole engine: every decision is one single-key
 * script, atomic on the node that serves the key, so two hosts that claim one driver at the same moment
 * cannot both win, and no host needs to agree with another on anything but what Redis says.
 *
 *   cabtrack:owner:<driverId>   string, the owning host's id; PX entryTtlMs, renewed by the owner
 *   cabtrack:host:<hostId>      string, the host's URL (how other hosts reach its API); PX leaseMs,
 *                               renewed every leaseMs / 3: the host's lease. No lease, a dead host.
 *   cabtrack:hosts              hash, host id -> URL: every host that has run (the operator routes that
 *                               ask every host, by cab, go to those whose lease is alive)
 *
 * Within a host, which worker holds the driver is the primary's business (src/cluster/handoff.ts); the
 * directory only says which host. A driver's fixes reach one host at a time (the load balancer hashes the
 * source address); when they start reaching another, that host claims the driver here:
 *
 *   claim(id)           ── no owner, or this host ───────────▶ this host's (new driver, or a restart)
 *                       └─ host A ── A's lease alive ─────────▶ takeOver(id, A), then ask A for the state
 *                                 └─ A's lease gone (killed) ─▶ takeOver(id, A), the trip from Redis
 *
 * takeOver is a compare-and-set: it wins only if A still owns the driver, so of two hosts taking a
 * driver from a dead A one wins, and the loser hears who did (and asks that host in turn).
 *
 * Entries expire unless renewed (entryTtlMs, renewed by the owner every entryTtlMs / 3, spread over that
 * time so that renewals cost a steady trickle, not a burst): a host that dies leaves no permanent
 * debris, and a renewal that finds the entry taken tells the old owner it has lost the driver (a
 * release request that never reached it) so that it lets go. The lease, not the entry's TTL, is how a
 * dead host is noticed: seconds, not minutes.
 *
 * Keys hash whole (no hash tags): every script touches one key, so the entries spread over the cluster.
 */
export const OWNER_PREFIX = 'cabtrack:owner:';
export const HOST_PREFIX = 'cabtrack:host:';
export const HOSTS_KEY = 'cabtrack:hosts';

export function ownerKey(driverId: string): string {
  return OWNER_PREFIX + driverId;
}

export function hostKey(hostId: string): string {
  return HOST_PREFIX + hostId;
}

/** KEYS[1] owner; ARGV me, ttl ms, the owner to take over from ('' for none): false if now mine, else the owner. */
const CLAIM = `
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] or cur == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return cur`;

/**
 * KEYS[1] owner; ARGV me, ttl ms: 1 renewed (or made again: it had expired, as after a Redis outage
 * longer than the TTL, or lost in a failover), 0 the entry is another host's.
 */
const RENEW = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

/** KEYS[1] owner; ARGV me: deletes the entry if it is mine. */
const DROP = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

interface DirectoryCommands {
  cabtrackClaim(key: string, me: string, ttlMs: number, from: string): Promise<string | null>;
  cabtrackRenew(key: string, me: string, ttlMs: number): Promise<number>;
  cabtrackDrop(key: string, me: string): Promise<number>;
}

export interface DirectoryOptions {
  redis: Redis | Cluster;
  /** This host's id (CABTRACK_HOST_ID). */
  hostId: string;
  /** How long an entry lives without renewal. */
  entryTtlMs?: number;
  /** How long a host's lease lives without renewal. */
  leaseMs?: number;
  /** How long an answer about another host's lease is trusted. */
  aliveCacheMs?: number;
  now?: () => number;
}

/** The outcome of a claim: this host owns the driver now, and from whom it took it ('' for nobody). */
export interface Claimed {
  /** The host the driver was taken from, '' when it had no owner or was already this host's. */
  from: string;
  /** That host was alive when taken from (ask it for the driver's state); false: killed, or none. */
  fromAlive: boolean;
  /** Its URL, when alive. */
  fromUrl: string;
}

const MAX_TAKEOVER_ROUNDS = 4;

export class Directory {
  readonly #redis: Redis | Cluster;
  readonly #cmd: DirectoryCommands;
  readonly hostId: string;
  readonly entryTtlMs: number;
  readonly leaseMs: number;
  readonly #aliveCacheMs: number;
  readonly #now: () => number;
  /** When this host last listed itself in cabtrack:hosts (0: not yet). */
  #listedAt = 0;
  /** Other hosts' leases as last read: URL ('' for dead) and when read. */
  readonly #hosts = new Map<string, { url: string; at: number }>();
  /** Operations sent, by kind: for cabtrack_directory_ops_total and the cost model. */
  readonly ops = { claim: 0, renew: 0, drop: 0, lease: 0, lookup: 0 };

  constructor(o: DirectoryOptions) {
    this.#redis = o.redis;
    this.hostId = o.hostId;
    this.entryTtlMs = o.entryTtlMs ?? 300_000;
    this.leaseMs = o.leaseMs ?? 3000;
    this.#aliveCacheMs = o.aliveCacheMs ?? 500;
    this.#now = o.now ?? Date.now;
    const r = this.#redis as unknown as Record<string, unknown>;
    if (!('cabtrackClaim' in r)) {
      this.#redis.defineCommand('cabtrackClaim', { lua: CLAIM, numberOfKeys: 1 });
      this.#redis.defineCommand('cabtrackRenew', { lua: RENEW, numberOfKeys: 1 });
      this.#redis.defineCommand('cabtrackDrop', { lua: DROP, numberOfKeys: 1 });
    }
    this.#cmd = this.#redis as unknown as DirectoryCommands;
  }

  /**
   * Renews this host's lease (and says where it is reached): every leaseMs / 3. Lists the host among
   * the hosts now and then (the first time, and after a Redis that came back empty).
   */
  async renewLease(url: string): Promise<void> {
    this.ops.lease++;
    await this.#redis.set(hostKey(this.hostId), url, 'PX', this.leaseMs);
    if (this.#listedAt === 0 || this.#now() - this.#listedAt > 30_000) {
      await this.register(url);
      this.#listedAt = this.#now();
    }
  }

  /** Lists this host among the hosts (at start-up). */
  async register(url: string): Promise<void> {
    this.ops.lease++;
    await this.#redis.hset(HOSTS_KEY, this.hostId, url);
  }

  /** The other hosts alive now, with their URLs. */
  async liveHosts(): Promise<Array<{ id: string; url: string }>> {
    this.ops.lookup++;
    const all = await this.#redis.hkeys(HOSTS_KEY);
    const out: Array<{ id: string; url: string }> = [];
    for (const id of all) {
      if (id === this.hostId) continue;
      const url = await this.hostUrl(id);
      if (url !== '') out.push({ id, url });
    }
    return out;
  }

  /** A host stopping cleanly gives its lease up: the others take its drivers at once, not a lease later. */
  async dropLease(): Promise<void> {
    await this.#redis.del(hostKey(this.hostId));
  }

  /** Another host's URL if its lease is alive, '' if not (read at most every aliveCacheMs per host). */
  async hostUrl(hostId: string): Promise<string> {
    const now = this.#now();
    const known = this.#hosts.get(hostId);
    if (known !== undefined && now - known.at < this.#aliveCacheMs) return known.url;
    this.ops.lookup++;
    const url = (await this.#redis.get(hostKey(hostId))) ?? '';
    this.#hosts.set(hostId, { url, at: now });
    return url;
  }

  /** The driver's owner now ('' for none). */
  async owner(driverId: string): Promise<string> {
    this.ops.lookup++;
    return (await this.#redis.get(ownerKey(driverId))) ?? '';
  }

  /**
   * Makes this host the driver's owner: taken from nobody, from itself, or from the host that had it,
   * whose lease says whether to ask it for the state. Rejects when Redis cannot be reached.
   */
  async claim(driverId: string): Promise<Claimed> {
    const key = ownerKey(driverId);
    let from = '';
    for (let round = 0; round < MAX_TAKEOVER_ROUNDS; round++) {
      this.ops.claim++;
      const other = await this.#cmd.cabtrackClaim(key, this.hostId, this.entryTtlMs, from);
      if (other === null) {
        if (from === '') return { from: '', fromAlive: false, fromUrl: '' };
        const url = await this.hostUrl(from);
        return { from, fromAlive: url !== '', fromUrl: url };
      }
      // Owned by another host: take it over from that host (the next round's compare-and-set), unless
      // a third host got there first, in which case that one is asked in turn.
      from = other;
    }
    throw new Error(`driver ${driverId}: ownership kept changing hands`);
  }

  /**
   * Renews the entries of these drivers (this host's); returns those whose entry another host has taken:
   * the caller lets them go. One pipeline per Redis node.
   */
  async renew(driverIds: readonly string[]): Promise<string[]> {
    if (driverIds.length === 0) return [];
    const keys = driverIds.map(ownerKey);
    const lost: string[] = [];
    await Promise.all(
      byNode(this.#redis, keys).map(async (group) => {
        const p = this.#redis.pipeline();
        const cmd = p as unknown as DirectoryCommands;
        for (const i of group) void cmd.cabtrackRenew(keys[i]!, this.hostId, this.entryTtlMs);
        this.ops.renew += group.length;
        const out = (await p.exec()) ?? [];
        for (let j = 0; j < group.length; j++) {
          const [err, v] = out[j] ?? [null, 1];
          if (err === null && v === 0) lost.push(driverIds[group[j]!]!);
        }
      }),
    );
    return lost;
  }

  /** The drivers left this host (expired, deleted): their entries go, if still this host's. */
  async drop(driverIds: readonly string[]): Promise<void> {
    if (driverIds.length === 0) return;
    const keys = driverIds.map(ownerKey);
    await Promise.all(
      byNode(this.#redis, keys).map(async (group) => {
        const p = this.#redis.pipeline();
        const cmd = p as unknown as DirectoryCommands;
        for (const i of group) void cmd.cabtrackDrop(keys[i]!, this.hostId);
        this.ops.drop += group.length;
        await p.exec();
      }),
    );
  }
}
