import RBush from 'rbush';
// @ts-expect-error rbush-knn ships no type declarations
import rbushKnn from 'rbush-knn';
import t from 'tap';
import { EARTH_RADIUS_M, haversineM, METRES_PER_DEGREE_LAT, RAD } from '../src/geo/distance.ts';
import { boxDistanceM, type GeoItem, type Neighbour, nearest } from '../src/geo/knn.ts';
import { Prng } from './support/prng.ts';

// nearest() against a brute-force oracle: haversine to every item, sort, keep k within the radius.

interface Item extends GeoItem {
  id: number;
}

const planarKnn = rbushKnn as <T>(tree: RBush<T>, x: number, y: number, n: number) => T[];

const byId = (a: Item, b: Item): number => a.id - b.id;

/** The documented order: distance, lat, lon, then the caller's tie-break. */
function oracle(
  items: readonly Item[],
  lat: number,
  lon: number,
  k: number,
  maxDistanceM: number,
  filter?: (item: Item) => boolean,
): Array<Neighbour<Item>> {
  const all: Array<Neighbour<Item>> = [];
  for (const item of items) {
    if (filter !== undefined && !filter(item)) continue;
    const distance = haversineM(lat, lon, item.lat, item.lon);
    if (distance <= maxDistanceM) all.push({ item, distance });
  }
  all.sort(
    (a, b) =>
      a.distance - b.distance || a.item.lat - b.item.lat || a.item.lon - b.item.lon || a.item.id - b.item.id,
  );
  return all.slice(0, k);
}

function wrapLon(lon: number): number {
  return lon > 180 ? lon - 360 : lon < -180 ? lon + 360 : lon;
}

/**
 * An item at (lat, lon) with a box padded by up to maxPadM metres on each side, independently, as the
 * store pads drivers. The box may poke past +/-180 or +/-90; it always contains the position.
 */
function makeItem(id: number, lat: number, lon: number, prng: Prng, maxPadM: number): Item {
  const latPad = maxPadM / METRES_PER_DEGREE_LAT;
  const lonPad = Math.min(latPad / Math.max(Math.cos(lat * RAD), 0.01), 10);
  return {
    id,
    lat,
    lon,
    minX: lon - prng.float() * lonPad,
    minY: lat - prng.float() * latPad,
    maxX: lon + prng.float() * lonPad,
    maxY: lat + prng.float() * latPad,
  };
}

/** n items uniform in [lat +/- dLat] x [lon +/- dLon], wrapped across the date line, clamped at the poles. */
function cloud(prng: Prng, n: number, lat: number, lon: number, dLat: number, dLon: number, maxPadM: number) {
  const items: Item[] = [];
  for (let i = 0; i < n; i++) {
    const pLat = Math.max(-90, Math.min(90, lat + (prng.float() * 2 - 1) * dLat));
    const pLon = wrapLon(lon + (prng.float() * 2 - 1) * dLon);
    items.push(makeItem(i, pLat, pLon, prng, maxPadM));
  }
  return items;
}

function treeOf(items: readonly Item[]): RBush<Item> {
  return new RBush<Item>().load(items);
}

interface Query {
  lat: number;
  lon: number;
  k: number;
  radius: number;
}

/** Runs every query against nearest() and the oracle; returns the disagreements (want: none). */
function compare(tree: RBush<Item>, items: readonly Item[], queries: readonly Query[]): string[] {
  const failures: string[] = [];
  for (const { lat, lon, k, radius } of queries) {
    const got = nearest(tree, lat, lon, k, radius, undefined, undefined, byId);
    const want = oracle(items, lat, lon, k, radius);
    const gotIds = got.map((r) => r.item.id).join(',');
    const wantIds = want.map((r) => r.item.id).join(',');
    let worst = 0;
    for (let i = 0; i < Math.min(got.length, want.length); i++) {
      worst = Math.max(worst, Math.abs(got[i]!.distance - want[i]!.distance));
    }
    if (gotIds !== wantIds || worst > 1e-6) {
      failures.push(`(${lat}, ${lon}) k=${k} r=${radius}: got [${gotIds}] want [${wantIds}] worst ${worst}`);
    }
  }
  return failures;
}

/** k in {1, 10, 100} crossed with the radii, at random points in the box. */
function queries(
  prng: Prng,
  n: number,
  lat: number,
  lon: number,
  dLat: number,
  dLon: number,
  radii: number[],
) {
  const out: Query[] = [];
  for (let i = 0; i < n; i++) {
    const qLat = Math.max(-90, Math.min(90, lat + (prng.float() * 2 - 1) * dLat));
    const qLon = wrapLon(lon + (prng.float() * 2 - 1) * dLon);
    for (const k of [1, 10, 100]) for (const radius of radii) out.push({ lat: qLat, lon: qLon, k, radius });
  }
  return out;
}

function ids(found: ReadonlyArray<Neighbour<Item>>): number[] {
  return found.map((r) => r.item.id);
}

t.test('around the equator, point boxes and padded boxes', async (tt) => {
  const prng = new Prng(11);
  for (const pad of [0, 50, 2000]) {
    const items = cloud(prng, 5000, 0, 0, 0.5, 0.5, pad);
    const tree = treeOf(items);
    const qs = queries(prng, 150, 0, 0, 0.6, 0.6, [Number.POSITIVE_INFINITY, 3000, 20000]);
    tt.strictSame(compare(tree, items, qs), [], `pad ${pad} m, ${qs.length} queries`);
  }
});

t.test('at 60 degrees north the planar order is wrong and ours is not', async (tt) => {
  // A degree of longitude is half as long as a degree of latitude here.
  const q = { lat: 60, lon: 10 };
  const east = makeItem(1, 60, 10.009, new Prng(1), 0); // 0.009 deg east: 500 m
  const north = makeItem(2, 60.007, 10, new Prng(1), 0); // 0.007 deg north: 778 m
  const small = treeOf([east, north]);
  tt.strictSame(
    planarKnn(small, q.lon, q.lat, 2).map((i) => i.id),
    [2, 1],
    'rbush-knn ranks by degrees',
  );
  const found = nearest(small, q.lat, q.lon, 2, Number.POSITIVE_INFINITY);
  tt.strictSame(ids(found), [1, 2]);
  tt.ok(Math.abs(found[0]!.distance - haversineM(60, 10, 60, 10.009)) <= 1e-6);
  tt.equal(Math.round(found[0]!.distance), 500);
  tt.equal(Math.round(found[1]!.distance), 778);

  // Random data: count the queries where the planar top 10 differs from the oracle's.
  const prng = new Prng(60);
  const items = cloud(prng, 5000, 60, 10, 0.1, 0.2, 0);
  const tree = treeOf(items);
  let planarWrong = 0;
  const qs: Query[] = [];
  for (let i = 0; i < 300; i++) {
    const lat = 60 + (prng.float() * 2 - 1) * 0.1;
    const lon = 10 + (prng.float() * 2 - 1) * 0.2;
    qs.push({ lat, lon, k: 10, radius: Number.POSITIVE_INFINITY });
    const planar = planarKnn(tree, lon, lat, 10).map((i) => i.id);
    const want = oracle(items, lat, lon, 10, Number.POSITIVE_INFINITY).map((r) => r.item.id);
    if (planar.join(',') !== want.join(',')) planarWrong++;
  }
  tt.ok(planarWrong > 150, `planar order wrong for ${planarWrong} of 300 queries`);
  tt.strictSame(compare(tree, items, qs), [], 'ours matches the oracle on all 300');

  const padded = cloud(prng, 5000, 60, 10, 0.1, 0.2, 300);
  tt.strictSame(
    compare(treeOf(padded), padded, queries(prng, 100, 60, 10, 0.1, 0.2, [Number.POSITIVE_INFINITY, 2000])),
    [],
  );
});

t.test('across the date line', async (tt) => {
  const prng = new Prng(180);
  // The nearest item to lon 179.99 is at -179.99, 2.2 km east over the line, not 179.95 to the west.
  const over = makeItem(1, 0, -179.99, prng, 0);
  const sameSide = makeItem(2, 0, 179.95, prng, 0);
  const small = treeOf([over, sameSide]);
  const found = nearest(small, 0, 179.99, 2, Number.POSITIVE_INFINITY);
  tt.strictSame(ids(found), [1, 2]);
  tt.ok(Math.abs(found[0]!.distance - 0.02 * METRES_PER_DEGREE_LAT) <= 1e-3, `${found[0]!.distance}`);
  tt.strictSame(ids(nearest(small, 0, 179.99, 2, 3000)), [1]);
  tt.strictSame(ids(nearest(small, 0, -179.96, 1, 10000)), [1]);

  for (const lat of [0, 40, -65]) {
    for (const pad of [0, 500]) {
      const items = cloud(prng, 4000, lat, 180, 0.3, 0.6, pad);
      const tree = treeOf(items);
      const qs = queries(prng, 100, lat, 180, 0.3, 0.6, [Number.POSITIVE_INFINITY, 5000]);
      qs.push({ lat, lon: 179.99, k: 10, radius: 5000 }, { lat, lon: -179.99, k: 10, radius: 5000 });
      qs.push({ lat, lon: 180, k: 10, radius: 5000 }, { lat, lon: -180, k: 10, radius: 5000 });
      tt.strictSame(compare(tree, items, qs), [], `lat ${lat}, pad ${pad} m`);
    }
  }
});

t.test('near the poles', async (tt) => {
  const prng = new Prng(90);
  for (const pole of [90, -90]) {
    // Within 1 degree of the pole at every longitude, boxes up to 10 degrees of longitude wide.
    const items = cloud(prng, 4000, pole, 0, 1, 180, 1000);
    const tree = treeOf(items);
    const qs = queries(prng, 100, pole, 0, 1.2, 180, [Number.POSITIVE_INFINITY, 20000]);
    for (const lon of [-180, -90, 0, 45, 180]) qs.push({ lat: pole, lon, k: 10, radius: 50000 });
    tt.strictSame(compare(tree, items, qs), [], `pole ${pole}`);
  }
});

t.test('over the whole globe, up to the antipodes', async (tt) => {
  const prng = new Prng(4);
  const items: Item[] = [];
  for (let i = 0; i < 3000; i++) {
    items.push(makeItem(i, Math.asin(2 * prng.float() - 1) / RAD, prng.float() * 360 - 180, prng, 20000));
  }
  const tree = treeOf(items);
  const qs: Query[] = [];
  for (let i = 0; i < 100; i++) {
    const lat = Math.asin(2 * prng.float() - 1) / RAD;
    const lon = prng.float() * 360 - 180;
    qs.push({ lat, lon, k: 100, radius: Number.POSITIVE_INFINITY });
    qs.push({ lat, lon, k: 10, radius: 1_000_000 });
    // The items farthest away: their antipodal neighbours are the nearest to the antipode.
    qs.push({ lat: -lat, lon: wrapLon(lon + 180), k: 3000, radius: Number.POSITIVE_INFINITY });
  }
  tt.strictSame(compare(tree, items, qs), []);
});

t.test('radius: an item exactly at the limit is in, a hair further is out', async (tt) => {
  const prng = new Prng(5);
  const items = cloud(prng, 2000, 48.85, 2.35, 0.1, 0.15, 100);
  const tree = treeOf(items);
  const failures: string[] = [];
  for (let i = 0; i < 200; i++) {
    const lat = 48.85 + (prng.float() * 2 - 1) * 0.1;
    const lon = 2.35 + (prng.float() * 2 - 1) * 0.15;
    const all = oracle(items, lat, lon, 2000, Number.POSITIVE_INFINITY);
    const j = 1 + (i % 20);
    const edge = all[j]!.distance;
    const atEdge = ids(nearest(tree, lat, lon, 100, edge, undefined, undefined, byId));
    const want = ids(all.filter((r) => r.distance <= edge));
    if (atEdge.join(',') !== want.join(',') || atEdge.length < j + 1) failures.push(`at ${edge}: ${atEdge}`);
    const inside = ids(nearest(tree, lat, lon, 100, edge - 1e-7, undefined, undefined, byId));
    const wantInside = ids(all.filter((r) => r.distance <= edge - 1e-7));
    if (inside.join(',') !== wantInside.join(',')) failures.push(`inside ${edge}: ${inside}`);
  }
  tt.strictSame(failures, []);
  tt.strictSame(compare(tree, items, [{ lat: 48.85, lon: 2.35, k: 10, radius: 0 }]), []);
});

t.test('ties: equal distances are ordered by lat, lon, then tieBreak', async (tt) => {
  const prng = new Prng(6);
  // Four points 0.01 degree from the origin in each direction are at bit-identical distances.
  const items = [
    makeItem(10, 0.01, 0, prng, 10),
    makeItem(11, 0, 0.01, prng, 10),
    makeItem(12, -0.01, 0, prng, 10),
    makeItem(13, 0, -0.01, prng, 10),
    makeItem(14, 0, 0.01, prng, 10), // same place as 11
    makeItem(9, 0, 0.01, prng, 10), // and again, with a smaller id
    makeItem(20, 0.02, 0, prng, 10),
  ];
  const tree = new RBush<Item>(4);
  for (const item of items) tree.insert(item);
  const d = haversineM(0, 0, 0.01, 0);
  tt.equal(haversineM(0, 0, 0, 0.01), d);
  tt.equal(haversineM(0, 0, -0.01, 0), d);
  const all = nearest(tree, 0, 0, 10, Number.POSITIVE_INFINITY, undefined, undefined, byId);
  tt.strictSame(ids(all), [12, 13, 9, 11, 14, 10, 20]);
  for (let k = 1; k <= 7; k++) {
    tt.strictSame(
      ids(nearest(tree, 0, 0, k, d, undefined, undefined, byId)),
      [12, 13, 9, 11, 14, 10].slice(0, k),
    );
  }
  // Built in a different order, the answer is the same.
  const other = treeOf([...items].reverse());
  tt.strictSame(ids(nearest(other, 0, 0, 4, d, undefined, undefined, byId)), [12, 13, 9, 11]);
  tt.strictSame(ids(nearest(other, 0, 0, 2, d)), [12, 13], 'lat and lon alone settle distinct positions');
});

t.test('empty tree, k = 0 and k larger than the tree', async (tt) => {
  const empty = new RBush<Item>();
  tt.strictSame(nearest(empty, 0, 0, 10, Number.POSITIVE_INFINITY), []);
  tt.strictSame(nearest(empty, 90, 180, 1, 1000), []);

  const prng = new Prng(8);
  const items = cloud(prng, 37, 10, 10, 0.1, 0.1, 100);
  const tree = treeOf(items);
  tt.strictSame(nearest(tree, 10, 10, 0, Number.POSITIVE_INFINITY), []);
  const all = nearest(tree, 10, 10, 1000, Number.POSITIVE_INFINITY, undefined, undefined, byId);
  tt.equal(all.length, 37);
  tt.strictSame(compare(tree, items, [{ lat: 10, lon: 10, k: 1000, radius: Number.POSITIVE_INFINITY }]), []);
  const every = nearest(tree, 10, 10, Number.POSITIVE_INFINITY, 5000, undefined, undefined, byId);
  tt.strictSame(ids(every), ids(oracle(items, 10, 10, 1000, 5000)));
  tt.ok(every.length > 0 && every.length < 37, `${every.length} within 5 km`);

  const one = treeOf([makeItem(1, 10, 10, prng, 0)]);
  tt.strictSame(ids(nearest(one, 10, 10, 5, 0)), [1]);
  tt.equal(nearest(one, 10, 10, 5, 0)[0]!.distance, 0);
});

t.test('filter skips items without shortening the answer', async (tt) => {
  const prng = new Prng(9);
  const items = cloud(prng, 3000, -33.87, 151.21, 0.1, 0.1, 200);
  const tree = treeOf(items);
  const even = (item: Item): boolean => item.id % 2 === 0;
  const failures: string[] = [];
  for (let i = 0; i < 200; i++) {
    const lat = -33.87 + (prng.float() * 2 - 1) * 0.1;
    const lon = 151.21 + (prng.float() * 2 - 1) * 0.1;
    const got = ids(nearest(tree, lat, lon, 10, 5000, even, undefined, byId));
    const want = ids(oracle(items, lat, lon, 10, 5000, even));
    if (got.join(',') !== want.join(',')) failures.push(`${lat},${lon}: ${got} vs ${want}`);
  }
  tt.strictSame(failures, []);
  tt.strictSame(
    nearest(tree, -33.87, 151.21, 10, 5000, () => false),
    [],
  );
});

t.test('out is refilled and its entries reused', async (tt) => {
  const prng = new Prng(10);
  const items = cloud(prng, 500, 0, 0, 0.1, 0.1, 100);
  const tree = treeOf(items);
  const out: Array<Neighbour<Item>> = [];
  const first = nearest(tree, 0, 0, 10, Number.POSITIVE_INFINITY, undefined, out, byId);
  tt.equal(first, out);
  tt.equal(out.length, 10);
  const entries = new Set(out);
  const second = nearest(tree, 0.05, 0.05, 5, Number.POSITIVE_INFINITY, undefined, out, byId);
  tt.equal(second, out);
  tt.equal(out.length, 5);
  tt.ok(
    out.every((e) => entries.has(e)),
    'no new entry objects',
  );
  tt.strictSame(ids(out), ids(oracle(items, 0.05, 0.05, 5, Number.POSITIVE_INFINITY)));
  nearest(tree, 0.05, 0.05, 5, 1, undefined, out);
  tt.equal(out.length, 0);
});

t.test('a callback may itself call nearest()', async (tt) => {
  const prng = new Prng(12);
  const items = cloud(prng, 500, 0, 0, 0.1, 0.1, 100);
  const tree = treeOf(items);
  const inner: number[][] = [];
  const filter = (item: Item): boolean => {
    if (inner.length < 3) inner.push(ids(nearest(tree, item.lat, item.lon, 2, Number.POSITIVE_INFINITY)));
    return true;
  };
  const got = nearest(tree, 0, 0, 10, Number.POSITIVE_INFINITY, filter, undefined, byId);
  tt.strictSame(ids(got), ids(oracle(items, 0, 0, 10, Number.POSITIVE_INFINITY)));
  tt.equal(inner.length, 3);
  tt.strictSame(ids(nearest(tree, 0, 0, 10, Number.POSITIVE_INFINITY, undefined, undefined, byId)), ids(got));
});

t.test('items moving inside their boxes, inserts and removes (the store pattern)', async (tt) => {
  const prng = new Prng(13);
  const padDeg = 150 / METRES_PER_DEGREE_LAT;
  const tree = new RBush<Item>();
  const live = new Map<number, Item>();
  let nextId = 0;
  const failures: string[] = [];
  for (let step = 0; step < 3000; step++) {
    const r = prng.float();
    if (r < 0.3 || live.size < 50) {
      const lat = 52.5 + (prng.float() * 2 - 1) * 0.1;
      const lon = 13.4 + (prng.float() * 2 - 1) * 0.15;
      const item: Item = {
        id: nextId++,
        lat,
        lon,
        minX: lon - padDeg * 1.7,
        minY: lat - padDeg,
        maxX: lon + padDeg * 1.7,
        maxY: lat + padDeg,
      };
      tree.insert(item);
      live.set(item.id, item);
    } else if (r < 0.4) {
      const item = prng.pick([...live.values()]);
      tree.remove(item);
      live.delete(item.id);
    } else {
      // Move within the box without touching the tree, as the store does for small moves.
      const item = prng.pick([...live.values()]);
      item.lat = item.minY + prng.float() * (item.maxY - item.minY);
      item.lon = item.minX + prng.float() * (item.maxX - item.minX);
    }
    if (step % 10 === 0) {
      const lat = 52.5 + (prng.float() * 2 - 1) * 0.1;
      const lon = 13.4 + (prng.float() * 2 - 1) * 0.15;
      failures.push(
        ...compare(
          tree,
          [...live.values()],
          [{ lat, lon, k: 1 + (step % 30), radius: 1000 + (step % 7) * 500 }],
        ),
      );
    }
  }
  tt.strictSame(failures, []);
});

t.test('rejects arguments out of range', async (tt) => {
  const tree = treeOf([]);
  tt.throws(() => nearest(tree, 90.5, 0, 1, 1), RangeError);
  tt.throws(() => nearest(tree, Number.NaN, 0, 1, 1), RangeError);
  tt.throws(() => nearest(tree, 0, -180.5, 1, 1), RangeError);
  tt.throws(() => nearest(tree, 0, 0, -1, 1), RangeError);
  tt.throws(() => nearest(tree, 0, 0, 1.5, 1), RangeError);
  tt.throws(() => nearest(tree, 0, 0, Number.NaN, 1), RangeError);
  tt.throws(() => nearest(tree, 0, 0, 1, -1), RangeError);
  tt.throws(() => nearest(tree, 0, 0, 1, Number.NaN), RangeError);
});

t.test('the bound is in the radius units the caller expects (sanity)', async (tt) => {
  // 1 km north of Paris is 1 km away, whatever the tree looks like.
  const lat = 48.85 + 1000 / (EARTH_RADIUS_M * RAD);
  const tree = treeOf([makeItem(1, lat, 2.35, new Prng(1), 50)]);
  tt.strictSame(ids(nearest(tree, 48.85, 2.35, 1, 1000.000001)), [1]);
  tt.strictSame(ids(nearest(tree, 48.85, 2.35, 1, 999.999)), []);
});

t.test('boxDistanceM is the distance to the nearest point of the box (property)', async (tt) => {
  const prng = new Prng(14);
  const failures: string[] = [];
  const edgeSteps = 4000;
  for (let c = 0; c < 600; c++) {
    // Boxes from 10 m to 30 degrees, anywhere: across the date line, past it, over a pole.
    const size = 10 ** (prng.float() * 5.5 - 4);
    const cLat = Math.asin(2 * prng.float() - 1) / RAD;
    const cLon = prng.float() * 360 - 180;
    const minLat = Math.max(-90, cLat - prng.float() * size);
    const maxLat = Math.min(90, cLat + prng.float() * size);
    const minLon = cLon - prng.float() * size * 2;
    const maxLon = cLon + prng.float() * size * 2;
    // Queries near the box (the cases the search meets most) and anywhere.
    const near = c % 3 !== 0;
    const qLat = near
      ? Math.max(-90, Math.min(90, cLat + (prng.float() * 2 - 1) * size * 3))
      : Math.asin(2 * prng.float() - 1) / RAD;
    const qLon = near ? wrapLon(cLon + (prng.float() * 2 - 1) * size * 6) : prng.float() * 360 - 180;

    // Brute force: the nearest point is on the boundary (or the query is inside).
    let best = Number.POSITIVE_INFINITY;
    let step = 0;
    const inLon = (((qLon - minLon) % 360) + 360) % 360 <= maxLon - minLon;
    if (inLon && qLat >= minLat && qLat <= maxLat) best = 0;
    for (let i = 0; i <= edgeSteps; i++) {
      const f = i / edgeSteps;
      const lat = minLat + f * (maxLat - minLat);
      const lon = minLon + f * (maxLon - minLon);
      best = Math.min(
        best,
        haversineM(qLat, qLon, lat, wrapLon(minLon)),
        haversineM(qLat, qLon, lat, wrapLon(maxLon)),
        haversineM(qLat, qLon, minLat, wrapLon(lon)),
        haversineM(qLat, qLon, maxLat, wrapLon(lon)),
      );
      if (inLon) best = Math.min(best, haversineM(qLat, qLon, lat, qLon));
    }
    // Brute force misses the true minimum by at most half a step along an edge.
    step = Math.max(
      haversineM(minLat, 0, maxLat, 0),
      haversineM(minLat, minLon, minLat, maxLon),
      haversineM(maxLat, minLon, maxLat, maxLon),
    );
    const tolerance = step / edgeSteps + 1e-6;
    const boxLon = (lon: number) => wrapLon(lon);
    // minLon > maxLon is the date-line form of a box that extends past 180.
    const bound =
      maxLon - minLon >= 360
        ? boxDistanceM(qLat, qLon, -180, minLat, 180, maxLat)
        : boxDistanceM(qLat, qLon, boxLon(minLon), minLat, boxLon(maxLon), maxLat);
    if (!(bound <= best + 1e-6 && best - bound <= tolerance)) {
      failures.push(`box ${[minLon, minLat, maxLon, maxLat]} query ${qLat},${qLon}: ${bound} vs ${best}`);
    }
  }
  tt.strictSame(failures, []);
  tt.equal(boxDistanceM(10, 10, 9, 9, 11, 11), 0);
  tt.equal(boxDistanceM(0, 179.5, 179, -1, -179, 1), 0, 'inside a box across the date line');
  tt.ok(Math.abs(boxDistanceM(0, 0, 1, -1, 2, 1) - METRES_PER_DEGREE_LAT) <= 1e-6, 'one degree east');
  tt.ok(
    Math.abs(boxDistanceM(0, -179.5, 170, -1, 179, 1) - 1.5 * METRES_PER_DEGREE_LAT) <= 1e-6,
    'over the line',
  );
  tt.throws(() => boxDistanceM(91, 0, 0, 0, 1, 1), RangeError);
});
