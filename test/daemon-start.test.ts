import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { ROOT, startDaemon } from './support/daemon.ts';
import { daemonPids } from './support/hostile-net.ts';

/**
 * Every process of the daemon loads its modules through one compile cache (src/main.ts): the primary
 * turns it on in the OS temp directory and hands the directory to the workers it forks, so a worker,
 * new or replacing one that died, reads the stripped and compiled modules the others left there.
 */

/** A process's environment, from /proc/<pid>/environ. */
function environ(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const at = kv.indexOf('=');
    if (at > 0) out.set(kv.slice(0, at), kv.slice(at + 1));
  }
  return out;
}

t.test('the primary and every worker share one compile cache, filled by the first start', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'cabtrack-cache-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const cacheRoot = join(tmp, 'node-compile-cache');

  const first = await startDaemon({ TMPDIR: tmp, CABTRACK_HTTP_WORKERS: '2' });
  await first.waitFor(
    async () => daemonPids(first).http.length === 2,
    'both HTTP workers on the port',
    60_000,
  );
  t.equal(cacheLines(first.logs).length, 0, 'no warning while the cache works');
  const pids = daemonPids(first);
  t.equal(pids.workers.length, 2, 'two ingest workers');
  for (const pid of [...pids.workers, ...pids.http]) {
    t.equal(environ(pid).get('NODE_COMPILE_CACHE'), cacheRoot, `worker ${pid} is handed the cache`);
  }
  await first.stop();

  // One directory per Node version and build under the root, an entry per module compiled.
  const versions = readdirSync(cacheRoot);
  t.equal(versions.length, 1, `one Node build's cache: ${versions.join(', ')}`);
  const kept = readdirSync(join(cacheRoot, versions[0]!)).length;
  t.ok(kept > 0, `${kept} entries kept`);

  // A second daemon reads them. Node's own trace says which module's stripped code each process took
  // from the cache, and src/daemon.ts is loaded by every process. The processes write the trace to
  // the one stderr in pieces (the outcome after the module's name), so the pieces interleave: what is
  // counted is the piece naming the module, written only when its entry was found.
  const second = await startDaemon({
    TMPDIR: tmp,
    CABTRACK_HTTP_WORKERS: '2',
    NODE_DEBUG_NATIVE: 'COMPILE_CACHE',
  });
  t.teardown(() => second.stop());
  const daemonUrl = pathToFileURL(join(ROOT, 'src/daemon.ts'));
  const count = (piece: string): number => second.logs.join('\n').split(piece).length - 1;
  const found = `retrieving transpile cache for StrippedTypeScript ${daemonUrl}...`;
  await second.waitFor(
    async () => count(found) >= 5,
    'the primary and its 4 workers reading src/daemon.ts',
    60_000,
  );
  t.equal(count(found), 5, 'the primary and each of its 4 workers found src/daemon.ts in the cache');
  t.equal(count(`no transpile cache for StrippedTypeScript ${daemonUrl}`), 0, 'and none missed it');
  t.equal((await second.get('/healthz', null)).status, 200);
});

/** The primary's warning that the compile cache could not be made: its log lines (JSON). */
function cacheLines(logs: readonly string[]): string[] {
  return logs.filter((l) => l.includes('compile cache unavailable'));
}

t.test(
  'a compile cache that cannot be made: the daemon starts without it, and the primary says why',
  async (t) => {
    // A directory under a regular file cannot be created: Node reports the cache as failed.
    const d = await startDaemon({ NODE_COMPILE_CACHE: '/dev/null/cabtrack-cache' });
    t.teardown(() => d.stop());
    t.equal((await d.get('/healthz', null)).status, 200, 'it serves');
    const lines = cacheLines(d.logs);
    t.equal(lines.length, 1, 'said once, by the primary, not by every worker');
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    t.equal(line['level'], 'warn');
    t.equal(line['role'], 'primary');
    t.equal(line['directory'], '/dev/null/cabtrack-cache', 'names the directory');
    t.match(line['reason'], /not a directory/, "and Node's reason");
  },
);

t.test('NODE_DISABLE_COMPILE_CACHE=1 starts the daemon without one', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'cabtrack-cache-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const d = await startDaemon({ TMPDIR: tmp, NODE_DISABLE_COMPILE_CACHE: '1' });
  t.teardown(() => d.stop());
  t.equal((await d.get('/healthz', null)).status, 200, 'it serves');
  for (const pid of daemonPids(d).workers) t.equal(environ(pid).get('NODE_COMPILE_CACHE'), undefined);
  t.notOk(readdirSync(tmp).includes('node-compile-cache'), 'no cache made in the temp directory');
  t.equal(cacheLines(d.logs).length, 0, 'turned off on purpose: no warning');
});

t.test('undici is loaded with the first pool, not with the modules that may make one', async (t) => {
  // In a fresh process. Every daemon process loads the OSRM client's module and the peers' (for names
  // they export); only an ingest worker with OSRM, or a host among several, makes a pool.
  const script = `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const loaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/undici/'));
    const { OsrmClient } = await import('./src/osrm/client.ts');
    await import('./src/hosts/peers.ts');
    await import('./src/metrics.ts');
    await import('./src/http/api.ts');
    const before = loaded();
    const client = new OsrmClient({ url: 'http://127.0.0.1:9' });
    const after = loaded();
    await client.close();
    console.log(JSON.stringify({ before, after }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { before: false, after: true });
});
