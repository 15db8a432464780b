import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { pickSourcePorts, runSendmmsg } from '../../bench/support/native-sender.ts';
import { encodeTrack } from '../../src/codec/encode.ts';

/**
 * A load generator in a process of its own (forked by test/hostile-overload.test.ts and scripts/soak.ts
 * through startSender below), so that the test process stays free to query the daemon while the load
 * runs. It sends the fixes of a fleet's recent past over and over, from a few sockets, each driver
 * always from the same one: the first pass is applied, the next ones are stale, like devices that
 * re-send whole packs of fixes after every timeout. The rate is paced in 5 ms steps; 0 means as fast as
 * this process can send.
 *
 * startNativeSender sends the same pack through the native engine (bench/support/sendmmsg.c: sendmmsg,
 * 64 datagrams a system call, in C), which offers several times what a Node process can: on 2 cores a
 * Node sender costs about what a worker spends on a datagram, so Node senders cannot offer twice what
 * the daemon takes.
 */

export interface SenderConfig {
  port: number;
  /** Datagrams a second; 0: as fast as possible. */
  rate: number;
  durationMs: number;
  sockets: number;
  /** The drivers' sessions, 16 hex digits each. */
  sessions: string[];
  /** Fixes per driver in the pack (times `firstTime` on), cycled through. */
  pack: number;
  firstTime: number;
  centre: { lat: number; lon: number };
}

export interface SenderReport {
  sent: number;
  errors: number;
  elapsedMs: number;
}

/** The pack, pack-major (every driver's first fix, then every driver's second...), and each one's socket. */
function packOf(cfg: SenderConfig): { pool: Buffer[]; socketOf: number[] } {
  const pool: Buffer[] = [];
  const socketOf: number[] = [];
  for (let k = 0; k < cfg.pack; k++) {
    for (const [i, hex] of cfg.sessions.entries()) {
      pool.push(
        Buffer.from(
          encodeTrack({
            session: BigInt(`0x${hex}`),
            lat: Math.round((cfg.centre.lat + ((i % 100) - 50) * 0.0004) * 1e6) + k * 50,
            lon: Math.round((cfg.centre.lon + (Math.floor(i / 100) - 10) * 0.0006) * 1e6),
            time: cfg.firstTime + k,
            speed: 30,
          }),
        ),
      );
      socketOf.push(i % cfg.sockets);
    }
  }
  return { pool, socketOf };
}

function run(cfg: SenderConfig): Promise<SenderReport> {
  return new Promise((resolve) => {
    const sockets: dgram.Socket[] = [];
    let errors = 0;
    let ready = 0;
    for (let i = 0; i < cfg.sockets; i++) {
      const s = dgram.createSocket('udp4');
      s.on('error', () => {
        errors++;
      });
      s.bind(0, '127.0.0.1', () => {
        s.connect(cfg.port, '127.0.0.1', () => {
          if (++ready === cfg.sockets) start();
        });
      });
      sockets.push(s);
    }
    const { pool, socketOf } = packOf(cfg);
    const start = (): void => {
      const started = performance.now();
      let sent = 0;
      let at = 0;
      const step = (): void => {
        const elapsed = performance.now() - started;
        if (elapsed >= cfg.durationMs) {
          // Give libuv a moment to hand the last sends to the kernel before reporting.
          setTimeout(() => {
            for (const s of sockets) s.close();
            resolve({ sent: sent - errors, errors, elapsedMs: elapsed });
          }, 100);
          return;
        }
        // Catch up to the rate, but never more than 20 ms worth at once (no burst after a stall).
        const due =
          cfg.rate === 0 ? sent + 2000 : Math.min((elapsed / 1000) * cfg.rate, sent + cfg.rate / 50);
        while (sent < due) {
          sockets[socketOf[at]!]!.send(pool[at]!);
          at = at + 1 === pool.length ? 0 : at + 1;
          sent++;
        }
        if (cfg.rate === 0) setImmediate(step);
        else setTimeout(step, 5);
      };
      step();
    };
  });
}

/** The child: one config in, one report out. */
if (process.send !== undefined && process.argv[2] === 'child') {
  process.once('message', (cfg: SenderConfig) => {
    run(cfg).then((report) => {
      process.send!(report, () => process.exit(0));
    });
  });
}

/** Runs one sender process with `cfg`; resolves with its report when it is done. */
export function startSender(cfg: SenderConfig): {
  pid: number;
  done: Promise<SenderReport>;
  kill: () => void;
} {
  // No inherited execArgv: the test runner's loaders have no business in a load generator.
  const child = fork(fileURLToPath(import.meta.url), ['child'], { execArgv: [], stdio: 'inherit' });
  const done = new Promise<SenderReport>((resolve, reject) => {
    child.once('message', (r: SenderReport) => resolve(r));
    child.once('exit', (code) => reject(new Error(`sender exited with ${code} before reporting`)));
  });
  child.send(cfg);
  return {
    pid: child.pid!,
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** The same load as startSender's, from the native engine at `rate` in all (0: flat out). */
export async function startNativeSender(
  enginePath: string,
  cfg: SenderConfig,
): Promise<{ pid: number; done: Promise<SenderReport>; kill: () => void }> {
  const { pool, socketOf } = packOf(cfg);
  const records = new Uint8Array(pool.reduce((n, b) => n + 2 + b.length, 0));
  let at = 0;
  for (const [i, b] of pool.entries()) {
    records[at] = socketOf[i]!;
    records[at + 1] = b.length;
    records.set(b, at + 2);
    at += 2 + b.length;
  }
  const run = runSendmmsg(enginePath, {
    port: cfg.port,
    rate: cfg.rate,
    // A block of its own (seed 149), clear of the benchmarks' senders and of the ephemeral range.
    sourcePorts: await pickSourcePorts(cfg.sockets, 149),
    maxSeconds: cfg.durationMs / 1000,
    loop: true,
    records,
  });
  return {
    pid: run.pid,
    done: run.done.then((r) => ({ sent: r.sent, errors: 0, elapsedMs: r.seconds * 1000 })),
    kill: run.kill,
  };
}
