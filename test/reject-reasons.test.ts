import t from 'tap';
import { decodeTrack } from '../src/codec/decode.ts';
import { encodeTrack } from '../src/codec/encode.ts';
import { Fix } from '../src/codec/fix.ts';
import { checkFix } from '../src/ingest/filter.ts';
import { Reason } from '../src/reasons.ts';
import { Shard } from '../src/store/shard.ts';

/** Each reason a fix is refused, at the layer that refuses it (the daemon test sees them end to end). */

const NOW_S = 1_700_000_000;
const IDLE_S = 900;
const base = { session: 0x1234_5678_9abc_def0n, lat: 48_856_600, lon: 2_352_200, time: NOW_S };

const decoded = (fields: Partial<typeof base> & Record<string, unknown>): Fix => {
  const f = new Fix();
  const buf = encodeTrack({ ...base, ...fields });
  t.equal(decodeTrack(buf, buf.length, f), true);
  return f;
};

t.test('malformed protobuf', async (t) => {
  const f = new Fix();
  const truncated = encodeTrack(base).subarray(0, 5);
  t.equal(decodeTrack(truncated, truncated.length, f), false);
});

t.test('no session', async (t) => {
  t.equal(checkFix(decoded({ session: 0n }), NOW_S, IDLE_S), Reason.noSession);
});

t.test('latitude or longitude out of range', async (t) => {
  t.equal(checkFix(decoded({ lat: 90_000_001 }), NOW_S, IDLE_S), Reason.outOfRange);
  t.equal(checkFix(decoded({ lat: -90_000_001 }), NOW_S, IDLE_S), Reason.outOfRange);
  t.equal(checkFix(decoded({ lon: 180_000_001 }), NOW_S, IDLE_S), Reason.outOfRange);
  t.equal(checkFix(decoded({ lon: -180_000_001 }), NOW_S, IDLE_S), Reason.outOfRange);
  t.equal(
    checkFix(decoded({ lat: 90_000_000, lon: -180_000_000 }), NOW_S, IDLE_S),
    Reason.ok,
    'the limits themselves are fine',
  );
});

t.test('(0, 0)', async (t) => {
  t.equal(checkFix(decoded({ lat: 0, lon: 0 }), NOW_S, IDLE_S), Reason.nullIsland);
  t.equal(checkFix(decoded({ lat: 0, lon: 1 }), NOW_S, IDLE_S), Reason.ok, 'the equator is fine');
});

t.test('more than 60 s in the future', async (t) => {
  t.equal(checkFix(decoded({ time: NOW_S + 61 }), NOW_S, IDLE_S), Reason.future);
  t.equal(checkFix(decoded({ time: NOW_S + 60 }), NOW_S, IDLE_S), Reason.ok);
});

t.test('older than the idle timeout, or no time at all', async (t) => {
  t.equal(checkFix(decoded({ time: NOW_S - IDLE_S - 1 }), NOW_S, IDLE_S), Reason.stale);
  t.equal(checkFix(decoded({ time: 0 }), NOW_S, IDLE_S), Reason.stale);
});

t.test('not newer than the last accepted fix, and jumps faster than 250 km/h', async (t) => {
  const shard = new Shard({ trackPoints: 4, idleTimeoutS: IDLE_S });
  const d = shard.add('d1', 'c1', 0x12345678, 0x9abcdef0, NOW_S * 1000);
  t.equal(shard.ingest(d, decoded({}), NOW_S * 1000), Reason.ok);
  t.equal(shard.ingest(d, decoded({}), NOW_S * 1000), Reason.stale, 'a duplicate');
  t.equal(shard.ingest(d, decoded({ time: NOW_S - 1 }), NOW_S * 1000), Reason.stale, 'out of order');
  // 0.001 degree of latitude is 111.2 m: in 1 s that is 400 km/h; in 2 s, 200 km/h.
  t.equal(shard.ingest(d, decoded({ lat: base.lat + 1000, time: NOW_S + 1 }), NOW_S * 1000), Reason.tooFast);
  t.equal(shard.ingest(d, decoded({ lat: base.lat + 1000, time: NOW_S + 2 }), NOW_S * 1000), Reason.ok);
  t.equal(shard.time(d), NOW_S + 2);
});

t.test('a new track re-anchors the driver only once it is consistent for 10 s', async (t) => {
  const shard = new Shard({ trackPoints: 4, idleTimeoutS: IDLE_S });
  const d = shard.add('d1', 'c1', 0x12345678, 0x9abcdef0, NOW_S * 1000);
  // A cold GPS start reports a position 50 km off; the phone then finds the real one and stays there.
  t.equal(shard.ingest(d, decoded({ lat: base.lat + 450_000 }), NOW_S * 1000), Reason.ok);
  const results: number[] = [];
  for (let i = 1; i <= 12; i++) results.push(shard.ingest(d, decoded({ time: NOW_S + i }), NOW_S * 1000));
  // Fixes 1..10 draw the track (10 refused); fix 11 is 10 s after the first of them: re-anchored.
  t.same(results, [...Array(10).fill(Reason.tooFast), Reason.ok, Reason.ok]);
  t.equal(shard.latE6(d), base.lat);
});
