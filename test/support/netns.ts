import {
  type ChildProcess,
  type ExecFileOptions,
  execFile,
  execFileSync,
  type SpawnOptions,
  spawn,
} from 'node:child_process';
import { linkSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atExit, pidAlive } from './exit-cleanup.ts';

/*
 * A private network of N "hosts" for multi-host tests: one network namespace per host, all on one
 * Ethernet segment with the test process (the root namespace), on a /24 of their own.
 *
 *   root namespace                  switch namespace (<run>-sw)              host namespaces
 *   ┌──────────────────┐            ┌───────────────────────────┐            ┌────────────────────┐
 *   │ ctk<pid>n<k>     │── veth ────│ r0 ┐                      │            │ <run>-h0           │
 *   │ 10.213.X.1/24    │            │    ├─ br0 (bridge)        │── veth ────│ eth0 10.213.X.11   │
 *   └──────────────────┘            │ h0 ┘ h1 ... (ports)      │── veth ────│ <run>-h1 .12 ...   │
 *                                   └───────────────────────────┘            └────────────────────┘
 *
 * Why the bridge lives in a namespace of its own rather than in the root namespace: with br_netfilter
 * loaded (it is on this machine: /proc/sys/net/bridge/bridge-nf-call-iptables is 1), frames crossing a
 * bridge go through the iptables FORWARD chain of the bridge's namespace, and a root namespace whose
 * FORWARD policy is DROP (Docker sets that) would cut host-to-host traffic. A fresh namespace has empty
 * tables with ACCEPT policies, and its own copy of the bridge-nf sysctls (per namespace since Linux 5.3),
 * which we turn off there; the machine's own settings are never touched. The root namespace only sends
 * and receives on its end of one veth (OUTPUT and INPUT, never FORWARD), so nothing is routed and
 * ip_forward stays as it is.
 *
 * Names carry the creating process's pid (namespaces `cabtrack-t-<pid>-<k>-...`, the one root-side link
 * `ctk<pid>n<k>`, at most 15 characters), so that a later run can tell a crashed run's leftovers (pid
 * dead) from a live run's and sweep them at start. The /24 (10.213.X.0/24, X in 1..254) is reserved by a
 * lock file in the temp directory, created atomically (link(2)), holding the pid: two runs at once never
 * pick the same subnet, and a crashed run's lock is swept with its namespaces.
 *
 * Cleanup: close() is idempotent and synchronous; the process's exit and its fatal signals (Ctrl-C,
 * SIGTERM, tap's timeout: test/support/exit-cleanup.ts) run it for every network still open. Processes
 * in a namespace are killed before it is deleted (`ip netns pids`): a namespace with a process in it
 * outlives `ip netns delete`. The root-side link is deleted first, which takes its peer with it at once
 * (a namespace's own links go when the kernel frees the namespace, a moment later).
 */

export const NETNS_PREFIX = 'cabtrack-t-';
export const LINK_PREFIX = 'ctk';
const SUBNET_BASE = '10.213';
const LOCK_PREFIX = 'cabtrack-t-subnet-';
/** Host addresses start at .11: .1 is the root namespace, .2-.10 are left for whatever a test adds. */
const FIRST_HOST = 11;
const MAX_HOSTS = 200;
const IP_TIMEOUT_MS = 10_000;

export interface NetHost {
  /** Index, 0-based. */
  readonly index: number;
  /** The namespace's name (`ip netns exec <ns> ...`). */
  readonly ns: string;
  /** The host's IPv4 address on the private network. */
  readonly address: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export interface Network {
  readonly hosts: readonly NetHost[];
  /** The root namespace's address on the private network (the test process's, e.g. for Redis). */
  readonly rootAddress: string;
  /** The /24, e.g. `10.213.42.0/24`. */
  readonly subnet: string;
  /** The switch namespace holding the bridge. */
  readonly switchNs: string;
  /** The root-side link's name (`ip link show <name>`). */
  readonly rootLink: string;
  /** Every name this network created in the root namespace's view (namespaces and the link). */
  readonly names: readonly string[];
  /** The command prefix that runs a program in a host's namespace: `['ip', 'netns', 'exec', ns]`. */
  prefix(host: number): string[];
  /** Runs a program in a host's namespace to its end; rejects (with its output) on a non-zero exit. */
  exec(host: number, cmd: string, args?: readonly string[], opts?: ExecFileOptions): Promise<ExecResult>;
  /** Starts a program in a host's namespace; it is killed by close() if still running. */
  spawnIn(host: number, cmd: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Kills everything in the namespaces, deletes them and the link, frees the subnet. Idempotent. */
  close(): void;
}

export class NetnsError extends Error {
  override name = 'NetnsError';
}

let seq = 0;

/** `ip ...`, synchronously; throws with ip's own message. */
function ip(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, {
      encoding: 'utf8',
      timeout: IP_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new NetnsError(`ip ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Like ip() but for cleanup: a failure (already gone) is not an error. */
function ipQuiet(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, {
      encoding: 'utf8',
      timeout: IP_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return '';
  }
}

/** SIGKILLs every process in the namespace (`ip netns pids`). */
function killNamespace(ns: string): void {
  for (const line of ipQuiet(['netns', 'pids', ns]).split('\n')) {
    const pid = Number(line.trim());
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function checkPrerequisites(): void {
  if (process.platform !== 'linux') throw new NetnsError('network namespaces need Linux');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new NetnsError(
      `network namespaces need root (uid is ${process.getuid?.()}): the multi-host tests make namespaces and veth pairs (run the tests as root, as .ci/run does)`,
    );
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
  } catch (err) {
    throw new NetnsError(
      `the multi-host tests need iproute2's \`ip\` on the PATH (Debian: apt-get install -y iproute2): ${(err as Error).message}`,
    );
  }
}

/**
 * Removes what crashed earlier runs left: namespaces and root-side links named with a pid that is no
 * longer alive, and their subnet locks. A live run's names are left alone.
 */
export function sweepLeftovers(): string[] {
  const removed: string[] = [];
  const dead = (pid: number): boolean => pid !== process.pid && !pidAlive(pid);
  // Links first: deleting a veth end deletes its peer at once, while a namespace's links go when the
  // kernel gets round to freeing the namespace.
  for (const line of ipQuiet(['-o', 'link', 'show']).split('\n')) {
    const m = /^\d+: (ctk(\d+)n\d+)[@:]/.exec(line);
    if (m === null || !dead(Number(m[2]))) continue;
    ipQuiet(['link', 'delete', 'dev', m[1]!]);
    removed.push(m[1]!);
  }
  for (const line of ipQuiet(['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-`).exec(name);
    if (m === null || !dead(Number(m[1]))) continue;
    killNamespace(name);
    ipQuiet(['netns', 'delete', name]);
    removed.push(name);
  }
  for (const file of readdirSync(tmpdir())) {
    if (!file.startsWith(LOCK_PREFIX)) continue;
    const path = join(tmpdir(), file);
    let pid = Number.NaN;
    try {
      pid = Number(readFileSync(path, 'utf8').trim());
    } catch {
      continue;
    }
    // A half-written temp file (`.tmp-<pid>`) carries its pid in its name.
    const tmp = /\.tmp-(\d+)$/.exec(file);
    if (tmp !== null) pid = Number(tmp[1]);
    if (Number.isInteger(pid) && dead(pid)) {
      rmSync(path, { force: true });
      removed.push(path);
    }
  }
  return removed;
}

/** The subnets in use in the root namespace (any 10.213.X.0/24 route), so as not to shadow them. */
function subnetsInUse(): Set<number> {
  const used = new Set<number>();
  const re = new RegExp(`\\b${SUBNET_BASE.replace('.', '\\.')}\\.(\\d+)\\.`, 'g');
  for (const m of ipQuiet(['-4', 'route', 'show']).matchAll(re)) used.add(Number(m[1]));
  for (const m of ipQuiet(['-4', '-o', 'addr', 'show']).matchAll(re)) used.add(Number(m[1]));
  return used;
}

/** Reserves a free 10.213.X.0/24 for this process: returns X and the lock file's path. */
function reserveSubnet(): { x: number; lock: string } {
  const used = subnetsInUse();
  const tmp = join(tmpdir(), `${LOCK_PREFIX}.tmp-${process.pid}`);
  writeFileSync(tmp, `${process.pid}\n`);
  try {
    // Start from a pid-derived X, so that concurrent runs rarely even try the same one.
    const start = process.pid % 254;
    for (let k = 0; k < 254; k++) {
      const x = ((start + k) % 254) + 1;
      if (used.has(x)) continue;
      const lock = join(tmpdir(), `${LOCK_PREFIX}${x}`);
      try {
        linkSync(tmp, lock); // atomic: fails if another run holds X
        return { x, lock };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  throw new NetnsError(`no free ${SUBNET_BASE}.X.0/24 left (every lock in ${tmpdir()} is held)`);
}

class NetworkImpl implements Network {
  readonly hosts: NetHost[] = [];
  readonly rootAddress: string;
  readonly subnet: string;
  readonly switchNs: string;
  readonly rootLink: string;
  readonly names: string[] = [];
  readonly #lock: string;
  readonly #children = new Set<ChildProcess>();
  #closed = false;
  #cancelAtExit: () => void = () => {};

  constructor(hostCount: number, x: number, lock: string) {
    const k = seq++;
    const run = `${NETNS_PREFIX}${process.pid}-${k}`;
    this.#lock = lock;
    this.subnet = `${SUBNET_BASE}.${x}.0/24`;
    this.rootAddress = `${SUBNET_BASE}.${x}.1`;
    this.switchNs = `${run}-sw`;
    this.rootLink = `${LINK_PREFIX}${process.pid}n${k}`;
    if (this.rootLink.length > 15) throw new NetnsError(`link name ${this.rootLink} is over 15 characters`);
    for (let i = 0; i < hostCount; i++) {
      this.hosts.push({ index: i, ns: `${run}-h${i}`, address: `${SUBNET_BASE}.${x}.${FIRST_HOST + i}` });
    }
    this.names.push(this.switchNs, this.rootLink, ...this.hosts.map((h) => h.ns));
  }

  /** Builds the topology; on any failure, close() undoes what was made and the error says which step. */
  build(): void {
    const sw = this.switchNs;
    ip(['netns', 'add', sw]);
    ip(['-n', sw, 'link', 'set', 'dev', 'lo', 'up']);
    ip(['-n', sw, 'link', 'add', 'name', 'br0', 'type', 'bridge']);
    // No iptables on bridged frames inside the switch (br_netfilter, see above). The file exists only
    // when br_netfilter is loaded; its absence means there is nothing to turn off.
    try {
      execFileSync(
        'ip',
        [
          'netns',
          'exec',
          sw,
          'sh',
          '-c',
          'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 > "$f"; done; true',
        ],
        {
          stdio: 'ignore',
          timeout: IP_TIMEOUT_MS,
        },
      );
    } catch (err) {
      throw new NetnsError(`could not turn off br_netfilter in ${sw}: ${(err as Error).message}`);
    }
    ip(['-n', sw, 'link', 'set', 'dev', 'br0', 'up']);
    ip(['link', 'add', 'name', this.rootLink, 'type', 'veth', 'peer', 'name', 'r0', 'netns', sw]);
    ip(['-n', sw, 'link', 'set', 'dev', 'r0', 'master', 'br0']);
    ip(['-n', sw, 'link', 'set', 'dev', 'r0', 'up']);
    ip(['addr', 'add', `${this.rootAddress}/24`, 'dev', this.rootLink]);
    ip(['link', 'set', 'dev', this.rootLink, 'up']);
    for (const h of this.hosts) {
      const port = `h${h.index}`;
      ip(['netns', 'add', h.ns]);
      // Daemons in a host may bind loopback for their own use.
      ip(['-n', h.ns, 'link', 'set', 'dev', 'lo', 'up']);
      ip(['link', 'add', 'name', 'eth0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', port, 'netns', sw]);
      ip(['-n', sw, 'link', 'set', 'dev', port, 'master', 'br0']);
      ip(['-n', sw, 'link', 'set', 'dev', port, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0']);
      ip(['-n', h.ns, 'link', 'set', 'dev', 'eth0', 'up']);
    }
  }

  prefix(host: number): string[] {
    return ['ip', 'netns', 'exec', this.#host(host).ns];
  }

  exec(
    host: number,
    cmd: string,
    args: readonly string[] = [],
    opts: ExecFileOptions = {},
  ): Promise<ExecResult> {
    const ns = this.#host(host).ns;
    return new Promise((resolve, reject) => {
      const child = execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { timeout: 20_000, maxBuffer: 16 << 20, ...opts, encoding: 'utf8' },
        (err, stdout, stderr) => {
          this.#children.delete(child);
          if (err !== null) {
            reject(
              new NetnsError(
                `in ${ns}: ${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`,
              ),
            );
          } else {
            resolve({ stdout, stderr });
          }
        },
      );
      this.#children.add(child);
    });
  }

  spawnIn(host: number, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.#host(host).ns, cmd, ...args], opts);
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** close() at the process's exit or fatal signal, unless called before. */
  closeAtExit(): void {
    this.#cancelAtExit = atExit(() => this.close());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelAtExit();
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    const namespaces = [...this.hosts.map((h) => h.ns), this.switchNs];
    for (const ns of namespaces) killNamespace(ns);
    ipQuiet(['link', 'delete', 'dev', this.rootLink]);
    for (const ns of namespaces) ipQuiet(['netns', 'delete', ns]);
    try {
      unlinkSync(this.#lock);
    } catch {
      // swept already
    }
  }

  #host(i: number): NetHost {
    const h = this.hosts[i];
    if (h === undefined) throw new RangeError(`no host ${i} (the network has ${this.hosts.length})`);
    return h;
  }
}

/**
 * Makes the network: `hosts` namespaces with one address each, reachable from the root namespace and
 * from each other. Throws a NetnsError saying why when it cannot (not root, no `ip`, a step that failed),
 * having removed whatever it had made.
 */
export function createNetwork(o: { hosts: number }): Network {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > MAX_HOSTS) {
    throw new RangeError(`hosts must be 1-${MAX_HOSTS}, got ${o.hosts}`);
  }
  checkPrerequisites();
  sweepLeftovers();
  const { x, lock } = reserveSubnet();
  const net = new NetworkImpl(o.hosts, x, lock);
  net.closeAtExit();
  try {
    net.build();
  } catch (err) {
    net.close();
    throw err;
  }
  return net;
}

/** The names (namespaces and links) of ours that `ip` shows now, to check that nothing was left. */
export function namesPresent(names: readonly string[]): string[] {
  const netns = new Set(
    ipQuiet(['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0] ?? ''),
  );
  const links = new Set(
    ipQuiet(['-o', 'link', 'show'])
      .split('\n')
      .map((l) => /^\d+: ([^@:]+)/.exec(l)?.[1] ?? ''),
  );
  return names.filter((n) => netns.has(n) || links.has(n));
}
