import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, posix } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { freePort, OPERATOR } from './support/daemon.ts';
import { copyStep, dockerignore, parseDockerfile, readText, type Step } from './support/dockerfile.ts';

/**
 * The Docker image, built without Docker (it cannot run on the CI machines): the Dockerfile's steps are
 * replayed in a clean temporary directory (its COPY lines, honouring .dockerignore, and its `npm ci
 * --omit=dev`), then its CMD is started with the Node 24 that runs the tests, as the image's Node would,
 * and its HEALTHCHECK is run. So a lock that `npm ci` refuses, a file the Dockerfile forgets to copy, or
 * a runtime import of a dev dependency fails here instead of in a release build.
 *
 * Every module the daemon loads must resolve inside the copy: a resolve hook (`--import`, inherited by
 * the cluster's workers) refuses anything else, so nothing is borrowed from this checkout's
 * node_modules or a node_modules above the temporary directory.
 */

const run = promisify(execFile);
const CONTEXT = fileURLToPath(new URL('../', import.meta.url));
const steps = parseDockerfile(readFileSync(join(CONTEXT, 'Dockerfile'), 'utf8'));
const ignored = dockerignore(readText(join(CONTEXT, '.dockerignore')));

/** A resolve hook that throws for any file outside `root` (node: builtins are not files). */
function confineTo(root: string): string {
  const rootUrl = pathToFileURL(root).href;
  const code = `import { registerHooks } from 'node:module';
const root = ${JSON.stringify(rootUrl.endsWith('/') ? rootUrl : `${rootUrl}/`)};
registerHooks({
  resolve(specifier, context, next) {
    const r = next(specifier, context);
    if (r.url.startsWith('file:') && !r.url.startsWith(root))
      throw new Error('image check: ' + specifier + ' resolved outside the image, to ' + r.url);
    return r;
  },
});`;
  return `data:text/javascript,${encodeURIComponent(code)}`;
}

/** The test runner's environment for npm, without what would point it back at this checkout. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS') continue; // tap's loaders
    // `npm test` exports its own config (npm_config_local_prefix is this checkout); keep the cache.
    if (k.startsWith('npm_') && k !== 'npm_config_cache' && k !== 'npm_config_registry') continue;
    env[k] = v;
  }
  return env;
}

/** PATH without any node_modules/.bin: the image has none of this checkout's tools. */
const imagePath = (process.env['PATH'] ?? '')
  .split(delimiter)
  .filter((p) => !p.includes('node_modules'))
  .join(delimiter);

interface Image {
  root: string;
  workdir: string;
  env: Record<string, string>;
  cmd: string[];
  healthcheck: string[] | null;
}

/** Replays the Dockerfile in `root`: what `docker build` would leave in the image. */
async function build(root: string, log: (s: string) => void): Promise<Image> {
  let workdir = '/';
  const env: Record<string, string> = {};
  let cmd: string[] | null = null;
  let healthcheck: string[] | null = null;
  for (const step of steps as Step[]) {
    switch (step.kind) {
      case 'env':
        Object.assign(env, step.vars);
        break;
      case 'workdir':
        workdir = posix.resolve(workdir, step.path);
        mkdirSync(join(root, workdir), { recursive: true });
        break;
      case 'copy':
        copyStep(CONTEXT, root, workdir, step, ignored);
        break;
      case 'run': {
        // The one RUN the image has: the production install. `npm cache clean` only shrinks the image,
        // and here it would empty this machine's npm cache, so it is the one part not replayed.
        const parts = step.command.split('&&').map((s) => s.trim().split(/\s+/));
        const [install, ...rest] = parts;
        if (install?.[0] !== 'npm' || install[1] !== 'ci' || !install.includes('--omit=dev')) {
          throw new Error(`this test does not know how to replay RUN ${step.command}: teach it`);
        }
        for (const r of rest) {
          if (r.join(' ') !== 'npm cache clean --force')
            throw new Error(`this test does not know how to replay ${r.join(' ')}: teach it`);
        }
        log(`RUN ${install.join(' ')}`);
        const out = await run('npm', install.slice(1), {
          cwd: join(root, workdir),
          env: { ...npmEnv(), ...env },
          maxBuffer: 16 << 20,
        });
        log(out.stdout.trim());
        break;
      }
      case 'cmd':
        cmd = step.argv;
        break;
      case 'healthcheck':
        healthcheck = step.argv;
        break;
      case 'other':
        break;
    }
  }
  if (cmd === null) throw new Error('the Dockerfile has no CMD');
  return { root, workdir: join(root, workdir), env, cmd, healthcheck };
}

/** The image's `node` is Node 24; so is the one running this test. */
function argvFor(argv: string[], root: string): [string, string[]] {
  if (argv[0] !== 'node') throw new Error(`expected a node command, got ${argv.join(' ')}`);
  return [process.execPath, ['--import', confineTo(root), ...argv.slice(1)]];
}

const root = mkdtempSync(join(tmpdir(), 'cabtrack-image-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

let image: Image;
t.before(async () => {
  image = await build(root, (s) => t.comment(s));
});

/** The image started as `docker run -e ...` would: its ENV, with loopback ports and test tokens. */
async function startImage(): Promise<{
  proc: ChildProcess;
  env: Record<string, string>;
  stderr: () => string;
  exited: Promise<number | null>;
}> {
  const udpPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === udpPort) httpPort = await freePort();
  const env: Record<string, string> = {
    PATH: imagePath,
    ...image.env,
    // The image listens on 0.0.0.0 for its container network; here only loopback is ours.
    CABTRACK_HOST: '127.0.0.1',
    CABTRACK_UDP_PORT: String(udpPort),
    CABTRACK_HTTP_PORT: String(httpPort),
    CABTRACK_WORKERS: '2',
    CABTRACK_OPERATOR_TOKEN: OPERATOR,
  };
  const [file, args] = argvFor(image.cmd, image.root);
  const proc = spawn(file, args, { cwd: image.workdir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, env, stderr: () => err, exited };
}

async function stop(p: { proc: ChildProcess; exited: Promise<number | null> }): Promise<void> {
  if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGTERM');
  await p.exited;
}

/** Polls /readyz until every worker is bound; false if the process exits first or 20 s pass. */
async function ready(env: Record<string, string>, exited: Promise<number | null>): Promise<boolean> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const end = Date.now() + 20_000;
  while (Date.now() < end && !gone) {
    try {
      const r = await fetch(`http://127.0.0.1:${env['CABTRACK_HTTP_PORT']}/readyz`);
      if (r.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

t.test('npm ci --omit=dev accepts the lock and installs no dev dependency', async (t) => {
  const pkg = JSON.parse(readFileSync(join(image.workdir, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  for (const name of Object.keys(pkg.dependencies)) {
    t.ok(existsSync(join(image.workdir, 'node_modules', name, 'package.json')), `${name} installed`);
  }
  const dev = Object.keys(pkg.devDependencies).filter((name) =>
    existsSync(join(image.workdir, 'node_modules', name)),
  );
  t.same(dev, [], 'no dev dependency in the image');
  t.notOk(existsSync(join(image.workdir, 'node_modules', '.bin', 'node')), 'no node from the `node` package');
});

t.test('the image copies no test, bench or CI file', async (t) => {
  for (const dir of ['test', 'bench', '.ci', '.git']) t.notOk(existsSync(join(image.workdir, dir)), dir);
  t.ok(existsSync(join(image.workdir, 'src', 'main.ts')), 'src/main.ts is there');
});

t.test("the image's CMD starts, answers /healthz and passes its own HEALTHCHECK", async (t) => {
  const d = await startImage();
  t.teardown(() => stop(d));
  t.ok(await ready(d.env, d.exited), 'ready', { daemonLog: d.stderr().slice(-2000) });
  const res = await fetch(`http://127.0.0.1:${d.env['CABTRACK_HTTP_PORT']}/healthz`);
  t.equal(res.status, 200, '/healthz answers 200');
  t.same(await res.json(), { status: 'ok', workers: 2 }, 'both workers up');
  // The pages come from the image too: src/web, and Leaflet from its production dependencies.
  for (const path of ['/', '/rider', '/assets/operator.js', '/assets/leaflet/leaflet.js']) {
    const page = await fetch(`http://127.0.0.1:${d.env['CABTRACK_HTTP_PORT']}${path}`);
    t.equal(page.status, 200, `${path} served`);
  }
  t.ok(image.healthcheck, 'the Dockerfile has a HEALTHCHECK');
  const [file, args] = argvFor(image.healthcheck!, image.root);
  const check = await run(file, args, { cwd: image.workdir, env: d.env }).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );
  t.equal(check, 0, 'HEALTHCHECK exits 0');
  t.notMatch(d.stderr(), /resolved outside the image/, 'every module came from the image');
});

t.test('the check bites: an image without its config does not start', async (t) => {
  // What a Dockerfile that forgot `COPY config ./config` builds.
  const config = join(image.workdir, 'config');
  const saved = readFileSync(join(config, 'default.json'));
  rmSync(config, { recursive: true });
  t.teardown(() => {
    mkdirSync(config, { recursive: true });
    writeFileSync(join(config, 'default.json'), saved);
  });
  const d = await startImage();
  t.teardown(() => stop(d));
  t.notOk(await ready(d.env, d.exited), 'never ready');
  t.not(await d.exited, 0, 'exits with an error');
});

t.test('the check bites: a module from outside the image is refused', async (t) => {
  // What happens when the daemon imports something only this checkout has (a dev dependency).
  const probe = join(image.workdir, 'probe.mjs');
  writeFileSync(
    probe,
    `await import(${JSON.stringify(pathToFileURL(join(CONTEXT, 'src', 'log.ts')).href)});`,
  );
  t.teardown(() => rmSync(probe));
  const [file, args] = argvFor(['node', 'probe.mjs'], image.root);
  const err = await run(file, args, { cwd: image.workdir, env: { PATH: imagePath } }).then(
    () => '',
    (e: { stderr: string }) => e.stderr,
  );
  t.match(err, /resolved outside the image/, 'refused by the resolve hook');
});
