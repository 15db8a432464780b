import t from 'tap';
import { BatchError } from '../src/errors.ts';
import {
  BatchWriter,
  FrameReader,
  KIND_DELTA,
  KIND_SNAPSHOT,
  LEFT_EXPIRED,
  LEFT_RELEASED,
  readBatch,
  readHeader,
  textVisitor,
} from '../src/replica/batch.ts';
import { Prng } from './support/prng.ts';

/** The replica batch protocol (docs/batch-protocol.md): round trips, framing, and hostile bytes. */

type Rec = [string, ...unknown[]];

function read(b: Uint8Array): Rec[] {
  const out: Rec[] = [];
  readBatch(
    b,
    textVisitor({
      appeared: (...a) => out.push(['appeared', ...a]),
      moved: (...a) => out.push(['moved', ...a]),
      left: (...a) => out.push(['left', ...a]),
    }),
  );
  return out;
}

t.test('every record round-trips, in order, with the header', async (t) => {
  const w = new BatchWriter();
  w.begin(KIND_DELTA, 7, 42, 1_700_000_000_123.5, 'host-a');
  w.left(3, LEFT_EXPIRED);
  w.appeared(3, 'drv-9', 'CAB-9');
  w.moved(3, -33_868_800, 151_209_300, 1_700_000_000, 54, 359, true, 1_700_000_000_023.5);
  w.moved(4, 90_000_000, -180_000_000, 4_294_967_295, 70_000, 400, false, 1_699_999_900_000);
  // A receipt after the batch was built (another clock) reads as no age at all.
  w.moved(5, 1, 1, 1, 0, 0, false, 1_700_000_100_000);
  w.left(4, LEFT_RELEASED);
  const b = Buffer.from(w.finish());
  t.same(readHeader(b), {
    kind: KIND_DELTA,
    source: 7,
    seq: 42,
    sentMs: 1_700_000_000_123.5,
    records: 6,
    host: 'host-a',
  });
  t.same(read(b), [
    ['left', 3, LEFT_EXPIRED],
    ['appeared', 3, 'drv-9', 'CAB-9'],
    ['moved', 3, -33_868_800, 151_209_300, 1_700_000_000, 54, 359, true, 1_700_000_000_023.5],
    // Speed is clamped to u16; the age to the 65,535 ms a u16 holds.
    ['moved', 4, 90_000_000, -180_000_000, 4_294_967_295, 65_535, 400, false, 1_700_000_000_123.5 - 65_535],
    ['moved', 5, 1, 1, 1, 0, 0, false, 1_700_000_000_123.5],
    ['left', 4, LEFT_RELEASED],
  ]);
  // A MOVED is 24 bytes: 100k drivers moving in a tick are 2.4 MB.
  w.begin(KIND_SNAPSHOT, 1, 1, 0);
  w.moved(1, 0, 0, 0, 0, 0, false, 0);
  t.equal(w.finish().length, 25 + 24);
});

t.test('frames are split and joined across chunks however the stream cuts them', async (t) => {
  const w = new BatchWriter();
  const frames: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    w.begin(KIND_DELTA, 1, i, i);
    for (let j = 0; j < i; j++) w.moved(j, j, j, j, 0, 0, false, i);
    const b = w.finish();
    const f = Buffer.alloc(4 + b.length);
    f.writeUInt32LE(b.length, 0);
    b.copy(f, 4);
    frames.push(f);
  }
  const all = Buffer.concat(frames);
  const rnd = new Prng(5);
  for (let trial = 0; trial < 20; trial++) {
    const seqs: number[] = [];
    const r = new FrameReader((frame) => seqs.push(readHeader(frame).seq));
    for (let at = 0; at < all.length; ) {
      const n = rnd.int(1, 300);
      r.push(all.subarray(at, at + n));
      at += n;
    }
    t.same(seqs, [...Array(50).keys()], `trial ${trial}: every frame once, in order`);
  }
});

t.test('hostile bytes: a BatchError, never anything else, and nothing past the buffer', async (t) => {
  const w = new BatchWriter();
  w.begin(KIND_DELTA, 1, 1, 1);
  w.appeared(1, 'a', 'b');
  w.moved(1, 1, 2, 3, 4, 5, true, 1);
  w.left(1, LEFT_EXPIRED);
  const good = Buffer.from(w.finish());
  const rnd = new Prng(9);
  let other = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    const b = Buffer.from(good);
    const kind = i % 4;
    if (kind === 0) b[rnd.int(0, b.length - 1)] = rnd.int(0, 255);
    else if (kind === 1) b.writeUInt32LE(rnd.uint32(), 20);
    const input =
      kind === 2
        ? b.subarray(0, rnd.int(0, b.length - 1))
        : kind === 3
          ? Buffer.concat([b, Buffer.from([rnd.int(0, 255)])])
          : b;
    try {
      read(input);
    } catch (err) {
      if (err instanceof BatchError) refused++;
      else other++;
    }
  }
  t.equal(other, 0, 'only BatchError is thrown');
  t.ok(refused > 10_000, `${refused} of 20,000 refused`);
  t.throws(() => readHeader(Buffer.from('not a batch at all, really')), BatchError);
});
