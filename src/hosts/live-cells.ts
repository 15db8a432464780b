import { cellBox, cellKey, tileX, tileY } from '../stream/cells.ts';

/**
 * The cells the live view is shared between hosts by: Web Mercator tiles at one zoom (CABTRACK_LIVE_ZOOM),
 * the scheme the streams' cells use (src/stream/cells.ts), so that a stream cell (zoom 15 or 17) lies in
 * exactly one live cell. Each live cell is one Redis Cluster sharded pub/sub channel:
 *
 *   cabtrack:live:<z>/<x>/<y>
 *
 * A cell is numbered x * 2^z + y (an unsigned 32-bit number up to zoom 16: the batches' source field).
 * Which zoom, and why, is measured in bench/live-cells.ts and written down in docs/multi-host.md. Pure.
 */
export const LIVE_CHANNEL_PREFIX = 'cabtrack:live:';
export const MAX_LIVE_ZOOM = 16;
/** The Unix socket, in the run directory, on which a host's primary relays the cells to its HTTP workers. */
export const LIVE_RELAY_SOCKET = 'live.sock';

/** A region: boxes [minLon, minLat, maxLon, maxLat] (minLon > maxLon crosses the antimeridian). */
export type Region = ReadonlyArray<readonly [number, number, number, number]>;

export function liveCell(lat: number, lon: number, z: number): number {
  return tileX(lon, z) * 2 ** z + tileY(lat, z);
}

export function liveChannel(z: number, cell: number): string {
  const y = cell % 2 ** z;
  return `${LIVE_CHANNEL_PREFIX}${z}/${(cell - y) / 2 ** z}/${y}`;
}

/** The cell of a channel at zoom z, or -1 when it is not one (another zoom, or not a live channel). */
export function channelCell(channel: string, z: number): number {
  if (!channel.startsWith(LIVE_CHANNEL_PREFIX)) return -1;
  const m = /^(\d+)\/(\d+)\/(\d+)$/.exec(channel.slice(LIVE_CHANNEL_PREFIX.length));
  if (m === null || Number(m[1]) !== z) return -1;
  const n = 2 ** z;
  const x = Number(m[2]);
  const y = Number(m[3]);
  return x < n && y < n ? x * n + y : -1;
}

/** The cell's box, degrees [minLon, minLat, maxLon, maxLat]. */
export function liveCellBox(cell: number, z: number): [number, number, number, number] {
  const y = cell % 2 ** z;
  return cellBox(cellKey(z, (cell - y) / 2 ** z, y));
}

/** Whether the cell meets the region (an empty region is the whole world). */
export function inRegion(cell: number, z: number, region: Region): boolean {
  if (region.length === 0) return true;
  const [a, b, c, d] = liveCellBox(cell, z);
  for (const [minLon, minLat, maxLon, maxLat] of region) {
    if (b > maxLat || d < minLat) continue;
    if (minLon <= maxLon ? a <= maxLon && c >= minLon : a <= maxLon || c >= minLon) return true;
  }
  return false;
}

/** Parses CABTRACK_REGION: `minLon,minLat,maxLon,maxLat` boxes separated by `;`. Throws with the reason. */
export function parseRegion(text: string): Region {
  if (text.trim() === '') return [];
  return text.split(';').map((part) => {
    const n = part.split(',').map((v) => Number(v.trim()));
    if (n.length !== 4 || n.some((v) => !Number.isFinite(v))) {
      throw new RangeError(`a box is minLon,minLat,maxLon,maxLat; got ${JSON.stringify(part)}`);
    }
    const [minLon, minLat, maxLon, maxLat] = n as [number, number, number, number];
    if (minLon < -180 || maxLon > 180 || minLon > 180 || maxLon < -180) {
      throw new RangeError(`longitudes must be within -180..180; got ${JSON.stringify(part)}`);
    }
    if (minLat < -90 || maxLat > 90 || minLat > maxLat) {
      throw new RangeError(`latitudes must be within -90..90, min first; got ${JSON.stringify(part)}`);
    }
    return [minLon, minLat, maxLon, maxLat] as const;
  });
}
