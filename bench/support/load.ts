/**
 * A closed-loop load generator: `concurrency` clients, each sending its next request as soon as the
 * previous one is answered, for a warm-up and then a measured window. Latency is from just before the
 * request to the full answer, per request; throughput is answers in the window over its length. The
 * same settings drive cabtrack's HTTP API and Redis, from the same process.
 */

export interface LoadOptions {
  concurrency: number;
  warmupS: number;
  seconds: number;
}

export interface LoadResult {
  concurrency: number;
  seconds: number;
  requests: number;
  errors: number;
  perSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Mean number of results per answer (a sanity check that both sides found drivers). */
  meanFound: number;
}

/** One request: the q-th query from client `c`; resolves with the number of results, throws on an error. */
export type Request = (q: number, c: number) => Promise<number>;

export async function closedLoop(request: Request, o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let found = 0;
  let q = 0;
  const start = performance.now();
  const measureFrom = start + o.warmupS * 1000;
  const end = measureFrom + o.seconds * 1000;
  const client = async (c: number): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      let n = 0;
      let failed = false;
      try {
        n = await request(q++, c);
      } catch {
        failed = true;
      }
      const t1 = performance.now();
      // Only requests sent and answered inside the window count.
      if (t0 < measureFrom || t1 > end) continue;
      if (failed) errors++;
      else {
        latencies.push(t1 - t0);
        found += n;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, c) => client(c)));
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const r3 = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    concurrency: o.concurrency,
    seconds: o.seconds,
    requests: latencies.length,
    errors,
    perSecond: Math.round(latencies.length / o.seconds),
    p50Ms: r3(pct(0.5)),
    p90Ms: r3(pct(0.9)),
    p99Ms: r3(pct(0.99)),
    maxMs: r3(latencies.at(-1) ?? 0),
    meanFound: latencies.length === 0 ? 0 : Math.round((found / latencies.length) * 100) / 100,
  };
}
