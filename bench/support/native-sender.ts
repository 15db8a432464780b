import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The native send engine (sendmmsg.c, next to this file), for the benchmarks' sender
 * (bench/support/sender.ts) and the overload test (test/hostile-overload.test.ts): built with `cc` once
 * per source version into the temp directory, and run as a process of its own.
 */

const C_SOURCE = fileURLToPath(new URL('./sendmmsg.c', import.meta.url));
const NOTE = 'sendmmsg(2), 64 datagrams a call';

/** The engine's path, or null (and why) when there is no C compiler. */
export function buildSendmmsg(): { path: string | null; note: string } {
  const src = readFileSync(C_SOURCE);
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 12);
  const out = join(tmpdir(), `cabtrack-bench-sendmmsg-${hash}`);
  if (existsSync(out)) return { path: out, note: NOTE };
  try {
    execFileSync('cc', ['-O2', '-o', out, C_SOURCE], { stdio: 'pipe' });
    return { path: out, note: NOTE };
  } catch (err) {
    return { path: null, note: `no native engine (cc failed: ${String(err).split('\n')[0]})` };
  }
}

export interface NativeRun {
  sent: number;
  seconds: number;
  /** The engine's CPU time, ms. */
  cpuMs: number;
  /** Times the kernel pushed back (ENOBUFS/EAGAIN) and the engine waited. */
  retries: number;
}

/**
 * Sends `records` ([u8 socket index][u8 length][datagram]...) to 127.0.0.1:`port` from the given source
 * ports at `rate` a second (0: flat out) for at most `maxSeconds`; with `loop`, starts over from the
 * first record until then (devices re-sending the same pack).
 */
export function runSendmmsg(
  path: string,
  o: {
    port: number;
    rate: number;
    sourcePorts: number[];
    maxSeconds: number;
    loop?: boolean;
    records: Uint8Array;
  },
): { pid: number; done: Promise<NativeRun>; kill: () => void } {
  const args = [String(o.port), String(o.rate), o.sourcePorts.join(','), String(o.maxSeconds)];
  if (o.loop === true) args.push('loop');
  const proc = spawn(path, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const done = new Promise<NativeRun>((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (c: string) => {
      out += c;
    });
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`native sender exited with ${code}`));
      const r = JSON.parse(out) as {
        sent: number;
        seconds: number;
        userMs: number;
        sysMs: number;
        retries: number;
      };
      resolve({ sent: r.sent, seconds: r.seconds, cpuMs: r.userMs + r.sysMs, retries: r.retries });
    });
  });
  proc.stdin.end(o.records);
  return {
    pid: proc.pid!,
    done,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

/**
 * Free UDP ports on 127.0.0.1 below the usual ephemeral range, so no test daemon picks them meanwhile;
 * each seed starts its own block of 64, so two senders of one benchmark do not pick the same ports (the
 * native engine binds them only while it sends).
 */
export async function pickSourcePorts(n: number, seed: number): Promise<number[]> {
  const ports: number[] = [];
  let p = 20_000 + (seed % 150) * 64;
  while (ports.length < n && p < 32_000) {
    const port = p++;
    const free = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) ports.push(port);
  }
  if (ports.length < n) throw new Error(`only ${ports.length} free source ports`);
  return ports;
}
