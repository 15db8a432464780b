import type { ChangeSink, RemoveReason, Shard } from '../store/shard.ts';
import {
  BatchWriter,
  KIND_DELTA,
  KIND_SNAPSHOT,
  LEFT_DELETED,
  LEFT_EXPIRED,
  LEFT_RELEASED,
  LEFT_REVOKED,
} from './batch.ts';

/** A replica's end of the stream (a Unix socket, in src/cluster/ingest-worker.ts). */
export interface Subscriber {
  /** Queues one frame; never blocks. */
  write(frame: Buffer): void;
  /** Bytes queued and not yet taken by the reader. */
  backlog(): number;
  /** Cuts the subscriber off (it reconnects, and starts again from a snapshot). */
  close(reason: string): void;
}

export interface PublisherOptions {
  shard: Shard;
  /** The source id in every batch: this worker. */
  source: number;
  /** The host id in every batch ('' on a single host). */
  host?: string;
  /**
   * A subscriber that has this much queued is not keeping up: it is cut off rather than buffered
   * without bound. 64 MiB is about 40 ticks of a 100k fleet.
   */
  maxBacklogBytes?: number;
}

const LEFT_CODE: Record<RemoveReason, number> = {
  expired: LEFT_EXPIRED,
  deleted: LEFT_DELETED,
  revoked: LEFT_REVOKED,
  released: LEFT_RELEASED,
};

/**
 * The write side of the read path: once a tick, one batch of what changed among this worker's drivers
 * (the shard's change log), written to every replica that follows this worker. A replica that joins
 * gets, at the next tick, a snapshot of every driver after that tick's delta, and the deltas from the
 * tick after; so its stream is a snapshot then deltas with consecutive sequence numbers, and nothing
 * on the per-datagram path but the shard's dirty flag.
 *
 * Frames on the stream: u32 LE length, then the batch (src/replica/batch.ts).
 */
export class Publisher {
  readonly #shard: Shard;
  readonly #source: number;
  readonly #host: string;
  readonly #maxBacklog: number;
  readonly #writer = new BatchWriter();
  readonly #subscribers = new Set<Subscriber>();
  readonly #joining = new Set<Subscriber>();
  readonly #sink: ChangeSink;
  #seq = 0;
  /** Batches and bytes published, for the metrics. */
  batches = 0;
  bytes = 0;
  /** Subscribers cut off for falling behind. */
  cutOff = 0;

  constructor(o: PublisherOptions) {
    this.#shard = o.shard;
    this.#source = o.source;
    this.#host = o.host ?? '';
    this.#maxBacklog = o.maxBacklogBytes ?? 64 * 1024 * 1024;
    const w = this.#writer;
    this.#sink = {
      appeared: (key, id, cab) => w.appeared(key, id, cab),
      moved: (key, latE6, lonE6, time, speed, bearing, free, receivedMs) =>
        w.moved(key, latE6, lonE6, time, speed, bearing, free, receivedMs),
      left: (key, why) => w.left(key, LEFT_CODE[why]),
    };
  }

  /** Replicas following this worker, joined or joining. */
  get subscribers(): number {
    return this.#subscribers.size + this.#joining.size;
  }

  /** A replica starts following: its snapshot goes out at the next tick. */
  subscribe(s: Subscriber): void {
    this.#joining.add(s);
  }

  unsubscribe(s: Subscriber): void {
    this.#subscribers.delete(s);
    this.#joining.delete(s);
  }

  /** The tick: the delta to every subscriber, then snapshots to those that joined. */
  tick(nowMs: number): void {
    const w = this.#writer;
    this.#seq = (this.#seq + 1) >>> 0;
    w.begin(KIND_DELTA, this.#source, this.#seq, nowMs, this.#host);
    this.#shard.drainChanges(this.#sink);
    if (this.#subscribers.size > 0) this.#send(this.#subscribers, framed(w.finish()));
    if (this.#joining.size > 0) {
      w.begin(KIND_SNAPSHOT, this.#source, this.#seq, nowMs, this.#host);
      this.#shard.snapshot(this.#sink);
      const frame = framed(w.finish());
      this.#send(this.#joining, frame);
      for (const s of this.#joining) this.#subscribers.add(s);
      this.#joining.clear();
    }
  }

  #send(to: Set<Subscriber>, frame: Buffer): void {
    this.batches++;
    for (const s of to) {
      if (s.backlog() > this.#maxBacklog) {
        to.delete(s);
        this.cutOff++;
        s.close(`more than ${this.#maxBacklog} bytes behind`);
        continue;
      }
      s.write(frame);
      this.bytes += frame.length;
    }
  }
}

/** The batch behind its length prefix, in a buffer of its own (the writer reuses its buffer). */
function framed(batch: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(4 + batch.length);
  frame.writeUInt32LE(batch.length, 0);
  batch.copy(frame, 4);
  return frame;
}
