import t from 'tap';
import { haversineM } from '../src/geo/distance.ts';
import { PointIndex } from '../src/geo/point-index.ts';
import { Prng } from './support/prng.ts';

/**
 * PointIndex against a brute-force oracle (haversine to every point, sorted by distance, then latitude,
 * longitude, then slot), after random inserts, moves across and within leaves, and removals, in cities,
 * hotspots, at the poles and across the date line.
 */

interface Model {
  lat: Map<number, number>;
  lon: Map<number, number>;
}

function oracle(m: Model, lat: number, lon: number, k: number, r: number, filter?: (s: number) => boolean) {
  const all: Array<{ s: number; d: number }> = [];
  for (const [s, latE6] of m.lat) {
    if (filter !== undefined && !filter(s)) continue;
    const lonE6 = m.lon.get(s)!;
    const d = haversineM(lat, lon, latE6 / 1e6, lonE6 / 1e6);
    if (d <= r) all.push({ s, d });
  }
  all.sort(
    (a, b) =>
      a.d - b.d || m.lat.get(a.s)! - m.lat.get(b.s)! || m.lon.get(a.s)! - m.lon.get(b.s)! || a.s - b.s,
  );
  return all.slice(0, k);
}

function e6(x: number): number {
  return Math.round(x * 1e6);
}

function wrap(lon: number): number {
  return lon > 180 ? lon - 360 : lon < -180 ? lon + 360 : lon;
}

type Place = { lat: number; lon: number; dLat: number; dLon: number };
const PLACES: Array<[string, Place]> = [
  ['a city (Paris, 30 km)', { lat: 48.85, lon: 2.35, dLat: 0.15, dLon: 0.2 }],
  ['a hotspot (200 m)', { lat: 40.4168, lon: -3.7038, dLat: 0.001, dLon: 0.001 }],
  ['across the date line', { lat: -17.7, lon: 179.99, dLat: 0.3, dLon: 0.3 }],
  ['near the north pole', { lat: 89.9, lon: 0, dLat: 0.1, dLon: 180 }],
  ['the whole world', { lat: 0, lon: 0, dLat: 90, dLon: 180 }],
];

for (const [name, place] of PLACES) {
  t.test(`nearest and within match brute force: ${name}`, async (t) => {
    const rnd = new Prng(name.length * 7919);
    const idx = new PointIndex(16);
    const m: Model = { lat: new Map(), lon: new Map() };
    const point = (): [number, number] => {
      const lat = Math.max(-90, Math.min(90, place.lat + (rnd.float() * 2 - 1) * place.dLat));
      return [e6(lat), e6(wrap(place.lon + (rnd.float() * 2 - 1) * place.dLon))];
    };
    const N = 3000;
    for (let s = 0; s < N; s++) {
      const [a, b] = point();
      idx.set(s, a, b);
      m.lat.set(s, a);
      m.lon.set(s, b);
    }
    // Churn: moves of a few metres (mostly within a leaf), jumps anywhere, removals and returns; some
    // points at exactly the same position.
    for (let i = 0; i < 20_000; i++) {
      const s = rnd.int(0, N - 1);
      const op = rnd.int(0, 9);
      if (op < 6 && m.lat.has(s)) {
        const a = Math.max(-90e6, Math.min(90e6, m.lat.get(s)! + rnd.int(-100, 100)));
        const b = e6(wrap((m.lon.get(s)! + rnd.int(-100, 100)) / 1e6));
        idx.set(s, a, b);
        m.lat.set(s, a);
        m.lon.set(s, b);
      } else if (op < 8) {
        const [a, b] =
          op === 7 && m.lat.size > 0 ? [m.lat.get(0) ?? point()[0], m.lon.get(0) ?? point()[1]] : point();
        idx.set(s, a, b);
        m.lat.set(s, a);
        m.lon.set(s, b);
      } else {
        idx.remove(s);
        m.lat.delete(s);
        m.lon.delete(s);
      }
    }
    t.equal(idx.check(), m.lat.size, 'every point in the leaf its position descends to');
    t.equal(idx.size, m.lat.size);
    const slots: number[] = [];
    const dists: number[] = [];
    let mismatches = 0;
    for (let q = 0; q < 300; q++) {
      const [a, b] = point();
      const lat = a / 1e6;
      const lon = b / 1e6;
      const k = [1, 10, 100][q % 3]!;
      const r = [500, 3000, 50_000, 2e7][q % 4]!;
      const filter = q % 5 === 0 ? (s: number) => s % 2 === 0 : undefined;
      idx.nearest(lat, lon, k, r, slots, dists, filter, (x, y) => x - y);
      const want = oracle(m, lat, lon, k, r, filter);
      if (slots.join() !== want.map((w) => w.s).join() || dists.join() !== want.map((w) => w.d).join())
        mismatches++;
    }
    t.equal(mismatches, 0, '300 nearest queries equal brute force, order and distances');

    let boxMismatch = 0;
    for (let q = 0; q < 100; q++) {
      const [a, b] = point();
      const w = (rnd.float() * place.dLon) / 2;
      const h = (rnd.float() * place.dLat) / 2;
      const minLat = Math.max(-90, a / 1e6 - h);
      const maxLat = Math.min(90, a / 1e6 + h);
      const minLon = wrap(b / 1e6 - w);
      const maxLon = wrap(b / 1e6 + w);
      const got: number[] = [];
      idx.within(minLon, minLat, maxLon, maxLat, (s) => got.push(s));
      const want: number[] = [];
      for (const [s, latE6] of m.lat) {
        const la = latE6 / 1e6;
        const lo = m.lon.get(s)! / 1e6;
        const inLon = minLon <= maxLon ? lo >= minLon && lo <= maxLon : lo >= minLon || lo <= maxLon;
        if (la >= minLat && la <= maxLat && inLon) want.push(s);
      }
      got.sort((x, y) => x - y);
      if (got.join() !== want.sort((x, y) => x - y).join()) boxMismatch++;
    }
    t.equal(boxMismatch, 0, '100 boxes equal brute force');
  });
}

t.test('a crowd at one spot stays in one deep leaf and still answers', async (t) => {
  const idx = new PointIndex();
  for (let s = 0; s < 500; s++) idx.set(s, 52_520_000, 13_405_000);
  t.equal(idx.check(), 500);
  const slots: number[] = [];
  const dists: number[] = [];
  t.equal(
    idx.nearest(52.52, 13.405, 10, 100, slots, dists, undefined, (a, b) => a - b),
    10,
  );
  t.same(slots, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'ties at one position by the tie-break');
  t.same(dists, Array(10).fill(0));
});

t.test('a move within a leaf does not touch the tree; a move out of it does', async (t) => {
  const idx = new PointIndex();
  for (let s = 0; s < 1000; s++) idx.set(s, 48_850_000 + s * 100, 2_350_000);
  const nodes = idx.nodes;
  idx.set(5, 48_850_000 + 5 * 100 + 1, 2_350_001);
  t.equal(idx.nodes, nodes, 'no node made for a move of a few centimetres');
  idx.set(5, -33_860_000, 151_200_000);
  t.equal(idx.check(), 1000);
  const slots: number[] = [];
  const dists: number[] = [];
  idx.nearest(-33.86, 151.2, 1, 1000, slots, dists);
  t.same(slots, [5], 'found where it went');
});

t.test('bad queries are programmer errors', async (t) => {
  const idx = new PointIndex();
  const o: number[] = [];
  t.throws(() => idx.nearest(91, 0, 1, 1, o, []), RangeError);
  t.throws(() => idx.nearest(0, 181, 1, 1, o, []), RangeError);
  t.throws(() => idx.nearest(0, 0, 1.5, 1, o, []), RangeError);
  t.throws(() => idx.within(0, 10, 1, 5, () => {}), RangeError);
});
