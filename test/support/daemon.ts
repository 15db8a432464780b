import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { daemonResponses } from './openapi.ts';

/**
 * Runs the real daemon as a child process on free loopback ports and talks to it over real UDP and
 * HTTP, as a driver app, a client app and an operator would.
 */

export const OPERATOR = 'operator-token-for-tests-0123456789';
export const CLIENT = 'client-token-for-tests-0123456789';
/** The repository's root: where the daemon runs and the tests find its sources. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A port free for both TCP and UDP on 127.0.0.1 (the kernel picks; we check the other protocol). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export class Daemon {
  readonly proc: ChildProcess;
  readonly udpPort: number;
  readonly httpPort: number;
  /** The address the daemon binds (CABTRACK_HOST), where its UDP and HTTP are reached. */
  readonly host: string;
  readonly logs: string[] = [];
  /** CABTRACK_PUBLISH_MS: the read replicas follow the owners by up to this, plus the batch's trip. */
  readonly publishMs: number;
  #exited: Promise<number | null>;

  constructor(proc: ChildProcess, udpPort: number, httpPort: number, publishMs = 200, host = '127.0.0.1') {
    this.proc = proc;
    this.udpPort = udpPort;
    this.httpPort = httpPort;
    this.publishMs = publishMs;
    this.host = host;
    proc.stderr!.setEncoding('utf8');
    let partial = '';
    proc.stderr!.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      this.logs.push(...lines);
      if (process.env['CABTRACK_TEST_LOGS']) for (const l of lines) process.stderr.write(`[daemon] ${l}\n`);
    });
    this.#exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.httpPort}`;
  }

  async request(
    method: string,
    path: string,
    options: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token === undefined ? OPERATOR : options.token;
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(this.url + path, { method, headers, body });
    const text = await res.text();
    // Every answer a test gets is held to the OpenAPI document (GET /openapi.json): a mismatch throws,
    // naming the route and the schema path, so the document cannot drift from the daemon.
    daemonResponses.check(method, path, { status: res.status, headers: res.headers, text });
    let parsed: unknown = null;
    if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: parsed, text };
  }

  get(path: string, token?: string | null): Promise<HttpAnswer> {
    return this.request('GET', path, { token });
  }

  /** The value of one sample of /metrics (0 when absent). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { text } = await this.get('/metrics', null);
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return 0;
  }

  /**
   * Waits until what the ingest workers hold now is what nearest and bbox answer: the read replicas
   * follow by at most one publish tick (the issue allows one tick of lag); two ticks and a margin.
   */
  caughtUp(): Promise<void> {
    return new Promise((r) => setTimeout(r, 2 * this.publishMs + 50));
  }

  async waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /**
   * Waits until exactly `n` datagrams have been accepted. On a timeout it says what the daemon saw
   * instead (received, accepted, each refusing reason, its last log lines), so a failure on a loaded
   * CI machine is read, not guessed.
   */
  async waitForAccepted(n: number, what: string, timeoutMs = 20_000): Promise<void> {
    try {
      await this.waitFor(
        async () => (await this.metric('cabtrack_datagrams_accepted_total')) === n,
        what,
        timeoutMs,
      );
    } catch (err) {
      const page = (await this.get('/metrics', null)).text;
      const seen = page
        .split('\n')
        .filter(
          (l) =>
            (l.startsWith('cabtrack_datagrams_rejected_total{') && !l.endsWith(' 0')) ||
            l.startsWith('cabtrack_datagrams_received_total') ||
            l.startsWith('cabtrack_datagrams_accepted_total') ||
            l.startsWith('cabtrack_driver_handoffs_total'),
        );
      throw new Error(
        `${String(err)} (${n} wanted); ${seen.join(', ')}; logs: ${this.logs.slice(-10).join(' | ')}`,
      );
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    await this.#exited;
  }

  exited(): Promise<number | null> {
    return this.#exited;
  }
}

/**
 * Where a daemon runs, for the multi-host tests: `prefix` runs it in another network namespace
 * (`net.prefix(i)` of test/support/netns.ts: `['ip', 'netns', 'exec', ns]`), bound to `host` (that
 * namespace's address, reachable from the test's) on known ports, since free ports in the test's own
 * namespace say nothing about another's.
 */
export interface DaemonPlacement {
  prefix: readonly string[];
  host: string;
  udpPort: number;
  httpPort: number;
}

/**
 * How long a start may take before it counts as failed. About 2 s here when idle; in CI, with two suites'
 * daemons starting and running on 2 cores, a worker once took 16.5 s to load its modules, so the bound
 * is set by what "never comes up" means, not by how long a start usually takes.
 */
const READY_WAIT_MS = 60_000;

/**
 * Starts the daemon on free loopback ports, or, with `placement`, as placed there; resolves once
 * /readyz answers 200 (from the test's namespace, at the daemon's address).
 */
export async function startDaemon(
  env: Record<string, string> = {},
  placement?: DaemonPlacement,
): Promise<Daemon> {
  let host = '127.0.0.1';
  let udpPort: number;
  let httpPort: number;
  if (placement === undefined) {
    // Ports the caller chose in env (a host's URL names its HTTP port before it starts), else free ones.
    udpPort = env['CABTRACK_UDP_PORT'] !== undefined ? Number(env['CABTRACK_UDP_PORT']) : await freePort();
    httpPort = env['CABTRACK_HTTP_PORT'] !== undefined ? Number(env['CABTRACK_HTTP_PORT']) : await freePort();
    while (httpPort === udpPort) httpPort = await freePort();
  } else {
    ({ host, udpPort, httpPort } = placement);
  }
  const prefix = placement?.prefix ?? [];
  const argv = [...prefix, process.execPath, 'src/main.ts'];
  // `ip netns exec` execs the command in place, so the child's pid is the daemon's primary and a
  // signal to it reaches the daemon itself.
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      CABTRACK_HOST: host,
      CABTRACK_UDP_PORT: String(udpPort),
      CABTRACK_HTTP_PORT: String(httpPort),
      CABTRACK_WORKERS: '2',
      CABTRACK_OPERATOR_TOKEN: OPERATOR,
      CABTRACK_CLIENT_TOKEN: CLIENT,
      ...env,
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const d = new Daemon(proc, udpPort, httpPort, Number(env['CABTRACK_PUBLISH_MS'] ?? 200), host);
  const started = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode}: ${d.logs.join('\n')}`);
    try {
      const r = await fetch(`${d.url}/readyz`);
      if (r.status === 200) return d;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > READY_WAIT_MS) {
      await d.stop();
      throw new Error(`daemon not ready after ${READY_WAIT_MS / 1000} s: ${d.logs.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A driver app's socket: one source address, as one phone behind one NAT mapping. `daemonHost` is the
 * daemon's address (a namespaced daemon's, test/support/netns.ts); the phone binds loopback for a
 * loopback daemon, else any address, so the kernel picks the route's source.
 */
export class Phone {
  readonly socket = dgram.createSocket('udp4');
  readonly #port: number;
  readonly #host: string;
  constructor(daemonUdpPort: number, daemonHost = '127.0.0.1') {
    this.#port = daemonUdpPort;
    this.#host = daemonHost;
  }
  async open(): Promise<number> {
    const bindTo = this.#host === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0';
    await new Promise<void>((resolve) => this.socket.bind(0, bindTo, () => resolve()));
    return this.socket.address().port;
  }
  send(buf: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.send(buf, this.#port, this.#host, (err) => (err ? reject(err) : resolve())),
    );
  }
  close(): void {
    this.socket.close();
  }
}
