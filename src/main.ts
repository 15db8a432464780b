import cluster from 'node:cluster';
import { startPrimary } from './cluster/primary.ts';
import { startWorker } from './cluster/worker.ts';
import { ConfigError, loadConfig } from './config.ts';
import { configureLog, log } from './log.ts';

/** Entry point: the primary serves the API and supervises; each worker ingests UDP into its shard. */
let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`cabtrack: bad configuration: ${err.message}\n`);
  process.exit(2);
}
configureLog(config.logLevel, cluster.isPrimary ? 'primary' : `worker-${cluster.worker?.id}`);

if (cluster.isPrimary) {
  const { stop } = await startPrimary(config);
  const shutdown = (signal: string): void => {
    log.info('shutting down', { signal });
    stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} else {
  startWorker(config);
}
