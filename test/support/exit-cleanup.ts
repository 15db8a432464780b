import { readFileSync } from 'node:fs';

/*
 * Synchronous cleanup that runs however the test process ends short of SIGKILL: a normal exit, a thrown
 * error, Ctrl-C, a SIGTERM, or tap's timeout (tap ends a test process that overran with SIGALRM, then
 * SIGKILL half a second later). A signal's default action skips the 'exit' event, so each signal gets a
 * listener that cleans up and raises the same signal again: once this listener is gone the signal takes
 * its course (or the next listener's, e.g. tap's signal-exit, which then reports the timeout).
 *
 * What SIGKILL leaves behind is for the next run's start-up sweep (test/support/netns.ts,
 * test/support/redis-cluster.ts), which can tell a dead run's leftovers by the pid in their names.
 */

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGALRM'] as const;
const cleanups = new Set<() => void>();
let hooked = false;

function runAll(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // cleanup is best effort; the next one must still run
    }
  }
}

/** Runs `fn` (synchronous) at exit or on a fatal signal, once; returns a function that cancels it. */
export function atExit(fn: () => void): () => void {
  cleanups.add(fn);
  if (!hooked) {
    hooked = true;
    process.on('exit', runAll);
    for (const signal of SIGNALS) {
      process.once(signal, () => {
        runAll();
        process.kill(process.pid, signal);
      });
    }
  }
  return () => {
    cleanups.delete(fn);
  };
}

/**
 * Whether process `pid` is alive, for telling a dead run's leftovers from a live run's: a zombie (dead,
 * not yet reaped by its parent) counts as dead.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state after the last ')' (comm may hold spaces or ')').
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
