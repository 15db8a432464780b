import type dgram from 'node:dgram';
import t from 'tap';
import { buildSendmmsg } from '../bench/support/native-sender.ts';
import { encodeTrack } from '../src/codec/encode.ts';
import { CLIENT, type Daemon, startDaemon } from './support/daemon.ts';
import {
  capCpu,
  connectedSocket,
  daemonPids,
  hex,
  pinToCpu,
  rssBytes,
  type Samples,
  scrape,
  sleep,
  udpCounters,
} from './support/hostile-net.ts';
import { type SenderReport, startNativeSender, startSender } from './support/hostile-sender.ts';

/**
 * Twice what the daemon can ingest, for 20 s: memory stays bounded, /healthz and nearest keep answering,
 * and once the load drops the daemon is itself again at once: a known driver's fresh fix is taken within
 * seconds, and every datagram that reached a worker is accounted for. The only loss is the kernel's, when
 * a worker's socket buffer is full (/proc/net/snmp RcvbufErrors).
 *
 * The capacity is measured first, in the test: the sender as fast as it can for 6 s, and what the workers
 * got through in two seconds of them, once warmed up. Then the sender is paced at twice that.
 *
 * Offering twice the capacity takes some arranging on a 2-core machine: a loopback sender pays about what
 * the receiver pays per datagram (the kernel's delivery is charged to the sender), so a sender with one
 * core cannot outrun a daemon with the other. So the daemon is pinned to CPU 0 and capped at a share of
 * it with a cgroup (capCpu: what a smaller machine would give it), and the sender, pinned to CPU 1, is
 * the native engine (bench/support/sendmmsg.c, built with cc; .ci/run installs it), which offers
 * several times what a Node sender does. Without a C compiler two Node senders run flat out instead; the
 * output says which sender ran, whether the cap applied, and the ratio achieved.
 */

const DRIVERS = 2000;
const PACK = 30;
const OVERLOAD_MS = 20_000;
const native = buildSendmmsg();
/** The daemon's share of CPU 0: small enough that the sender offers twice its capacity with room left. */
const DAEMON_CPU_SHARE = 0.4;
const PROBES = 20;
/**
 * The memory bound, deliberately generous: the daemon (primary and 2 workers) holds ~450 MB of RSS on
 * this machine once warmed up by the capacity ramp, and has no queue of its own to grow (the kernel's
 * socket buffers are not in RSS), so reaching 1 GiB means something grew without bound.
 */
const RSS_CAP_BYTES = 1024 * 1024 * 1024;

let daemon: Daemon;
/** The daemon pinned to CPU 0 (see pinToCpu), when the machine allows it. */
let pinned = false;
/** Removes the daemon's CPU cap (see capCpu), or null when the machine did not allow one. */
let uncap: (() => void) | null = null;
const now = Math.floor(Date.now() / 1000);
const centre = { lat: 35.6762, lon: 139.6503 };
const sessions = Array.from({ length: DRIVERS }, (_, i) => hex(0xf1ee_7600_0000_0000n + BigInt(i)));
const probeSessions = Array.from({ length: PROBES }, (_, i) => 0xf1ee_7700_0000_0000n + BigInt(i));

t.before(async () => {
  daemon = await startDaemon();
  const { primary, workers } = daemonPids(daemon);
  pinned = pinToCpu([primary, ...workers], 0);
  uncap = capCpu([primary, ...workers], DAEMON_CPU_SHARE);
  const all = [
    ...sessions.map((s, i) => [s, `ov-${i}`] as const),
    ...probeSessions.map((s, i) => [hex(s), `ov-probe-${i}`] as const),
  ];
  // Registered 32 at a time: a dispatch system logging a fleet in.
  for (let i = 0; i < all.length; i += 32) {
    await Promise.all(
      all.slice(i, i + 32).map(async ([s, id]) => {
        const r = await daemon.request('PUT', `/v1/sessions/${s}`, {
          body: { driverId: id, cab: id.toUpperCase() },
        });
        if (r.status !== 201) throw new Error(`PUT ${r.status}`);
      }),
    );
  }
});
t.teardown(async () => {
  await daemon.stop();
  uncap?.();
});

function rssOfDaemon(): { total: number; byProcess: number[] } {
  const { primary, workers } = daemonPids(daemon);
  const byProcess = [primary, ...workers].map(rssBytes);
  return { total: byProcess.reduce((a, b) => a + b, 0), byProcess };
}

const mb = (b: number): string => `${Math.round(b / 1048576)} MB`;

/**
 * The fleet's packs, re-sent over and over at `rate` datagrams a second in all (0: flat out): from the
 * native engine, or from two Node sender processes (half the fleet and half the rate each).
 */
async function load(
  rate: number,
  durationMs: number,
): Promise<Array<{ pid: number; done: Promise<SenderReport>; kill: () => void }>> {
  const base = { port: daemon.udpPort, durationMs, sockets: 8, pack: PACK, firstTime: now - 600, centre };
  const senders =
    native.path !== null
      ? [await startNativeSender(native.path, { ...base, rate, sessions })]
      : [0, 1].map((k) =>
          startSender({ ...base, rate: rate / 2, sessions: sessions.filter((_, i) => i % 2 === k) }),
        );
  // On the other CPU than the daemon's, so they take nothing from its share.
  if (pinned)
    pinToCpu(
      senders.map((x) => x.pid),
      1,
    );
  return senders;
}

t.test('overload for 20 s: bounded memory, answers throughout, full recovery', async (t) => {
  const snmp0 = udpCounters();
  const s0 = await scrape(daemon);
  let sent = 0;

  // Capacity: flat out for 6 s; the daemon's rate over 2 s of them.
  const ramp = await load(0, 6000);
  t.teardown(() => {
    for (const r of ramp) r.kill();
  });
  // Measured after the first pass of the packs (accepted fixes, dearer than the stale re-sends that make
  // up the overload) and the JIT's warm-up: from 3.5 s to 5.5 s.
  await sleep(3500);
  const a = await scrape(daemon);
  const aAt = performance.now();
  await sleep(2000);
  const b = await scrape(daemon);
  const capacity = Math.round(((b.received - a.received) / (performance.now() - aAt)) * 1000);
  const rampReports = await Promise.all(ramp.map((x) => x.done));
  for (const r of rampReports) sent += r.sent;
  const rampOffered = Math.round(
    (rampReports.reduce((n, r) => n + r.sent, 0) / Math.max(...rampReports.map((r) => r.elapsedMs))) * 1000,
  );
  t.comment(
    `capacity: ${capacity} datagrams/s processed with the sender flat out (offering ${rampOffered}/s)`,
  );
  t.ok(capacity > 10_000, 'a capacity was measured');
  await sleep(500);
  const rss0 = rssOfDaemon();

  // The overload: twice the capacity, or the Node senders flat out (see above).
  t.comment(
    `sender: ${native.path !== null ? native.note : `${native.note}; two Node senders, flat out`}; ` +
      `daemon ${pinned ? 'pinned to CPU 0' : 'not pinned'}, ${uncap !== null ? `capped at ${DAEMON_CPU_SHARE * 100}% of it` : 'not capped (no cgroup)'}`,
  );
  const senders = await load(native.path !== null ? 2 * capacity : 0, OVERLOAD_MS);
  t.teardown(() => {
    for (const r of senders) r.kill();
  });
  const probes: dgram.Socket[] = [];
  for (let i = 0; i < PROBES; i++) probes.push(await connectedSocket(daemon.udpPort));
  t.teardown(() => {
    for (const p of probes) p.close();
  });
  let probeTime = now - 300;
  const sendProbes = (): void => {
    probeTime++;
    for (const [i, p] of probes.entries()) {
      p.send(
        encodeTrack({
          session: probeSessions[i]!,
          lat: 35_680_000 + i * 100,
          lon: 139_650_000,
          time: probeTime,
        }),
      );
    }
    sent += PROBES;
  };
  const started = performance.now();
  const o0 = await scrape(daemon);
  const answers = { healthz: 0, nearest: 0, failed: [] as string[], slowestMs: 0, partial: 0 };
  let rssMax = rss0.total;
  let lastProbe = 0;
  while (performance.now() - started < OVERLOAD_MS) {
    const q0 = performance.now();
    const [h, n] = await Promise.all([
      daemon.get('/healthz', null),
      daemon.get(`/v1/drivers/nearest?lat=${centre.lat}&lon=${centre.lon}&k=10&radius=5000`, CLIENT),
    ]);
    answers.slowestMs = Math.max(answers.slowestMs, performance.now() - q0);
    if (h.status === 200) answers.healthz++;
    else answers.failed.push(`healthz ${h.status}`);
    if (n.status === 200) {
      answers.nearest++;
      if (n.body.drivers.length < 10) answers.partial++;
    } else answers.failed.push(`nearest ${n.status} ${n.text.slice(0, 80)}`);
    rssMax = Math.max(rssMax, rssOfDaemon().total);
    if (performance.now() - lastProbe >= 1000) {
      lastProbe = performance.now();
      sendProbes();
    }
    await sleep(200);
  }
  const reports: SenderReport[] = await Promise.all(senders.map((x) => x.done));
  const offered = reports.reduce((n, r) => n + r.sent, 0);
  sent += offered;
  const offeredRate = Math.round((offered / Math.max(...reports.map((r) => r.elapsedMs))) * 1000);
  const duringOverload = await scrape(daemon);
  const processedRate = Math.round(
    ((duringOverload.received - o0.received) / (performance.now() - started)) * 1000,
  );
  t.comment(
    `overload${pinned ? ' (daemon pinned to CPU 0)' : ''}: ${offered} datagrams offered at ${offeredRate}/s ` +
      `(${(offeredRate / capacity).toFixed(2)}x capacity), ${processedRate}/s processed; ` +
      `${answers.healthz} /healthz and ${answers.nearest} nearest answered 200 (slowest pair ${Math.round(answers.slowestMs)} ms, ` +
      `${answers.partial} nearest with fewer than 10 cars, ${duringOverload.get('cabtrack_query_worker_timeouts_total')} worker timeouts)`,
  );
  t.same(answers.failed, [], 'every /healthz and nearest during the overload answered 200');
  t.ok(
    answers.healthz >= 20 && answers.nearest >= 20,
    'and they kept coming: at least one pair a second on average',
  );

  // The load is gone: wait for the kernel queues to drain (the received counter stops moving).
  let drained: Samples = await scrape(daemon);
  for (let stable = 0; stable < 4; ) {
    await sleep(100);
    const s = await scrape(daemon);
    stable = s.received === drained.received ? stable + 1 : 0;
    drained = s;
  }
  const rss1 = rssOfDaemon();
  const drops = udpCounters().RcvbufErrors - snmp0.RcvbufErrors;
  const received = drained.received - s0.received;
  t.comment(
    `sent ${sent}, received ${received}, lost ${sent - received}; RcvbufErrors +${drops} on the host; ` +
      `accepted ${drained.accepted - s0.accepted}, rejected ${JSON.stringify(drained.byLabel('cabtrack_datagrams_rejected_total', 'reason'))}`,
  );
  t.equal(
    drained.received,
    drained.accepted + drained.rejected,
    'received = accepted + rejected, once the queues drained',
  );
  t.ok(received <= sent, 'nothing received that was not sent');
  t.ok(
    sent - received <= drops,
    `the ${sent - received} datagrams lost are within the kernel's receive-buffer drops (${drops}, host-wide)`,
  );
  t.ok(sent - received > 0, 'some of them were dropped by the kernel: this was beyond what the daemon takes');

  // Recovery: a known driver's fresh fix is taken at once. The deadline under test: "within a few
  // seconds" of the load dropping; 5 s.
  const recoverStarted = performance.now();
  sendProbes();
  const want = probeTime;
  await daemon.waitFor(
    async () => {
      const r = await daemon.get('/v1/drivers/nearest?lat=35.68&lon=139.65&k=100&radius=3000', CLIENT);
      const probesAt = (r.body?.drivers ?? []).filter((d: { id: string; time: number }) =>
        d.id.startsWith('ov-probe-'),
      );
      return probesAt.length === PROBES && probesAt.every((d: { time: number }) => d.time === want);
    },
    'every probe driver at its fresh fix',
    5000,
  );
  t.pass(
    `every known driver's fresh fix accepted ${Math.round(performance.now() - recoverStarted)} ms after the load`,
  );

  const s = await scrape(daemon);
  t.equal(s.get('cabtrack_worker_restarts_total'), 0, 'no worker died');
  t.equal((await daemon.get('/readyz', null)).status, 200, 'ready');
  t.comment(
    `RSS of the daemon: ${mb(rss0.total)} before the overload (${rss0.byProcess.map(mb).join(' + ')}), ` +
      `${mb(rssMax)} at most during it, ${mb(rss1.total)} after (${rss1.byProcess.map(mb).join(' + ')})`,
  );
  t.ok(rssMax < RSS_CAP_BYTES, `RSS stayed under the cap of ${mb(RSS_CAP_BYTES)} (at most ${mb(rssMax)})`);
});
