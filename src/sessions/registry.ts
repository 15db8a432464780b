/** Who a session belongs to, as the dispatch system registered it at login. */
export interface SessionInfo {
  readonly driverId: string;
  readonly cab: string;
}

/**
 * Sessions to find (an operator removing a driver or a cab revokes them all): those of any of these
 * drivers, and, with `cab`, those of that cab.
 */
export interface SessionMatch {
  readonly driverIds: ReadonlySet<string>;
  readonly cab?: string;
}

export function sessionMatches(s: SessionInfo, m: SessionMatch): boolean {
  return m.driverIds.has(s.driverId) || (m.cab !== undefined && s.cab === m.cab);
}

/**
 * What a worker asks on the hot path for a session it has no driver for yet. A lookup answers at once:
 * the driver, `undefined` for an unknown or revoked session, or `PENDING` when the answer must be
 * fetched (a Redis-backed registry); the registry then calls `onResolved` for that session later.
 */
export const PENDING = 'pending';
export const FAILED = 'failed';
/**
 * Not looked up: over the per-worker cap on lookups (or, with the primary as the source, too many
 * waiting for it). The session may be perfectly good (a fleet coming back after a restart), so it is
 * not remembered as unknown: the app's next fix, a second later, is looked up again.
 */
export const THROTTLED = 'throttled';
export type Lookup = SessionInfo | undefined | typeof PENDING | typeof FAILED | typeof THROTTLED;

export interface SessionRegistry {
  lookup(hi: number, lo: number): Lookup;
  /** A session registered through this cluster's API: known from now on. */
  remember(hi: number, lo: number, info: SessionInfo): void;
  /** A session revoked through this cluster's API: refused from now on. */
  forget(hi: number, lo: number): void;
}
