import { enableCompileCache } from 'node:module';

/**
 * Entry point of every cabtrack process: the primary and each worker it forks run this file.
 *
 * The on-disk compile cache is turned on before anything else loads. Every process strips the types of
 * the same modules and compiles them at start; from the cache (the stripped code and V8's code for it,
 * keyed by the sources' contents and Node's version) a daemon is ready in about 2 s instead of 3.5 on
 * two cores. That counts when a crashed worker is replaced while its drivers wait, and when several
 * processes start at once on few cores. The directory is handed to the workers in their environment,
 * so they use it from their first module on. NODE_COMPILE_CACHE=dir moves it (default: the OS temp
 * directory) and NODE_DISABLE_COMPILE_CACHE=1 turns it off; a cache that cannot be made is not an error.
 */
const cache = enableCompileCache();
if (cache.directory !== undefined) process.env['NODE_COMPILE_CACHE'] ??= cache.directory;
await import('./daemon.ts');
