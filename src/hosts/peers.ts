import type { Pool } from 'undici';
import { undici } from '../lazy-undici.ts';

/**
 * The other hosts' APIs, as this host calls them: one undici Pool per host (keep-alive connections,
 * a few per host: these calls are operator routes and handoffs, not the fix path).
 *
 * Calls carry the operator token (every host of one cabtrack shares it) and the HOP header: a request
 * that comes from another host is answered from this host alone, never forwarded again, so two hosts
 * whose directories disagree for a moment cannot bounce a request between them.
 */
export const HOP_HEADER = 'x-cabtrack-hop';

export interface PeerAnswer {
  status: number;
  body: unknown;
}

export interface PeersOptions {
  operatorToken: string;
  /** Each call gives up after this long (the host is then treated as unreachable for this call). */
  timeoutMs?: number;
  /** This host's id, sent in the hop header (the peer logs who asked). */
  hostId: string;
}

export class Peers {
  readonly #pools = new Map<string, Pool>();
  readonly #o: Required<PeersOptions>;
  /** Calls made and calls failed (unreachable, timed out, 5xx), for the metrics. */
  readonly counters = { calls: 0, failures: 0 };

  constructor(o: PeersOptions) {
    this.#o = { timeoutMs: 2000, ...o };
  }

  /** A call to a host's API: JSON in and out. Rejects when the host cannot be reached in time. */
  async call(
    url: string,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<PeerAnswer> {
    this.counters.calls++;
    const u = new URL(url);
    let pool = this.#pools.get(u.origin);
    if (pool === undefined) {
      pool = new (undici().Pool)(u.origin, {
        connections: 8,
        headersTimeout: this.#o.timeoutMs,
        bodyTimeout: this.#o.timeoutMs,
      });
      this.#pools.set(u.origin, pool);
    }
    try {
      const res = await pool.request({
        method,
        path: (u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')) + path,
        headers: {
          authorization: `Bearer ${this.#o.operatorToken}`,
          [HOP_HEADER]: this.#o.hostId,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      const text = await res.body.text();
      if (res.statusCode >= 500) this.counters.failures++;
      return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) };
    } catch (err) {
      this.counters.failures++;
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
  }
}
