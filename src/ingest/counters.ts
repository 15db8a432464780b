import { reasonNames } from '../reasons.ts';

/**
 * A worker's ingest counters as plain numbers: the hot path increments a field or a typed-array slot,
 * and the metrics module reads them only when /metrics is scraped. prom-client's inc() hashes labels
 * on every call, which the per-datagram path cannot afford.
 */
export class IngestCounters {
  received = 0;
  accepted = 0;
  /** Indexed by reason code (src/reasons.ts); slot 0 (ok) stays 0. */
  readonly rejected = new Float64Array(reasonNames.length);
  expired = 0;
  /** Drivers this worker took over from another one. */
  handoffs = 0;
  tripsEnded = 0;
}
