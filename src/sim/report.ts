import { BAD_KINDS, badKindNames } from './bad-datagrams.ts';
import type { Simulation } from './simulation.ts';

/** What the simulator has sent, as printed every 10 s and at the end (and as JSON with --json). */
export interface SimReport {
  /** Seconds since the first datagram. */
  elapsedS: number;
  cars: number;
  /** Cars that have sent a good fix (the drivers the daemon should list). */
  carsLive: number;
  carsOffline: number;
  sent: number;
  good: number;
  /** Datagrams sent in offline bursts (good and bad). */
  burst: number;
  bad: Record<string, number>;
  badTotal: number;
  /** Datagrams still held by phones that are offline. */
  held: number;
  tripsStarted: number;
  tripsEnded: number;
  offlineEpisodes: number;
  /** Datagrams a second: over the last interval in progress reports, over the whole run at the end. */
  rate: number;
  /** What the options ask for: cars x rate. */
  targetRate: number;
  /** How far the sender is behind its schedule, s. */
  lagS: number;
  /** Socket errors (a daemon that is not there: ICMP port unreachable on a connected socket). */
  sendErrors: number;
}

export function snapshot(
  sim: Simulation,
  at: { elapsedS: number; rate: number; lagS: number; sendErrors: number },
): SimReport {
  const c = sim.counters;
  const bad: Record<string, number> = {};
  for (let k = 0; k < BAD_KINDS; k++) bad[badKindNames[k]!] = c.bad[k]!;
  return {
    elapsedS: at.elapsedS,
    cars: sim.cars,
    carsLive: c.carsLive,
    carsOffline: c.offlineNow,
    sent: c.sent,
    good: c.good,
    burst: c.burst,
    bad,
    badTotal: c.badTotal,
    held: c.held,
    tripsStarted: sim.fleet.tripsStarted,
    tripsEnded: sim.fleet.tripsEnded,
    offlineEpisodes: c.offlineEpisodes,
    rate: at.rate,
    targetRate: sim.cars * sim.rate,
    lagS: at.lagS,
    sendErrors: at.sendErrors,
  };
}

/**
 * One line per report, for people:
 *   [sim 10.0 s] cars 200 (live 200, offline 3) | sent 2,000 = good 1,980 + bad 20 (random 4, ...) |
 *   burst 31, held 12 | trips started 131, ended 2 | offline episodes 5 | 200/s of 200/s, lag 0.00 s
 */
export function formatReport(r: SimReport, final = false): string {
  const n = (v: number): string => Math.round(v).toLocaleString('en-US');
  const kinds = Object.entries(r.bad)
    .map(([k, v]) => `${k} ${n(v)}`)
    .join(', ');
  const parts = [
    `[sim ${final ? 'done' : ''}${final ? ' ' : ''}${r.elapsedS.toFixed(1)} s]`,
    `cars ${n(r.cars)} (live ${n(r.carsLive)}, offline ${n(r.carsOffline)})`,
    `| sent ${n(r.sent)} = good ${n(r.good)} + bad ${n(r.badTotal)} (${kinds})`,
    `| burst ${n(r.burst)}, held ${n(r.held)}`,
    `| trips started ${n(r.tripsStarted)}, ended ${n(r.tripsEnded)}`,
    `| offline episodes ${n(r.offlineEpisodes)}`,
    `| ${n(r.rate)}/s of ${n(r.targetRate)}/s, lag ${r.lagS.toFixed(2)} s`,
  ];
  if (r.sendErrors > 0) parts.push(`| send errors ${n(r.sendErrors)}`);
  return parts.join(' ');
}
