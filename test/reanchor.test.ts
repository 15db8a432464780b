import t from 'tap';
import { Fix } from '../src/codec/fix.ts';
import { haversineM } from '../src/geo/distance.ts';
import { Reason } from '../src/reasons.ts';
import { Shard } from '../src/store/shard.ts';
import { Prng } from './support/prng.ts';

/**
 * Re-anchoring (issue 12): fixes refused as too fast move a driver only when they draw a track that is
 * consistent with itself (5 fixes or more, each plausible from the one before, over 10 s or more).
 */

const NOW_S = 1_700_000_000;
const LAT = 42_887_417;
const LON = 74_527_553;

function fix(lat: number, lon: number, time: number): Fix {
  const f = new Fix();
  f.sessionHi = 1;
  f.sessionLo = 2;
  f.lat = lat;
  f.lon = lon;
  f.time = time;
  return f;
}

function driver(shard: Shard): number {
  return shard.add('d1', 'c1', 1, 2, NOW_S * 1000);
}

/** A random wild fix: 2-10 degrees of latitude away (either way), a random longitude shift. */
function jump(rnd: Prng, lat: number, lon: number, time: number): Fix {
  const dLat = (rnd.float() < 0.5 ? -1 : 1) * rnd.int(2_000_000, 10_000_000);
  const dLon = rnd.int(-10_000_000, 10_000_000);
  const jl = Math.max(-89_000_000, Math.min(89_000_000, lat + dLat));
  let jo = lon + dLon;
  if (jo > 180_000_000) jo -= 360_000_000;
  if (jo < -180_000_000) jo += 360_000_000;
  return fix(jl, jo, time);
}

t.test('bursts of random jumps never move a driver (property, 2,000 seeded bursts)', async (t) => {
  let moved = 0;
  let refused = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const rnd = new Prng(seed);
    const shard = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
    const d = driver(shard);
    t.equal(shard.ingest(d, fix(LAT, LON, NOW_S), NOW_S * 1000), Reason.ok);
    // Up to 60 s of wild fixes, several a second, stamped anywhere from the anchor's second to 60 s on.
    const n = rnd.int(1, 200);
    for (let i = 0; i < n; i++) {
      const r = shard.ingest(d, jump(rnd, LAT, LON, NOW_S + rnd.int(1, 60)), NOW_S * 1000);
      if (r === Reason.tooFast) refused++;
    }
    if (shard.latE6(d) !== LAT || shard.lonE6(d) !== LON || shard.time(d) !== NOW_S) moved++;
  }
  t.equal(moved, 0, 'no burst moved its driver');
  t.ok(refused > 100_000, `every jump was refused as too fast (${refused})`);
});

t.test('jumps mixed with good fixes never move the driver, even a replayed far point', async (t) => {
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = new Prng(seed);
    const shard = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
    const d = driver(shard);
    let lat = LAT;
    let accepted = 0;
    // One far point replayed every second is a consistent track on its own: the good fixes between
    // its copies clear it every time.
    const far = jump(rnd, LAT, LON, 0);
    for (let s = 0; s < 120; s++) {
      const time = NOW_S + s;
      lat += 90; // 10 m a second north
      if (shard.ingest(d, fix(lat, LON, time), NOW_S * 1000) === Reason.ok) accepted++;
      const wild = rnd.int(0, 4);
      for (let j = 0; j < wild; j++) {
        const w = rnd.float() < 0.5 ? jump(rnd, lat, LON, time + 1) : fix(far.lat, far.lon, time + 1);
        shard.ingest(d, w, NOW_S * 1000);
      }
    }
    t.equal(accepted, 120, `seed ${seed}: every good fix accepted`);
    t.equal(shard.latE6(d), lat, `seed ${seed}: the driver is at its last good fix`);
  }
});

t.test('a phone whose first fix was wrong recovers within 15 s of good fixes', async (t) => {
  const shard = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
  const d = driver(shard);
  // A cold start puts the first fix 80 km off.
  t.equal(shard.ingest(d, fix(LAT + 720_000, LON, NOW_S), NOW_S * 1000), Reason.ok);
  let lat = LAT;
  let recoveredAfter = -1;
  for (let s = 1; s <= 30 && recoveredAfter < 0; s++) {
    lat += 90;
    if (shard.ingest(d, fix(lat, LON, NOW_S + s), NOW_S * 1000) === Reason.ok) recoveredAfter = s;
  }
  t.ok(recoveredAfter > 0 && recoveredAfter <= 15, `recovered after ${recoveredAfter} good fixes`);
  t.equal(shard.latE6(d), lat);
  t.equal(shard.time(d), NOW_S + recoveredAfter);
  // From there on, driving goes on as usual.
  t.equal(shard.ingest(d, fix(lat + 90, LON, NOW_S + recoveredAfter + 1), NOW_S * 1000), Reason.ok);
});

t.test('the recovery survives stray jumps mixed into it', async (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const rnd = new Prng(seed);
    const shard = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
    const d = driver(shard);
    t.equal(shard.ingest(d, fix(LAT + 720_000, LON, NOW_S), NOW_S * 1000), Reason.ok);
    let lat = LAT;
    let recoveredAfter = -1;
    for (let s = 1; s <= 40 && recoveredAfter < 0; s++) {
      // Up to three stray jumps may come before the good fix of the same second.
      if (rnd.float() < 0.9) {
        const strays = rnd.int(1, 3);
        for (let j = 0; j < strays; j++) shard.ingest(d, jump(rnd, lat, LON, NOW_S + s), NOW_S * 1000);
      }
      lat += 90;
      if (shard.ingest(d, fix(lat, LON, NOW_S + s), NOW_S * 1000) === Reason.ok) recoveredAfter = s;
    }
    t.ok(recoveredAfter > 0 && recoveredAfter <= 15, `seed ${seed}: recovered after ${recoveredAfter} s`);
    t.equal(shard.latE6(d), lat, `seed ${seed}: at the last good fix`);
  }
});

t.test('a consistent track that is too short or too brief does not re-anchor; a full one does', async (t) => {
  const shard = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
  const d = driver(shard);
  t.equal(shard.ingest(d, fix(LAT, LON, NOW_S), NOW_S * 1000), Reason.ok);
  const far = LAT + 3_000_000;
  // Five consistent fixes within 4 s: not enough time.
  for (let s = 1; s <= 5; s++) t.equal(shard.ingest(d, fix(far, LON, NOW_S + s), 0), Reason.tooFast);
  // Two fixes 10 s apart: enough time, too few fixes.
  const shard2 = new Shard({ trackPoints: 4, idleTimeoutS: 900 });
  const d2 = driver(shard2);
  t.equal(shard2.ingest(d2, fix(LAT, LON, NOW_S), 0), Reason.ok);
  t.equal(shard2.ingest(d2, fix(far, LON, NOW_S + 1), 0), Reason.tooFast);
  t.equal(shard2.ingest(d2, fix(far, LON, NOW_S + 11), 0), Reason.tooFast);
  // The first driver's track goes on to 10 s: the fix that completes it is taken.
  for (let s = 6; s <= 10; s++) t.equal(shard.ingest(d, fix(far, LON, NOW_S + s), 0), Reason.tooFast);
  t.equal(shard.ingest(d, fix(far, LON, NOW_S + 11), 0), Reason.ok);
  t.equal(shard.latE6(d), far);
  const v = shard.view(d);
  t.ok(haversineM(LAT / 1e6, LON / 1e6, v.lat, v.lon) > 300_000, 'moved to the new track');
});
