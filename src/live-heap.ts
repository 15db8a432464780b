import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/**
 * The V8 heap in use just after the last full (mark-compact) GC: the live data, which is what a leak
 * makes climb. `heap_size_used` cannot show it: it includes the garbage not yet collected, a sawtooth of
 * tens of megabytes whose slope over an hour is noise. Read when V8 reports the GC (a PerformanceObserver
 * entry, delivered a moment later), so it can include what was allocated in that moment; the hot paths
 * allocate next to nothing. Full GCs are rare, so the observer costs nothing measurable.
 */
export class LiveHeap {
  #bytes = getHeapStatistics().used_heap_size;
  #fullGcs = 0;
  readonly #observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      // A gc entry's detail is { kind, flags } (Node's perf_hooks docs); this @types/node lacks the field.
      const kind = (e as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        this.#bytes = getHeapStatistics().used_heap_size;
        this.#fullGcs++;
      }
    }
  });

  constructor() {
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  /** Bytes live after the last full GC (before the first one: the heap in use at start). */
  get bytes(): number {
    return this.#bytes;
  }

  get fullGcs(): number {
    return this.#fullGcs;
  }

  stop(): void {
    this.#observer.disconnect();
  }
}
