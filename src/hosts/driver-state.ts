import type { DriverState } from '../store/driver.ts';

/**
 * A driver's state as another host sent it (POST /internal/v1/handoff answers it as JSON): checked field
 * by field before a worker takes it, so that a peer of another version, or a broken one, costs the
 * driver its ring (it starts again from its trip in Redis) and never a worker. Pure.
 */
const ID = /^[A-Za-z0-9._:-]{1,64}$/;
const ORDER = /^[1-9][0-9]{0,19}$/;

const u32 = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
const int = (v: unknown, lo: number, hi: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;

export function parseDriverState(x: unknown): DriverState | null {
  if (typeof x !== 'object' || x === null) return null;
  const s = x as Record<string, unknown>;
  if (typeof s['id'] !== 'string' || !ID.test(s['id'])) return null;
  if (typeof s['cab'] !== 'string' || !ID.test(s['cab'])) return null;
  for (const k of ['sessionHi', 'sessionLo', 'time', 'speed', 'bearing', 'orderHi', 'orderLo', 'cost']) {
    if (!u32(s[k])) return null;
  }
  if (!int(s['latE6'], -90_000_000, 90_000_000) || !int(s['lonE6'], -180_000_000, 180_000_000)) return null;
  const points = s['points'];
  if (!Array.isArray(points) || points.length % 3 !== 0 || points.length > 3 * 10_000) return null;
  for (let i = 0; i < points.length; i += 3) {
    if (
      !int(points[i], -90_000_000, 90_000_000) ||
      !int(points[i + 1], -180_000_000, 180_000_000) ||
      !u32(points[i + 2])
    ) {
      return null;
    }
  }
  const trip = s['trip'];
  if (trip !== null) {
    if (typeof trip !== 'object' || trip === undefined) return null;
    const t = trip as Record<string, unknown>;
    if (typeof t['orderId'] !== 'string' || !ORDER.test(t['orderId'])) return null;
    for (const k of ['orderHi', 'orderLo', 'cost', 'startTime', 'lastTime', 'points'])
      if (!u32(t[k])) return null;
    if (typeof t['distanceM'] !== 'number' || !(t['distanceM'] >= 0) || !Number.isFinite(t['distanceM']))
      return null;
  }
  return x as DriverState;
}
