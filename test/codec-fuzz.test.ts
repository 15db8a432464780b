import protobuf, { type Message } from 'protobufjs';
import t from 'tap';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack, trackType } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { Prng } from './support/prng.ts';

// decodeTrack against protobufjs's Track.decode as the oracle, on hand-written and seeded hostile inputs.
// The contract: decodeTrack never throws; if it says ok, protobufjs decodes the same bytes to the same
// fields; if protobufjs decodes bytes that decodeTrack refuses, one of the three documented stricter
// rules of src/codec/decode.ts applies (and whenever one applies, decodeTrack refuses).

type Plain = {
  sessionHi: number;
  sessionLo: number;
  lat: number;
  lon: number;
  time: number;
  orderHi: number;
  orderLo: number;
  cost: number;
  speed: number;
  bearing: number;
};

type Rule = 'none' | 'wrong-wire-type' | 'group' | 'long-unknown-varint';

const Track = trackType();
const fix = new Fix();

function plain(f: Fix): Plain {
  return {
    sessionHi: f.sessionHi,
    sessionLo: f.sessionLo,
    lat: f.lat,
    lon: f.lon,
    time: f.time,
    orderHi: f.orderHi,
    orderLo: f.orderLo,
    cost: f.cost,
    speed: f.speed,
    bearing: f.bearing,
  };
}

/** protobufjs gives 64-bit fields as a Long (signed words) when long.js is present, else as a number. */
function halves(v: unknown): [hi: number, lo: number] {
  if (typeof v === 'number') return [Math.floor(v / 0x1_0000_0000), v >>> 0];
  const l = v as { high: number; low: number };
  return [l.high >>> 0, l.low >>> 0];
}

function fromProtobufjs(m: Message): Plain {
  const o = m as unknown as Record<string, unknown>;
  const [sessionHi, sessionLo] = halves(o['session']);
  const [orderHi, orderLo] = halves(o['orderId']);
  return {
    sessionHi,
    sessionLo,
    lat: o['lat'] as number,
    lon: o['lon'] as number,
    time: o['time'] as number,
    orderHi,
    orderLo,
    cost: o['cost'] as number,
    speed: o['speed'] as number,
    bearing: o['bearing'] as number,
  };
}

function sameFields(a: Plain, b: Plain): boolean {
  return (
    a.sessionHi === b.sessionHi &&
    a.sessionLo === b.sessionLo &&
    a.lat === b.lat &&
    a.lon === b.lon &&
    a.time === b.time &&
    a.orderHi === b.orderHi &&
    a.orderLo === b.orderLo &&
    a.cost === b.cost &&
    a.speed === b.speed &&
    a.bearing === b.bearing
  );
}

function protobufjsDecode(bytes: Uint8Array): Message | undefined {
  try {
    return Track.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Which stricter rule of decodeTrack the message breaks first, found independently of decodeTrack by
 * walking the top-level fields with protobufjs's own Reader. Only meaningful for bytes protobufjs decodes.
 */
function stricterRule(bytes: Uint8Array): Rule {
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.tag();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (wireType === 3 || wireType === 4) return 'group';
    if (field >= 1 && field <= 8 && wireType !== (field === 1 ? 1 : 0)) return 'wrong-wire-type';
    if (wireType === 0) {
      const start = r.pos;
      r.skip();
      if (r.pos - start > 10) return 'long-unknown-varint';
    } else {
      r.skipType(wireType, 0, field);
    }
  }
  return 'none';
}

const hex = (bytes: Uint8Array | number[]): string => Buffer.from(bytes).toString('hex');

t.test('the documented stricter cases: protobufjs decodes them, decodeTrack refuses them', async (tt) => {
  const cases: [string, Rule, number[]][] = [
    ['lat as fixed32', 'wrong-wire-type', [0x15, 1, 2, 3, 4]],
    ['session as a varint', 'wrong-wire-type', [0x08, 0x01]],
    ['time as length-delimited', 'wrong-wire-type', [0x22, 0x01, 0x00]],
    ['order_id as fixed64', 'wrong-wire-type', [0x29, 1, 2, 3, 4, 5, 6, 7, 8]],
    ['bearing as fixed32 after good fields', 'wrong-wire-type', [0x10, 0x02, 0x45, 0, 0, 0, 0]],
    ['empty group, unknown field 9', 'group', [0x4b, 0x4c]],
    ['group holding a varint, field 1', 'group', [0x0b, 0x10, 0x01, 0x0c]],
    ['11-byte varint in unknown field 9', 'long-unknown-varint', [0x48, ...Array(10).fill(0x80), 0x00]],
    [
      '20-byte varint in unknown field 100',
      'long-unknown-varint',
      [0xa0, 0x06, ...Array(19).fill(0xff), 0x01],
    ],
  ];
  for (const [name, rule, bytes] of cases) {
    const buf = Uint8Array.from(bytes);
    tt.not(protobufjsDecode(buf), undefined, `${name}: protobufjs decodes it`);
    tt.equal(stricterRule(buf), rule, `${name}: breaks ${rule}`);
    tt.equal(decodeTrack(buf, buf.length, fix), false, `${name}: decodeTrack refuses it`);
  }
});

t.test('hand-written inputs where both decoders agree', async (tt) => {
  const ok: [string, number[], Partial<Plain>][] = [
    ['empty', [], {}],
    ['repeated lat: last wins', [0x10, 0x02, 0x10, 0x03], { lat: -2 }],
    ['a later zero clears an earlier value', [0x20, 0x05, 0x20, 0x00], {}],
    ['unknown varint field 9', [0x48, 0xff, 0x01, 0x20, 0x01], { time: 1 }],
    ['unknown fixed64 field 15', [0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x20, 0x01], { time: 1 }],
    ['unknown bytes field 16', [0x82, 0x01, 0x03, 0xaa, 0xbb, 0xcc, 0x20, 0x01], { time: 1 }],
    ['unknown fixed32 field 536870911', [0xfd, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4], {}],
    ['10-byte varint in unknown field 9', [0x48, ...Array(9).fill(0x80), 0x00], {}],
    ['padded tag for time', [0xa0, 0x80, 0x80, 0x80, 0x00, 0x07], { time: 7 }],
    ['padded length', [0x52, 0x81, 0x80, 0x80, 0x80, 0x00, 0xee], {}],
    // int32 -1 as protoc writes it: 10 bytes; uint32 keeps the low 32 bits.
    ['10-byte uint32', [0x30, ...Array(9).fill(0xff), 0x01], { cost: 0xffff_ffff }],
    ['10-byte sint32', [0x10, 0x81, ...Array(8).fill(0x80), 0x01], { lat: -1 }],
    [
      '10-byte uint64 keeps bit 63',
      [0x28, ...Array(9).fill(0xff), 0x7f],
      { orderHi: 0xffff_ffff, orderLo: 0xffff_ffff },
    ],
    ['fixed64 session low word first', [0x09, 1, 0, 0, 0, 2, 0, 0, 0], { sessionHi: 2, sessionLo: 1 }],
  ];
  const zero = plain(new Fix());
  for (const [name, bytes, fields] of ok) {
    const buf = Uint8Array.from(bytes);
    const m = protobufjsDecode(buf);
    tt.equal(decodeTrack(buf, buf.length, fix), true, `${name}: ok`);
    tt.strictSame(plain(fix), { ...zero, ...fields }, `${name}: decodeTrack fields`);
    tt.strictSame(m && fromProtobufjs(m), { ...zero, ...fields }, `${name}: protobufjs fields`);
  }

  const malformed: [string, number[]][] = [
    ['field number 0', [0x00, 0x01]],
    ['field number 0, padded tag', [0x80, 0x00, 0x01]],
    ['wire type 6', [0x4e]],
    ['wire type 7', [0x4f]],
    ['end group without a start', [0x4c]],
    ['unterminated group', [0x4b, 0x48, 0x01]],
    ['truncated tag', [0x80]],
    ['tag of 6 bytes', [0x80, 0x80, 0x80, 0x80, 0x80, 0x00]],
    ['tag above 32 bits', [0x80, 0x80, 0x80, 0x80, 0x10]],
    ['truncated varint', [0x20, 0x80]],
    ['tag with no value', [0x20]],
    ['11-byte varint in a known field', [0x20, ...Array(10).fill(0x80), 0x00]],
    ['11-byte uint64', [0x28, ...Array(10).fill(0xff), 0x01]],
    ['truncated fixed64 session', [0x09, 1, 2, 3, 4, 5, 6, 7]],
    ['truncated unknown fixed64', [0x49, 1, 2, 3]],
    ['truncated unknown fixed32', [0x4d, 1, 2, 3]],
    ['length past the end', [0x4a, 0x02, 0x00]],
    ['huge length', [0x4a, 0xff, 0xff, 0xff, 0xff, 0x07]],
    ['length with a 5th byte above 7', [0x4a, 0x80, 0x80, 0x80, 0x80, 0x08]],
    ['length of 6 bytes', [0x4a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]],
  ];
  for (const [name, bytes] of malformed) {
    const buf = Uint8Array.from(bytes);
    tt.equal(protobufjsDecode(buf), undefined, `${name}: protobufjs refuses it`);
    tt.equal(decodeTrack(buf, buf.length, fix), false, `${name}: decodeTrack refuses it`);
  }
});

// ---------------------------------------------------------------------------------------------------
// Seeded generator of hostile Track datagrams. Messages are built from segments (good fields, unknown
// fields, the cases each rule is about) and then often damaged (bit flips, truncation, padding...).

const rnd = new Prng(0xf022);

function pushVarint(out: number[], v: bigint, pad = 0): void {
  const groups: number[] = [];
  do {
    groups.push(Number(v & 0x7fn));
    v >>= 7n;
  } while (v > 0n);
  // Zero groups after the value: non-canonical, still the same number.
  for (let i = 0; i < pad; i++) groups.push(0);
  for (let i = 0; i < groups.length; i++) out.push(groups[i]! | (i < groups.length - 1 ? 0x80 : 0));
}

function varintLength(v: bigint): number {
  let n = 1;
  while (v >= 128n) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Padding that keeps a varint legal (<= 10 bytes) most of the time. */
function somePad(v: bigint): number {
  return rnd.chance(0.9) ? 0 : rnd.int(0, 10 - varintLength(v));
}

function pushTag(out: number[], field: number, wireType: number): void {
  const tag = BigInt(field) * 8n + BigInt(wireType);
  pushVarint(out, tag, rnd.chance(0.95) ? 0 : rnd.int(0, 5 - varintLength(tag)));
}

const EDGE_U64 = [0n, 1n, 127n, 128n, 0xffff_ffffn, 1n << 32n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];

function varintValue(): bigint {
  switch (rnd.int(0, 4)) {
    case 0:
      return rnd.pick(EDGE_U64);
    case 1:
      return BigInt(rnd.int(0, 300));
    case 2:
      return BigInt(rnd.uint32());
    case 3:
      return rnd.uint64() >> BigInt(rnd.int(0, 63));
    default:
      return rnd.uint64();
  }
}

function randomField(): number {
  switch (rnd.int(0, 2)) {
    case 0:
      return rnd.int(9, 15); // 1-byte tag
    case 1:
      return rnd.int(16, 2047);
    default:
      return rnd.int(2048, 2 ** 29 - 1);
  }
}

/** A valid payload for a wire type. */
function pushPayload(out: number[], wireType: number): void {
  switch (wireType) {
    case 0: {
      const v = varintValue();
      pushVarint(out, v, somePad(v));
      break;
    }
    case 1:
      for (let i = 0; i < 8; i++) out.push(rnd.int(0, 255));
      break;
    case 5:
      for (let i = 0; i < 4; i++) out.push(rnd.int(0, 255));
      break;
    default: {
      const n = rnd.int(0, 12);
      pushVarint(out, BigInt(n), rnd.chance(0.95) ? 0 : rnd.int(0, 4 - varintLength(BigInt(n))));
      for (let i = 0; i < n; i++) out.push(rnd.int(0, 255));
    }
  }
}

function pushSegment(out: number[], depth: number): void {
  const kind = rnd.int(0, 99);
  if (kind < 50) {
    // A known field with its own wire type; repeats happen when the same field is drawn twice.
    const field = rnd.int(1, 8);
    pushTag(out, field, field === 1 ? 1 : 0);
    pushPayload(out, field === 1 ? 1 : 0);
  } else if (kind < 65) {
    const wireType = rnd.pick([0, 1, 2, 5]);
    pushTag(out, randomField(), wireType);
    pushPayload(out, wireType);
  } else if (kind < 72) {
    // Wrong wire type for a known field, with a valid payload of that wrong type.
    const field = rnd.int(1, 8);
    const wireType = rnd.pick([0, 1, 2, 5].filter((w) => w !== (field === 1 ? 1 : 0)));
    pushTag(out, field, wireType);
    pushPayload(out, wireType);
  } else if (kind < 77) {
    // A group: nested segments between start and (usually matching) end tags.
    const field = rnd.chance(0.5) ? rnd.int(1, 8) : randomField();
    pushTag(out, field, 3);
    if (depth < 2) for (let n = rnd.int(0, 2); n > 0; n--) pushSegment(out, depth + 1);
    if (rnd.chance(0.9)) pushTag(out, rnd.chance(0.9) ? field : randomField(), 4);
  } else if (kind < 80) {
    pushTag(out, rnd.chance(0.5) ? rnd.int(1, 8) : randomField(), rnd.pick([4, 6, 7]));
  } else if (kind < 83) {
    pushTag(out, 0, rnd.pick([0, 1, 2, 5]));
    pushPayload(out, 0);
  } else if (kind < 90) {
    // A varint of 11 or more bytes, in a known varint field or an unknown one.
    pushTag(out, rnd.chance(0.5) ? rnd.int(2, 8) : randomField(), 0);
    const v = varintValue();
    pushVarint(out, v, 11 - varintLength(v) + rnd.int(0, 3));
  } else if (kind < 95) {
    // A length that overruns: huge, just one past the end, or read with more than 5 bytes.
    pushTag(out, rnd.chance(0.8) ? randomField() : rnd.int(1, 8), 2);
    const n = rnd.int(0, 6);
    switch (rnd.int(0, 3)) {
      case 0:
        pushVarint(out, rnd.pick([0x7fff_ffffn, 0xffff_ffffn, 1n << 35n, BigInt(rnd.uint32())]));
        break;
      case 1:
        pushVarint(out, BigInt(n + 1));
        break;
      case 2:
        pushVarint(out, BigInt(n), 5 - varintLength(BigInt(n)) + rnd.int(0, 2));
        break;
      default:
        // 5 bytes whose last is above 7: a length of at least 2^31.
        out.push(0x80 | n, 0x80, 0x80, 0x80, rnd.int(8, 15));
    }
    for (let i = 0; i < n; i++) out.push(rnd.int(0, 255));
  } else {
    // A tag padded to 6 bytes or past 32 bits.
    if (rnd.chance(0.5)) out.push(0x80 | rnd.int(8, 127), 0x80, 0x80, 0x80, 0x80, 0x00);
    else out.push(0x80 | rnd.int(8, 127), 0x80, 0x80, 0x80, rnd.int(16, 127));
    pushPayload(out, 0);
  }
}

function mutate(bytes: number[]): number[] {
  switch (rnd.int(0, 9)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return bytes;
    case 4: // bit flips
      for (let n = rnd.int(1, 3); n > 0 && bytes.length > 0; n--) {
        const i = rnd.int(0, bytes.length - 1);
        bytes[i]! ^= 1 << rnd.int(0, 7);
      }
      return bytes;
    case 5: // truncation
      return bytes.slice(0, rnd.int(0, bytes.length));
    case 6: // padding with random bytes or zeros
      for (let n = rnd.int(1, 8), z = rnd.chance(0.5); n > 0; n--) bytes.push(z ? 0 : rnd.int(0, 255));
      return bytes;
    case 7: // a random byte inserted
      bytes.splice(rnd.int(0, bytes.length), 0, rnd.int(0, 255));
      return bytes;
    case 8: // a byte deleted
      if (bytes.length > 0) bytes.splice(rnd.int(0, bytes.length - 1), 1);
      return bytes;
    default: // a byte overwritten
      if (bytes.length > 0) bytes[rnd.int(0, bytes.length - 1)] = rnd.int(0, 255);
      return bytes;
  }
}

function nextInput(): number[] {
  const kind = rnd.int(0, 99);
  if (kind < 10) return Array.from(rnd.bytes(rnd.int(0, 64)));
  if (kind < 15) {
    // Random bytes biased to continuation bits and small tags, to reach deeper into the varint code.
    const out: number[] = [];
    for (let n = rnd.int(0, 40); n > 0; n--)
      out.push(rnd.pick([0x80, 0xff, 0x00, 0x01, 0x08, 0x09, 0x10, 0x4a]));
    return out;
  }
  if (kind < 30) {
    const bytes = encodeTrack({
      session: rnd.uint64(),
      lat: rnd.int(-90_000_000, 90_000_000),
      lon: rnd.int(-180_000_000, 180_000_000),
      time: rnd.uint32(),
      orderId: rnd.chance(0.5) ? 0n : rnd.uint64() >> BigInt(rnd.int(0, 63)),
      cost: rnd.chance(0.5) ? 0 : rnd.uint32(),
      speed: rnd.int(0, 250),
      bearing: rnd.int(0, 359),
    });
    const out = Array.from(bytes);
    if (rnd.chance(0.5)) {
      // An unknown or repeated field spliced in between whole fields: a newer app's message.
      const extra: number[] = [];
      pushSegment(extra, 0);
      out.push(...extra);
    }
    return mutate(out);
  }
  const out: number[] = [];
  for (let n = rnd.int(0, 8); n > 0; n--) pushSegment(out, 0);
  return mutate(out);
}

t.test('differential fuzzing against protobufjs', async (tt) => {
  const INPUTS = 250_000;
  // A receive buffer reused across datagrams, as the worker does: stale bytes lie past `len`.
  const scratch = new Uint8Array(256);
  let threw = 0;
  let okButProtobufjsFails = 0;
  let fieldsDiffer = 0;
  let unexplained = 0;
  let ruleButOk = 0;
  let bothOk = 0;
  let bothRefuse = 0;
  const stricter: Record<Rule, number> = {
    none: 0,
    'wrong-wire-type': 0,
    group: 0,
    'long-unknown-varint': 0,
  };
  const failures: string[] = [];
  const note = (what: string, bytes: Uint8Array): void => {
    if (failures.length < 10) failures.push(`${what}: ${hex(bytes)}`);
  };

  for (let i = 0; i < INPUTS; i++) {
    const input = nextInput();
    let bytes: Uint8Array;
    let buf: Uint8Array;
    if (input.length <= scratch.length && rnd.chance(0.5)) {
      scratch.set(input);
      buf = scratch;
      bytes = scratch.subarray(0, input.length);
    } else {
      buf = bytes = Uint8Array.from(input);
    }

    let ours: boolean;
    try {
      ours = decodeTrack(buf, input.length, fix);
    } catch {
      threw++;
      note('threw', bytes);
      continue;
    }
    const theirs = protobufjsDecode(bytes);
    if (ours) {
      if (theirs === undefined) {
        okButProtobufjsFails++;
        note('ok but protobufjs fails', bytes);
      } else if (!sameFields(plain(fix), fromProtobufjs(theirs))) {
        fieldsDiffer++;
        note('fields differ', bytes);
      } else if (stricterRule(bytes) !== 'none') {
        ruleButOk++;
        note('a stricter rule applies but ok', bytes);
      } else {
        bothOk++;
      }
    } else if (theirs === undefined) {
      bothRefuse++;
    } else {
      const rule = stricterRule(bytes);
      stricter[rule]++;
      if (rule === 'none') {
        unexplained++;
        note('malformed but protobufjs decodes it and no stricter rule applies', bytes);
      }
    }
  }

  tt.comment(
    `${INPUTS} inputs: ${bothOk} both ok, ${bothRefuse} both refuse, stricter: ${JSON.stringify(stricter)}`,
  );
  tt.strictSame(failures, [], 'first failing inputs, as hex');
  tt.equal(threw, 0, 'decodeTrack never throws');
  tt.equal(okButProtobufjsFails, 0, 'ok implies protobufjs decodes it');
  tt.equal(fieldsDiffer, 0, 'ok implies the same fields as protobufjs');
  tt.equal(ruleButOk, 0, 'ok implies no stricter rule applies');
  tt.equal(unexplained, 0, 'every extra refusal is one of the documented stricter rules');
  // The generator must actually reach every outcome, or the checks above prove little.
  tt.ok(bothOk > 30_000, `both ok: ${bothOk}`);
  tt.ok(bothRefuse > 30_000, `both refuse: ${bothRefuse}`);
  tt.ok(stricter['wrong-wire-type'] > 1_000, `wrong wire type: ${stricter['wrong-wire-type']}`);
  tt.ok(stricter.group > 1_000, `group: ${stricter.group}`);
  tt.ok(stricter['long-unknown-varint'] > 1_000, `long unknown varint: ${stricter['long-unknown-varint']}`);
});
