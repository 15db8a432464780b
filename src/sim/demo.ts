import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { DemoCommand } from './options.ts';
import { cabOf, driverId, runSimulation } from './run.ts';

/*
 * `cabtrack demo`: the daemon and a simulated fleet in one command, so that a newcomer sees cars moving
 * and can query them at once. The daemon runs as a child process on its default ports with tokens made
 * up for this run (printed, with the two pages' URLs to open and curl commands to paste); the fleet
 * drives until Ctrl-C. The URLs carry the tokens in their fragment (`#token=`), which a browser never
 * sends: the pages move it to sessionStorage and off the address bar (src/web/session.js).
 */

const MAIN = fileURLToPath(new URL('../main.ts', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

export async function runDemo(o: DemoCommand): Promise<number> {
  const operator = randomBytes(18).toString('base64url');
  const client = randomBytes(18).toString('base64url');
  const daemon = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      CABTRACK_UDP_PORT: String(o.udpPort),
      CABTRACK_HTTP_PORT: String(o.httpPort),
      CABTRACK_OPERATOR_TOKEN: operator,
      CABTRACK_CLIENT_TOKEN: client,
      // The daemon's info lines would bury the curl commands; warnings and errors still show.
      CABTRACK_LOG_LEVEL: process.env['CABTRACK_LOG_LEVEL'] ?? 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number>((resolve) =>
    daemon.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))),
  );
  let daemonGone = false;
  void exited.then(() => {
    daemonGone = true;
  });

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // The fleet stops with the daemon: sending to nothing would only fill the screen with send errors.
  void exited.then(() => stop.abort());

  const base = `http://127.0.0.1:${o.httpPort}`;
  const started = Date.now();
  for (;;) {
    if (daemonGone || stop.signal.aborted) {
      daemon.kill('SIGTERM');
      const code = await exited;
      process.stderr.write(`cabtrack demo: the daemon exited (${code}) before it was ready\n`);
      return code === 0 ? 1 : code;
    }
    try {
      // A timeout: whatever else holds the port may accept and never answer.
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > READY_TIMEOUT_MS) {
      daemon.kill('SIGTERM');
      await exited;
      process.stderr.write(`cabtrack demo: the daemon was not ready after ${READY_TIMEOUT_MS / 1000} s\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const { centreLat: lat, centreLon: lon } = o;
  const d = 0.01;
  const box = [lon - d, lat - d, lon + d, lat + d].map((v) => v.toFixed(4)).join(',');
  const c = `curl -s -H 'Authorization: Bearer ${client}'`;
  const op = `curl -s -H 'Authorization: Bearer ${operator}'`;
  let failed: Error | undefined;
  await runSimulation({
    drivers: o.drivers,
    rate: 1,
    durationS: 0,
    host: '127.0.0.1',
    udpPort: o.udpPort,
    http: base,
    token: operator,
    register: 'api',
    redisUrl: '',
    centreLat: lat,
    centreLon: lon,
    spacingM: 133.3,
    radiusM: 3000,
    badShare: 0.01,
    offlineShare: 0.02,
    offlineMinS: 10,
    offlineMaxS: 60,
    seed: o.seed,
    carsPerSocket: 10,
    reportEveryS: 10,
    idPrefix: 'sim',
    print: (line) => process.stdout.write(`${line}\n`),
    signal: stop.signal,
    onStart: (sim) => {
      const lines = [
        '',
        `cabtrack demo: the daemon listens on UDP ${o.udpPort} and HTTP ${o.httpPort}; ${o.drivers} cars drive around ${lat},${lon}.`,
        `  operator token: ${operator}`,
        `  client token:   ${client}`,
        '',
        'Open the pages (the token is in the fragment, after #: the browser keeps it and sends it nowhere):',
        `  operator live map: ${base}/#token=${operator}&at=${lat},${lon},14`,
        `  rider's screen:    ${base}/rider#token=${client}&at=${lat},${lon},15`,
        '',
        'Try (Ctrl-C stops the demo):',
        `  ${c} '${base}/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=5&radius=1000'`,
        `  ${op} '${base}/v1/drivers?bbox=${box}&limit=10'`,
        `  ${op} '${base}/v1/drivers/${driverId('sim', 0)}'`,
        `  ${op} '${base}/v1/cabs/${cabOf('sim', 0)}'`,
        `  ${op} '${base}/v1/trips/${sim.fleet.nextOrderId - 1}'`,
        `  curl -s '${base}/metrics' | grep -E '^cabtrack_(datagrams|drivers|trips)'`,
        '',
      ];
      process.stdout.write(lines.join('\n'));
    },
  }).catch((err: Error) => {
    // Most likely another daemon on the port answered /readyz and refused our token.
    failed = err;
  });
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  // Ctrl-C in a terminal reaches the daemon too (same process group); a SIGTERM of our own covers the rest.
  if (!daemonGone) daemon.kill('SIGTERM');
  const code = await exited;
  if (failed !== undefined) {
    process.stderr.write(`cabtrack demo: ${failed.message}\n`);
    return 1;
  }
  return code;
}
