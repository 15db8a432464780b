/**
 * Talks to the daemon's processes through the V8 inspector (the daemon started with NODE_OPTIONS
 * --inspect=127.0.0.1:0, so the primary and every worker listen on a port of their own and say so on
 * stderr). Used by the memory benchmark to run a full garbage collection before reading RSS and the
 * heap, so that the figures are what the drivers hold, not garbage that happens to be uncollected.
 */

export const INSPECT_OPTIONS = '--inspect=127.0.0.1:0';

/** ws:// URLs of every inspector the daemon's processes announced in its logs. */
export function inspectorUrls(logs: readonly string[]): string[] {
  const urls = new Set<string>();
  for (const line of logs) {
    const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
    if (m !== null) urls.add(m[1]!);
  }
  return [...urls];
}

/** Sends one inspector command and resolves with its result. */
function command(url: string, method: string, params: Record<string, unknown> = {}): Promise<any> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`${method}: no answer from ${url}`));
    }, 30_000);
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method, params }));
    ws.onmessage = (ev) => {
      const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (m.id !== 1) return;
      clearTimeout(timer);
      ws.close();
      if (m.error !== undefined) reject(new Error(`${method}: ${m.error.message}`));
      else resolve(m.result);
    };
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error(`${method}: cannot reach ${url}`));
    };
  });
}

/** A full GC in each process (HeapProfiler.collectGarbage), one after the other. */
export async function collectGarbage(urls: string[]): Promise<void> {
  for (const url of urls) await command(url, 'HeapProfiler.collectGarbage');
}

/** V8 heap in use, summed over the processes (Runtime.getHeapUsage: usedSize). */
export async function heapUsed(urls: string[]): Promise<number> {
  let sum = 0;
  for (const url of urls)
    sum += ((await command(url, 'Runtime.getHeapUsage')) as { usedSize: number }).usedSize;
  return sum;
}
