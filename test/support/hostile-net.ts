import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Daemon } from './daemon.ts';

/**
 * Tools for the hostile tests (test/hostile-*.test.ts): one scrape of /metrics read many ways, the
 * kernel's UDP counters, paced sending that the kernel does not drop, and the daemon's processes.
 */

/** One scrape of /metrics: every sample, so a check of several counters costs one request. */
export class Samples {
  readonly #lines: string[];
  constructor(text: string) {
    this.#lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  }

  /** The value of one sample (0 when absent), as Daemon.metric() reads it. */
  get(name: string, labels: Record<string, string> = {}): number {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of this.#lines) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return 0;
  }

  /** The sum of every sample of `name` that has these labels (and any others). */
  sum(name: string, labels: Record<string, string> = {}): number {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    let n = 0;
    for (const line of this.#lines) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (want.every((w) => line.includes(w))) n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return n;
  }

  /** Every sample of a labelled metric, by the value of one label. */
  byLabel(name: string, label: string): Record<string, number> {
    const out: Record<string, number> = {};
    const re = new RegExp(`${label}="([^"]*)"`);
    for (const line of this.#lines) {
      if (!line.startsWith(`${name}{`)) continue;
      const m = re.exec(line);
      if (m !== null) out[m[1]!] = Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return out;
  }

  get received(): number {
    return this.get('cabtrack_datagrams_received_total');
  }

  get accepted(): number {
    return this.get('cabtrack_datagrams_accepted_total');
  }

  /** Datagrams dropped, summed over every reason. */
  get rejected(): number {
    let n = 0;
    for (const v of Object.values(this.byLabel('cabtrack_datagrams_rejected_total', 'reason'))) n += v;
    return n;
  }

  rejectedFor(reason: string): number {
    return this.get('cabtrack_datagrams_rejected_total', { reason });
  }
}

export async function scrape(d: Daemon): Promise<Samples> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${d.url}/metrics`);
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
      return new Samples(await res.text());
    } catch (err) {
      // A pooled keep-alive connection the server closed while this process was busy (a long
      // synchronous step, a loaded machine) fails once; a fresh connection is the fix.
      if (attempt >= 3) throw err;
      await sleep(20);
    }
  }
}

/**
 * Waits until the counters stop moving and every datagram received is accounted for (accepted or
 * rejected): fixes may wait a moment for a claim or a session lookup before they are counted.
 */
export async function settle(d: Daemon, timeoutMs = 15_000): Promise<Samples> {
  const end = Date.now() + timeoutMs;
  let last = '';
  let stableSince = Date.now();
  for (;;) {
    const s = await scrape(d);
    const key = `${s.received}/${s.accepted}/${s.rejected}`;
    if (key !== last) {
      last = key;
      stableSince = Date.now();
    }
    // Stable for 300 ms with nothing in between: the kernel queues are empty and nothing is waiting.
    if (s.received === s.accepted + s.rejected && Date.now() - stableSince >= 300) return s;
    if (Date.now() > end) return s;
    await sleep(50);
  }
}

/** The kernel's UDP counters for this network namespace (/proc/net/snmp): shared by every process. */
export interface UdpCounters {
  InDatagrams: number;
  RcvbufErrors: number;
  InErrors: number;
  SndbufErrors: number;
}

export function udpCounters(): UdpCounters {
  const lines = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'));
  const keys = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const get = (k: string): number => Number(values[keys.indexOf(k)] ?? 0);
  return {
    InDatagrams: get('InDatagrams'),
    RcvbufErrors: get('RcvbufErrors'),
    InErrors: get('InErrors'),
    SndbufErrors: get('SndbufErrors'),
  };
}

/**
 * A socket connected to the daemon's UDP port: one source address, so the kernel's SO_REUSEPORT hash
 * sends all of its datagrams to one worker.
 */
export async function connectedSocket(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.connect(port, '127.0.0.1', () => {
      s.off('error', reject);
      resolve();
    });
  });
  return s;
}

/**
 * Kernel memory one queued datagram takes from a socket's receive buffer (its skb's truesize), for the
 * datagrams the hostile tests send (at most 180 bytes): 832 bytes up to ~100 bytes of payload and 1280
 * beyond, measured on Linux 6 loopback. The windows below are sized from the larger figure.
 */
export const QUEUED_DATAGRAM_BYTES = 1280;

/**
 * How many datagrams may be in flight (sent, not yet counted by the daemon) so that no socket overflows
 * even if every one of them is queued for the same worker: three quarters of the smallest receive buffer a worker
 * got (cabtrack_udp_receive_buffer_bytes is the minimum over workers; the kernel caps it at
 * net.core.rmem_max, so a host with a small cap gets a small window, and a slower but lossless test).
 */
export async function safeWindow(d: Daemon): Promise<number> {
  const granted = (await scrape(d)).get('cabtrack_udp_receive_buffer_bytes');
  return Math.max(64, Math.floor((granted * 0.75) / QUEUED_DATAGRAM_BYTES));
}

/**
 * Keeps the datagrams in flight (sent, not yet counted as received by the daemon) under a window, so
 * the kernel never has to drop one: the caller asks for room before each burst and reports what it
 * sent. `receivedBase` is the daemon's received counter before the first datagram of this pacer.
 */
export class Pacer {
  readonly #d: Daemon;
  readonly window: number;
  readonly #base: number;
  #received: number;
  sent = 0;
  /** Scrapes of /metrics spent waiting for the daemon to catch up. */
  waits = 0;

  constructor(d: Daemon, window: number, receivedBase: number) {
    this.#d = d;
    this.window = window;
    this.#base = receivedBase;
    this.#received = receivedBase;
  }

  /** Resolves once `n` more datagrams fit in the window. */
  async room(n: number): Promise<void> {
    n = Math.min(n, this.window);
    // Past half the window, ask where the daemon is without waiting for the answer, so sending and
    // scraping overlap; wait only when the window is really full.
    if (this.#inFlight() > this.window / 2) this.#ask().catch(() => {});
    while (this.#inFlight() + n > this.window) {
      await this.#ask();
      this.waits++;
    }
  }

  #inFlight(): number {
    return this.sent - (this.#received - this.#base);
  }

  #asking: Promise<void> | null = null;

  #ask(): Promise<void> {
    this.#asking ??= scrape(this.#d).then(
      (s) => {
        this.#received = Math.max(this.#received, s.received);
        this.#asking = null;
      },
      (err: unknown) => {
        this.#asking = null;
        throw err;
      },
    );
    return this.#asking;
  }

  note(n: number): void {
    this.sent += n;
  }

  /** Waits until the daemon has received everything sent; returns the last scrape. */
  async drain(timeoutMs = 20_000): Promise<Samples> {
    return waitReceived(this.#d, this.#base + this.sent, timeoutMs);
  }
}

/** Lets libuv flush queued sends (and run their callbacks) before more are queued. */
export function yieldToLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Waits until the daemon has counted `target` datagrams received; returns the last scrape. */
export async function waitReceived(d: Daemon, target: number, timeoutMs = 20_000): Promise<Samples> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(d);
    if (s.received >= target || Date.now() > end) return s;
    await sleep(25);
  }
}

/**
 * The primary's and the live workers' pids: the ingest workers from their "worker ready" log lines, the
 * HTTP workers from their "http worker ready" ones (logged once on the port).
 */
export function daemonPids(d: Daemon): { primary: number; workers: number[]; http: number[] } {
  const logged = (said: string): number[] =>
    d.logs
      .filter((l) => l.includes(`"${said}"`))
      .map((l) => (JSON.parse(l) as { pid: number }).pid)
      .filter(alive);
  return { primary: d.proc.pid!, workers: logged('worker ready'), http: logged('http worker ready') };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resident set size of a process, from /proc/<pid>/status (0 if it is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A session as the API writes it: 16 lowercase hex digits. */
export function hex(session: bigint): string {
  return session.toString(16).padStart(16, '0');
}

/**
 * Waits until every process of the daemon has a ready Redis connection (cabtrack_redis_up is the
 * minimum over processes). /readyz answers 200 before that: a worker still connecting refuses new
 * sessions as lookup_failed, which a test that sends at once would see.
 */
export async function redisUp(d: Daemon, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await scrape(d)).get('cabtrack_redis_up') !== 1) {
    if (Date.now() > end) throw new Error('timed out waiting for cabtrack_redis_up 1');
    await sleep(25);
  }
}

/**
 * Pins processes (every thread of each) to one CPU with taskset, so a load generator and the daemon
 * do not fight over the same cores: on a 2-core machine that is the only way to offer the daemon more
 * than it can take. Children forked later inherit the pinning. False when it cannot be done (no
 * taskset, one CPU), and the caller goes on unpinned.
 */
export function pinToCpu(pids: readonly number[], cpu: number): boolean {
  if (availableParallelism() < 2) return false;
  try {
    for (const pid of pids)
      execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Caps processes (and the children they fork later) at `share` of one CPU with a cgroup's CFS quota
 * (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), in 10 ms periods so the daemon runs in short slices
 * rather than 100 ms bursts. A loopback sender pays about as much per datagram as the receiver (the
 * kernel's delivery is charged to it), so on a 2-core machine even a native sender on its own core
 * cannot offer twice what a daemon with a whole core takes: capped, it can. Returns the function that
 * removes the cgroup once the processes have exited, or null when the machine does not allow it (not
 * root, no cpu controller), and the caller goes on uncapped.
 */
export function capCpu(pids: readonly number[], share: number): (() => void) | null {
  const period = 10_000;
  const quota = Math.max(1000, Math.round(period * share));
  const name = `cabtrack-test-${process.pid}`;
  const v2 = '/sys/fs/cgroup';
  const v1 = '/sys/fs/cgroup/cpu';
  const tries: Array<{ dir: string; limit: () => void }> = [];
  if (
    existsSync(`${v2}/cgroup.controllers`) &&
    readFileSync(`${v2}/cgroup.controllers`, 'utf8').includes('cpu')
  ) {
    tries.push({
      dir: `${v2}/${name}`,
      limit: () => writeFileSync(`${v2}/${name}/cpu.max`, `${quota} ${period}`),
    });
  }
  if (existsSync(`${v1}/cpu.cfs_quota_us`)) {
    tries.push({
      dir: `${v1}/${name}`,
      limit: () => {
        writeFileSync(`${v1}/${name}/cpu.cfs_period_us`, String(period));
        writeFileSync(`${v1}/${name}/cpu.cfs_quota_us`, String(quota));
      },
    });
  }
  for (const { dir, limit } of tries) {
    try {
      mkdirSync(dir);
    } catch {
      continue;
    }
    try {
      limit();
      // cgroup.procs moves a whole process (every thread), in v1 as in v2.
      for (const pid of pids) writeFileSync(`${dir}/cgroup.procs`, String(pid));
      return () => {
        try {
          rmdirSync(dir);
        } catch {
          // Still has a process (one that outlived the test): the cgroup goes with the machine.
        }
      };
    } catch {
      try {
        rmdirSync(dir);
      } catch {
        // Processes already moved in: left as it is, as above.
      }
    }
  }
  return null;
}
