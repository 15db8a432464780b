import type { Fix } from '../codec/fix.ts';
import { Reason, type ReasonCode } from '../reasons.ts';

/** Fixes may be at most this far ahead of the server clock (phone clocks drift; GPS time does not). */
export const MAX_FUTURE_S = 60;

/**
 * The checks a fix must pass on its own, before any driver state is looked at: cheapest first, so a
 * flood of garbage costs as little as possible. Checks against the driver's previous fix (stale, too
 * fast) live in the shard, which holds that fix. `maxAgeS` is the idle timeout.
 */
export function checkFix(fix: Fix, nowS: number, maxAgeS: number, maxFutureS = MAX_FUTURE_S): ReasonCode {
  if (fix.sessionHi === 0 && fix.sessionLo === 0) return Reason.noSession;
  const lat = fix.lat;
  const lon = fix.lon;
  if (lat < -90_000_000 || lat > 90_000_000 || lon < -180_000_000 || lon > 180_000_000) {
    return Reason.outOfRange;
  }
  if (lat === 0 && lon === 0) return Reason.nullIsland;
  if (fix.time > nowS + maxFutureS) return Reason.future;
  // A fix older than the idle timeout would describe a driver that has already expired (and a missing
  // time field decodes as 1970): it is as stale as a duplicate.
  if (fix.time < nowS - maxAgeS) return Reason.stale;
  return Reason.ok;
}
