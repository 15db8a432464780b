import { BatchError } from '../errors.ts';

/**
 * The replica batch: what an ingest worker publishes once a tick about the drivers it owns, and what
 * read replicas apply. Version 1; the byte layout is documented in docs/batch-protocol.md (the next
 * step carries the same batches between hosts, so it is a protocol, not an implementation detail).
 *
 *   header   u16 magic 0xCA7B | u8 version 1 | u8 kind (0 delta, 1 snapshot)
 *            u32 source | u32 seq | f64 sentMs | u32 records | u8 hostLen | host bytes
 *   records  APPEARED  u8 1 | u32 key | u8 idLen | id | u8 cabLen | cab
 *            MOVED     u8 2 | u32 key | i32 latE6 | i32 lonE6 | u32 time | u16 speed | u16 bearing
 *                           | u8 flags (bit 0: free) | u16 ageMs
 *            LEFT      u8 3 | u32 key | u8 reason
 *
 * Little-endian throughout. A key names one driver within one source while it is live there (the
 * owner's slot number): APPEARED binds it to an id and cab, MOVED and LEFT refer to it, and after LEFT
 * it may be bound again. Records apply in order. A snapshot replaces everything the source said
 * before; a delta says what changed since the source's previous batch (seq + 1).
 *
 * Pure: no I/O. The writer grows one buffer and reuses it; the reader validates every length against
 * the buffer and throws a BatchError on anything malformed (the subscriber then resynchronises).
 */

export const BATCH_MAGIC = 0xca7b;
export const BATCH_VERSION = 1;
export const KIND_DELTA = 0;
export const KIND_SNAPSHOT = 1;

export const TAG_APPEARED = 1;
export const TAG_MOVED = 2;
export const TAG_LEFT = 3;

/** Why a driver left its owner (LEFT's reason byte). */
export const LEFT_EXPIRED = 1;
export const LEFT_DELETED = 2;
export const LEFT_REVOKED = 3;
/** Handed off to another owner: its next owner's batch lists it again. */
export const LEFT_RELEASED = 4;

export const MOVED_BYTES = 24;
const HEADER_BYTES = 25;
const MAX_U16 = 0xffff;

/**
 * What a reader hands to its visitor, record by record. APPEARED's id and cab come as byte ranges of
 * the batch (valid during the call), so that a replica loading a million-driver snapshot stores them
 * without making two million strings for the garbage collector; `text()` makes strings of them.
 */
export interface BatchVisitor {
  appeared(key: number, bytes: Buffer, idAt: number, idLen: number, cabAt: number, cabLen: number): void;
  moved(
    key: number,
    latE6: number,
    lonE6: number,
    time: number,
    speed: number,
    bearing: number,
    free: boolean,
    receivedMs: number,
  ): void;
  left(key: number, reason: number): void;
}

export interface BatchHeader {
  kind: number;
  source: number;
  seq: number;
  sentMs: number;
  records: number;
  host: string;
}

/**
 * Builds one batch at a time into a buffer it keeps: begin(), the records, finish(). The buffer
 * returned by finish() is a view of the writer's own, valid until the next begin().
 */
export class BatchWriter {
  #buf: Buffer;
  #at = 0;
  #records = 0;
  #sentMs = 0;

  /** `initialBytes`: the buffer's first size (it doubles as needed): small for the many cells of src/hosts. */
  constructor(initialBytes = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Starts a batch; `host` is the publishing host's id (ASCII, at most 255 bytes; '' on one host). */
  begin(kind: number, source: number, seq: number, sentMs: number, host = ''): void {
    const hostLen = Buffer.byteLength(host, 'latin1');
    if (hostLen > 255) throw new RangeError('host id longer than 255 bytes');
    this.#ensure(HEADER_BYTES + hostLen);
    const b = this.#buf;
    b.writeUInt16LE(BATCH_MAGIC, 0);
    b[2] = BATCH_VERSION;
    b[3] = kind;
    b.writeUInt32LE(source >>> 0, 4);
    b.writeUInt32LE(seq >>> 0, 8);
    b.writeDoubleLE(sentMs, 12);
    // records (offset 20) are written by finish()
    b[24] = hostLen;
    b.write(host, 25, 'latin1');
    this.#at = HEADER_BYTES + hostLen;
    this.#records = 0;
    this.#sentMs = sentMs;
  }

  /** Ids and cabs are ASCII by the API's rule (1-64 characters), so a byte each. */
  appeared(key: number, id: string, cab: string): void {
    this.#ensure(7 + id.length + cab.length);
    const b = this.#buf;
    let at = this.#at;
    b[at] = TAG_APPEARED;
    b.writeUInt32LE(key, at + 1);
    b[at + 5] = id.length;
    at += 6 + b.write(id, at + 6, 'latin1');
    b[at] = cab.length;
    at += 1 + b.write(cab, at + 1, 'latin1');
    this.#at = at;
    this.#records++;
  }

  moved(
    key: number,
    latE6: number,
    lonE6: number,
    time: number,
    speed: number,
    bearing: number,
    free: boolean,
    receivedMs: number,
  ): void {
    this.#ensure(MOVED_BYTES);
    const b = this.#buf;
    const at = this.#at;
    b[at] = TAG_MOVED;
    b.writeUInt32LE(key, at + 1);
    b.writeInt32LE(latE6, at + 5);
    b.writeInt32LE(lonE6, at + 9);
    b.writeUInt32LE(time >>> 0, at + 13);
    b.writeUInt16LE(speed > MAX_U16 ? MAX_U16 : speed, at + 17);
    b.writeUInt16LE(bearing > MAX_U16 ? MAX_U16 : bearing, at + 19);
    b[at + 21] = free ? 1 : 0;
    const age = this.#sentMs - receivedMs;
    b.writeUInt16LE(age < 0 ? 0 : age > MAX_U16 ? MAX_U16 : Math.round(age), at + 22);
    this.#at = at + MOVED_BYTES;
    this.#records++;
  }

  left(key: number, reason: number): void {
    this.#ensure(6);
    const b = this.#buf;
    const at = this.#at;
    b[at] = TAG_LEFT;
    b.writeUInt32LE(key, at + 1);
    b[at + 5] = reason;
    this.#at = at + 6;
    this.#records++;
  }

  get records(): number {
    return this.#records;
  }

  /** The finished batch: a view of the writer's buffer, valid until the next begin(). */
  finish(): Buffer {
    this.#buf.writeUInt32LE(this.#records, 20);
    return this.#buf.subarray(0, this.#at);
  }

  #ensure(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(next, 0, 0, this.#at);
    this.#buf = next;
  }
}

/** Reads a batch's header; throws BatchError if it is not a version-1 batch. */
export function readHeader(b: Uint8Array): BatchHeader {
  const buf = asBuffer(b);
  if (buf.length < HEADER_BYTES)
    throw new BatchError(`batch of ${buf.length} bytes is shorter than a header`);
  if (buf.readUInt16LE(0) !== BATCH_MAGIC) throw new BatchError('not a batch (bad magic)');
  if (buf[2] !== BATCH_VERSION) throw new BatchError(`batch version ${buf[2]} is not supported`);
  const kind = buf[3]!;
  if (kind !== KIND_DELTA && kind !== KIND_SNAPSHOT) throw new BatchError(`unknown batch kind ${kind}`);
  const hostLen = buf[24]!;
  if (buf.length < HEADER_BYTES + hostLen) throw new BatchError('batch cut short in its header');
  return {
    kind,
    source: buf.readUInt32LE(4),
    seq: buf.readUInt32LE(8),
    sentMs: buf.readDoubleLE(12),
    records: buf.readUInt32LE(20),
    host: buf.toString('latin1', 25, 25 + hostLen),
  };
}

/**
 * Hands every record of a batch to `v`, in order; returns the header. Throws BatchError before the
 * first record if the header is bad, and at the first malformed record otherwise (records before it
 * have been applied: the caller treats the source as out of sync).
 */
export function readBatch(b: Uint8Array, v: BatchVisitor): BatchHeader {
  const h = readHeader(b);
  const buf = asBuffer(b);
  const end = buf.length;
  let at = HEADER_BYTES + buf[24]!;
  for (let i = 0; i < h.records; i++) {
    if (at + 6 > end) throw new BatchError(`record ${i} cut short`);
    const tag = buf[at]!;
    const key = buf.readUInt32LE(at + 1);
    if (tag === TAG_MOVED) {
      if (at + MOVED_BYTES > end) throw new BatchError(`record ${i} cut short`);
      v.moved(
        key,
        buf.readInt32LE(at + 5),
        buf.readInt32LE(at + 9),
        buf.readUInt32LE(at + 13),
        buf.readUInt16LE(at + 17),
        buf.readUInt16LE(at + 19),
        (buf[at + 21]! & 1) === 1,
        h.sentMs - buf.readUInt16LE(at + 22),
      );
      at += MOVED_BYTES;
    } else if (tag === TAG_APPEARED) {
      const idLen = buf[at + 5]!;
      const cabAt = at + 6 + idLen;
      if (idLen === 0 || cabAt + 1 > end) throw new BatchError(`record ${i} cut short`);
      const cabLen = buf[cabAt]!;
      if (cabLen === 0 || cabAt + 1 + cabLen > end) throw new BatchError(`record ${i} cut short`);
      v.appeared(key, buf, at + 6, idLen, cabAt + 1, cabLen);
      at = cabAt + 1 + cabLen;
    } else if (tag === TAG_LEFT) {
      v.left(key, buf[at + 5]!);
      at += 6;
    } else {
      throw new BatchError(`record ${i} has unknown tag ${tag}`);
    }
  }
  if (at !== end) throw new BatchError(`${end - at} bytes after the last record`);
  return h;
}

/** A visitor that takes APPEARED's id and cab as strings (tests, tools; not the replica's hot path). */
export function textVisitor(v: {
  appeared(key: number, id: string, cab: string): void;
  moved: BatchVisitor['moved'];
  left: BatchVisitor['left'];
}): BatchVisitor {
  return {
    appeared: (key, bytes, idAt, idLen, cabAt, cabLen) =>
      v.appeared(
        key,
        bytes.toString('latin1', idAt, idAt + idLen),
        bytes.toString('latin1', cabAt, cabAt + cabLen),
      ),
    moved: v.moved,
    left: v.left,
  };
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Length-prefixed framing of batches on a byte stream (a Unix socket): u32 LE length, then the batch.
 * push() takes chunks as they come and calls onFrame for each complete frame, with a view that is valid
 * only during the call.
 */
export class FrameReader {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #onFrame: (frame: Buffer) => void;
  readonly #maxFrame: number;

  constructor(onFrame: (frame: Buffer) => void, maxFrameBytes = 512 * 1024 * 1024) {
    this.#onFrame = onFrame;
    this.#maxFrame = maxFrameBytes;
  }

  push(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    for (;;) {
      if (this.#pendingBytes < 4) return;
      let head = this.#pending[0]!;
      if (head.length < 4) head = this.#gather(4);
      const len = head.readUInt32LE(0);
      if (len > this.#maxFrame) throw new BatchError(`frame of ${len} bytes exceeds the limit`);
      if (this.#pendingBytes < 4 + len) return;
      const all = this.#gather(4 + len);
      // One frame, and whatever follows it in the same chunk stays pending.
      const frame = all.subarray(4, 4 + len);
      this.#consume(4 + len);
      this.#onFrame(frame);
    }
  }

  /** Makes the first `n` pending bytes one contiguous buffer at the head (copying only when split). */
  #gather(n: number): Buffer {
    const first = this.#pending[0]!;
    if (first.length >= n) return first;
    const all = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [all];
    return all;
  }

  #consume(n: number): void {
    this.#pendingBytes -= n;
    const first = this.#pending[0]!;
    if (first.length === n) this.#pending.shift();
    else this.#pending[0] = first.subarray(n);
  }
}

/** The 4-byte length prefix of a frame. */
export function frameHeader(len: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32LE(len, 0);
  return h;
}
