import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { startDaemon } from './support/daemon.ts';
import { daemonPids } from './support/hostile-net.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

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
  await first.waitFor(async () => daemonPids(first).http.length === 2, 'both HTTP workers on the port');
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
  // from the cache; src/daemon.ts is loaded by every process, from it once each.
  const second = await startDaemon({
    TMPDIR: tmp,
    CABTRACK_HTTP_WORKERS: '2',
    NODE_DEBUG_NATIVE: 'COMPILE_CACHE',
  });
  t.teardown(() => second.stop());
  const hit = `retrieving transpile cache for StrippedTypeScript ${pathToFileURL(join(ROOT, 'src/daemon.ts'))}...success`;
  const hits = (): number => second.logs.join('\n').split(hit).length - 1;
  await second.waitFor(async () => hits() >= 5, 'the primary and its 4 workers reading src/daemon.ts');
  t.equal(hits(), 5, 'the primary and each of its 4 workers took src/daemon.ts from the cache');
  t.equal((await second.get('/healthz', null)).status, 200);
});

t.test('NODE_DISABLE_COMPILE_CACHE=1 starts the daemon without one', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'cabtrack-cache-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const d = await startDaemon({ TMPDIR: tmp, NODE_DISABLE_COMPILE_CACHE: '1' });
  t.teardown(() => d.stop());
  t.equal((await d.get('/healthz', null)).status, 200, 'it serves');
  for (const pid of daemonPids(d).workers) t.equal(environ(pid).get('NODE_COMPILE_CACHE'), undefined);
  t.notOk(readdirSync(tmp).includes('node-compile-cache'), 'no cache made in the temp directory');
});
