import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { LiveHeap } from '../src/live-heap.ts';

// A full GC on demand, without starting the test process with --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function fullGc(heap: LiveHeap): Promise<void> {
  const n = heap.fullGcs;
  gc();
  // The observer's entries arrive a moment after the GC.
  for (let i = 0; i < 100 && heap.fullGcs === n; i++) await tick();
}

t.test('follows what survives a full GC, not the garbage', async (t) => {
  const heap = new LiveHeap();
  t.teardown(() => heap.stop());
  await fullGc(heap);
  t.ok(heap.fullGcs >= 1, 'a full GC was seen');
  const base = heap.bytes;

  // 2M small objects kept: about 60 MB of live heap (V8 heap, not ArrayBuffer backing stores).
  let kept: Array<{ i: number; s: string }> | null = Array.from({ length: 2_000_000 }, (_, i) => ({
    i,
    s: `x${i}`,
  }));
  await fullGc(heap);
  t.ok(
    heap.bytes - base > 40 * 1048576,
    `live heap grew by ${((heap.bytes - base) / 1048576).toFixed(1)} MB`,
  );
  t.equal(kept.length, 2_000_000);

  // Garbage alone: allocated and dropped, so the next full GC leaves the live heap where it was.
  const grown = heap.bytes;
  for (let i = 0; i < 20; i++) Array.from({ length: 100_000 }, (_, j) => ({ j }));
  await fullGc(heap);
  t.ok(Math.abs(heap.bytes - grown) < 8 * 1048576, 'garbage does not count');

  kept = null;
  await fullGc(heap);
  t.ok(grown - heap.bytes > 40 * 1048576, `released: ${((grown - heap.bytes) / 1048576).toFixed(1)} MB`);
});
