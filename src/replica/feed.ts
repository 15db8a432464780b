import { connect, type Socket } from 'node:net';
import { BatchError } from '../errors.ts';
import { FrameReader } from './batch.ts';
import type { Replica } from './replica.ts';

/** One ingest worker to follow: its id (the batches' source) and its Unix socket. */
export interface FeedSource {
  source: number;
  path: string;
}

export interface FeedsOptions {
  replica: Replica;
  /** The host id the batches carry ('' on one host). */
  host?: string;
  now?: () => number;
  /** A stream broke or sent something wrong; the source is dropped and followed again. */
  onResync?: (source: number, why: string) => void;
}

interface Follow {
  source: FeedSource;
  socket: Socket | null;
  retry: NodeJS.Timeout | null;
  delayMs: number;
}

/**
 * Keeps a replica following the ingest workers' batch streams (src/replica/publisher.ts): one Unix
 * socket per worker, each a snapshot then deltas. A stream that closes drops its worker's drivers from
 * the replica at once (a worker that died; the primary lists its replacement soon); one that breaks
 * the protocol (a gap, a malformed batch) is dropped too and followed again, from a new snapshot.
 */
export class Feeds {
  readonly #o: FeedsOptions;
  readonly #now: () => number;
  readonly #follows = new Map<number, Follow>();
  /** Sources dropped and followed again. */
  resyncs = 0;
  #closed = false;

  constructor(o: FeedsOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Follows exactly these sources from now on (the primary sends the whole set when it changes). */
  set(sources: readonly FeedSource[]): void {
    const want = new Map(sources.map((s) => [s.source, s]));
    for (const [id, f] of this.#follows) {
      const s = want.get(id);
      if (s !== undefined && s.path === f.source.path) continue;
      this.#stop(f);
      this.#follows.delete(id);
      this.#o.replica.dropSource(this.#o.host ?? '', id);
    }
    for (const s of sources) {
      if (this.#follows.has(s.source)) continue;
      const f: Follow = { source: s, socket: null, retry: null, delayMs: 50 };
      this.#follows.set(s.source, f);
      this.#connect(f);
    }
  }

  /** Sources followed. */
  get size(): number {
    return this.#follows.size;
  }

  /** Every followed source has delivered its snapshot: the replica is complete. */
  get synced(): boolean {
    for (const f of this.#follows.values())
      if (!this.#o.replica.synced(this.#o.host ?? '', f.source.source)) return false;
    return true;
  }

  close(): void {
    this.#closed = true;
    for (const f of this.#follows.values()) this.#stop(f);
    this.#follows.clear();
  }

  #connect(f: Follow): void {
    if (this.#closed || this.#follows.get(f.source.source) !== f) return;
    const host = this.#o.host ?? '';
    const sock = connect(f.source.path);
    f.socket = sock;
    let broken = false;
    const reader = new FrameReader((frame) => {
      if (broken) return;
      try {
        this.#o.replica.apply(frame, this.#now());
        f.delayMs = 50;
      } catch (err) {
        if (!(err instanceof BatchError)) throw err;
        broken = true;
        this.#resync(f, err.message);
      }
    });
    sock.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        if (!(err instanceof BatchError)) throw err;
        broken = true;
        this.#resync(f, err.message);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (f.socket !== sock) return;
      f.socket = null;
      // Its drivers leave at once; if the worker is still listed, follow it again from a snapshot.
      this.#o.replica.dropSource(host, f.source.source);
      if (!broken && !this.#closed) this.#o.onResync?.(f.source.source, 'stream closed');
      this.#retry(f);
    });
  }

  #resync(f: Follow, why: string): void {
    this.resyncs++;
    this.#o.onResync?.(f.source.source, why);
    this.#o.replica.dropSource(this.#o.host ?? '', f.source.source);
    f.socket?.destroy();
  }

  #retry(f: Follow): void {
    if (this.#closed || this.#follows.get(f.source.source) !== f) return;
    f.retry = setTimeout(() => {
      f.retry = null;
      this.#connect(f);
    }, f.delayMs);
    f.delayMs = Math.min(2000, f.delayMs * 2);
  }

  #stop(f: Follow): void {
    if (f.retry !== null) clearTimeout(f.retry);
    f.retry = null;
    const s = f.socket;
    f.socket = null;
    s?.destroy();
  }
}
