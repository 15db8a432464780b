/**
 * The multi-host harness works (test/support/netns.ts, redis-cluster.ts, balancer.ts and daemon.ts's
 * placement): three host namespaces reach each other and the test's namespace over UDP and HTTP; the
 * balancer's rendezvous hashing sends each source to one host, moves only a removed host's sources and
 * follows a pin, as the hosts' own counters show; a 6-node Redis Cluster on the private network is
 * reachable from inside a host and survives losing a primary; a daemon inside a host answers from the
 * test's namespace, takes two simulated cities' fixes through the balancer with its sessions in the
 * cluster, and answers nearest exactly as brute force does; and nothing is left afterwards.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { sessionToHex } from '../src/codec/session.ts';
import { haversineM } from '../src/geo/distance.ts';
import { Balancer, type CityPlan, driveCities } from './support/balancer.ts';
import { CLIENT, startDaemon } from './support/daemon.ts';
import { pidAlive } from './support/exit-cleanup.ts';
import { type Counts, netnsOfSelf, type ProbeResult, serve, type Who } from './support/net-probe.ts';
import { createNetwork, namesPresent, sweepLeftovers } from './support/netns.ts';
import { type CurrentNode, startRedisCluster, sweepRedisLeftovers } from './support/redis-cluster.ts';

const keySlot = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;
const PROBE = fileURLToPath(new URL('./support/net-probe.ts', import.meta.url));
const ECHO_UDP = 7000;
const ECHO_HTTP = 7080;
const BARCELONA = { lat: 41.3917, lon: 2.1649 };
const MADRID = { lat: 40.4168, lon: -3.7038 };

const net = createNetwork({ hosts: 3 });
t.teardown(() => net.close());

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

const counts = (host: number): Promise<Counts> =>
  getJson<Counts>(`http://${net.hosts[host]!.address}:${ECHO_HTTP}/counts`);

t.test('the network: hosts reach each other and the root namespace, and are namespaces apart', async (t) => {
  t.equal(net.hosts.length, 3);
  t.match(net.subnet, /^10\.213\.\d+\.0\/24$/);
  t.same(
    net.hosts.map((h) => h.address),
    [11, 12, 13].map((n) => net.rootAddress.replace(/\.1$/, `.${n}`)),
    'hosts at .11, .12, .13; the root at .1',
  );

  // An echo server in each host's namespace, and one in the test's.
  for (const h of net.hosts) {
    const child = net.spawnIn(
      h.index,
      process.execPath,
      [PROBE, 'serve', h.address, String(ECHO_UDP), String(ECHO_HTTP)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    await until(async () => {
      if (child.exitCode !== null) throw new Error(`echo server in ${h.ns} exited: ${out}`);
      return out.includes('ready');
    }, `the echo server in ${h.ns}`);
  }
  const root = await serve(net.rootAddress, 0, 0);
  t.teardown(() => root.close());
  const rootUdp = root.udp.address().port;
  const rootHttp = (root.http.address() as { port: number }).port;
  const rootNetns = netnsOfSelf();

  // From the root namespace to every host, over UDP and HTTP.
  const whos: Who[] = [];
  for (const h of net.hosts) {
    const who = await getJson<Who>(`http://${h.address}:${ECHO_HTTP}/who`);
    t.equal(who.address, h.address, `HTTP from the root reaches ${h.ns}`);
    whos.push(who);
  }
  t.equal(new Set([rootNetns, ...whos.map((w) => w.netns)]).size, 4, 'four distinct network namespaces');

  // From every host to every other host and to the root.
  const probes = await Promise.all(
    net.hosts.map(async (h) => {
      const targets = [
        ...net.hosts
          .filter((o) => o !== h)
          .map((o) => ({ address: o.address, udpPort: ECHO_UDP, httpPort: ECHO_HTTP })),
        { address: net.rootAddress, udpPort: rootUdp, httpPort: rootHttp },
      ];
      const { stdout } = await net.exec(h.index, process.execPath, [PROBE, 'probe', JSON.stringify(targets)]);
      return JSON.parse(stdout) as { netns: string; results: ProbeResult[] };
    }),
  );
  for (const [i, p] of probes.entries()) {
    const h = net.hosts[i]!;
    t.equal(p.netns, whos[i]!.netns, `the probe ran in ${h.ns}`);
    for (const r of p.results) {
      const expected =
        r.address === net.rootAddress ? rootNetns : whos.find((w) => w.address === r.address)!.netns;
      t.equal(r.udp, `pong:${r.address}`, `UDP ${h.address} -> ${r.address}`);
      t.equal(r.http?.netns, expected, `HTTP ${h.address} -> ${r.address}, answered from its namespace`);
    }
    t.equal(p.results.length, 3);
  }
});

t.test(
  'the balancer: one host per source, a removed host moves only its own sources, a pin is followed',
  async (t) => {
    const before = await Promise.all(net.hosts.map((h) => counts(h.index)));
    t.same(
      before.map((c) => c.total),
      [0, 0, 0],
      'no datagrams at the hosts yet',
    );
    const balancer = new Balancer(net.hosts.map((h) => ({ address: h.address, port: ECHO_UDP })));
    const cities: CityPlan[] = [
      { centre: BARCELONA, idPrefix: 'bcn', cars: 20, seed: 11 },
      { centre: MADRID, idPrefix: 'mad', cars: 20, seed: 12 },
    ];
    let first: number[] = [];
    let pinned = -1;
    let pinTo = -1;
    // One car per socket, so that a source's datagrams are one car's. Stopped by hand below; durationS
    // only bounds it.
    const drive = await driveCities({
      cities,
      balancer,
      rate: 1,
      durationS: 20,
      carsPerSocket: 1,
      register: 'none',
      sourceAddress: net.rootAddress,
      onStart: (d) => {
        first = Array.from({ length: d.totalCars }, (_, car) =>
          balancer.targetOfSource(balancer.sourceOf(car)),
        );
        // Madrid's car 3, pinned from its first fix to a host that is neither its own nor host 1 (removed below).
        pinned = d.carIndex(1, 3);
        pinTo = [0, 2].find((h) => h !== first[pinned])!;
        balancer.pin(pinned, pinTo);
      },
    });
    const cars = drive.totalCars;
    t.equal(cars, 40);
    t.equal(balancer.targetOf(pinned), pinTo, 'the pin overrides the hash');
    t.ok(
      [0, 1, 2].every((h) => first.includes(h)),
      `the sources spread over the three hosts (${[0, 1, 2].map((h) => first.filter((x) => x === h).length)})`,
    );

    // Two whole rounds of fixes, then host 1 goes; then two more whole rounds, and stop.
    const sims = drive.cities.map((c) => c.sim);
    await until(async () => sims.every((s) => s.steps >= 2 * s.cars), 'two rounds of fixes');
    balancer.remove(1);
    t.notOk(balancer.isLive(1));
    const atRemoval = sims.map((s) => s.steps);
    const sentTo1 = balancer.sent[1]!;
    const after = Array.from({ length: cars }, (_, car) => balancer.targetOfSource(balancer.sourceOf(car)));
    for (let car = 0; car < cars; car++) {
      if (first[car] !== 1 && after[car] !== first[car])
        t.fail(`car ${car} moved from ${first[car]} to ${after[car]}`);
      if (after[car] === 1) t.fail(`car ${car} still hashed to the removed host`);
    }
    t.equal(balancer.targetOf(pinned), pinTo, 'the pin holds');
    await until(
      async () => sims.every((s, k) => s.steps >= atRemoval[k]! + 2 * s.cars),
      'two more rounds of fixes',
    );
    const report = await drive.stop();
    t.equal(report.truncated, false);
    t.equal(report.sendErrors, 0);
    t.equal(balancer.sent[1], sentTo1, 'nothing routed to host 1 once removed');
    t.equal(balancer.dropped, 0);
    const total = report.sent[0]! + report.sent[1]!;
    t.equal(
      balancer.sent.reduce((a, b) => a + b, 0),
      total,
      'every datagram routed',
    );

    // What the hosts' own counters saw, car by car (each car is one source address:port).
    await until(
      async () =>
        (await Promise.all(net.hosts.map((h) => counts(h.index)))).reduce((n, c) => n + c.total, 0) === total,
      `all ${total} datagrams to reach their hosts`,
    );
    const seen = await Promise.all(net.hosts.map((h) => counts(h.index)));
    t.same(
      seen.map((c) => c.total),
      balancer.sent,
      'each host received exactly what the balancer routed to it',
    );
    let moved = 0;
    for (let car = 0; car < cars; car++) {
      const key = balancer.sourceKey(balancer.sourceOf(car));
      const at = seen.map((c) => c.bySource[key] ?? 0);
      const sent = drive.stepsOf(car);
      t.equal(at[0]! + at[1]! + at[2]!, sent, `car ${car}: its ${sent} fixes arrived`);
      if (car === pinned) {
        t.equal(
          at[pinTo],
          sent,
          `the pinned car: every fix at host ${pinTo}, its own host ${first[car]} none`,
        );
      } else if (first[car] !== 1) {
        t.equal(at[first[car]!], sent, `car ${car}: every fix at host ${first[car]}`);
      } else {
        // Before the removal at host 1, after it at its second choice: two rounds or more each.
        t.ok(at[1]! >= 2 && at[after[car]!]! >= 2 && at[1]! + at[after[car]!]! === sent, `car ${car}: ${at}`);
        moved++;
      }
    }
    t.ok(moved > 0, `${moved} cars moved off the removed host, and only those`);
  },
);

t.test(
  'a Redis Cluster on the private network, reachable from a host, survives losing a primary',
  async (t) => {
    const cluster = await startRedisCluster({
      bind: net.rootAddress,
      primaries: 3,
      replicasPerPrimary: 1,
      nodeTimeoutMs: 2000,
    });
    t.teardown(() => cluster.stop());
    t.equal(cluster.nodes.length, 6);
    t.equal(cluster.nodes.filter((n) => n.role === 'primary').length, 3);
    t.equal(cluster.seeds.split(',').length, 6);
    const prims = await cluster.primaries();
    t.equal(prims.length, 3);

    // From inside host 1 through a node that does not serve the key (redis-cli -c follows the MOVED),
    // read back from host 2.
    const via = prims[0]!;
    const key = Array.from({ length: 100 }, (_, i) => `netns-key-${i}`).find(
      (k) => !servesSlot(via, keySlot(k)),
    )!;
    const cli = (host: number, ...args: string[]) =>
      net.exec(host, 'redis-cli', ['-h', net.rootAddress, '-p', String(via.port), '-c', ...args]);
    t.equal((await cli(1, 'set', key, 'from-h1')).stdout.trim(), 'OK', 'SET from inside host 1');
    t.equal((await cli(2, 'get', key)).stdout.trim(), 'from-h1', 'GET from inside host 2');
    t.equal(await cluster.cli('get', key), 'from-h1', 'and from the root namespace');

    const client = await cluster.client();
    t.teardown(() => client.disconnect());
    const keys = Array.from({ length: 200 }, (_, i) => `ha-${i}`);
    for (const k of keys) await client.set(k, `v-${k}`);

    const { killed, promoted } = await cluster.killPrimary(0);
    t.equal(killed.port, prims[0]!.port);
    t.equal(promoted.role, 'primary');
    t.not(promoted.port, killed.port);
    t.equal(
      cluster.nodes.find((n) => n.port === promoted.port)?.role,
      'replica',
      'the new primary was a replica',
    );
    const now = await cluster.primaries();
    t.equal(now.length, 3, 'three primaries again');
    t.notOk(
      now.some((p) => p.port === killed.port),
      'the killed one is not among them',
    );
    t.same(
      now.find((p) => p.port === promoted.port)?.slots,
      killed.slots,
      'the promoted replica serves the killed primary’s slots',
    );
    const orphaned = keys.filter((k) => servesSlot(killed, keySlot(k)));
    t.ok(orphaned.length > 0, `${orphaned.length} of the keys lived on the killed primary`);
    const values = await Promise.all(keys.map((k) => client.get(k)));
    t.same(
      values,
      keys.map((k) => `v-${k}`),
      'every key reads back through the same ioredis client',
    );
    for (const k of orphaned) await client.set(k, 'rewritten');
    t.same(
      await Promise.all(orphaned.map((k) => client.get(k))),
      orphaned.map(() => 'rewritten'),
      'and takes writes',
    );
    await cluster.stop();
    await cluster.stop(); // idempotent
  },
);

t.test('a daemon inside a host, on the Redis Cluster, fed two cities through the balancer', async (t) => {
  const cluster = await startRedisCluster({
    bind: net.rootAddress,
    primaries: 3,
    replicasPerPrimary: 1,
    nodeTimeoutMs: 2000,
  });
  t.teardown(() => cluster.stop());
  const host = net.hosts[0]!;
  const daemon = await startDaemon(
    { CABTRACK_REDIS_CLUSTER: cluster.seeds, CABTRACK_HTTP_WORKERS: '1' },
    { prefix: net.prefix(0), host: host.address, udpPort: 5005, httpPort: 8080 },
  );
  t.teardown(() => daemon.stop());
  t.equal(daemon.url, `http://${host.address}:8080`);
  const health = await daemon.get('/healthz', null);
  t.equal(health.status, 200, '/healthz from the root namespace');

  const dispatch = await cluster.client();
  t.teardown(() => dispatch.disconnect());
  const balancer = new Balancer([{ address: host.address, port: daemon.udpPort }]);
  const SECONDS = 3;
  const drive = await driveCities({
    cities: [
      { centre: BARCELONA, idPrefix: 'bcn', cars: 50, seed: 21 },
      { centre: MADRID, idPrefix: 'mad', cars: 50, seed: 22 },
    ],
    balancer,
    rate: 1,
    durationS: SECONDS,
    carsPerSocket: 10,
    register: { redis: dispatch },
  });
  t.equal(
    await dispatch.hget(
      'cabtrack:session:' +
        sessionToHex(drive.cities[1]!.sim.fleet.sessions[14]!, drive.cities[1]!.sim.fleet.sessions[15]!),
      'driverId',
    ),
    'mad-7',
    'the sessions are in the cluster as dispatch writes them',
  );
  const report = await drive.done;
  const sent = report.sent[0]! + report.sent[1]!;
  const good = report.good[0]! + report.good[1]!;
  t.equal(sent, 100 * SECONDS);
  t.equal(good, sent, 'no bad datagrams asked for');
  t.equal(balancer.sent[0], sent);

  await daemon.waitForAccepted(good, `the daemon to accept all ${good} fixes`);
  t.equal(await daemon.metric('cabtrack_datagrams_received_total'), sent, 'received = sent');
  t.equal(await daemon.metric('cabtrack_drivers'), 100);
  t.equal(await daemon.metric('cabtrack_redis_up'), 1);
  await daemon.caughtUp();

  const positions = drive.positions();
  t.equal(positions.length, 100);
  for (const centre of [BARCELONA, MADRID]) {
    const k = 10;
    const radius = 3000;
    const want = positions
      .map((p) => ({ id: p.id, d: haversineM(centre.lat, centre.lon, p.lat, p.lon) }))
      .filter((p) => p.d <= radius)
      .sort((a, b) => a.d - b.d)
      .slice(0, k);
    const res = await daemon.get(
      `/v1/drivers/nearest?lat=${centre.lat}&lon=${centre.lon}&k=${k}&radius=${radius}`,
      CLIENT,
    );
    t.equal(res.status, 200);
    const got = res.body.drivers as Array<{ id: string; lat: number; lon: number; distance: number }>;
    t.equal(want.length, k, 'ten cars within 3 km of the centre');
    t.same(
      got.map((d) => d.id),
      want.map((w) => w.id),
      `nearest at ${centre.lat},${centre.lon}: the brute-force ten`,
    );
    for (const [i, d] of got.entries()) {
      const p = positions.find((x) => x.id === d.id)!;
      t.equal(d.lat, p.lat);
      t.equal(d.lon, p.lon);
      t.equal(d.distance, Math.round(want[i]!.d * 10) / 10, `${d.id}: its distance, to the decimetre`);
    }
  }
  await daemon.stop();
  t.equal(daemon.proc.exitCode, 0, 'the daemon stopped cleanly on SIGTERM');
});

t.test('everything is removed afterwards', async (t) => {
  const pids = net.hosts.flatMap((h) =>
    execFileSync('ip', ['netns', 'pids', h.ns], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l !== '')
      .map(Number),
  );
  t.equal(pids.length, 3, 'the three echo servers still run in their namespaces');
  t.same(namesPresent(net.names).sort(), [...net.names].sort(), 'every name present before');
  const x = net.subnet.split('.')[2];
  const lock = join(tmpdir(), `cabtrack-t-subnet-${x}`);
  t.ok(existsSync(lock), 'the subnet is reserved');
  net.close();
  net.close(); // idempotent
  t.same(namesPresent(net.names), [], 'no namespace or link of the run is left (ip netns list, ip link)');
  const netnsList = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const name of net.names) {
    t.notOk(netnsList.includes(name), `${name} not in ip netns list`);
    t.notOk(links.includes(name), `${name} not in ip link`);
  }
  t.notOk(
    execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }).includes(net.subnet.replace('/24', '')),
    'no route to the subnet',
  );
  t.notOk(existsSync(lock), 'the subnet reservation is released');
  await until(async () => pids.every((pid) => !pidAlive(pid)), 'the processes in the namespaces to be gone');
  t.pass('every process that ran in the namespaces is gone');
});

t.test('a test process that throws or is killed by a signal leaves nothing behind', async (t) => {
  const netnsModule = fileURLToPath(new URL('./support/netns.ts', import.meta.url));
  // A child makes a one-host network with a process in it, prints what it made, then dies as told.
  const child = (how: 'throw' | 'signal') => `
    import { createNetwork } from ${JSON.stringify(netnsModule)};
    const net = createNetwork({ hosts: 1 });
    const p = net.spawnIn(0, 'sleep', ['60'], { stdio: 'ignore' });
    await new Promise((r) => p.once('spawn', r));
    process.stdout.write(JSON.stringify({ names: net.names, pid: p.pid }) + '\\n');
    ${how === 'throw' ? "throw new Error('a test failed');" : 'setTimeout(() => {}, 60_000);'}
  `;
  for (const how of ['throw', 'signal'] as const) {
    const proc = spawn(process.execPath, ['--input-type=module', '-e', child(how)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    proc.stderr.on('data', () => {});
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    );
    await until(
      async () => out.includes('\n') || proc.exitCode !== null,
      `the ${how} child to make its network`,
    );
    const made = JSON.parse(out) as { names: string[]; pid: number };
    t.equal(made.names.length, 3, `${how}: switch, link and one host`);
    if (how === 'signal') {
      t.same(namesPresent(made.names).sort(), [...made.names].sort(), 'signal: the network is up');
      proc.kill('SIGTERM');
    }
    const end = await exited;
    if (how === 'throw') t.equal(end.code, 1, 'throw: exit code 1');
    else t.equal(end.signal, 'SIGTERM', 'signal: died of SIGTERM, re-raised after cleaning up');
    t.same(namesPresent(made.names), [], `${how}: no namespace or link left`);
    await until(async () => !pidAlive(made.pid), `${how}: the process in the namespace to be gone`);
    t.pass(`${how}: the process in the namespace is gone`);
  }
});

t.test('a crashed run’s leftovers are swept at the next start, a live run’s are not', async (t) => {
  // A pid that is surely dead: a process that ran and was reaped.
  const dead = spawnSync('true').pid!;
  t.notOk(pidAlive(dead));
  const names = [`cabtrack-t-${dead}-0-h0`, `ctk${dead}n0`];
  execFileSync('ip', ['netns', 'add', names[0]!]);
  execFileSync('ip', [
    'link',
    'add',
    'name',
    names[1]!,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    names[0]!,
  ]);
  // And one in our own name, which must survive the sweep.
  const ours = `cabtrack-t-${process.pid}-999-h0`;
  execFileSync('ip', ['netns', 'add', ours]);
  t.teardown(() => {
    for (const n of [...names, ours]) {
      spawnSync('ip', ['netns', 'delete', n]);
      spawnSync('ip', ['link', 'delete', 'dev', n]);
    }
  });
  t.same(namesPresent([...names, ours]).sort(), [...names, ours].sort());
  const removed = sweepLeftovers();
  t.ok(
    names.every((n) => removed.includes(n)),
    `swept: ${removed.join(', ')}`,
  );
  t.same(namesPresent([...names, ours]), [ours], 'the dead run’s names are gone, ours stays');

  // A redis-server left running by a run killed outright, in its run's directory.
  const dir = join(tmpdir(), `cabtrack-t-rc-${dead}-test`, 'node');
  mkdirSync(dir, { recursive: true });
  const orphan = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', join(dir, 'r.sock'), '--save', '', '--dir', dir],
    {
      stdio: 'ignore',
    },
  );
  const orphanExit = new Promise<string | null>((resolve) =>
    orphan.once('exit', (_code, signal) => resolve(signal)),
  );
  await until(async () => existsSync(join(dir, 'r.sock')), 'the orphan redis-server to start');
  const swept = sweepRedisLeftovers();
  t.equal(await orphanExit, 'SIGKILL', 'the orphan redis-server was killed');
  t.ok(
    swept.some((s) => s.startsWith(`redis-server ${orphan.pid} `)),
    'and reported',
  );
  t.notOk(existsSync(join(tmpdir(), `cabtrack-t-rc-${dead}-test`)), 'its directory removed');
});

function servesSlot(node: CurrentNode, slot: number): boolean {
  return node.slots.some((r) => {
    const [a, b] = r.split('-').map(Number) as [number, number | undefined];
    return slot >= a && slot <= (b ?? a);
  });
}
