import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32, deflateSync } from 'node:zlib';
import { cosDeg, METRES_PER_DEGREE_LAT } from '../../src/geo/distance.ts';

/**
 * A map tile server for the browser tests, on 127.0.0.1 (the tests reach no other host): 256 x 256 PNG
 * tiles at `/{z}/{x}/{y}.png` that draw a street grid like the fleet simulator's (src/sim/city.ts:
 * streets every `spacingM` metres around a centre), so that the pages' screenshots show the cars on
 * their streets, and the pages load real tiles from another origin than theirs, as they do from
 * OpenStreetMap's, through their Content-Security-Policy.
 */

export interface Grid {
  lat: number;
  lon: number;
  spacingM: number;
  /** Streets reach this far from the centre each way. */
  extentM: number;
}

export interface TileServer {
  /** `http://127.0.0.1:<port>/{z}/{x}/{y}.png` */
  template: string;
  /** Tiles served. */
  served: () => number;
  close: () => Promise<void>;
}

const SIZE = 256;
const STREET_HALF_M = 9;
const GROUND = [238, 241, 236];
const BLOCK = [228, 222, 208];
const STREET = [255, 255, 255];

export async function startTileServer(grid: Grid): Promise<TileServer> {
  const cache = new Map<string, Buffer>();
  let served = 0;
  const server: Server = createServer((req, res) => {
    const m = /^\/(\d+)\/(\d+)\/(\d+)\.png$/.exec(req.url ?? '');
    if (m === null) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const key = `${m[1]}/${m[2]}/${m[3]}`;
    let png = cache.get(key);
    if (png === undefined) {
      png = drawTile(grid, Number(m[1]), Number(m[2]), Number(m[3]));
      cache.set(key, png);
    }
    served++;
    res.writeHead(200, {
      'content-type': 'image/png',
      'content-length': png.length,
      'cache-control': 'public, max-age=3600',
    });
    res.end(png);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    template: `http://127.0.0.1:${port}/{z}/{x}/{y}.png`,
    served: () => served,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One tile: each pixel's centre in metres from the grid's centre, a street if near a street's axis. */
export function drawTile(grid: Grid, z: number, x: number, y: number): Buffer {
  const n = 2 ** z;
  const mPerLon = METRES_PER_DEGREE_LAT * cosDeg(grid.lat);
  const rows: Buffer[] = [];
  for (let py = 0; py < SIZE; py++) {
    const row = Buffer.alloc(1 + SIZE * 3);
    const my = (y + (py + 0.5) / SIZE) / n;
    const lat = (Math.atan(Math.sinh(Math.PI * (1 - 2 * my))) * 180) / Math.PI;
    const north = (lat - grid.lat) * METRES_PER_DEGREE_LAT;
    for (let px = 0; px < SIZE; px++) {
      const lon = ((x + (px + 0.5) / SIZE) / n) * 360 - 180;
      const east = (lon - grid.lon) * mPerLon;
      let colour = GROUND;
      const edge = grid.extentM + STREET_HALF_M;
      if (Math.abs(east) <= edge && Math.abs(north) <= edge) {
        const off = (v: number): number => Math.abs(v - Math.round(v / grid.spacingM) * grid.spacingM);
        colour = Math.min(off(east), off(north)) <= STREET_HALF_M ? STREET : BLOCK;
      }
      row.set(colour, 1 + px * 3);
    }
    rows.push(row);
  }
  return png(SIZE, SIZE, Buffer.concat(rows));
}

/** A PNG of 8-bit RGB rows, each already led by its filter byte (0). */
function png(width: number, height: number, raw: Buffer): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
