import { constants, enableCompileCache } from 'node:module';

/**
 * The on-disk compile cache, turned on by src/main.ts before anything else loads. Every process strips
 * the types of the same modules and compiles them at start; from the cache (the stripped code and V8's
 * code for it, keyed by the sources' contents and Node's version) a daemon is ready in about 2 s instead
 * of 3.5 on two cores. That counts when a crashed worker is replaced while its drivers wait, and when
 * several processes start at once on few cores. The directory is handed to the workers in their
 * environment, so they use it from their first module on. NODE_COMPILE_CACHE=dir moves it (default: the
 * OS temp directory) and NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
const compileCache = enableCompileCache();
if (compileCache.directory !== undefined) process.env['NODE_COMPILE_CACHE'] ??= compileCache.directory;

/**
 * Why the cache could not be made (a directory that cannot be created or written), or null: the daemon
 * starts without it, only slower, and the primary says so once (src/daemon.ts) so that an operator
 * wondering at slow starts and slow worker replacement finds the cause in the log.
 */
export function compileCacheFailure(): string | null {
  return compileCache.status === constants.compileCacheStatus.FAILED
    ? (compileCache.message ?? 'failed')
    : null;
}
