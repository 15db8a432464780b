import { Fix } from '../codec/fix.ts';
import { Reason, type ReasonCode } from '../reasons.ts';
import type { Random } from './random.ts';
import { writeTrack } from './wire.ts';

/*
 * The bad datagrams a fleet sends: what the network does to a datagram (garbage, a cut-off datagram) and
 * what broken phones put in one (a fix off the globe, a session the app lost, a clock an hour or two
 * ahead, the classic time-zone bug). Each kind is made so that the daemon surely refuses it for one known
 * reason, so the simulator's report reconciles exactly with cabtrack_datagrams_rejected_total.
 */

export const BadKind = {
  random: 0,
  truncated: 1,
  outOfRange: 2,
  zeroSession: 3,
  future: 4,
} as const;

export type BadKindCode = (typeof BadKind)[keyof typeof BadKind];

export const BAD_KINDS = 5;

/** Names in the report, by kind. */
export const badKindNames: readonly string[] = [
  'random',
  'truncated',
  'out_of_range',
  'zero_session',
  'future',
];

/** The reason the daemon gives for each kind (README, "The wire contract"). */
export const badKindReason: readonly ReasonCode[] = [
  Reason.malformed,
  Reason.malformed,
  Reason.outOfRange,
  Reason.noSession,
  Reason.future,
];

/** The shortest and longest garbage datagram: below the 64-byte limit, so that it is read, not oversize. */
const MIN_RANDOM_BYTES = 1;
const MAX_RANDOM_BYTES = 48;
/** How far ahead a wrong phone clock is, s: well past the daemon's 60 s even after a long offline spell. */
const MIN_AHEAD_S = 3600;
const MAX_AHEAD_S = 7200;

const scratch = new Fix();

/**
 * Overwrites the good fix `fix`, encoded at buf[off..off+len) with its field ends in `ends` (see
 * writeTrack), with a bad datagram of `kind`, and returns the bad datagram's length.
 */
export function writeBad(
  kind: number,
  buf: Uint8Array,
  off: number,
  len: number,
  fix: Fix,
  ends: Int32Array,
  rng: Random,
): number {
  switch (kind) {
    case BadKind.random: {
      const n = rng.int(MIN_RANDOM_BYTES, MAX_RANDOM_BYTES);
      for (let k = 0; k < n; k++) buf[off + k] = rng.uint32() & 0xff;
      // A protobuf reader skips unknown fields, so a random datagram is now and then a well-formed Track
      // (and then refused for some other reason, or even accepted). Field number 0 is invalid in every
      // protobuf: a first byte of 0-7 makes every garbage datagram malformed, whatever follows.
      buf[off] = rng.uint32() & 7;
      return n;
    }
    case BadKind.truncated: {
      // A cut at a field boundary would leave a shorter well-formed Track; any other cut is malformed.
      // The session field alone is 9 bytes, so there is always such a cut.
      for (;;) {
        const cut = rng.int(1, len - 1);
        if (!isFieldEnd(ends, cut)) return cut;
      }
    }
    case BadKind.outOfRange: {
      copy(fix);
      if (rng.float() < 0.5) scratch.lat = (rng.float() < 0.5 ? -1 : 1) * rng.int(90_000_001, 180_000_000);
      else scratch.lon = (rng.float() < 0.5 ? -1 : 1) * rng.int(180_000_001, 360_000_000);
      return writeTrack(buf, off, scratch);
    }
    case BadKind.zeroSession: {
      copy(fix);
      scratch.sessionHi = 0;
      scratch.sessionLo = 0;
      return writeTrack(buf, off, scratch);
    }
    case BadKind.future: {
      copy(fix);
      scratch.time = fix.time + rng.int(MIN_AHEAD_S, MAX_AHEAD_S);
      return writeTrack(buf, off, scratch);
    }
    default:
      throw new RangeError(`bad datagram kind ${kind}`);
  }
}

function isFieldEnd(ends: Int32Array, at: number): boolean {
  const n = ends[0]!;
  for (let k = 1; k <= n; k++) if (ends[k] === at) return true;
  return false;
}

function copy(f: Fix): void {
  scratch.sessionHi = f.sessionHi;
  scratch.sessionLo = f.sessionLo;
  scratch.lat = f.lat;
  scratch.lon = f.lon;
  scratch.time = f.time;
  scratch.orderHi = f.orderHi;
  scratch.orderLo = f.orderLo;
  scratch.cost = f.cost;
  scratch.speed = f.speed;
  scratch.bearing = f.bearing;
}
