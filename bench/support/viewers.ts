import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

/**
 * A crowd of rider apps in a process of its own (so that their CPU is not the daemon's nor the
 * benchmark's): either `n` viewers of the nearby stream, each on its own connection, reading and
 * counting what arrives; or `n` apps polling GET /v1/drivers/nearest once a second each. Raw sockets for
 * the streams (an EventSource per viewer would cost the load generator more than the server), undici
 * for the polls.
 */

export type ViewersCommand =
  | {
      t: 'stream';
      port: number;
      token: string;
      /** lat, lon pairs: viewer i looks at point i. */
      points: number[];
      radius: number;
      seconds: number;
      /** Connections opened a second while ramping up. */
      rampPerSecond: number;
    }
  | { t: 'poll'; port: number; token: string; points: number[]; radius: number; k: number; seconds: number };

export interface ViewersResult {
  viewers: number;
  /** Viewers whose stream was open for the whole measured window. */
  connected: number;
  /** Seconds measured (after the ramp). */
  seconds: number;
  bytes: number;
  frames: number;
  requests: number;
  errors: number;
  /** CPU the load generator spent, ms (the client side's cost, for the record). */
  cpuMs: number;
}

const SELF = fileURLToPath(import.meta.url);
const FRAME = Buffer.from('data: {"frame":');

export class Viewers {
  readonly #proc = fork(SELF, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });

  get pid(): number {
    return this.#proc.pid!;
  }

  /** Runs a crowd; `mark` hears when the measured window opens and closes (to sample the daemon's CPU). */
  run(cmd: ViewersCommand, mark: (edge: 'start' | 'end') => void = () => {}): Promise<ViewersResult> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: ViewersResult | { t: 'mark'; edge: 'start' | 'end' }): void => {
        if ('t' in m && m.t === 'mark') {
          mark(m.edge);
          return;
        }
        this.#proc.off('message', onMessage);
        resolve(m as ViewersResult);
      };
      this.#proc.on('message', onMessage);
      this.#proc.once('exit', (code) => reject(new Error(`viewers exited ${code}`)));
      this.#proc.send(cmd);
    });
  }

  stop(): void {
    this.#proc.kill('SIGTERM');
  }
}

async function stream(c: Extract<ViewersCommand, { t: 'stream' }>): Promise<ViewersResult> {
  const n = c.points.length / 2;
  const sockets: net.Socket[] = [];
  let bytes = 0;
  let frames = 0;
  let errors = 0;
  let counting = false;
  const open = (i: number): void => {
    const s = net.connect(c.port, '127.0.0.1');
    s.setNoDelay(true);
    s.on('connect', () => {
      s.write(
        `GET /v1/stream/nearby?lat=${c.points[2 * i]!.toFixed(6)}&lon=${c.points[2 * i + 1]!.toFixed(6)}&radius=${c.radius} HTTP/1.1\r\n` +
          `Host: cabtrack\r\nAuthorization: Bearer ${c.token}\r\nAccept: text/event-stream\r\n\r\n`,
      );
    });
    s.on('data', (chunk: Buffer) => {
      if (!counting) return;
      bytes += chunk.length;
      // One data line a frame (the body is chunked, so chunk sizes sit between frames; a chunk of the
      // socket may split a marker, which undercounts by at most one a read).
      for (let at = chunk.indexOf(FRAME); at >= 0; at = chunk.indexOf(FRAME, at + FRAME.length)) frames++;
    });
    s.on('error', () => {
      errors++;
    });
    sockets.push(s);
  };
  // Ramp up, then let every viewer get its snapshot before measuring.
  for (let i = 0; i < n; i++) {
    open(i);
    if (i % Math.max(1, Math.round(c.rampPerSecond / 100)) === 0) await sleep(10);
  }
  await sleep(3000);
  const cpu0 = process.cpuUsage();
  counting = true;
  process.send!({ t: 'mark', edge: 'start' });
  const t0 = performance.now();
  await sleep(c.seconds * 1000);
  counting = false;
  process.send!({ t: 'mark', edge: 'end' });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const connected = sockets.filter((s) => !s.destroyed).length;
  for (const s of sockets) s.destroy();
  return {
    viewers: n,
    connected,
    seconds,
    bytes,
    frames,
    requests: 0,
    errors,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

async function poll(c: Extract<ViewersCommand, { t: 'poll' }>): Promise<ViewersResult> {
  const n = c.points.length / 2;
  const pool = new Pool(`http://127.0.0.1:${c.port}`, { connections: 128, pipelining: 1 });
  let bytes = 0;
  let requests = 0;
  let errors = 0;
  let counting = false;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  // Each app polls once a second, the apps spread evenly over the second.
  const warm = 2;
  const end = t0 + (warm + c.seconds) * 1000;
  let measuredFrom = 0;
  const inflight = new Set<Promise<void>>();
  let tick = 0;
  while (performance.now() < end) {
    // What is due by now goes out, then a millisecond's pause for the answers: paced, not a tight loop.
    const dueBy = Math.floor(((performance.now() - t0) * n) / 1000);
    if (!counting && performance.now() - t0 >= warm * 1000) {
      counting = true;
      measuredFrom = performance.now();
      process.send!({ t: 'mark', edge: 'start' });
    }
    for (; tick < dueBy; tick++) send(tick % n);
    await sleep(1);
  }
  function send(i: number): void {
    const p = pool
      .request({
        method: 'GET',
        path: `/v1/drivers/nearest?lat=${c.points[2 * i]!.toFixed(6)}&lon=${c.points[2 * i + 1]!.toFixed(6)}&radius=${c.radius}&k=${c.k}`,
        headers: { authorization: `Bearer ${c.token}` },
      })
      .then(async (res) => {
        const body = await res.body.arrayBuffer();
        if (!counting) return;
        if (res.statusCode !== 200) errors++;
        requests++;
        // What the app receives: the body and the response's headers (about 150 bytes).
        bytes += body.byteLength + 150;
      })
      .catch(() => {
        if (counting) errors++;
      });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }
  const seconds = (performance.now() - measuredFrom) / 1000;
  counting = false;
  process.send!({ t: 'mark', edge: 'end' });
  const cpu = process.cpuUsage(cpu0);
  await Promise.allSettled([...inflight]);
  await pool.close();
  return {
    viewers: n,
    connected: n,
    seconds,
    bytes,
    frames: 0,
    requests,
    errors,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

if (process.argv[1] === SELF && process.send !== undefined) {
  process.on('message', async (m: ViewersCommand) => {
    const r = m.t === 'stream' ? await stream(m) : await poll(m);
    process.send!(r);
  });
  process.on('disconnect', () => process.exit(0));
}
