import type { Prng } from './prng.ts';

/**
 * Hostile datagrams for the ingest path, from a seeded Prng: Track messages written field by field with
 * a protobuf writer of our own (so encodings protobufjs never produces can be made: padded tags and
 * varints, fields in any order or repeated, unknown and invalid fields), then mutated. Every datagram is
 * at most MAX_FUZZ_BYTES long, so the tests can size their send windows (test/support/hostile-net.ts).
 */

export const MAX_FUZZ_BYTES = 180;

/** How each datagram was made; the test reports the tally. */
export const FUZZ_KINDS = [
  'valid',
  'bit_flip',
  'truncate',
  'pad',
  'varint_overflow',
  'wrong_wire_type',
  'repeated_field',
  'unknown_fields',
  'huge_length',
  'invalid_wire_type',
  'field_zero',
  'byte_edit',
  'splice',
  'random_bytes',
  'empty',
  'oversize',
] as const;
export type FuzzKind = (typeof FUZZ_KINDS)[number];

/** Fields of a Track, as the writer takes them (undefined: left out). */
export interface TrackValues {
  /** uint64 fields as [high, low] uint32 halves: no BigInt on the way to a million datagrams. */
  session?: [number, number];
  lat?: number;
  lon?: number;
  time?: number;
  orderId?: [number, number];
  cost?: number;
  speed?: number;
  bearing?: number;
}

/** What the fuzzer knows of the world: sessions to aim at and the clock. */
export interface FuzzWorld {
  /** Sessions the daemon knows (their fixes reach the shard and its stale / too-fast checks). */
  registered: readonly bigint[];
  /** Unix seconds when the corpus is made. */
  nowS: number;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** A growable byte buffer with the protobuf primitives, including the non-canonical ones. */
class Writer {
  bytes: number[] = [];

  /**
   * A varint of the uint64 `hi * 2^32 + lo`, padded with `pad` extra 0x80 continuation bytes before a
   * final 0x00 (a longer encoding of the same value, which decoders must accept up to 10 bytes).
   */
  varint64(hi: number, lo: number, pad = 0): void {
    hi >>>= 0;
    lo >>>= 0;
    for (;;) {
      const b = lo & 0x7f;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
      const rest = hi !== 0 || lo !== 0;
      if (!rest && pad === 0) {
        this.bytes.push(b);
        return;
      }
      this.bytes.push(b | 0x80);
      if (!rest) {
        for (let i = 1; i < pad; i++) this.bytes.push(0x80);
        this.bytes.push(0x00);
        return;
      }
    }
  }

  /** A varint of a non-negative integer below 2^53. */
  varint(v: number, pad = 0): void {
    this.varint64(Math.floor(v / 0x1_0000_0000), v >>> 0, pad);
  }

  tag(field: number, wire: number, pad = 0): void {
    this.varint(field * 8 + wire, pad);
  }

  fixed64(hi: number, lo: number): void {
    this.fixed32(lo);
    this.fixed32(hi);
  }

  fixed32(v: number): void {
    this.bytes.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }

  raw(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.bytes.push(b[i]! & 0xff);
  }
}

/** sint32's zigzag, as a number (an int32 zigzags to a uint32). */
const zigzag = (n: number): number => (n >= 0 ? n * 2 : -n * 2 - 1);

/** Writes the known fields of `v` in a random order, each with an occasional padded tag or varint. */
function writeTrack(w: Writer, v: TrackValues, rnd: Prng, padChance: number): void {
  const pad = (): number => (rnd.chance(padChance) ? rnd.int(1, 4) : 0);
  // Field numbers present, mostly in order (as every encoder writes them), sometimes shuffled: both
  // are valid protobuf.
  const order = FIELDS_SCRATCH;
  let n = 0;
  if (v.session !== undefined) order[n++] = 1;
  if (v.lat !== undefined) order[n++] = 2;
  if (v.lon !== undefined) order[n++] = 3;
  if (v.time !== undefined) order[n++] = 4;
  if (v.orderId !== undefined) order[n++] = 5;
  if (v.cost !== undefined) order[n++] = 6;
  if (v.speed !== undefined) order[n++] = 7;
  if (v.bearing !== undefined) order[n++] = 8;
  if (rnd.chance(0.3)) {
    for (let i = n - 1; i > 0; i--) {
      const j = rnd.int(0, i);
      const x = order[i]!;
      order[i] = order[j]!;
      order[j] = x;
    }
  }
  for (let i = 0; i < n; i++) {
    const field = order[i]!;
    if (field === 1) {
      w.tag(1, WIRE_FIXED64, pad());
      w.fixed64(v.session![0], v.session![1]);
      continue;
    }
    w.tag(field, WIRE_VARINT, pad());
    if (field === 5) {
      w.varint64(v.orderId![0], v.orderId![1], pad());
      continue;
    }
    const value =
      field === 2
        ? zigzag(v.lat!)
        : field === 3
          ? zigzag(v.lon!)
          : field === 4
            ? v.time!
            : field === 6
              ? v.cost!
              : field === 7
                ? v.speed!
                : v.bearing!;
    w.varint(value, pad());
  }
}

const FIELDS_SCRATCH = new Uint8Array(8);

/** The halves of a uint64. */
export function halves(v: bigint): [number, number] {
  return [Number(v >> 32n) >>> 0, Number(v & 0xffff_ffffn) >>> 0];
}

const halvesCache = new WeakMap<readonly bigint[], Array<[number, number]>>();
function registeredHalves(world: FuzzWorld): Array<[number, number]> {
  let h = halvesCache.get(world.registered);
  if (h === undefined) {
    h = world.registered.map(halves);
    halvesCache.set(world.registered, h);
  }
  return h;
}

/** Values of a Track, mostly plausible, sometimes at or past the edges the daemon checks. */
export function randomValues(rnd: Prng, world: FuzzWorld): TrackValues {
  const v: TrackValues = {};
  const r = rnd.float();
  if (r < 0.3) v.session = rnd.pick(registeredHalves(world));
  else if (r < 0.93) v.session = [rnd.uint32(), rnd.uint32() | 1];
  else if (r < 0.97) v.session = [0, 0];
  // else: no session field at all
  const where = rnd.float();
  if (where < 0.8) {
    v.lat = rnd.int(-89_000_000, 89_000_000);
    v.lon = rnd.int(-179_000_000, 179_000_000);
  } else if (where < 0.9) {
    v.lat = rnd.pick([90_000_001, -90_000_001, 2_147_483_647, -2_147_483_648, 90_000_000, -90_000_000]);
    v.lon = rnd.pick([180_000_001, -180_000_001, 180_000_000, -180_000_000, 0]);
  } else if (where < 0.95) {
    v.lat = 0;
    v.lon = 0;
  }
  const when = rnd.float();
  if (when < 0.75) v.time = world.nowS - 300 + rnd.int(-200, 200);
  else if (when < 0.85) v.time = world.nowS + rnd.int(3600, 86400 * 365);
  else if (when < 0.93) v.time = world.nowS - rnd.int(2000, 100_000_000);
  else if (when < 0.97) v.time = rnd.uint32();
  // else: no time (decodes as 1970)
  if (rnd.chance(0.4))
    v.orderId = rnd.chance(0.5) ? [rnd.int(0, 7), rnd.uint32() | 1] : [rnd.uint32(), rnd.uint32()];
  if (rnd.chance(0.6)) v.cost = rnd.chance(0.8) ? rnd.int(0, 2_000_000) : rnd.uint32();
  if (rnd.chance(0.7)) v.speed = rnd.int(0, 300);
  if (rnd.chance(0.7)) v.bearing = rnd.chance(0.9) ? rnd.int(0, 359) : rnd.uint32();
  return v;
}

/** A well-formed Track (field order and padding vary). */
function template(rnd: Prng, world: FuzzWorld): number[] {
  const w = new Writer();
  writeTrack(w, randomValues(rnd, world), rnd, 0.05);
  return w.bytes;
}

/** An unknown field (number 9 to 2^29-1) of a valid wire type, with a value that fits. */
function unknownField(w: Writer, rnd: Prng): void {
  const field = rnd.chance(0.7) ? rnd.int(9, 200) : rnd.int(9, 2 ** 29 - 1);
  switch (rnd.int(0, 3)) {
    case 0:
      w.tag(field, WIRE_VARINT);
      w.varint64(rnd.chance(0.5) ? rnd.uint32() : 0, rnd.uint32() >>> rnd.int(0, 31));
      break;
    case 1:
      w.tag(field, WIRE_FIXED64);
      w.fixed64(rnd.uint32(), rnd.uint32());
      break;
    case 2: {
      const n = rnd.int(0, 12);
      w.tag(field, WIRE_LEN);
      w.varint(n);
      w.raw(rnd.bytes(n));
      break;
    }
    default:
      w.tag(field, WIRE_FIXED32);
      w.fixed32(rnd.uint32());
  }
}

/**
 * Makes one hostile datagram and says how. The kinds are spread so that each of the decoder's paths
 * (every wire type, every varint length, every way to end early) is hit thousands of times in 1M.
 */
export function hostileDatagram(rnd: Prng, world: FuzzWorld): { bytes: number[]; kind: FuzzKind } {
  const r = rnd.float();
  let kind: FuzzKind;
  let b: number[];
  if (r < 0.1) {
    kind = 'valid';
    b = template(rnd, world);
  } else if (r < 0.24) {
    kind = 'bit_flip';
    b = template(rnd, world);
    const flips = rnd.int(1, 3);
    for (let i = 0; i < flips && b.length > 0; i++) {
      const at = rnd.int(0, b.length - 1);
      b[at] = b[at]! ^ (1 << rnd.int(0, 7));
    }
  } else if (r < 0.32) {
    kind = 'truncate';
    b = template(rnd, world);
    b = b.slice(0, rnd.int(0, Math.max(0, b.length - 1)));
  } else if (r < 0.38) {
    kind = 'pad';
    b = template(rnd, world);
    const n = rnd.int(1, 20);
    // Trailing zeros are a tag of field 0 (malformed); random bytes are anything.
    for (let i = 0; i < n; i++) b.push(rnd.chance(0.5) ? 0 : rnd.uint32() & 0xff);
  } else if (r < 0.45) {
    kind = 'varint_overflow';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    // A varint of 10, 11 or 12 bytes (the 11th and 12th are past what any decoder may read), in a known
    // field or an unknown one, sometimes never terminated.
    w.tag(rnd.chance(0.5) ? rnd.int(2, 8) : rnd.int(9, 100), WIRE_VARINT);
    const len = rnd.int(9, 12);
    for (let i = 0; i < len - 1; i++) w.bytes.push(0x80 | (rnd.uint32() & 0x7f));
    if (rnd.chance(0.8)) w.bytes.push(rnd.uint32() & 0x7f);
    b = w.bytes;
  } else if (r < 0.52) {
    kind = 'wrong_wire_type';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    const field = rnd.int(1, 8);
    // Field 1 is fixed64, 2-8 are varints: any other wire type is wrong, with a payload that fits it.
    const wire = rnd.pick(field === 1 ? [0, 2, 5] : [1, 2, 5]);
    w.tag(field, wire);
    if (wire === WIRE_VARINT) w.varint64(rnd.uint32(), rnd.uint32());
    else if (wire === WIRE_FIXED64) w.fixed64(rnd.uint32(), rnd.uint32());
    else if (wire === WIRE_FIXED32) w.fixed32(rnd.uint32());
    else {
      w.varint(2);
      w.raw([rnd.uint32() & 0xff, rnd.uint32() & 0xff]);
    }
    b = w.bytes;
  } else if (r < 0.59) {
    kind = 'repeated_field';
    const w = new Writer();
    const v = randomValues(rnd, world);
    writeTrack(w, v, rnd, 0.05);
    // The same fields again with other values: the last one wins, and may be the bad one.
    writeTrack(
      w,
      { ...randomValues(rnd, world), session: rnd.chance(0.5) ? v.session : undefined },
      rnd,
      0.05,
    );
    b = w.bytes;
  } else if (r < 0.67) {
    kind = 'unknown_fields';
    const w = new Writer();
    const n = rnd.int(1, 4);
    if (rnd.chance(0.5)) for (let i = 0; i < n; i++) unknownField(w, rnd);
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    for (let i = 0; i < n; i++) unknownField(w, rnd);
    b = w.bytes;
  } else if (r < 0.72) {
    kind = 'huge_length';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    w.tag(rnd.int(9, 1000), WIRE_LEN);
    const [hi, lo] = rnd.pick<[number, number]>([
      [0, 0x7fff_ffff],
      [0, 0xffff_ffff],
      [0xffff_ffff, 0xffff_ffff],
      [0, 1 << 28],
      [0, 64],
      [0, 200],
    ]);
    w.varint64(hi, lo, rnd.chance(0.3) ? 1 : 0);
    w.raw(rnd.bytes(rnd.int(0, 8)));
    b = w.bytes;
  } else if (r < 0.76) {
    kind = 'invalid_wire_type';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    // Groups (3, 4: not proto3) and the wire types that do not exist (6, 7), known and unknown fields.
    w.tag(rnd.chance(0.5) ? rnd.int(1, 8) : rnd.int(9, 500), rnd.pick([3, 4, 6, 7]));
    w.raw(rnd.bytes(rnd.int(0, 6)));
    b = w.bytes;
  } else if (r < 0.78) {
    kind = 'field_zero';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    w.tag(0, rnd.pick([0, 1, 2, 5]));
    w.raw(rnd.bytes(rnd.int(0, 8)));
    b = w.bytes;
  } else if (r < 0.86) {
    kind = 'byte_edit';
    b = template(rnd, world);
    const edits = rnd.int(1, 4);
    for (let i = 0; i < edits; i++) {
      const at = rnd.int(0, b.length);
      const op = rnd.int(0, 2);
      if (op === 0 && at < b.length) b[at] = rnd.uint32() & 0xff;
      else if (op === 1) b.splice(at, 0, rnd.pick([0x00, 0x7f, 0x80, 0xff, rnd.uint32() & 0xff]));
      else if (at < b.length) b.splice(at, 1);
    }
  } else if (r < 0.9) {
    kind = 'splice';
    const a = template(rnd, world);
    const c = template(rnd, world);
    b = [...a.slice(0, rnd.int(0, a.length)), ...c.slice(rnd.int(0, c.length))];
  } else if (r < 0.96) {
    kind = 'random_bytes';
    b = Array.from(rnd.bytes(rnd.int(1, 80)));
  } else if (r < 0.97) {
    kind = 'empty';
    b = [];
  } else {
    kind = 'oversize';
    const w = new Writer();
    writeTrack(w, randomValues(rnd, world), rnd, 0.05);
    // A valid message padded past 64 bytes with unknown fields: refused unread, however good its fix.
    while (w.bytes.length <= 64) unknownField(w, rnd);
    b = w.bytes;
  }
  if (b.length > MAX_FUZZ_BYTES) b = b.slice(0, MAX_FUZZ_BYTES);
  return { bytes: b, kind };
}

/** A corpus in one slab: datagram i is slab[offsets[i], offsets[i] + lengths[i]). */
export interface Corpus {
  slab: Uint8Array;
  offsets: Int32Array;
  lengths: Int32Array;
  kinds: Uint8Array;
  count: number;
}

/** `count` hostile datagrams, pre-generated so that sending them costs nothing but the send. */
export function hostileCorpus(rnd: Prng, world: FuzzWorld, count: number): Corpus {
  const slab = new Uint8Array(count * 48);
  let grown = slab;
  const offsets = new Int32Array(count);
  const lengths = new Int32Array(count);
  const kinds = new Uint8Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const { bytes, kind } = hostileDatagram(rnd, world);
    if (at + bytes.length > grown.length) {
      const next = new Uint8Array(grown.length * 2);
      next.set(grown);
      grown = next;
    }
    grown.set(bytes, at);
    offsets[i] = at;
    lengths[i] = bytes.length;
    kinds[i] = FUZZ_KINDS.indexOf(kind);
    at += bytes.length;
  }
  return { slab: grown.subarray(0, at), offsets, lengths, kinds, count };
}
