import cluster from 'node:cluster';
import { compileCacheFailure } from './compile-cache.ts';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import { configureLog, log } from './log.ts';

/**
 * The daemon, loaded by src/main.ts: the primary supervises; ingest workers take UDP into their
 * shards; HTTP workers serve the API from their read replicas. Which one this process is comes from
 * CABTRACK_ROLE, set by the primary when it forks.
 *
 * Each process loads only its own role's modules: an ingest worker has no use for the HTTP server, the
 * pages and the streams, nor an HTTP worker for the shards and the UDP path. The primary's messages
 * that a worker could miss while it loads are asked for again by the worker once it runs (`hello`).
 */
let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`cabtrack: bad configuration: ${err.message}\n`);
  process.exit(2);
}
const role = cluster.isPrimary ? 'primary' : (process.env['CABTRACK_ROLE'] ?? 'ingest');
configureLog(config.logLevel, cluster.isPrimary ? 'primary' : `${role}-${cluster.worker?.id}`);

if (cluster.isPrimary) {
  const failure = compileCacheFailure();
  if (failure !== null) {
    log.warn('compile cache unavailable: every process compiles every module at each start (slower)', {
      directory: process.env['NODE_COMPILE_CACHE'] ?? null,
      reason: failure,
    });
  }
  const { startPrimary } = await import('./cluster/primary.ts');
  const { stop } = await startPrimary(config).catch((err: unknown) => {
    // Something the primary cannot start with (a host id in use by another host): said, not a stack.
    process.stderr.write(`cabtrack: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
  const shutdown = (signal: string): void => {
    log.info('shutting down', { signal });
    stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} else if (role === 'http') {
  const { startHttpWorker } = await import('./cluster/http-worker.ts');
  // The operator token is the primary's (generated there when none is configured).
  startHttpWorker(
    config,
    { operator: config.operatorToken, client: config.clientToken },
    process.env['CABTRACK_RUN_DIR'] ?? '',
  );
} else {
  const { startIngestWorker } = await import('./cluster/ingest-worker.ts');
  startIngestWorker(config, process.env['CABTRACK_RUN_DIR'] ?? '');
}
