import { Cluster, Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { log } from '../log.ts';

/**
 * One ioredis client per process, standalone (CABTRACK_REDIS_URL) or cluster (CABTRACK_REDIS_CLUSTER),
 * or null when neither is set (the embedded registry, no trip persistence).
 *
 * Failure behaviour is chosen here once: reconnect forever with a capped back-off (recovery needs no
 * restart); a command gives up after `commandTimeout` instead of waiting for a Redis that is down, so
 * the API answers 503 and the trip store keeps the record buffered; and no offline queue, so nothing
 * piles up unbounded in ioredis while Redis is away (the callers hold their own bounded buffers).
 */
export function connectRedis(
  config: Config,
  role: string,
  /** shardedSubscribers: SSUBSCRIBE through per-node connections that follow the slots (src/hosts/host-link.ts). */
  options: { shardedSubscribers?: boolean } = {},
): Redis | Cluster | null {
  const common = {
    commandTimeout: 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectionName: `cabtrack-${role}`,
  };
  const retry = (times: number): number => Math.min(100 * 2 ** Math.min(times, 5), 2000);
  let client: Redis | Cluster;
  if (config.redisCluster !== '') {
    const nodes = config.redisCluster.split(',').map((n) => {
      const i = n.lastIndexOf(':');
      return { host: n.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(n.slice(i + 1)) };
    });
    client = new Cluster(nodes, {
      clusterRetryStrategy: retry,
      enableOfflineQueue: false,
      shardedSubscribers: options.shardedSubscribers === true,
      redisOptions: common,
    });
  } else if (config.redisUrl !== '') {
    client = new Redis(config.redisUrl, { ...common, retryStrategy: retry });
  } else {
    return null;
  }
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log.warn('redis unavailable; retrying', { err: err.message });
    down = true;
  });
  client.on('ready', () => {
    if (down) log.info('redis is back');
    down = false;
  });
  return client;
}
