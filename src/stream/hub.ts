import type { NearCover } from './cells.ts';
import { CARS, type CellFrames, type Cover, LEFT as LEFT_IDS, SNAPSHOT } from './frames.ts';

/** A viewer's connection, as the hub needs it (an HTTP response in src/stream/sse.ts). */
export interface ViewerSink {
  /**
   * Queues bytes; never blocks. `done`, when given, is called once the bytes are no longer held (written
   * to the socket, or dropped with it); a sink that cannot tell may never call it.
   */
  write(bytes: Buffer, done?: () => void): void;
  /** Bytes queued and not yet taken by the client. */
  backlog(): number;
  /** Ends the stream (the hub has counted why). */
  close(): void;
}

export interface StreamHubOptions {
  frames: CellFrames;
  /** Viewers at most (this process); past it a new one is refused. */
  maxViewers: number;
  /** A viewer with this much still queued at a frame skips it (and is sent a snapshot when it catches up). */
  maxBacklogBytes?: number;
  /** A viewer that has skipped every frame for this long is cut off. */
  maxBehindMs?: number;
  /** A comment line this often keeps proxies from closing a quiet stream. */
  heartbeatMs?: number;
  now?: () => number;
}

export interface StreamCounters {
  frames: number;
  bytes: number;
  skipped: number;
  disconnects: { slow: number; closed: number; shutdown: number };
}

/**
 * A view whose cells follow the cars: a rider's nearest cars (cellsNear in src/stream/cells.ts). `choose`
 * picks the cells again for the cars as they are now.
 */
export interface MovingView {
  cover: NearCover;
  choose: () => NearCover;
}

/** Moving views re-chosen in one tick at most: a burst of them is spread over the next ticks. */
const RECHOOSE_PER_TICK = 500;

interface Viewer {
  readonly sink: ViewerSink;
  cells: number[];
  /** The cells, sorted and joined: viewers with the same cells share their frame's bytes. */
  setKey: string;
  /** A moving view: its cells are chosen again when the cars in them drift out of [low, high]. */
  readonly choose: (() => NearCover) | null;
  low: number;
  high: number;
  /** Sent nothing yet, or skipped a frame: the next one it gets is a snapshot. */
  needsSnapshot: boolean;
  /** When it started skipping frames (null: keeping up). */
  behindSince: number | null;
  lastWriteMs: number;
}

/** Frames are copied into slabs of this size (see #copy). */
const SLAB_BYTES = 1 << 20;
/** Slabs kept for reuse at most: about two ticks' worth for 5,000 riders of 11 KB frames. */
const SPARE_SLABS = 128;

/** A slab frames are copied into, and how many of its frames' writes are not done yet. */
interface Slab {
  readonly buf: Buffer;
  at: number;
  pending: number;
  /** Full: taken by no new frame; free again once its last pending write is done. */
  full: boolean;
}

/** A frame as made this tick: its bytes, and the slab they are in (null: a buffer of its own). */
interface Made {
  bytes: Buffer;
  slab: Slab | null;
}

const HEARTBEAT = Buffer.from(': heartbeat\n\n');
const LEFT = Buffer.from('],"left":[');
const END = Buffer.from(']}\n\n');

/**
 * Stream viewers and their frames. Once a tick (a second), after CellFrames has built the cells' bytes,
 * each viewer is sent one frame: a snapshot (every car in its cells) when it has just joined or skipped
 * a frame, otherwise the delta (cars that moved, cars that left). A frame is the same bytes for every
 * viewer with the same cells and kind, so it is assembled once a tick per distinct set of cells and
 * written to each of them as one buffer.
 *
 *   id: <frame>
 *   data: {"frame":<frame>,"time":<s>,"snapshot":<bool>,"cars":[<car>,...],"left":["<id>",...]}
 *
 * Back-pressure: a viewer whose socket still holds maxBacklogBytes at a frame skips it, so it is never
 * buffered without bound, and gets a snapshot once it has caught up; one that has skipped every frame for
 * maxBehindMs is disconnected. Pure of I/O: the sinks and the clock are ports.
 */
export class StreamHub {
  readonly counters: StreamCounters = {
    frames: 0,
    bytes: 0,
    skipped: 0,
    disconnects: { slow: 0, closed: 0, shutdown: 0 },
  };
  readonly #frames: CellFrames;
  readonly #max: number;
  readonly #maxBacklog: number;
  readonly #maxBehind: number;
  readonly #heartbeat: number;
  readonly #now: () => number;
  readonly #viewers = new Set<Viewer>();
  /** Every cell some viewer covers, with how many viewers cover it (activeCells()). */
  readonly #cover = new CoverCount();
  #frame = 0;
  #slab: Slab = newSlab();
  readonly #spare: Slab[] = [];

  constructor(o: StreamHubOptions) {
    this.#frames = o.frames;
    this.#max = o.maxViewers;
    this.#maxBacklog = o.maxBacklogBytes ?? 256 * 1024;
    this.#maxBehind = o.maxBehindMs ?? 5000;
    this.#heartbeat = o.heartbeatMs ?? 15_000;
    this.#now = o.now ?? Date.now;
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /** Bytes queued for viewers, in all (each is kept near maxBacklogBytes and a frame). */
  backlogBytes(): number {
    let n = 0;
    for (const v of this.#viewers) n += v.sink.backlog();
    return n;
  }

  /** The frame number the next tick sends. */
  get frame(): number {
    return this.#frame + 1;
  }

  /**
   * Adds a viewer of these cells, or of a moving view; null when the hub is full (the caller answers
   * 503).
   */
  add(view: readonly number[] | MovingView, sink: ViewerSink): Viewer | null {
    if (this.#viewers.size >= this.#max) return null;
    const moving = 'choose' in view;
    const v: Viewer = {
      sink,
      cells: [],
      setKey: '',
      choose: moving ? view.choose : null,
      low: 0,
      high: Infinity,
      needsSnapshot: true,
      behindSince: null,
      lastWriteMs: this.#now(),
    };
    if (moving) this.#setCover(v, view.cover);
    else this.#setCells(v, view);
    this.#viewers.add(v);
    return v;
  }

  /**
   * Chooses the cells of moving views again where the cars in them (as the last tick counted them) have
   * drifted out of their band: too few, as cars drove off, or far too many, as a crowd arrived. A view
   * whose cells change is sent a snapshot: its frame then replaces what the client showed. Call before
   * activeCells(), so that the new cells are prepared in the same tick. Returns how many changed.
   */
  rechoose(): number {
    let budget = RECHOOSE_PER_TICK;
    let changed = 0;
    for (const v of this.#viewers) {
      // A view not yet sent its first frame (or behind) has cells not counted yet: it waits.
      if (v.choose === null || v.needsSnapshot) continue;
      let cars = 0;
      for (const c of v.cells) cars += this.#frames.count(c) ?? 0;
      if (cars >= v.low && cars <= v.high) continue;
      const before = v.setKey;
      this.#setCover(v, v.choose());
      if (v.setKey !== before) {
        v.needsSnapshot = true;
        changed++;
      }
      if (--budget === 0) break;
    }
    return changed;
  }

  /** The client went away. */
  remove(v: Viewer): void {
    if (!this.#drop(v)) return;
    this.counters.disconnects.closed++;
  }

  /**
   * Every cell some viewer covers: what CellFrames must prepare this tick. Kept as viewers come, go and
   * change cells, not gathered each tick (5,000 riders cover about 125,000 cells, mostly shared), and its
   * version says whether the set changed since the tick before.
   */
  activeCells(): Cover {
    return this.#cover;
  }

  /** Sends this tick's frame to every viewer (CellFrames built first), and heartbeats where due. */
  tick(): void {
    const now = this.#now();
    this.#frame++;
    const timeS = Math.round(now) / 1000;
    const heads = [false, true].map((snap) =>
      Buffer.from(
        `id: ${this.#frame}\ndata: {"frame":${this.#frame},"time":${timeS},"snapshot":${snap},"cars":[`,
      ),
    );
    // One frame's bytes per distinct set of cells and kind, this tick (keyed by the viewer's own key
    // string, whose hash V8 keeps after the first tick).
    const made = [new Map<string, Made>(), new Map<string, Made>()] as const;
    for (const v of this.#viewers) {
      if (v.sink.backlog() > this.#maxBacklog) {
        this.counters.skipped++;
        v.needsSnapshot = true;
        v.behindSince ??= now;
        if (now - v.behindSince >= this.#maxBehind) {
          this.#drop(v);
          this.counters.disconnects.slow++;
          v.sink.close();
        }
        continue;
      }
      v.behindSince = null;
      const snap = v.needsSnapshot;
      const kind = snap ? 1 : 0;
      let frame = made[kind].get(v.setKey);
      if (frame === undefined) {
        frame = this.#assemble(v.cells, snap, heads[kind]!);
        made[kind].set(v.setKey, frame);
      }
      // A delta with nothing in it is not sent (the heartbeat keeps the stream open meanwhile).
      if (!snap && frame.bytes === heads[0]) {
        if (now - v.lastWriteMs >= this.#heartbeat) this.#write(v, HEARTBEAT, null, now);
        continue;
      }
      v.needsSnapshot = false;
      this.#write(v, frame.bytes, frame.slab, now);
      this.counters.frames++;
    }
  }

  /** Ends every stream (shutdown). */
  close(): void {
    for (const v of this.#viewers) {
      this.counters.disconnects.shutdown++;
      v.sink.close();
    }
    this.#viewers.clear();
    this.#cover.clear();
  }

  /** Takes the viewer out, and its cells out of the cover; false when it was out already. */
  #drop(v: Viewer): boolean {
    if (!this.#viewers.delete(v)) return false;
    for (const c of v.cells) this.#cover.remove(c);
    return true;
  }

  #setCells(v: Viewer, cells: readonly number[]): void {
    for (const c of v.cells) this.#cover.remove(c);
    v.cells = [...new Set(cells)].sort((a, b) => a - b);
    v.setKey = v.cells.join(',');
    for (const c of v.cells) this.#cover.add(c);
  }

  /**
   * A moving view's cells and band: chosen again below half the cars asked for (unless every cell
   * within the radius is in already), or above three times as many (or twice what it had when chosen,
   * when a single cell held more than that).
   */
  #setCover(v: Viewer, cover: NearCover): void {
    this.#setCells(v, cover.cells);
    v.low = cover.whole ? 0 : Math.ceil(cover.limit / 2);
    v.high = Math.max(3 * cover.limit, 2 * cover.cars);
  }

  #write(v: Viewer, bytes: Buffer, slab: Slab | null, now: number): void {
    if (slab === null) v.sink.write(bytes);
    else {
      slab.pending++;
      v.sink.write(bytes, () => this.#done(slab));
    }
    v.lastWriteMs = now;
    this.counters.bytes += bytes.length;
  }

  /** A write of a frame in the slab is done: the slab is spare once full and with none pending. */
  #done(slab: Slab): void {
    if (--slab.pending === 0 && slab.full && this.#spare.length < SPARE_SLABS) this.#spare.push(slab);
  }

  /** A frame of these cells: the header, the cells' cars, the ids that left, the end. */
  #assemble(cells: readonly number[], snap: boolean, head: Buffer): Made {
    const parts: Buffer[] = [head];
    const cars = this.#frames.runs(cells, snap ? SNAPSHOT : CARS, parts);
    parts.push(LEFT);
    const left = snap ? 0 : this.#frames.runs(cells, LEFT_IDS, parts);
    // An empty delta is the bare header: tick() recognises it and sends nothing.
    if (!snap && cars === 0 && left === 0) return { bytes: head, slab: null };
    parts.push(END);
    return this.#copy(parts, head.length + cars + LEFT.length + left + END.length);
  }

  /**
   * The parts copied into one buffer, carved from a slab: a frame is written to a socket that may hold
   * it for seconds, so it cannot be a view of the frames' per-tick bytes, and one allocation per frame
   * (Buffer.concat) cost more than the copy itself (an allocation and external memory for the collector
   * to track, 5,000 times a tick). A slab is reused only once every write of every frame in it is done
   * (the sinks say when): fresh memory each tick cost more than the copy (the kernel's page faults, and
   * the collector's), and a socket still holding a frame keeps its slab out of use, alive.
   */
  #copy(parts: readonly Buffer[], n: number): Made {
    if (n > SLAB_BYTES / 4) return { bytes: Buffer.concat(parts, n), slab: null };
    let slab = this.#slab;
    if (slab.at + n > SLAB_BYTES) {
      slab.full = true;
      if (slab.pending === 0 && this.#spare.length < SPARE_SLABS) this.#spare.push(slab);
      slab = this.#spare.pop() ?? newSlab();
      slab.at = 0;
      slab.full = false;
      this.#slab = slab;
    }
    const buf = slab.buf;
    const from = slab.at;
    let at = from;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    slab.at = at;
    return { bytes: buf.subarray(from, at), slab };
  }
}

function newSlab(): Slab {
  return { buf: Buffer.allocUnsafeSlow(SLAB_BYTES), at: 0, pending: 0, full: false };
}

/** Cells with the number of viewers covering each; `version` changes when a cell comes or goes. */
class CoverCount implements Cover {
  readonly #count = new Map<number, number>();
  version = 0;

  get size(): number {
    return this.#count.size;
  }

  has(key: number): boolean {
    return this.#count.has(key);
  }

  keys(): Iterable<number> {
    return this.#count.keys();
  }

  add(key: number): void {
    const n = this.#count.get(key) ?? 0;
    this.#count.set(key, n + 1);
    if (n === 0) this.version++;
  }

  remove(key: number): void {
    const n = this.#count.get(key)!;
    if (n > 1) this.#count.set(key, n - 1);
    else {
      this.#count.delete(key);
      this.version++;
    }
  }

  clear(): void {
    this.#count.clear();
    this.version++;
  }
}
