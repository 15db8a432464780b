import { mkdirSync, writeFileSync } from 'node:fs';
import RBush from 'rbush';
// @ts-expect-error rbush-knn ships no type declarations
import rbushKnn from 'rbush-knn';
import { METRES_PER_DEGREE_LAT, metresPerDegreeLon } from '../src/geo/distance.ts';
import { type GeoItem, type Neighbour, nearest } from '../src/geo/knn.ts';
import { Prng } from '../test/support/prng.ts';

// One question: what does ranking by great-circle distance cost per query, against rbush-knn's planar
// kNN (which ranks by degrees) on the same tree? Nearest 10 within 1 km and 3 km among 100k and 1M
// drivers clustered in a 30 km x 30 km city at Paris's latitude, boxes padded by 100 m as the store does.
// Run: node_modules/.bin/node bench/knn.ts [--sizes 100000,1000000] [--queries 20000] [--rounds 7]
// Result: bench/results/knn.json

// bench/run.ts passes smaller figures (--queries, --rounds, --sizes) to fit its time budget.
const flag = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
};
const SEED = 0x6e0;
const SIZES = flag('sizes', '100000,1000000').split(',').map(Number);
const RADII_M = [1000, 3000];
const K = 10;
const QUERIES = Number(flag('queries', '20000'));
const WARMUP_ROUNDS = Math.min(3, Number(flag('rounds', '7')));
const ROUNDS = Number(flag('rounds', '7'));
const CENTRE_LAT = 48.85;
const CENTRE_LON = 2.35;
const HALF_SIDE_M = 15_000;
const PAD_M = 100;
const HOTSPOTS = 40;

const planarKnn = rbushKnn as <T>(
  tree: RBush<T>,
  x: number,
  y: number,
  n: number,
  predicate: undefined,
  maxDistance: number,
) => T[];

/** One shape for every item, as the store's Driver has. */
class Item implements GeoItem {
  id: number;
  lat: number;
  lon: number;
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;

  constructor(id: number, lat: number, lon: number) {
    this.id = id;
    this.lat = lat;
    this.lon = lon;
    const padLat = PAD_M / METRES_PER_DEGREE_LAT;
    const padLon = PAD_M / metresPerDegreeLon(lat);
    this.minX = lon - padLon;
    this.minY = lat - padLat;
    this.maxX = lon + padLon;
    this.maxY = lat + padLat;
  }
}

const dLat = HALF_SIDE_M / METRES_PER_DEGREE_LAT;
const dLon = HALF_SIDE_M / metresPerDegreeLon(CENTRE_LAT);

/**
 * A city: 70 % of points around hotspots (stations, airports, the centre; Gaussian, sigma 300 m to
 * 1.5 km), the rest uniform over the square. Queries come from the same distribution: riders are where
 * drivers are.
 */
function cityPoints(rnd: Prng, n: number): Float64Array {
  const spots: number[] = [];
  for (let i = 0; i < HOTSPOTS; i++) {
    spots.push(
      CENTRE_LAT + (rnd.float() * 2 - 1) * dLat * 0.8,
      CENTRE_LON + (rnd.float() * 2 - 1) * dLon * 0.8,
    );
    spots.push(300 + rnd.float() * 1200);
  }
  const out = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) {
    let lat: number;
    let lon: number;
    if (rnd.chance(0.7)) {
      const s = rnd.int(0, HOTSPOTS - 1) * 3;
      const sigma = spots[s + 2]!;
      // Box-Muller
      const r = Math.sqrt(-2 * Math.log(1 - rnd.float())) * sigma;
      const a = 2 * Math.PI * rnd.float();
      lat = spots[s]! + (r * Math.sin(a)) / METRES_PER_DEGREE_LAT;
      lon = spots[s + 1]! + (r * Math.cos(a)) / metresPerDegreeLon(CENTRE_LAT);
      lat = Math.min(CENTRE_LAT + dLat, Math.max(CENTRE_LAT - dLat, lat));
      lon = Math.min(CENTRE_LON + dLon, Math.max(CENTRE_LON - dLon, lon));
    } else {
      lat = CENTRE_LAT + (rnd.float() * 2 - 1) * dLat;
      lon = CENTRE_LON + (rnd.float() * 2 - 1) * dLon;
    }
    out[2 * i] = lat;
    out[2 * i + 1] = lon;
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

function usPerQuery(round: () => number): number {
  const start = process.hrtime.bigint();
  round();
  return Number(process.hrtime.bigint() - start) / 1000 / QUERIES;
}

const rnd = new Prng(SEED);
const runs = [];
for (const size of SIZES) {
  const points = cityPoints(rnd, size);
  const items: Item[] = new Array(size);
  for (let i = 0; i < size; i++) items[i] = new Item(i, points[2 * i]!, points[2 * i + 1]!);
  const tree = new RBush<Item>().load(items);
  const queries = cityPoints(rnd, QUERIES);

  for (const radiusM of RADII_M) {
    const out: Array<Neighbour<Item>> = [];
    // rbush-knn's radius is in degrees; a degree of latitude is the generous reading of it.
    const radiusDeg = radiusM / METRES_PER_DEGREE_LAT;

    // Each round folds result ids into a checksum so the work cannot be optimised away.
    const roundOurs = (): number => {
      let sum = 0;
      for (let q = 0; q < QUERIES; q++) {
        const found = nearest(tree, queries[2 * q]!, queries[2 * q + 1]!, K, radiusM, undefined, out);
        for (let i = 0; i < found.length; i++) sum = (sum + found[i]!.item.id) | 0;
      }
      return sum;
    };
    const roundPlanar = (): number => {
      let sum = 0;
      for (let q = 0; q < QUERIES; q++) {
        const found = planarKnn(tree, queries[2 * q + 1]!, queries[2 * q]!, K, undefined, radiusDeg);
        for (let i = 0; i < found.length; i++) sum = (sum + found[i]!.id) | 0;
      }
      return sum;
    };

    // How often the planar answer (by position order) differs from the geographic one.
    let differ = 0;
    let found = 0;
    for (let q = 0; q < QUERIES; q++) {
      const lat = queries[2 * q]!;
      const lon = queries[2 * q + 1]!;
      const ours = nearest(tree, lat, lon, K, radiusM).map((r) => r.item.id);
      found += ours.length;
      const planar = planarKnn(tree, lon, lat, K, undefined, radiusDeg).map((it) => it.id);
      if (ours.join(',') !== planar.join(',')) differ++;
    }

    for (let i = 0; i < WARMUP_ROUNDS; i++) {
      roundOurs();
      roundPlanar();
    }
    // Interleaved rounds, so that a slow patch of the machine hits both alike.
    const ours: number[] = [];
    const planar: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      ours.push(usPerQuery(roundOurs));
      planar.push(usPerQuery(roundPlanar));
    }
    const oursUs = median(ours);
    const planarUs = median(planar);
    const run = {
      items: size,
      k: K,
      radiusM,
      meanFound: Number((found / QUERIES).toFixed(2)),
      geographicUsPerQuery: Number(oursUs.toFixed(2)),
      rbushKnnPlanarUsPerQuery: Number(planarUs.toFixed(2)),
      ratio: Number((oursUs / planarUs).toFixed(2)),
      planarOrderDiffers: Number((differ / QUERIES).toFixed(3)),
    };
    runs.push(run);
    console.log(run);
  }
}

const result = {
  question: 'us per nearest-10 query: geographic best-first kNN vs rbush-knn (planar) on the same tree',
  node: process.version,
  seed: SEED,
  city: { centreLat: CENTRE_LAT, centreLon: CENTRE_LON, sideM: 2 * HALF_SIDE_M, hotspots: HOTSPOTS },
  padM: PAD_M,
  queries: QUERIES,
  rounds: ROUNDS,
  runs,
  date: new Date().toISOString(),
};

const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL('knn.json', dir), `${JSON.stringify(result, null, 2)}\n`);
console.log(result);
