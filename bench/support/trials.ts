import type { Daemon } from '../../test/support/daemon.ts';
import type { BareReceiver } from './bare-receiver.ts';
import { daemonPids, drained, ingestCounts } from './cabtrack.ts';
import {
  cpuMs,
  cpuTimes,
  machineTicks,
  ticksToMs,
  udpCounters,
  udpDelta,
  udpQueue,
  waitQuiet,
} from './proc.ts';
import type { Sender, SendResult } from './sender.ts';

/**
 * Trials of UDP ingest: offer a rate for a few seconds, then check, with the receiver's own counters and
 * the kernel's, that every datagram was received and accepted; and search for the highest rate at which
 * that holds.
 */

/** Something that receives the sender's datagrams: the daemon or the bare receiver. */
export interface Target {
  label: string;
  port: number;
  /** Processes whose CPU time is the receiver's (the workers; the bare receiver). */
  pids(): number[];
  counts(): Promise<{ received: number; accepted: number }>;
}

export function daemonTarget(label: string, d: Daemon): Target {
  return {
    label,
    port: d.udpPort,
    pids: () => daemonPids(d).workers,
    counts: () => ingestCounts(d),
  };
}

export function bareTarget(r: BareReceiver): Target {
  return {
    label: 'bare Node receiver',
    port: r.port,
    pids: () => [r.pid],
    counts: async () => {
      const n = await r.count();
      return { received: n, accepted: n };
    },
  };
}

export interface Trial {
  /** Rate asked of the sender (0: flat out) and what it achieved. */
  asked: number;
  offered: number;
  sent: number;
  received: number;
  accepted: number;
  /** Drops the kernel counted on the receiver's sockets (/proc/net/udp) and machine-wide (/proc/net/snmp). */
  socketDrops: number;
  rcvbufErrors: number;
  inErrors: number;
  zeroLoss: boolean;
  lossShare: number;
  /** Receiver CPU per datagram received, us (process CPU time over the trial, 10 ms ticks). */
  cpuUsPerDatagram: number;
  /** Of which system time (the kernel: receive syscalls), us. */
  systemUsPerDatagram: number;
  /** The receiver's CPU use over the sending window, cores. */
  receiverCores: number;
  senderCpuUsPerDatagram: number;
  /** CPU used by processes other than the receiver and the sender (other jobs on the machine), cores. */
  otherCores: number;
  /** Softirq and irq time (not any process's; loopback delivery partly runs there), and steal, cores. */
  softirqCores: number;
  stealCores: number;
  /** Other jobs' load just before the trial (it waited up to 1.5 s for less than 0.3 cores). */
  otherCoresBefore: number;
  drainedOk: boolean;
}

/**
 * One trial: `count` fixes at `rate` (0: flat out), for at most `maxSeconds` (a sender slowed by other
 * jobs must not stretch the trial; the achieved rate is what counts).
 */
export async function trial(
  target: Target,
  sender: Sender,
  rate: number,
  count: number,
  maxSeconds = 0,
): Promise<Trial> {
  const pids = target.pids();
  const otherCoresBefore = await waitQuiet([...pids, sender.pid, process.pid], 0.3, 1500);
  const c0 = await target.counts();
  const u0 = udpCounters();
  const q0 = udpQueue(target.port).drops;
  const m0 = machineTicks();
  const own0 = process.cpuUsage();
  const senderCpu0 = cpuMs(sender.pid);
  const sys0 = pids.reduce((a, p) => a + cpuTimes(p).systemMs, 0);
  const cpu0 = pids.reduce((a, p) => a + cpuMs(p), 0);
  const s: SendResult = await sender.run(target.port, rate, count, maxSeconds);
  const drainedOk = await drained(target.port);
  const cpu1 = pids.reduce((a, p) => a + cpuMs(p), 0);
  const sys1 = pids.reduce((a, p) => a + cpuTimes(p).systemMs, 0);
  const m1 = machineTicks();
  const senderCpu1 = cpuMs(sender.pid);
  const own = process.cpuUsage(own0);
  const q1 = udpQueue(target.port).drops;
  const u = udpDelta(u0, udpCounters());
  const c1 = await target.counts();
  const received = c1.received - c0.received;
  const accepted = c1.accepted - c0.accepted;
  const socketDrops = q1 - q0;
  const receiverMs = cpu1 - cpu0;
  const tasksMs = ticksToMs(m1.tasks - m0.tasks);
  const otherMs = tasksMs - receiverMs - (senderCpu1 - senderCpu0) - s.cpuMs - (own.user + own.system) / 1000;
  const windowS = s.seconds + s.encodeMs / 1000;
  const zeroLoss =
    received === s.sent &&
    accepted === s.sent &&
    socketDrops === 0 &&
    u.rcvbufErrors === 0 &&
    u.inErrors === 0;
  return {
    asked: rate,
    offered: Math.round(s.rate),
    sent: s.sent,
    received,
    accepted,
    socketDrops,
    rcvbufErrors: u.rcvbufErrors,
    inErrors: u.inErrors,
    zeroLoss,
    lossShare: s.sent === 0 ? 0 : round((s.sent - accepted) / s.sent, 5),
    cpuUsPerDatagram: received === 0 ? 0 : round((receiverMs * 1000) / received, 3),
    systemUsPerDatagram: received === 0 ? 0 : round(((sys1 - sys0) * 1000) / received, 3),
    receiverCores: round(receiverMs / 1000 / s.seconds, 2),
    senderCpuUsPerDatagram: round((s.cpuMs * 1000) / Math.max(1, s.sent), 3),
    otherCores: round(Math.max(0, otherMs) / 1000 / windowS, 2),
    softirqCores: round(ticksToMs(m1.softirq - m0.softirq) / 1000 / windowS, 2),
    stealCores: round(ticksToMs(m1.steal - m0.steal) / 1000 / windowS, 2),
    otherCoresBefore,
    drainedOk,
  };
}

/** Other jobs' load, in cores, from which a trial's loss is put down to them rather than the receiver. */
export const BUSY_CORES = 0.5;

export interface Search {
  /** Highest offered rate with zero loss (0 if none). */
  zeroLossRate: number;
  /** Lowest offered rate that lost datagrams (null if none did). */
  lossyRate: number | null;
  /** True when the sender flat out lost nothing: the receiver's ceiling is above what was offered. */
  senderLimited: boolean;
  /** The passing trial at zeroLossRate (its CPU per datagram). */
  best: Trial | null;
  /** A rate that passed above one that lost (noise from other jobs), or null. */
  passedAboveALoss: number | null;
  /** Rates that lost while other jobs used half a core or more: not counted against the receiver. */
  lossesUnderLoad: number[];
  trials: Trial[];
}

export interface SearchOptions {
  /** Trial length, seconds. */
  seconds: number;
  maxTrials: number;
  /** Stop when the bracket is this tight ((lossy - ok) / lossy). */
  precision: number;
  /** A rate to try first (0: the sender flat out). */
  start: number;
  /** Trials already run against this target (a fixed-rate trial), counted in the bracket. */
  prior?: Trial[];
  /** Trials that may be run again because the machine was busy (default 2), on top of maxTrials. */
  retries?: number;
  /** What the sender reached flat out before in this run: a flat-out pass well below it is run again. */
  flatOut?: number;
  log: (t: Trial) => void;
}

/**
 * The highest rate with zero loss, by bisection on the offered rate. The first trial runs the sender
 * flat out: if nothing is lost the receiver is faster than the sender and the answer is a lower bound.
 * Otherwise the next guess is 90 % of what the receiver accepted under overload, and bisection follows.
 * The machine is shared: a trial that lost datagrams while other jobs used half a core or more, or at a
 * rate below one that passed, is run once more (at most `retries` times a search), and the second run
 * counts; both are kept in `trials`.
 */
export async function searchCeiling(target: Target, sender: Sender, o: SearchOptions): Promise<Search> {
  const trials: Trial[] = [];
  let ok: Trial | null = null;
  let lossy: number | null = null;
  for (const t of o.prior ?? []) {
    if (t.zeroLoss && (ok === null || t.offered > ok.offered)) ok = t;
    if (!t.zeroLoss) lossy = lossy === null ? t.offered : Math.min(lossy, t.offered);
  }
  let senderLimited = false;
  let rate = o.start;
  let retries = o.retries ?? 2;
  let again = false;
  while (trials.length < o.maxTrials + (o.retries ?? 2) - retries) {
    const count = Math.round((rate > 0 ? rate : 450_000) * o.seconds);
    const t = await trial(target, sender, rate, count, rate > 0 ? o.seconds * 1.5 : o.seconds);
    trials.push(t);
    o.log(t);
    const suspect = t.otherCores >= BUSY_CORES || (ok !== null && t.offered <= ok.offered);
    // Flat out, a sender starved by other jobs offers less than it can: a pass then says little.
    const starved = rate === 0 && t.zeroLoss && t.offered < 0.8 * (o.flatOut ?? 0);
    if (((!t.zeroLoss && suspect) || starved) && retries > 0 && !again) {
      retries--;
      again = true;
      continue;
    }
    again = false;
    if (t.zeroLoss) {
      if (ok === null || t.offered > ok.offered) ok = t;
      if (rate === 0) {
        senderLimited = true;
        break;
      }
    } else {
      lossy = lossy === null ? t.offered : Math.min(lossy, t.offered);
    }
    if (lossy === null) {
      // Passed below the sender's top speed: try flat out next.
      rate = 0;
      continue;
    }
    const lo = ok?.offered ?? 0;
    if (lo > 0 && (lossy - lo) / lossy < o.precision) break;
    if (lo === 0 || lo >= lossy) {
      const underLoad = (t.accepted / Math.max(1, t.sent)) * t.offered;
      rate = Math.round(Math.min(lossy * 0.8, underLoad * 0.9));
    } else {
      rate = Math.round((lo + lossy) / 2);
    }
  }
  // The answer is the best pass below the lowest loss, counting only losses of trials during which other
  // jobs used under half a core: a loss while another job held the machine says nothing about the
  // receiver (such trials are in `trials`, with their load). With no such loss, every loss counts.
  const all = [...(o.prior ?? []), ...trials];
  const losses = all.filter((t) => !t.zeroLoss);
  const clean = losses.filter((t) => t.otherCores < BUSY_CORES);
  const bound = (clean.length > 0 ? clean : losses).reduce<number | null>(
    (a, t) => (a === null || t.offered < a ? t.offered : a),
    null,
  );
  const passes = all.filter((t) => t.zeroLoss && (bound === null || t.offered < bound));
  const best = passes.reduce<Trial | null>((a, t) => (a === null || t.offered > a.offered ? t : a), null);
  return {
    zeroLossRate: best?.offered ?? 0,
    lossyRate: bound,
    senderLimited,
    best,
    passedAboveALoss: ok !== null && bound !== null && ok.offered > bound ? ok.offered : null,
    lossesUnderLoad: losses
      .filter((t) => t.otherCores >= BUSY_CORES && clean.length > 0)
      .map((t) => t.offered),
    trials,
  };
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
