import { BatchError } from '../errors.ts';
import {
  type BatchVisitor,
  BatchWriter,
  KIND_DELTA,
  KIND_SNAPSHOT,
  LEFT_RELEASED,
  readBatch,
  readHeader,
} from '../replica/batch.ts';
import { liveCell, liveChannel } from './live-cells.ts';

/**
 * The host's batches cut by live cell (src/hosts/live-cells.ts), for the other hosts: the primary
 * follows its own ingest workers' batch streams (snapshot, then a delta a tick) and, once a tick, makes
 * one message per live cell that had news: what goes on that cell's channel. Pure: frames in, messages
 * out; the caller publishes them.
 *
 * Each cell is one source of this host in the batch protocol (docs/batch-protocol.md): the batches'
 * `host` is this host's id, their `source` the cell's number, with keys of the cell's own (small, dense:
 * a replica sizes its key table by the largest key). So a subscriber keeps one source per host and cell,
 * whatever the number of workers, and a subscriber that follows some cells only (a region) gets those
 * cells' drivers only.
 *
 * - A driver that crosses into another cell LEFTs the old (reason released, as in a handoff: a replica
 *   keeps it until the new cell's APPEARED, which may arrive first or after on the other channel) and
 *   APPEARs in the new one.
 * - Every cell sends a snapshot of its drivers every `keyframeTicks` ticks (cells take turns, so the
 *   host's snapshots are spread over the interval, not sent in one burst): a pub/sub subscriber has no
 *   history, so one that joins, or that missed a message, waits for the next snapshot. Snapshots are
 *   also how a subscriber knows a cell's source is alive when nothing moved.
 * - A cell's first message is a snapshot; a cell that empties sends its last delta and is forgotten.
 *
 * A message is the cell's frames one after the other, each a u32 LE length and a batch (the framing of
 * the local streams): this tick's delta and, on the cell's turn, a snapshot after it, with the same seq.
 */
export interface CellMessage {
  cell: number;
  channel: string;
  message: Buffer;
  /** Records in it (a snapshot's count each of its drivers twice: APPEARED and MOVED). */
  records: number;
}

export interface CellSplitOptions {
  zoom: number;
  hostId: string;
  /** Ticks between two snapshots of a cell. */
  keyframeTicks: number;
}

/** A local ingest worker's drivers as its stream told them, by its keys (its slots). */
interface WorkerState {
  ids: Array<string | undefined>;
  cabs: Array<string | undefined>;
  /** The live cell each slot is in, plus one (0: none yet). */
  cell: Float64Array;
  /** The slot's key in its cell's source. */
  key: Int32Array;
  latE6: Int32Array;
  lonE6: Int32Array;
  time: Uint32Array;
  speed: Uint16Array;
  bearing: Uint16Array;
  free: Uint8Array;
  received: Float64Array;
}

interface CellState {
  readonly index: number;
  readonly channel: string;
  seq: number;
  /** Its key -> (worker * 2^24 + slot). */
  readonly members: Map<number, number>;
  readonly freeKeys: number[];
  nextKey: number;
  readonly writer: BatchWriter;
  /** A delta is being written this tick. */
  open: boolean;
  /** Not published yet: its first message is a snapshot. */
  fresh: boolean;
}

const SLOT_BITS = 2 ** 24;

export class CellSplit {
  readonly #o: CellSplitOptions;
  readonly #workers = new Map<number, WorkerState>();
  readonly #cells = new Map<number, CellState>();
  /** Frames waiting for the tick, and workers whose streams ended (frame null). */
  #queue: Array<[number, Buffer | null]> = [];
  readonly #snap = new BatchWriter(16 * 1024);
  #tick = 0;
  #nowMs = 0;
  /** The worker and snapshot flag of the frame being read (the visitor's context). */
  #w!: WorkerState;
  #wId = 0;
  #seen: Set<number> | null = null;
  readonly #visitor: BatchVisitor;

  constructor(o: CellSplitOptions) {
    if (!(o.keyframeTicks >= 1)) throw new RangeError('keyframeTicks must be at least 1');
    this.#o = o;
    this.#visitor = {
      appeared: (slot, bytes, idAt, idLen, cabAt, cabLen) =>
        this.#appeared(
          slot,
          bytes.toString('latin1', idAt, idAt + idLen),
          bytes.toString('latin1', cabAt, cabAt + cabLen),
        ),
      moved: (slot, latE6, lonE6, time, speed, bearing, free, receivedMs) =>
        this.#moved(slot, latE6, lonE6, time, speed, bearing, free, receivedMs),
      left: (slot, reason) => this.#left(this.#w, slot, reason),
    };
  }

  /** Cells with drivers of this host. */
  get cells(): number {
    return this.#cells.size;
  }

  /** A frame of local worker w's stream (copied: the caller's view is only valid during the call). */
  push(w: number, frame: Uint8Array): void {
    this.#queue.push([w, Buffer.from(frame)]);
  }

  /** Worker w's stream ended (it died, or is being followed again): its drivers leave their cells. */
  dropWorker(w: number): void {
    this.#queue.push([w, null]);
  }

  /** The tick: applies the frames that came, and returns this tick's message of every cell with news. */
  tick(nowMs: number): CellMessage[] {
    this.#nowMs = nowMs;
    const queue = this.#queue;
    this.#queue = [];
    for (const [w, frame] of queue) {
      if (frame === null) this.#forget(w);
      else this.#apply(w, frame);
    }
    const out: CellMessage[] = [];
    const due = this.#tick++ % this.#o.keyframeTicks;
    for (const [index, c] of this.#cells) {
      const parts: Buffer[] = [];
      let records = 0;
      if (c.open) {
        c.open = false;
        c.seq = (c.seq + 1) >>> 0;
        const delta = c.writer.finish();
        records += delta.length > 0 ? c.writer.records : 0;
        parts.push(framed(delta));
      }
      if (c.members.size > 0 && (c.fresh || index % this.#o.keyframeTicks === due)) {
        if (c.fresh) c.seq = (c.seq + 1) >>> 0;
        c.fresh = false;
        parts.push(framed(this.#snapshot(c)));
        records += this.#snap.records;
      }
      if (parts.length > 0) {
        out.push({ cell: index, channel: c.channel, message: Buffer.concat(parts), records });
      }
      if (c.members.size === 0) this.#cells.delete(index);
    }
    return out;
  }

  #apply(w: number, frame: Buffer): void {
    let s = this.#workers.get(w);
    if (s === undefined) {
      s = newWorker(1024);
      this.#workers.set(w, s);
    }
    this.#w = s;
    this.#wId = w;
    // A worker's stream is a snapshot, then deltas; the primary follows it again from a snapshot after
    // a break. What the snapshot no longer names has left.
    const snapshot = readHeader(frame).kind === KIND_SNAPSHOT;
    this.#seen = snapshot ? new Set() : null;
    try {
      readBatch(frame, this.#visitor);
    } catch (err) {
      // A local worker's malformed batch is a bug; its drivers leave rather than linger wrongly.
      if (!(err instanceof BatchError)) throw err;
      this.#forget(w);
      return;
    }
    if (snapshot) {
      const seen = this.#seen!;
      for (let slot = 0; slot < s.ids.length; slot++) {
        if (s.ids[slot] !== undefined && !seen.has(slot)) this.#left(s, slot, LEFT_RELEASED);
      }
    }
    this.#seen = null;
  }

  #forget(w: number): void {
    const s = this.#workers.get(w);
    if (s === undefined) return;
    for (let slot = 0; slot < s.ids.length; slot++)
      if (s.ids[slot] !== undefined) this.#left(s, slot, LEFT_RELEASED);
    this.#workers.delete(w);
  }

  #appeared(slot: number, id: string, cab: string): void {
    let s = this.#w;
    if (slot >= s.cell.length) {
      s = grow(s, slot + 1);
      this.#workers.set(this.#wId, s);
      this.#w = s;
    }
    this.#seen?.add(slot);
    const had = s.ids[slot];
    if (had !== undefined && had !== id) this.#left(s, slot, LEFT_RELEASED);
    if (had === id && s.cabs[slot] === cab) return;
    s.ids[slot] = id;
    s.cabs[slot] = cab;
    // A new cab for a driver already in a cell (a new login) is told there at once.
    const cell = s.cell[slot]! - 1;
    if (had === id && cell >= 0) this.#delta(this.#cells.get(cell)!)?.appeared(s.key[slot]!, id, cab);
  }

  #moved(
    slot: number,
    latE6: number,
    lonE6: number,
    time: number,
    speed: number,
    bearing: number,
    free: boolean,
    receivedMs: number,
  ): void {
    const s = this.#w;
    if (slot >= s.cell.length || s.ids[slot] === undefined) return;
    s.latE6[slot] = latE6;
    s.lonE6[slot] = lonE6;
    s.time[slot] = time;
    s.speed[slot] = speed;
    s.bearing[slot] = bearing;
    s.free[slot] = free ? 1 : 0;
    s.received[slot] = receivedMs;
    const cell = liveCell(latE6 / 1e6, lonE6 / 1e6, this.#o.zoom);
    if (s.cell[slot] !== cell + 1) {
      if (s.cell[slot] !== 0) this.#leaveCell(s, slot, LEFT_RELEASED);
      this.#enter(cell, slot);
      return;
    }
    this.#delta(this.#cells.get(cell)!)?.moved(
      s.key[slot]!,
      latE6,
      lonE6,
      time,
      speed,
      bearing,
      free,
      receivedMs,
    );
  }

  #left(s: WorkerState, slot: number, reason: number): void {
    if (slot >= s.cell.length) return;
    if (s.cell[slot] !== 0) this.#leaveCell(s, slot, reason);
    s.ids[slot] = undefined;
    s.cabs[slot] = undefined;
  }

  #enter(cell: number, slot: number): void {
    const s = this.#w;
    let c = this.#cells.get(cell);
    if (c === undefined) {
      c = {
        index: cell,
        channel: liveChannel(this.#o.zoom, cell),
        seq: 0,
        members: new Map(),
        freeKeys: [],
        nextKey: 0,
        writer: new BatchWriter(1024),
        open: false,
        fresh: true,
      };
      this.#cells.set(cell, c);
    }
    const key = c.freeKeys.pop() ?? c.nextKey++;
    c.members.set(key, this.#wId * SLOT_BITS + slot);
    s.cell[slot] = cell + 1;
    s.key[slot] = key;
    const d = this.#delta(c);
    if (d !== null) writeDriver(d, key, s, slot);
  }

  #leaveCell(s: WorkerState, slot: number, reason: number): void {
    const cell = s.cell[slot]! - 1;
    const c = this.#cells.get(cell)!;
    const key = s.key[slot]!;
    c.members.delete(key);
    c.freeKeys.push(key);
    s.cell[slot] = 0;
    this.#delta(c)?.left(key, reason);
  }

  /** The cell's delta for this tick, begun on first use; null for a cell whose first message is a snapshot. */
  #delta(c: CellState): BatchWriter | null {
    if (c.fresh) return null;
    if (!c.open) {
      c.open = true;
      c.writer.begin(KIND_DELTA, c.index, (c.seq + 1) >>> 0, this.#nowMs, this.#o.hostId);
    }
    return c.writer;
  }

  #snapshot(c: CellState): Buffer {
    const w = this.#snap;
    w.begin(KIND_SNAPSHOT, c.index, c.seq, this.#nowMs, this.#o.hostId);
    for (const [key, at] of c.members) {
      const slot = at % SLOT_BITS;
      writeDriver(w, key, this.#workers.get((at - slot) / SLOT_BITS)!, slot);
    }
    return w.finish();
  }
}

/** A driver as a cell's batch introduces it: APPEARED (id, cab), then MOVED with its last fix. */
function writeDriver(w: BatchWriter, key: number, s: WorkerState, slot: number): void {
  w.appeared(key, s.ids[slot]!, s.cabs[slot]!);
  w.moved(
    key,
    s.latE6[slot]!,
    s.lonE6[slot]!,
    s.time[slot]!,
    s.speed[slot]!,
    s.bearing[slot]!,
    s.free[slot] === 1,
    s.received[slot]!,
  );
}

function newWorker(n: number): WorkerState {
  return {
    ids: [],
    cabs: [],
    cell: new Float64Array(n),
    key: new Int32Array(n),
    latE6: new Int32Array(n),
    lonE6: new Int32Array(n),
    time: new Uint32Array(n),
    speed: new Uint16Array(n),
    bearing: new Uint16Array(n),
    free: new Uint8Array(n),
    received: new Float64Array(n),
  };
}

function grow(s: WorkerState, min: number): WorkerState {
  let n = s.cell.length;
  while (n < min) n *= 2;
  const g = newWorker(n);
  g.ids = s.ids;
  g.cabs = s.cabs;
  g.cell.set(s.cell);
  g.key.set(s.key);
  g.latE6.set(s.latE6);
  g.lonE6.set(s.lonE6);
  g.time.set(s.time);
  g.speed.set(s.speed);
  g.bearing.set(s.bearing);
  g.free.set(s.free);
  g.received.set(s.received);
  return g;
}

function framed(batch: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(4 + batch.length);
  frame.writeUInt32LE(batch.length, 0);
  batch.copy(frame, 4);
  return frame;
}
