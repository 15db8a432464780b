import RBush from 'rbush';
import t from 'tap';
import { METRES_PER_DEGREE_LAT, RAD } from '../src/geo/distance.ts';
import { type GeoItem, within } from '../src/geo/knn.ts';
import { Prng } from './support/prng.ts';

// within() against a brute-force filter over every item, including boxes across the date line.

interface Item extends GeoItem {
  id: number;
}

const byId = (a: Item, b: Item): number => a.id - b.id;

function wrapLon(lon: number): number {
  return lon > 180 ? lon - 360 : lon < -180 ? lon + 360 : lon;
}

/** An item with a box padded by up to maxPadM metres per side; the box may poke past +/-180. */
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

function oracle(
  items: readonly Item[],
  minLon: number,
  minLat: number,
  maxLon: number,
  maxLat: number,
): number[] {
  return items
    .filter(
      (it) =>
        it.lat >= minLat &&
        it.lat <= maxLat &&
        (minLon <= maxLon ? it.lon >= minLon && it.lon <= maxLon : it.lon >= minLon || it.lon <= maxLon),
    )
    .map((it) => it.id)
    .sort((a, b) => a - b);
}

function ids(items: readonly Item[]): number[] {
  return items.map((it) => it.id);
}

function sortedIds(items: readonly Item[]): number[] {
  return ids(items).sort((a, b) => a - b);
}

t.test('random boxes anywhere, including across the date line', async (tt) => {
  const prng = new Prng(21);
  const items: Item[] = [];
  for (let i = 0; i < 4000; i++) {
    // Half uniform over the sphere, half within 2 degrees of the date line.
    const lat = Math.asin(2 * prng.float() - 1) / RAD;
    const lon = i % 2 === 0 ? prng.float() * 360 - 180 : wrapLon(180 + (prng.float() * 2 - 1) * 2);
    items.push(makeItem(i, lat, lon, prng, prng.pick([0, 100, 5000])));
  }
  const tree = new RBush<Item>().load(items);
  const failures: string[] = [];
  let crossing = 0;
  let nonEmpty = 0;
  for (let q = 0; q < 1000; q++) {
    const cLat = Math.asin(2 * prng.float() - 1) / RAD;
    const cLon = q % 2 === 0 ? prng.float() * 360 - 180 : wrapLon(180 + (prng.float() * 2 - 1) * 2);
    const halfLat = prng.float() * 10;
    const halfLon = prng.float() * 20;
    const minLat = Math.max(-90, cLat - halfLat);
    const maxLat = Math.min(90, cLat + halfLat);
    const minLon = wrapLon(cLon - halfLon);
    const maxLon = wrapLon(cLon + halfLon);
    if (minLon > maxLon) crossing++;
    const got = within(tree, minLon, minLat, maxLon, maxLat);
    const want = oracle(items, minLon, minLat, maxLon, maxLat);
    if (want.length > 0) nonEmpty++;
    if (sortedIds(got).join(',') !== want.join(',')) {
      failures.push(`${[minLon, minLat, maxLon, maxLat]}: got ${sortedIds(got)} want ${want}`);
    }
    if (got.length !== new Set(got).size) failures.push(`${[minLon, minLat, maxLon, maxLat]}: duplicates`);
  }
  tt.ok(crossing > 200, `${crossing} boxes across the date line`);
  tt.ok(nonEmpty > 600, `${nonEmpty} non-empty answers`);
  tt.strictSame(failures, []);
});

t.test('padded boxes do not leak items whose position is outside', async (tt) => {
  const prng = new Prng(22);
  // 1 km boxes around points 10 m apart: the tree finds many boxes the query only grazes.
  const items: Item[] = [];
  for (let i = 0; i < 2000; i++) {
    items.push(makeItem(i, 48.85 + (i % 50) * 0.0001, 2.35 + Math.floor(i / 50) * 0.0001, prng, 1000));
  }
  const tree = new RBush<Item>().load(items);
  const got = within(tree, 2.351, 48.851, 2.352, 48.852, byId);
  tt.strictSame(ids(got), oracle(items, 2.351, 48.851, 2.352, 48.852));
  tt.ok(got.length > 0 && got.length < 200, `${got.length} inside`);
  tt.ok(
    tree.search({ minX: 2.351, minY: 48.851, maxX: 2.352, maxY: 48.852 }).length > 1000,
    'boxes overlap a lot',
  );
});

t.test('edges are inclusive, on both sides of the date line', async (tt) => {
  const prng = new Prng(23);
  const items = [
    makeItem(1, 10, 170, prng, 50),
    makeItem(2, 20, 180, prng, 50),
    makeItem(3, 15, -180, prng, 50),
    makeItem(4, 15, -170, prng, 50),
    makeItem(5, 15, 0, prng, 50),
    makeItem(6, 9.999999, 175, prng, 50),
    makeItem(7, 15, -169.999999, prng, 50),
  ];
  const tree = new RBush<Item>(4);
  for (const item of items) tree.insert(item);
  tt.strictSame(ids(within(tree, 170, 10, -170, 20, byId)), [1, 2, 3, 4]);
  tt.strictSame(ids(within(tree, 170, 10, 180, 20, byId)), [1, 2], '-180 is not 180 here');
  tt.strictSame(ids(within(tree, -180, 10, -170, 20, byId)), [3, 4]);
  tt.strictSame(ids(within(tree, -180, -90, 180, 90, byId)), [1, 2, 3, 4, 5, 6, 7]);
  tt.strictSame(ids(within(tree, 0, 15, 0, 15)), [5], 'a zero-area box');
  tt.strictSame(within(tree, 1, -90, 2, 90), []);
});

t.test('order: compare sorts, otherwise the caller owns a fresh array', async (tt) => {
  const prng = new Prng(24);
  const items: Item[] = [];
  for (let i = 0; i < 500; i++) items.push(makeItem(499 - i, prng.float(), prng.float(), prng, 200));
  const tree = new RBush<Item>().load(items);
  const sorted = within(tree, 0, 0, 1, 1, byId);
  tt.strictSame(ids(sorted), oracle(items, 0, 0, 1, 1));
  tt.equal(sorted.length, 500);
  const byLat = within(tree, 0, 0, 1, 1, (a, b) => a.lat - b.lat);
  tt.ok(
    byLat.every((it, i) => i === 0 || byLat[i - 1]!.lat <= it.lat),
    'sorted by the callback',
  );
  const a = within(tree, 0, 0, 1, 1);
  const b = within(tree, 0, 0, 1, 1);
  tt.not(a, b);
  tt.strictSame(sortedIds(a), sortedIds(b));
  tt.strictSame(within(new RBush<Item>(), -180, -90, 180, 90), []);
  tt.strictSame(within(new RBush<Item>(), 170, -90, -170, 90), []);
});

t.test('rejects boxes out of range', async (tt) => {
  const tree = new RBush<Item>();
  tt.throws(() => within(tree, 0, -91, 1, 1), RangeError);
  tt.throws(() => within(tree, 0, 0, 1, 91), RangeError);
  tt.throws(() => within(tree, 0, 2, 1, 1), RangeError);
  tt.throws(() => within(tree, -181, 0, 1, 1), RangeError);
  tt.throws(() => within(tree, 0, 0, 181, 1), RangeError);
  tt.throws(() => within(tree, Number.NaN, 0, 1, 1), RangeError);
  tt.throws(() => within(tree, 0, Number.NaN, 1, 1), RangeError);
});
