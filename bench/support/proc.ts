import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';

/**
 * What the benchmarks read from Linux: CPU time and RSS per process, the kernel's UDP counters and
 * queues, the machine's load. All from /proc, so that measuring costs the measured processes nothing.
 */

/** USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const TICKS_PER_S = Number(
  safe(() => execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) ?? 100,
);

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** User + system CPU time of a process, milliseconds (10 ms resolution). */
export function cpuMs(pid: number): number {
  const t = cpuTimes(pid);
  return t.userMs + t.systemMs;
}

/** User and system CPU time of a process apart: system time is the kernel's side of each syscall. */
export function cpuTimes(pid: number): { userMs: number; systemMs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces and parentheses: fields are counted after its last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { userMs: (Number(f[11]) * 1000) / TICKS_PER_S, systemMs: (Number(f[12]) * 1000) / TICKS_PER_S };
}

export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Direct children of a process (the daemon's workers). */
export function childPids(pid: number): number[] {
  const text = safe(() => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')) ?? '';
  return text
    .trim()
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
}

export interface UdpCounters {
  inDatagrams: number;
  rcvbufErrors: number;
  inErrors: number;
}

/** The kernel's system-wide UDP counters (`Udp:` in /proc/net/snmp). */
export function udpCounters(): UdpCounters {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp: '));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/).map(Number);
  const get = (n: string): number => values[names.indexOf(n)] ?? 0;
  return { inDatagrams: get('InDatagrams'), rcvbufErrors: get('RcvbufErrors'), inErrors: get('InErrors') };
}

export function udpDelta(a: UdpCounters, b: UdpCounters): UdpCounters {
  return {
    inDatagrams: b.inDatagrams - a.inDatagrams,
    rcvbufErrors: b.rcvbufErrors - a.rcvbufErrors,
    inErrors: b.inErrors - a.inErrors,
  };
}

/**
 * Bytes waiting in the receive queues of every UDP socket bound to `port` on 127.0.0.1, and their drop
 * counts (/proc/net/udp): how a benchmark knows a receiver has drained without asking it.
 */
export function udpQueue(port: number): { queued: number; drops: number; sockets: number } {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let queued = 0;
  let drops = 0;
  let sockets = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !f[1]!.endsWith(`:${hexPort}`)) continue;
    sockets++;
    queued += Number.parseInt(f[4]!.split(':')[1]!, 16);
    drops += Number(f[12]);
  }
  return { queued, drops, sockets };
}

/**
 * CPU ticks of the whole machine (/proc/stat): `tasks` is time in processes (user, nice, system), which
 * includes ours; `softirq` (loopback delivery runs there in part) and `steal` (the hypervisor's) are not
 * any process's.
 */
export function machineTicks(): { tasks: number; softirq: number; steal: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return { tasks: user + nice + system, softirq: softirq + irq, steal, total: f.reduce((a, b) => a + b, 0) };
}

/** Set when the last wait ran out: the machine is busy for a while, so waiting again is mostly lost. */
let busyStreak = false;

/**
 * Waits (at most `maxMs`; a third of it while the machine stays busy) until processes other than ours
 * use less than `cores` of the machine, sampled over 300 ms: on a shared machine, a trial started
 * while another job is busy measures that job. Returns the load seen last, in cores.
 */
export async function waitQuiet(ours: number[], cores: number, maxMs: number): Promise<number> {
  const end = Date.now() + (busyStreak ? maxMs / 3 : maxMs);
  for (;;) {
    const m0 = machineTicks();
    const o0 = ours.reduce((a, p) => a + safeCpu(p), 0);
    await new Promise((r) => setTimeout(r, 300));
    const m1 = machineTicks();
    const o1 = ours.reduce((a, p) => a + safeCpu(p), 0);
    const other = Math.max(0, ticksToMs(m1.tasks - m0.tasks) - (o1 - o0)) / 300;
    if (other < cores || Date.now() >= end) {
      busyStreak = other >= cores;
      return Math.round(other * 100) / 100;
    }
  }
}

function safeCpu(pid: number): number {
  return safe(() => cpuMs(pid)) ?? 0;
}

export function ticksToMs(ticks: number): number {
  return (ticks * 1000) / TICKS_PER_S;
}

const RMEM_MAX = '/proc/sys/net/core/rmem_max';

export function rmemMax(): number {
  return Number(readFileSync(RMEM_MAX, 'utf8').trim());
}

/**
 * Raises net.core.rmem_max to `bytes` when we may (root), so that the daemon gets the receive buffer it
 * asks for; returns what was there before (to restore) and whether it changed. Never lowers it.
 */
export function raiseRmemMax(bytes: number): {
  before: number;
  after: number;
  raised: boolean;
  note: string;
} {
  const before = rmemMax();
  if (before >= bytes) return { before, after: before, raised: false, note: 'already large enough' };
  if (process.getuid?.() !== 0) return { before, after: before, raised: false, note: 'not root: left as is' };
  try {
    writeFileSync(RMEM_MAX, String(bytes));
  } catch (err) {
    return { before, after: rmemMax(), raised: false, note: `could not raise it: ${String(err)}` };
  }
  return { before, after: rmemMax(), raised: true, note: `raised from ${before} for the run` };
}

export function restoreRmemMax(bytes: number): void {
  try {
    writeFileSync(RMEM_MAX, String(bytes));
  } catch {
    // not ours to fix: reported by the caller's note
  }
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  node: string;
  kernel: string;
  date: string;
  loadAverage: string;
}

export function machineInfo(): MachineInfo {
  const model =
    safe(() => /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]) ?? cpus()[0]?.model;
  return {
    cpuModel: (model ?? 'unknown').trim(),
    cores: cpus().length,
    memoryBytes: totalmem(),
    node: process.version,
    kernel: release(),
    date: new Date().toISOString(),
    loadAverage: existsSync('/proc/loadavg') ? readFileSync('/proc/loadavg', 'utf8').trim() : '',
  };
}

/** Our process and all its descendants (daemons, workers, senders, redis-server). */
export function processTree(root = process.pid): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...childPids(out[i]!));
  return out;
}

/**
 * Starts measuring the CPU that processes outside our tree use (other jobs on a shared machine); the
 * returned function stops and gives it in cores. `extraMs` is CPU of ours that exited meanwhile and so
 * is no longer in the tree (the native sender), to be left out.
 */
export function foreignLoad(): (extraMs?: number) => number {
  const m0 = machineTicks();
  const t0 = performance.now();
  const before = new Map(processTree().map((p) => [p, safeCpu(p)]));
  return (extraMs = 0) => {
    const m1 = machineTicks();
    let oursMs = extraMs;
    for (const p of processTree()) oursMs += safeCpu(p) - (before.get(p) ?? 0);
    const seconds = (performance.now() - t0) / 1000;
    return Math.round((Math.max(0, ticksToMs(m1.tasks - m0.tasks) - oursMs) / 1000 / seconds) * 100) / 100;
  };
}
