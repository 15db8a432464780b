import type { Redis } from 'ioredis';
import { type ExpectedTrip, tripRecordOf } from './hostile-fleet.ts';

/**
 * Reading back what the daemon wrote to Redis for billing (src/trips/trip-store.ts): the stream
 * `cabtrack:trips` (one entry per finished trip), the trip hashes and the active set, as plain records
 * to compare with what a fleet drove.
 */

export type StreamEntry = Record<string, string>;

export async function readStream(redis: Redis): Promise<StreamEntry[]> {
  const entries = await redis.xrange('cabtrack:trips', '-', '+');
  return entries.map(([, fields]) => {
    const o: StreamEntry = {};
    for (let i = 0; i < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    return o;
  });
}

/** A finished trip's stream entry, as it must read if every fix of the trip was accepted. */
export function streamEntryOf(t: ExpectedTrip): StreamEntry {
  const r = tripRecordOf(t);
  return {
    orderId: t.orderId,
    driverId: t.driverId,
    cab: t.cab,
    cost: String(t.cost),
    distanceM: String(r['distanceM']),
    startTime: String(t.startTime),
    lastTime: String(t.lastTime),
    points: String(t.points),
    endReason: 'order_changed',
  };
}

/** The trip hash as a record with numbers, or null when there is none. */
export async function readTripHash(redis: Redis, orderId: string): Promise<Record<string, unknown> | null> {
  const h = await redis.hgetall(`cabtrack:trip:${orderId}`);
  if (Object.keys(h).length === 0) return null;
  const r: Record<string, unknown> = {
    orderId: h['orderId'],
    driverId: h['driverId'],
    cab: h['cab'],
    cost: Number(h['cost']),
    distanceM: Number(h['distanceM']),
    startTime: Number(h['startTime']),
    lastTime: Number(h['lastTime']),
    points: Number(h['points']),
    active: h['active'] === '1',
  };
  if (h['endReason'] !== '') r['endReason'] = h['endReason'];
  return r;
}

/** Stream entries by trip (orderId:startTime), to find the lost and the duplicated. */
export function countByTrip(entries: StreamEntry[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of entries) {
    const k = `${e['orderId']}:${e['startTime']}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** Entries by order id (an order id is one trip in these fleets), the last one kept. */
export function byOrder(entries: StreamEntry[]): Map<string, StreamEntry> {
  return new Map(entries.map((e) => [e['orderId']!, e]));
}
