/**
 * Prometheus histograms as the benchmarks read them off a /metrics page: the cumulative buckets, and a
 * quantile of what was observed between two readings (linear within a bucket, as histogram_quantile).
 */

/** Cumulative bucket counts [upper bound, count] of a histogram on a /metrics page, by bound. */
export function buckets(text: string, name: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m !== null) out.push([m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2])]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** The q-quantile of the observations made between `before` and `after`; null when there were none. */
export function quantile(
  before: ReadonlyArray<readonly [number, number]>,
  after: ReadonlyArray<readonly [number, number]>,
  q: number,
): number | null {
  const total = (after.at(-1)?.[1] ?? 0) - (before.at(-1)?.[1] ?? 0);
  if (total <= 0) return null;
  let prevBound = 0;
  let prevCount = 0;
  for (let i = 0; i < after.length; i++) {
    const [bound, cum] = after[i]!;
    const c = cum - (before[i]?.[1] ?? 0);
    if (c >= q * total) {
      if (bound === Number.POSITIVE_INFINITY) return prevBound;
      return prevBound + ((bound - prevBound) * (q * total - prevCount)) / Math.max(1, c - prevCount);
    }
    prevBound = bound;
    prevCount = c;
  }
  return null;
}
