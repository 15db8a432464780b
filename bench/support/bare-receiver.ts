import { type ChildProcess, fork } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';

/**
 * The ceiling: a Node UDP socket that only counts what it receives, with the receive buffer the daemon
 * asks for (CABTRACK_RECV_BUFFER_BYTES, 32 MiB by default). Whatever the daemon does per datagram beyond
 * this is the cost of the service. It runs as its own process, as a worker does.
 */

const SELF = fileURLToPath(import.meta.url);
/** The daemon's default SO_RCVBUF request (config/default.json recvBufferBytes). */
export const DAEMON_RECV_BUFFER = 33_554_432;

type FromReceiver = { t: 'ready'; port: number; recvBufferBytes: number } | { t: 'count'; n: number };

export class BareReceiver {
  readonly #proc: ChildProcess;
  #waiting: ((m: FromReceiver) => void) | null = null;
  port = 0;
  recvBufferBytes = 0;

  private constructor(proc: ChildProcess) {
    this.#proc = proc;
    proc.on('message', (m: FromReceiver) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.(m);
    });
  }

  static async start(recvBufferBytes = DAEMON_RECV_BUFFER): Promise<BareReceiver> {
    const r = new BareReceiver(
      fork(SELF, [String(recvBufferBytes)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
    );
    const m = await r.#next();
    if (m.t !== 'ready') throw new Error('bare receiver did not start');
    r.port = m.port;
    r.recvBufferBytes = m.recvBufferBytes;
    return r;
  }

  get pid(): number {
    return this.#proc.pid!;
  }

  /** Datagrams received so far. */
  async count(): Promise<number> {
    const p = this.#next();
    this.#proc.send('count');
    const m = await p;
    if (m.t !== 'count') throw new Error('unexpected answer');
    return m.n;
  }

  stop(): void {
    if (this.#proc.exitCode === null) this.#proc.kill('SIGTERM');
  }

  #next(): Promise<FromReceiver> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }
}

function child(): void {
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: Number(process.argv[2]) });
  let n = 0;
  socket.on('message', () => {
    n++;
  });
  socket.bind(0, '127.0.0.1', () => {
    process.send!({ t: 'ready', port: socket.address().port, recvBufferBytes: socket.getRecvBufferSize() });
  });
  process.on('message', () => process.send!({ t: 'count', n }));
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] === SELF && process.send !== undefined) child();
