/**
 * Entry point of every cabtrack process: the primary and each worker it forks run this file. The
 * compile cache is turned on first (src/compile-cache.ts), then the daemon is loaded through it.
 */
import './compile-cache.ts';

await import('./daemon.ts');
