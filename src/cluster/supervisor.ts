/**
 * Forks the daemon's workers by role and keeps them running: a worker that dies is forked again, after
 * a delay that doubles while workers die young (a crash loop: a bad configuration, a port taken) and
 * resets once every worker of the role is ready. Pure of I/O: the fork and the clock are ports, so the
 * policy is tested without processes (src/cluster/primary.ts gives it cluster.fork).
 */
export interface WorkerHandle {
  readonly id: number;
  /** Calls back once, when the worker has exited. */
  onExit(fn: (code: number | null, signal: string | null) => void): void;
  kill(signal: NodeJS.Signals): void;
}

export interface SupervisorOptions<Role extends string> {
  /** How many workers of each role. */
  counts: Record<Role, number>;
  fork(role: Role): WorkerHandle;
  now?: () => number;
  schedule?: (fn: () => void, ms: number) => void;
  /** A worker of `role` started (forked). */
  onFork?: (role: Role, w: WorkerHandle) => void;
  /** A worker died (not at shutdown); `delayMs` is how long until its replacement is forked. */
  onDeath?: (
    role: Role,
    w: WorkerHandle,
    info: { code: number | null; signal: string | null; delayMs: number },
  ) => void;
}

/** A worker that dies sooner than this after starting counts towards a crash loop. */
export const CRASH_LOOP_MS = 5000;
export const MAX_RESTART_DELAY_MS = 10_000;

interface Member<Role> {
  role: Role;
  handle: WorkerHandle;
  started: number;
  ready: boolean;
}

export class Supervisor<Role extends string> {
  readonly #o: SupervisorOptions<Role>;
  readonly #now: () => number;
  readonly #schedule: (fn: () => void, ms: number) => void;
  readonly #members = new Map<number, Member<Role>>();
  readonly #delay = new Map<Role, number>();
  #stopping = false;
  /** Workers forked again after one died. */
  restarts = 0;

  constructor(o: SupervisorOptions<Role>) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#schedule =
      o.schedule ??
      ((fn, ms) => {
        setTimeout(fn, ms).unref();
      });
  }

  start(): void {
    for (const role of Object.keys(this.#o.counts) as Role[]) {
      for (let i = 0; i < this.#o.counts[role]; i++) this.#fork(role);
    }
  }

  /** Workers alive of a role (all roles when none is given). */
  alive(role?: Role): WorkerHandle[] {
    const out: WorkerHandle[] = [];
    for (const m of this.#members.values()) if (role === undefined || m.role === role) out.push(m.handle);
    return out;
  }

  roleOf(id: number): Role | undefined {
    return this.#members.get(id)?.role;
  }

  /** The worker is up (bound, listening): once every worker of its role is, the restart delay resets. */
  ready(id: number): void {
    const m = this.#members.get(id);
    if (m === undefined) return;
    m.ready = true;
    if (this.readyCount(m.role) === this.#o.counts[m.role]) this.#delay.set(m.role, 0);
  }

  readyCount(role: Role): number {
    let n = 0;
    for (const m of this.#members.values()) if (m.role === role && m.ready) n++;
    return n;
  }

  isReady(id: number): boolean {
    return this.#members.get(id)?.ready === true;
  }

  /** Stops every worker (SIGTERM) and resolves when all have exited; none is forked again. */
  stop(): Promise<void> {
    this.#stopping = true;
    return Promise.all(
      [...this.#members.values()].map(
        (m) =>
          new Promise<void>((resolve) => {
            m.handle.onExit(() => resolve());
            m.handle.kill('SIGTERM');
          }),
      ),
    ).then(() => {});
  }

  #fork(role: Role): void {
    if (this.#stopping) return;
    const handle = this.#o.fork(role);
    const m: Member<Role> = { role, handle, started: this.#now(), ready: false };
    this.#members.set(handle.id, m);
    handle.onExit((code, signal) => {
      this.#members.delete(handle.id);
      if (this.#stopping) return;
      let delay = this.#delay.get(role) ?? 0;
      if (this.#now() - m.started < CRASH_LOOP_MS)
        delay = Math.min(MAX_RESTART_DELAY_MS, Math.max(100, delay * 2));
      this.#delay.set(role, delay);
      this.restarts++;
      this.#o.onDeath?.(role, handle, { code, signal, delayMs: delay });
      this.#schedule(() => this.#fork(role), delay);
    });
    this.#o.onFork?.(role, handle);
  }
}
