import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { driverId, Fleet } from './fleet.ts';

/**
 * The Redis baseline's ingest: the same seeded fleet as the UDP sender (support/fleet.ts, same seed,
 * same movement), written to a Redis GEO set with GEOADD at a given rate of position updates. As a
 * Redis-backed service would, it batches: the updates due each millisecond go out as one variadic
 * GEOADD on one connection. A child process, as the UDP sender is.
 */

export const GEO_KEY = 'cabtrack:bench:cabs';

type ToUpdater =
  | { t: 'init'; port: number; drivers: number; seed: number; startTime: number }
  | { t: 'skip'; count: number }
  | { t: 'load' }
  | { t: 'run'; rate: number; seconds: number };

export interface UpdateResult {
  updates: number;
  seconds: number;
  rate: number;
  cpuMs: number;
}

type FromUpdater = { t: 'ok' } | { t: 'done'; result: UpdateResult } | { t: 'error'; message: string };

const SELF = fileURLToPath(import.meta.url);
/** Members per GEOADD at most, and GEOADDs awaiting their reply at most. */
const MAX_BATCH = 1000;
const MAX_INFLIGHT = 64;

export class GeoUpdater {
  readonly #proc: ChildProcess;
  #waiting: ((m: FromUpdater) => void) | null = null;

  private constructor(proc: ChildProcess) {
    this.#proc = proc;
    proc.on('message', (m: FromUpdater) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.(m);
    });
  }

  static async start(port: number, drivers: number, seed: number, startTime: number): Promise<GeoUpdater> {
    const u = new GeoUpdater(fork(SELF, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await u.#ask({ t: 'init', port, drivers, seed, startTime });
    return u;
  }

  get pid(): number {
    return this.#proc.pid!;
  }

  /** Moves the fleet on by `count` fixes without writing them (to match the UDP sender's fleet). */
  async skip(count: number): Promise<void> {
    await this.#ask({ t: 'skip', count });
  }

  /** GEOADDs every driver's current position. */
  async load(): Promise<void> {
    await this.#ask({ t: 'load' });
  }

  async run(rate: number, seconds: number): Promise<UpdateResult> {
    const m = await this.#ask({ t: 'run', rate, seconds });
    if (m.t !== 'done') throw new Error('unexpected answer');
    return m.result;
  }

  stop(): void {
    if (this.#proc.exitCode === null) this.#proc.kill('SIGTERM');
  }

  #ask(m: ToUpdater): Promise<FromUpdater> {
    return new Promise((resolve, reject) => {
      this.#waiting = (a) => (a.t === 'error' ? reject(new Error(a.message)) : resolve(a));
      this.#proc.send(m);
    });
  }
}

function child(): void {
  let redis: Redis;
  let fleet: Fleet;
  let next = 0;
  const reply = (m: FromUpdater): void => {
    process.send!(m);
  };
  const advance = (): number => {
    const i = next;
    next = next + 1 === fleet.size ? 0 : next + 1;
    fleet.step(i);
    return i;
  };
  const member = (i: number, args: Array<string | number>): void => {
    args.push(fleet.lon[i]!.toFixed(6), fleet.lat[i]!.toFixed(6), driverId(i));
  };

  process.on('message', async (m: ToUpdater) => {
    try {
      switch (m.t) {
        case 'init':
          fleet = new Fleet(m.drivers, m.seed, m.startTime);
          redis = new Redis({ port: m.port, host: '127.0.0.1', lazyConnect: true });
          await redis.connect();
          await redis.del(GEO_KEY);
          reply({ t: 'ok' });
          return;
        case 'skip':
          for (let k = 0; k < m.count; k++) advance();
          reply({ t: 'ok' });
          return;
        case 'load':
          for (let from = 0; from < fleet.size; from += 1000) {
            const args: Array<string | number> = [GEO_KEY];
            for (let i = from; i < Math.min(fleet.size, from + 1000); i++) member(i, args);
            await redis.call('GEOADD', ...args);
          }
          reply({ t: 'ok' });
          return;
        case 'run': {
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const total = Math.round(m.rate * m.seconds);
          let done = 0;
          let inflight = 0;
          while (done < total) {
            const due = Math.min(total, Math.ceil(((performance.now() - t0) / 1000) * m.rate));
            // When Redis falls behind (it is busy with queries), updates wait here rather than pile up
            // in the client; the achieved rate says so. Batches are capped to keep commands small.
            while (due > done && inflight < MAX_INFLIGHT) {
              const args: Array<string | number> = [GEO_KEY];
              const upTo = Math.min(due, done + MAX_BATCH);
              for (; done < upTo; done++) member(advance(), args);
              inflight++;
              void redis.call('GEOADD', ...args).finally(() => {
                inflight--;
              });
            }
            await new Promise((r) => setTimeout(r, 1));
          }
          while (inflight > 0) await new Promise((r) => setTimeout(r, 1));
          const seconds = (performance.now() - t0) / 1000;
          const cpu = process.cpuUsage(cpu0);
          reply({
            t: 'done',
            result: { updates: done, seconds, rate: done / seconds, cpuMs: (cpu.user + cpu.system) / 1000 },
          });
          return;
        }
      }
    } catch (err) {
      reply({ t: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] === SELF && process.send !== undefined) child();
