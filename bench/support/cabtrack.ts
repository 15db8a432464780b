import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { type Daemon, OPERATOR, startDaemon } from '../../test/support/daemon.ts';
import { cabNumber, driverId, sessionHex } from './fleet.ts';
import { childPids, udpQueue } from './proc.ts';

/**
 * The real daemon for benchmarks: started as the tests start it (test/support/daemon.ts: a child
 * process on free loopback ports), plus what benchmarks need to know about it.
 */

export { CLIENT, OPERATOR } from '../../test/support/daemon.ts';

/**
 * The fleet's fix clocks run ahead of the wall clock (see fleet.ts), so the benchmarks start them a week
 * minus a bit in the past and give the daemon the longest idle timeout its configuration allows: no
 * fix is then `stale` or `future`, and nothing expires mid-run. Expiry costs nothing per datagram.
 */
export const IDLE_TIMEOUT_S = 7 * 86_400;
export const fleetStartTime = (): number => Math.floor(Date.now() / 1000) - IDLE_TIMEOUT_S + 3600;

const running = new Set<Daemon>();
// A benchmark that throws must not leave a daemon behind on a shared machine.
process.once('exit', () => {
  for (const d of running) d.proc.kill('SIGTERM');
});

export async function startCabtrack(workers: number, env: Record<string, string> = {}): Promise<Daemon> {
  const d = await startDaemon({
    CABTRACK_WORKERS: String(workers),
    CABTRACK_IDLE_TIMEOUT_S: String(IDLE_TIMEOUT_S),
    CABTRACK_LOG_LEVEL: 'warn',
    ...env,
  });
  running.add(d);
  void d.exited().then(() => running.delete(d));
  return d;
}

/** The primary and its workers, primary first. */
export function daemonPids(d: Daemon): { primary: number; workers: number[] } {
  return { primary: d.proc.pid!, workers: childPids(d.proc.pid!) };
}

/** The workers by role (CABTRACK_ROLE in each one's environment, as the primary forked it). */
export function workersByRole(d: Daemon): { ingest: number[]; http: number[] } {
  const out = { ingest: [] as number[], http: [] as number[] };
  for (const pid of childPids(d.proc.pid!)) {
    let env = '';
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    if (env.split('\0').includes('CABTRACK_ROLE=http')) out.http.push(pid);
    else out.ingest.push(pid);
  }
  return out;
}

/** Every sample of /metrics, summed over labels: name -> value. */
export async function scrape(d: Daemon): Promise<Map<string, number>> {
  const res = await fetch(`${d.url}/metrics`);
  const text = await res.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.lastIndexOf(' ');
    const name = brace >= 0 && brace < space ? line.slice(0, brace) : line.slice(0, line.indexOf(' '));
    out.set(name, (out.get(name) ?? 0) + Number(line.slice(space + 1)));
  }
  return out;
}

export interface IngestCounts {
  received: number;
  accepted: number;
  rejected: number;
  drivers: number;
}

export async function ingestCounts(d: Daemon): Promise<IngestCounts> {
  const m = await scrape(d);
  return {
    received: m.get('cabtrack_datagrams_received_total') ?? 0,
    accepted: m.get('cabtrack_datagrams_accepted_total') ?? 0,
    rejected: m.get('cabtrack_datagrams_rejected_total') ?? 0,
    drivers: m.get('cabtrack_drivers') ?? 0,
  };
}

/** Waits until nothing waits in the receive queues of `port` (the receivers have read everything). */
export async function drained(port: number, timeoutMs = 15_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  let empty = 0;
  while (Date.now() < end) {
    empty = udpQueue(port).queued === 0 ? empty + 1 : 0;
    // Three empty looks 20 ms apart: the last datagrams read are handled by then.
    if (empty >= 3) return true;
    await sleep(20);
  }
  return false;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Registration {
  registered: number;
  seconds: number;
  perSecond: number;
  /** True when the deadline stopped it before every session was registered. */
  timedOut: boolean;
  /** PUTs answered 503 and sent again. */
  retried: number;
}

/**
 * Registers drivers [from, to) of the fleet with PUT /v1/sessions/{session}, as an operator would,
 * over raw keep-alive connections with HTTP/1.1 pipelining (the primary is the bottleneck, about
 * 80 us of its CPU a session here, and a client library would only add its own cost on the same two
 * cores). A 503 (the primary did not answer an HTTP worker in time: a pause of its event loop) is sent
 * again, as an operator's client would, and counted. Stops at `deadline` (Date.now() ms) and says how
 * far it got.
 */
export async function registerFleet(
  d: Daemon,
  seed: number,
  from: number,
  to: number,
  deadline = Number.POSITIVE_INFINITY,
  connections = 4,
  depth = 128,
): Promise<Registration> {
  let next = from;
  let done = 0;
  let retried = 0;
  const again: number[] = [];
  const t0 = performance.now();
  const request = (i: number): string => {
    const body = `{"driverId":"${driverId(i)}","cab":"${cabNumber(i)}"}`;
    return (
      `PUT /v1/sessions/${sessionHex(seed, i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: Bearer ${OPERATOR}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`
    );
  };
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = connect(d.httpPort, '127.0.0.1');
      // The sessions asked for on this connection, oldest first: answers come back in that order.
      const inflight: number[] = [];
      let buf = '';
      const pump = (): void => {
        let out = '';
        while (inflight.length < depth && Date.now() < deadline) {
          const i = again.pop() ?? (next < to ? next++ : -1);
          if (i < 0) break;
          out += request(i);
          inflight.push(i);
        }
        if (out !== '') s.write(out);
        else if (inflight.length === 0) {
          s.end();
          resolve();
        }
      };
      s.setEncoding('latin1');
      s.on('connect', pump);
      s.on('data', (chunk: string) => {
        buf += chunk;
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) break;
          const head = buf.slice(0, end);
          const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buf.length < end + 4 + len) break;
          buf = buf.slice(end + 4 + len);
          const i = inflight.shift()!;
          if (/^HTTP\/1\.1 503/.test(head)) {
            again.push(i);
            retried++;
          } else if (!/^HTTP\/1\.1 20[01]/.test(head)) {
            reject(new Error(`PUT /v1/sessions: ${head.split('\r\n')[0]}`));
            s.destroy();
            return;
          } else done++;
        }
        pump();
      });
      s.on('error', reject);
    });
  await Promise.all(Array.from({ length: connections }, one));
  const seconds = (performance.now() - t0) / 1000;
  return { registered: done, seconds, perSecond: done / seconds, timedOut: from + done < to, retried };
}

/**
 * Polls cabtrack_drivers until it reaches `n`, or stops growing for `stallMs` (the fixes that were
 * lost will not bring their drivers), or `timeoutMs` passes; returns the last value seen.
 */
export async function waitDrivers(d: Daemon, n: number, timeoutMs: number, stallMs = 1500): Promise<number> {
  const end = Date.now() + timeoutMs;
  let seen = -1;
  let since = Date.now();
  while (Date.now() < end) {
    const now = (await ingestCounts(d)).drivers;
    if (now >= n) return now;
    if (now !== seen) {
      seen = now;
      since = Date.now();
    } else if (Date.now() - since > stallMs) return now;
    await sleep(200);
  }
  return seen;
}
