import { createRequire } from 'node:module';

/**
 * undici, loaded on first use rather than with the modules that may use it. Every daemon process loads
 * the OSRM client's module (the metrics name its outcomes) and the peers' (the API names their header),
 * but only an ingest worker with OSRM configured, and a host among several, ever make a pool. Loading
 * undici costs a process about 110 ms at start (from the compile cache) and 5 MB of resident memory.
 * undici is CommonJS, so it comes through require, synchronously, where the first pool is made.
 */
const require = createRequire(import.meta.url);

export function undici(): typeof import('undici') {
  return require('undici') as typeof import('undici');
}
