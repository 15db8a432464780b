import { createRequire } from 'node:module';
import { Cluster, type Redis } from 'ioredis';

/** The slot function ioredis itself uses (its own dependency, so one copy). */
const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

/**
 * Groups the indexes of `keys` so each group can share one pipeline. A standalone Redis takes them all;
 * ioredis sends a Cluster pipeline to one node and refuses one whose keys live on different nodes, so in
 * cluster mode they are grouped by the nodes serving each key's slot (the grouping ioredis checks).
 */
export function byNode(redis: Redis | Cluster, keys: readonly string[]): number[][] {
  if (!(redis instanceof Cluster)) return [keys.map((_, i) => i)];
  const groups = new Map<string, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const owner = redis.slots[keySlot(keys[i]!)]?.join(';') ?? '';
    let g = groups.get(owner);
    if (g === undefined) {
      g = [];
      groups.set(owner, g);
    }
    g.push(i);
  }
  return [...groups.values()];
}
