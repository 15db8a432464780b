/**
 * Why a datagram was refused. The hot path deals in small integers (an index into a Float64Array of
 * counters); the names are only used where counters are exported as the `reason` label of
 * `cabtrack_datagrams_rejected_total`.
 */
export const Reason = {
  ok: 0,
  /** Longer than MAX_DATAGRAM_BYTES: no driver app sends that, so it is noise or an attack. */
  oversize: 1,
  /** Not a well-formed Track message (truncated varint, wrong wire type, length past the end...). */
  malformed: 2,
  /** The session field is missing or zero. */
  noSession: 3,
  /** Latitude outside [-90, 90] or longitude outside [-180, 180]. */
  outOfRange: 4,
  /** Exactly (0, 0): what a GPS chip reports before its first fix. */
  nullIsland: 5,
  /** Time more than 60 s ahead of the server clock. */
  future: 6,
  /** Not newer than the driver's last accepted fix: a duplicate or an out-of-order datagram. */
  stale: 7,
  /** The jump from the last accepted fix implies more than 250 km/h. */
  tooFast: 8,
  /** The session is not registered, or was revoked. */
  unknownSession: 9,
  /** The session could not be looked up (the registry's backing store is down). */
  lookupFailed: 10,
  /** The fix waited for a session lookup and the wait queue was full. */
  queueFull: 11,
  /**
   * The session was not looked up: over the worker's cap on lookups a second
   * (CABTRACK_SESSION_LOOKUPS_PER_S, with Redis), or too many lookups already waiting. Not a verdict on
   * the session: the app's next fix is looked up again.
   */
  throttled: 12,
} as const;

export type ReasonCode = (typeof Reason)[keyof typeof Reason];

/** Label values, indexed by reason code. */
export const reasonNames: readonly string[] = [
  'ok',
  'oversize',
  'malformed',
  'no_session',
  'out_of_range',
  'null_island',
  'future',
  'stale',
  'too_fast',
  'unknown_session',
  'lookup_failed',
  'queue_full',
  'throttled',
];

/** A datagram longer than this is refused unread (a realistic fix is at most 42 bytes). */
export const MAX_DATAGRAM_BYTES = 64;
