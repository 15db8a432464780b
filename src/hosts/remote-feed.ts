import { BatchError } from '../errors.ts';
import { KIND_DELTA, readHeader } from '../replica/batch.ts';
import type { Replica } from '../replica/replica.ts';

/**
 * The other hosts' drivers in an HTTP worker's replica: the live cells' messages (src/hosts/cell-split.ts),
 * which this host's primary receives from Redis and hands on, applied frame by frame.
 *
 * Pub/sub keeps no history, so the rules differ from the local streams' (src/replica/feed.ts):
 * - a delta from a source (host, cell) whose snapshot has not come yet is skipped: the cell's next
 *   snapshot, at most a keyframe interval away, brings the source in;
 * - a gap (a message lost while a Redis node failed over, or while this host's subscription moved)
 *   drops the source, which comes back at its next snapshot;
 * - a source that says nothing for `staleMs` (its host died, or the cell emptied) is dropped: a live
 *   cell sends a snapshot every keyframe interval even when nothing moved;
 * - this host's own messages (it follows its own cells too, when it is in their region) are skipped:
 *   the local streams bring the same drivers sooner.
 *
 * Pure apart from the clock the caller passes.
 */
export interface RemoteFeedOptions {
  replica: Replica;
  /** This host's id. */
  hostId: string;
  /** A source silent this long is dropped. */
  staleMs: number;
  /** Each fix's lag across hosts (receipt by its owner -> applied here), ms. */
  onLag?: (ms: number) => void;
}

export class RemoteFeed {
  readonly #o: RemoteFeedOptions;
  /** When each source (host/cell) last sent anything, and its host and cell. */
  readonly #heard = new Map<string, { at: number; host: string; source: number }>();
  readonly counters = { frames: 0, skippedWaiting: 0, resyncs: 0, stale: 0 };

  constructor(o: RemoteFeedOptions) {
    this.#o = o;
  }

  /** Sources (host, cell) followed. */
  get sources(): number {
    return this.#heard.size;
  }

  /** One batch from a live cell's message. */
  frame(frame: Buffer, nowMs: number): void {
    let h: ReturnType<typeof readHeader>;
    try {
      h = readHeader(frame);
    } catch (err) {
      if (!(err instanceof BatchError)) throw err;
      this.counters.resyncs++;
      return;
    }
    if (h.host === this.#o.hostId || h.host === '') return;
    this.counters.frames++;
    const r = this.#o.replica;
    const key = `${h.host}/${h.source}`;
    const heard = this.#heard.get(key);
    if (heard !== undefined) heard.at = nowMs;
    if (h.kind === KIND_DELTA && !r.synced(h.host, h.source)) {
      this.counters.skippedWaiting++;
      return;
    }
    if (heard === undefined) this.#heard.set(key, { at: nowMs, host: h.host, source: h.source });
    try {
      r.apply(frame, nowMs, this.#o.onLag);
    } catch (err) {
      if (!(err instanceof BatchError)) throw err;
      this.counters.resyncs++;
      r.dropSource(h.host, h.source);
      this.#heard.delete(key);
    }
  }

  /** Drops the sources silent for staleMs; returns how many. */
  sweep(nowMs: number): number {
    let n = 0;
    for (const [key, s] of this.#heard) {
      if (nowMs - s.at < this.#o.staleMs) continue;
      this.#o.replica.dropSource(s.host, s.source);
      this.#heard.delete(key);
      n++;
    }
    this.counters.stale += n;
    return n;
  }

  /** A host is gone (its lease expired): all its cells go at once. */
  dropHost(host: string): number {
    let n = 0;
    for (const [key, s] of this.#heard) {
      if (s.host !== host) continue;
      this.#o.replica.dropSource(s.host, s.source);
      this.#heard.delete(key);
      n++;
    }
    return n;
  }

  /** Every remote source goes (the relay from the primary broke): they come back at their snapshots. */
  dropAll(): void {
    for (const s of this.#heard.values()) this.#o.replica.dropSource(s.host, s.source);
    this.#heard.clear();
  }
}
