/**
 * Heap snapshots, for the soak: ask a running process for one (it was started with
 * `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR`), wait until the file is complete, and reduce it to
 * live bytes and object counts by constructor. A snapshot is taken after a full GC, so its total is the
 * live heap, which `heapUsed` (garbage included, a sawtooth) cannot give; two of them, diffed by
 * constructor, name what grew.
 *
 * The format is V8's (`snapshot.meta.node_fields`, a flat `nodes` array, a `strings` table); see
 * https://developer.chrome.com/docs/devtools/memory-problems/heap-snapshots for what the types mean.
 *
 * Run alone: `node scripts/heap-summary.ts A.heapsnapshot [B.heapsnapshot]` prints the top entries of A,
 * or of B's growth over A.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface HeapSummary {
  /** Live bytes: the sum of every node's self size. */
  totalBytes: number;
  nodes: number;
  /** `type:name` -> live objects and their self size. */
  byConstructor: Map<string, { count: number; bytes: number }>;
}

interface SnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export function summarise(file: string): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as SnapshotJson;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byConstructor = new Map<string, { count: number; bytes: number }>();
  let totalBytes = 0;
  const { nodes, strings } = snap;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!] ?? '?';
    const size = nodes[i + sizeAt]!;
    totalBytes += size;
    // Strings and code are grouped by type alone: their names are their contents.
    const name =
      type === 'object' || type === 'closure' || type === 'native'
        ? (strings[nodes[i + nameAt]!] ?? '?')
        : '';
    const key = `${type}:${name}`;
    const e = byConstructor.get(key);
    if (e === undefined) byConstructor.set(key, { count: 1, bytes: size });
    else {
      e.count++;
      e.bytes += size;
    }
  }
  return { totalBytes, nodes: nodes.length / width, byConstructor };
}

/** The entries that grew most from `a` to `b`, in bytes. */
export function growth(
  a: HeapSummary,
  b: HeapSummary,
  top = 15,
): Array<{ what: string; bytes: number; count: number }> {
  const keys = new Set([...a.byConstructor.keys(), ...b.byConstructor.keys()]);
  const rows = [...keys].map((what) => {
    const x = a.byConstructor.get(what) ?? { count: 0, bytes: 0 };
    const y = b.byConstructor.get(what) ?? { count: 0, bytes: 0 };
    return { what, bytes: y.bytes - x.bytes, count: y.count - x.count };
  });
  return rows.sort((p, q) => Math.abs(q.bytes) - Math.abs(p.bytes)).slice(0, top);
}

/**
 * Signals `pid` for a snapshot and resolves with the file once V8 has finished writing it (its size stops
 * changing and it ends with the closing brace). Writing blocks that process for a few seconds.
 */
export async function snapshotOf(pid: number, dir: string, timeoutMs = 120_000): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const started = Date.now();
  let file: string | undefined;
  let lastSize = -1;
  while (Date.now() - started < timeoutMs) {
    await new Promise((r) => setTimeout(r, 500));
    file ??= readdirSync(dir).find((f) => !before.has(f) && f.includes(`.${pid}.`));
    if (file === undefined) continue;
    const path = join(dir, file);
    const size = statSync(path).size;
    if (size > 0 && size === lastSize && readFileSync(path).subarray(-1).toString() === '}') return path;
    lastSize = size;
  }
  throw new Error(`no heap snapshot from ${pid} within ${timeoutMs} ms`);
}

if (import.meta.main) {
  const [a, b] = process.argv.slice(2);
  if (a === undefined) throw new Error('usage: node scripts/heap-summary.ts A.heapsnapshot [B.heapsnapshot]');
  const sa = summarise(a);
  const mb = (n: number): string => `${(n / 1048576).toFixed(2)} MB`;
  if (b === undefined) {
    console.log(`${a}: ${mb(sa.totalBytes)} live in ${sa.nodes} nodes`);
    const rows = [...sa.byConstructor].sort((p, q) => q[1].bytes - p[1].bytes).slice(0, 25);
    for (const [what, e] of rows)
      console.log(`${mb(e.bytes).padStart(12)} ${String(e.count).padStart(9)}  ${what}`);
  } else {
    const sb = summarise(b);
    console.log(`live heap ${mb(sa.totalBytes)} -> ${mb(sb.totalBytes)}`);
    for (const r of growth(sa, sb, 25)) {
      console.log(`${mb(r.bytes).padStart(12)} ${String(r.count).padStart(9)}  ${r.what}`);
    }
  }
}
