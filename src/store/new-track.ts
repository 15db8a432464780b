import { haversineM } from '../geo/distance.ts';

/**
 * Re-anchoring a driver whose fixes are refused as too fast.
 *
 * One bad accepted fix (a cold GPS start far from the car) makes every good fix after it look like a
 * jump, and the driver would be stuck until it expired; so refused fixes are watched for a new track,
 * and the driver moves to it only when the track is consistent with itself: at least TRACK_FIXES
 * refused fixes, each plausible at the speed limit from the one before, spanning at least TRACK_SPAN_S
 * of fix time. A phone that found its real position draws such a track with its next 11 fixes at one a
 * second (the issue asks for recovery within about 15 s). Random or contradictory jumps never do: each
 * is hundreds of km from the last within seconds, so none extends another. Jumps mixed with good fixes
 * never do either, however consistent: every accepted fix clears the watch (the shard drops it).
 * Before this, the sixth jump in a row re-anchored the driver wherever it said, and a burst of wild
 * fixes moved live drivers hundreds of km (issue 12).
 *
 * Several tracks are followed at once (TRACKS), so that stray jumps cannot break a recovery under way.
 *
 * Allocated only for a driver whose fixes are being refused, so the other drivers pay nothing for it.
 */
export const TRACK_FIXES = 5;
export const TRACK_SPAN_S = 10;
/** A track not extended for this long (fix time) is given up: its slot is free for a new one. */
export const TRACK_STALE_S = 10;

/**
 * Tracks followed at once. A stray fix that extends none replaces the weakest (fewest fixes, then the
 * oldest), so the phone's real track, one fix old and the newest, survives up to TRACKS - 1 strays
 * before its next fix. Seeded runs of a cold start with 1-3 strays in 90% of seconds: 2 tracks recover
 * in 11-24 s, 3 in 11-16 s, 4 in 11 s every time (2,000 seeds each).
 */
const TRACKS = 4;
/** Per track: fix count, first and last fix time, last latitude and longitude (degrees x 1e6), when it was made. */
const COUNT = 0;
const START = 1;
const TIME = 2;
const LAT = 3;
const LON = 4;
const MADE = 5;
const STRIDE = 6;

export class NewTrack {
  readonly #t = new Float64Array(TRACKS * STRIDE);
  /** Tracks made so far: orders them by age. */
  #made = 0;

  /**
   * A fix refused as too fast: true when it completes a consistent track, and the driver should be
   * re-anchored on it.
   */
  offer(latE6: number, lonE6: number, time: number, maxSpeedMps: number): boolean {
    const t = this.#t;
    const lat = latE6 / 1e6;
    const lon = lonE6 / 1e6;
    // Extend the stronger of the tracks the fix is plausible from.
    let best = -1;
    for (let s = 0; s < TRACKS * STRIDE; s += STRIDE) {
      const n = t[s + COUNT]!;
      if (n === 0 || time <= t[s + TIME]! || time - t[s + TIME]! > TRACK_STALE_S) continue;
      const gap = haversineM(t[s + LAT]! / 1e6, t[s + LON]! / 1e6, lat, lon);
      if (gap > maxSpeedMps * (time - t[s + TIME]!)) continue;
      if (best < 0 || n > t[best + COUNT]!) best = s;
    }
    if (best >= 0) {
      t[best + COUNT]!++;
      t[best + TIME] = time;
      t[best + LAT] = latE6;
      t[best + LON] = lonE6;
      return t[best + COUNT]! >= TRACK_FIXES && time - t[best + START]! >= TRACK_SPAN_S;
    }
    // A new track, in place of the weakest: a free or stale slot, else the one with the fewest fixes,
    // and among those the oldest.
    let slot = 0;
    let weakest = Number.POSITIVE_INFINITY;
    for (let s = 0; s < TRACKS * STRIDE; s += STRIDE) {
      const n = t[s + COUNT] === 0 || time - t[s + TIME]! > TRACK_STALE_S ? 0 : t[s + COUNT]!;
      const w = n * 1e9 + t[s + MADE]!;
      if (w < weakest) {
        weakest = w;
        slot = s;
      }
    }
    t[slot + COUNT] = 1;
    t[slot + START] = time;
    t[slot + TIME] = time;
    t[slot + LAT] = latE6;
    t[slot + LON] = lonE6;
    t[slot + MADE] = ++this.#made;
    return false;
  }
}
