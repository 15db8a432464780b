import { type ChildProcess, fork } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { checkEncoder, Fleet } from './fleet.ts';
import { buildSendmmsg, pickSourcePorts, runSendmmsg } from './native-sender.ts';

/**
 * The fleet's driver apps as one process: encodes each run's datagrams ahead of time (the phones'
 * work, not the receiver's), then pushes them to 127.0.0.1:<port> at a given rate from a fixed set of
 * source sockets. Run it as a child process (Sender below) so that its CPU is not the benchmark's.
 *
 * Drivers are spread over the sockets in runs of 64 consecutive drivers, so each driver always comes
 * from one source address (one SO_REUSEPORT hash, one worker, as a phone behind one NAT mapping), and
 * the native engine can batch 64 datagrams of one socket into one sendmmsg call. The source ports are
 * picked once, below the ephemeral range, and kept for the sender's life: a driver stays on its worker
 * from one run to the next.
 *
 * Pacing: the engine sends what is due every millisecond (rate x elapsed), so the offered rate is smooth
 * at the millisecond scale, as thousands of independent phones are.
 */

export type Engine = 'native' | 'node';

export type ToSender =
  | { t: 'init'; drivers: number; seed: number; startTime: number; sockets: number; engine: Engine | 'auto' }
  | { t: 'run'; port: number; rate: number; count: number; maxSeconds: number };

export type FromSender =
  | { t: 'ready'; engine: Engine; engineNote: string; sourcePorts: number[] }
  | { t: 'done'; result: SendResult }
  | { t: 'error'; message: string };

export interface SendResult {
  sent: number;
  /** Seconds from the first datagram to the last. */
  seconds: number;
  /** Achieved rate, datagrams a second. */
  rate: number;
  /** The engine's CPU time while it ran (encoding excluded), ms. */
  cpuMs: number;
  /** Times the kernel pushed back (ENOBUFS/EAGAIN) and the native engine waited. */
  retries: number;
  /** Time spent encoding the run's datagrams beforehand, ms. */
  encodeMs: number;
}

const SELF = fileURLToPath(import.meta.url);
/** Drivers per run of one socket: the native engine's batch size. */
const RUN = 64;
/** A record: socket index, length, datagram (a fleet fix is at most 48 bytes; 64 is the daemon's limit). */
const MAX_RECORD = 2 + 64;

/** The parent's handle on a sender process. */
export class Sender {
  readonly #proc: ChildProcess;
  #waiting: ((m: FromSender) => void) | null = null;
  engine: Engine = 'node';
  engineNote = '';
  sourcePorts: number[] = [];

  private constructor(proc: ChildProcess) {
    this.#proc = proc;
    proc.on('message', (m: FromSender) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.(m);
    });
    proc.on('exit', (code) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.({ t: 'error', message: `sender exited with ${code}` });
    });
  }

  static async start(options: {
    drivers: number;
    seed: number;
    startTime: number;
    sockets: number;
    engine?: Engine | 'auto';
  }): Promise<Sender> {
    const s = new Sender(fork(SELF, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const m = await s.#ask({ t: 'init', engine: 'auto', ...options });
    if (m.t !== 'ready') throw new Error(m.t === 'error' ? m.message : `unexpected ${m.t}`);
    s.engine = m.engine;
    s.engineNote = m.engineNote;
    s.sourcePorts = m.sourcePorts;
    return s;
  }

  /**
   * Sends the next `count` fixes (round-robin over the fleet) at `rate` a second (0: flat out), for at
   * most `maxSeconds` (0: no limit); fixes encoded but not sent are skipped, not sent later.
   */
  async run(port: number, rate: number, count: number, maxSeconds = 0): Promise<SendResult> {
    const m = await this.#ask({ t: 'run', port, rate, count, maxSeconds });
    if (m.t !== 'done') throw new Error(m.t === 'error' ? m.message : `unexpected ${m.t}`);
    return m.result;
  }

  get pid(): number {
    return this.#proc.pid!;
  }

  stop(): void {
    if (this.#proc.exitCode === null) this.#proc.kill('SIGTERM');
  }

  #ask(m: ToSender): Promise<FromSender> {
    if (this.#waiting !== null) throw new Error('one request at a time');
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#proc.send(m);
    });
  }
}

// ---- the child process ----

async function child(): Promise<void> {
  let fleet: Fleet | null = null;
  let engine: Engine = 'node';
  let nativePath: string | null = null;
  let ports: number[] = [];
  const nodeSockets = new Map<string, dgram.Socket[]>();
  let next = 0;

  const reply = (m: FromSender): void => {
    process.send!(m);
  };

  /** The next `count` fixes, as records; advances the fleet. */
  const encode = (count: number): Uint8Array => {
    const f = fleet!;
    const out = new Uint8Array(count * MAX_RECORD);
    let at = 0;
    for (let k = 0; k < count; k++) {
      const i = next;
      next = next + 1 === f.size ? 0 : next + 1;
      f.step(i);
      out[at] = Math.floor(i / RUN) % ports.length;
      const len = f.encode(i, out, at + 2);
      out[at + 1] = len;
      at += 2 + len;
    }
    return out.subarray(0, at);
  };

  const runNative = async (
    port: number,
    rate: number,
    records: Uint8Array,
    maxSeconds: number,
  ): Promise<Omit<SendResult, 'encodeMs'>> => {
    const r = await runSendmmsg(nativePath!, { port, rate, sourcePorts: ports, maxSeconds, records }).done;
    return { sent: r.sent, seconds: r.seconds, rate: r.sent / r.seconds, cpuMs: r.cpuMs, retries: r.retries };
  };

  const socketsFor = async (port: number): Promise<dgram.Socket[]> => {
    const key = String(port);
    let socks = nodeSockets.get(key);
    if (socks !== undefined) return socks;
    for (const old of nodeSockets.values()) {
      await Promise.all(old.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    }
    nodeSockets.clear();
    socks = [];
    for (const p of ports) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => s.bind(p, '127.0.0.1', () => resolve()));
      await new Promise<void>((resolve) => s.connect(port, '127.0.0.1', () => resolve()));
      socks.push(s);
    }
    nodeSockets.set(key, socks);
    return socks;
  };

  const runNode = async (
    port: number,
    rate: number,
    records: Uint8Array,
    maxSeconds: number,
  ): Promise<Omit<SendResult, 'encodeMs'>> => {
    const socks = await socketsFor(port);
    const buf = Buffer.from(records.buffer, records.byteOffset, records.byteLength);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let sent = 0;
    let at = 0;
    while (at < buf.length) {
      if (maxSeconds > 0 && performance.now() - t0 >= maxSeconds * 1000) break;
      const due = rate > 0 ? ((performance.now() - t0) / 1000) * rate + 1 : sent + 256;
      while (sent < due && at < buf.length) {
        const len = buf[at + 1]!;
        socks[buf[at]!]!.send(buf.subarray(at + 2, at + 2 + len));
        at += 2 + len;
        sent++;
      }
      // Let libuv flush and the clock move on: a millisecond when pacing, a turn of the loop when not.
      await new Promise((r) => (rate > 0 ? setTimeout(r, 1) : setImmediate(r)));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { sent, seconds, rate: sent / seconds, cpuMs: (cpu.user + cpu.system) / 1000, retries: 0 };
  };

  process.on('message', async (m: ToSender) => {
    try {
      if (m.t === 'init') {
        fleet = new Fleet(m.drivers, m.seed, m.startTime);
        checkEncoder(fleet, 256);
        ports = await pickSourcePorts(m.sockets, m.seed);
        let note = 'Node dgram, one send per datagram';
        if (m.engine !== 'node') {
          const built = buildSendmmsg();
          nativePath = built.path;
          note = nativePath === null ? `${built.note}: Node dgram` : built.note;
          if (nativePath === null && m.engine === 'native') throw new Error(built.note);
        }
        engine = nativePath === null ? 'node' : 'native';
        reply({ t: 'ready', engine, engineNote: note, sourcePorts: ports });
        return;
      }
      const t0 = performance.now();
      const records = encode(m.count);
      const encodeMs = performance.now() - t0;
      const r =
        engine === 'native'
          ? await runNative(m.port, m.rate, records, m.maxSeconds)
          : await runNode(m.port, m.rate, records, m.maxSeconds);
      reply({ t: 'done', result: { ...r, encodeMs } });
    } catch (err) {
      reply({ t: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] === SELF && process.send !== undefined) void child();
