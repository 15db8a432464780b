import t from 'tap';
import { fixOf, type StreamCar } from '../src/web/fixes.js';

/**
 * The pages' reading of a stream's car records (src/web/fixes.js): a whole record is the fix; a move
 * keeps the cab the client has and takes its position and time from its path's last point.
 */

const before: StreamCar = {
  id: 'd1',
  cab: 'C-1',
  lat: 41.3874,
  lon: 2.1686,
  time: 100,
  speed: 30,
  bearing: 90,
  free: true,
  path: [[2.1686, 41.3874, 100]],
};

t.test('a whole record is the fix, whatever was shown before', async (t) => {
  const whole: StreamCar = { ...before, cab: 'C-2', lat: 41.39, time: 101, path: [[2.1686, 41.39, 101]] };
  t.equal(fixOf(whole, before), whole);
  t.equal(fixOf(whole, undefined), whole, 'a car new to the view');
});

t.test("a move: the cab shown, the path's last point as position and time", async (t) => {
  // A road path: its points are on the road, and the car is drawn at the last one.
  const path: Array<[number, number, number]> = [
    [2.1686, 41.3874, 100],
    [2.1691, 41.3877, 100.4],
    [2.1699, 41.3881, 101],
  ];
  const fix = fixOf({ id: 'd1', speed: 42, bearing: 45, free: false, path }, before);
  t.same(fix, {
    id: 'd1',
    cab: 'C-1',
    lat: 41.3881,
    lon: 2.1699,
    time: 101,
    speed: 42,
    bearing: 45,
    free: false,
    path,
  });
  t.equal(
    fixOf({ id: 'd1', speed: 0, bearing: 0, free: true, path: [[2.1686, 41.3874, 102]] }, before)?.time,
    102,
    'at a standstill: the point alone',
  );
});

t.test(
  'a move of a car not shown has no fix (a client that applies every frame never gets one)',
  async (t) => {
    t.equal(fixOf({ id: 'd9', speed: 1, bearing: 2, free: true, path: [[1, 2, 3]] }, undefined), null);
  },
);
