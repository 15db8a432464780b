import t from 'tap';
import { haversineM } from '../src/geo/distance.ts';
import { distanceM, headingOf, type PathPoint, placeOnPath } from '../src/web/motion.js';

/**
 * The pages' motion (src/web/motion.js, a browser module that imports nothing): where a marker is drawn
 * a fraction of the way through the path a frame sent, on straight and road-matched paths. The browser
 * tests check the same on screen; here the multi-point paths OSRM gives are checked point by point.
 */

t.test('a straight path: in proportion, from the previous fix to this one', async (t) => {
  const path: PathPoint[] = [
    [2.17, 41.39, 100],
    [2.171, 41.39, 101],
  ];
  t.same(placeOnPath(path, 0), { lat: 41.39, lon: 2.17, heading: 90 });
  const half = placeOnPath(path, 0.5);
  t.ok(Math.abs(half.lon - 2.1705) < 1e-12 && half.lat === 41.39, 'half way at half time');
  t.same(placeOnPath(path, 1), { lat: 41.39, lon: 2.171, heading: 90 });
  t.same(placeOnPath(path, 7), placeOnPath(path, 1), 'past the end: at the fix');
  t.same(placeOnPath(path, -1), placeOnPath(path, 0), 'before the start: at the previous fix');
});

t.test('a path along the roads: each segment in its time, turning at the corner', async (t) => {
  // East for 0.25 s, then north for 0.75 s (t spread by distance, as the path matcher spreads it).
  const path: PathPoint[] = [
    [2.0, 41.0, 1000],
    [2.001, 41.0, 1000.25],
    [2.001, 41.003, 1001],
  ];
  const near = (a: { lat: number; lon: number }, lat: number, lon: number): boolean =>
    Math.abs(a.lat - lat) < 1e-9 && Math.abs(a.lon - lon) < 1e-9;
  const early = placeOnPath(path, 0.125);
  t.ok(near(early, 41.0, 2.0005), 'half the first segment at half its time');
  t.equal(early.heading, 90, 'heading east');
  t.ok(near(placeOnPath(path, 0.25), 41.0, 2.001), 'at the corner at its time');
  const late = placeOnPath(path, 0.625);
  t.ok(near(late, 41.0015, 2.001), 'half the second segment at half its time');
  t.equal(late.heading, 0, 'heading north after the corner');
});

t.test('degenerate paths: one point, times that do not advance, a standstill', async (t) => {
  t.same(placeOnPath([[2, 41, 5]], 0.3), { lat: 41, lon: 2, heading: null }, 'one point: there');
  const sameTime: PathPoint[] = [
    [2, 41, 5],
    [2.001, 41, 5],
    [2.002, 41, 5],
  ];
  t.ok(Math.abs(placeOnPath(sameTime, 0.75).lon - 2.0015) < 1e-12, 'by the points when t does not move');
  t.equal(headingOf([2, 41, 0], [2.000001, 41, 1]), null, 'under half a metre: no heading');
  t.equal(Math.round(headingOf([2, 41, 0], [2, 40.99, 1])!), 180, 'south');
  t.equal(Math.round(headingOf([2, 41, 0], [1.99, 41, 1])!), 270, 'west');
});

t.test("distances are the server's great-circle distances", async (t) => {
  const cases: Array<[number, number, number, number]> = [
    [41.3917, 2.1649, 41.4, 2.18],
    [0, 179.99, 0, -179.99],
    [-33.86, 151.2, 51.5, -0.12],
  ];
  for (const [a, b, c, d] of cases) {
    t.ok(Math.abs(distanceM(a, b, c, d) - haversineM(a, b, c, d)) < 1e-6, `${a},${b} to ${c},${d}`);
  }
});
