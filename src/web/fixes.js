// @ts-check

/**
 * A stream frame's car records as the car's fix (GET /v1/stream, the StreamFrame schema in
 * /openapi.json). A record is whole (a StreamCar: in a snapshot, or a car new to its map cell) or a move
 * (a StreamMove: a new fix of a car that stayed in its cell, which every viewer of the cell shows
 * already). A move leaves out the cab, which has not changed, and the position and fix time, which are
 * its path's last point: a third fewer bytes for most of a delta's cars. Imports nothing at run time:
 * the pages and the Node tests share it (test/web-fixes.test.ts).
 */

/** @typedef {import('./motion.js').PathPoint} PathPoint */

/**
 * @typedef {object} StreamCar
 * @property {string} id
 * @property {string} cab
 * @property {number} lat
 * @property {number} lon
 * @property {number} time
 * @property {number} speed
 * @property {number} bearing
 * @property {boolean} free
 * @property {PathPoint[]} path
 */

/**
 * @typedef {object} StreamMove
 * @property {string} id
 * @property {number} speed
 * @property {number} bearing
 * @property {boolean} free
 * @property {PathPoint[]} path
 */

/**
 * The car's fix after a record: a whole record is the fix; a move is applied to the fix shown before.
 * Null for a move of a car not shown, which a client that applies every frame in order never gets (a
 * stream that skipped a frame is sent a snapshot).
 *
 * @param {StreamCar | StreamMove} record
 * @param {StreamCar | undefined} before
 * @returns {StreamCar | null}
 */
export function fixOf(record, before) {
  if ('cab' in record) return record;
  if (before === undefined) return null;
  const end = record.path[record.path.length - 1];
  if (end === undefined) return null;
  return {
    id: record.id,
    cab: before.cab,
    lat: end[1],
    lon: end[0],
    time: end[2],
    speed: record.speed,
    bearing: record.bearing,
    free: record.free,
    path: record.path,
  };
}
