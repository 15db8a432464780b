import type dgram from 'node:dgram';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { CLIENT, type Daemon, startDaemon } from './support/daemon.ts';
import {
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
import { type SenderReport, startSender } from './support/hostile-sender.ts';

/**
 * More than the daemon can ingest, for 20 s, from two sender processes: memory stays bounded, /healthz
 * and nearest keep answering, and once the load drops the daemon is itself again at once: a known
 * driver's fresh fix is taken within seconds, and every datagram that reached a worker is accounted for.
 * The only loss is the kernel's, when a worker's socket buffer is full (/proc/net/snmp RcvbufErrors).
 *
 * The capacity is measured first, in the test: both senders as fast as they can for 3 s, and what the
 * workers got through in the middle two seconds. The daemon is pinned to one CPU and the senders are
 * not, so they have the other CPU and a share of the daemon's: on a 2-core machine a Node sender costs
 * about what a worker does per datagram, and without that the senders could not outrun the daemon at
 * all. Even so two Node senders offer ~1.2-1.8x what the daemon then processes, not always 2x; the overload
 * runs them flat out (a fixed high rate from 2 sender processes), and the kernel drops what the daemon
 * cannot take. HOSTILE_OVERLOAD_RATE=twice paces them at twice the measured capacity instead, for a
 * machine with cores to spare.
 */

const DRIVERS = 2000;
const PACK = 30;
const OVERLOAD_MS = 20_000;
const OVERLOAD_RATE: 'flat-out' | 'twice' =
  process.env['HOSTILE_OVERLOAD_RATE'] === 'twice' ? 'twice' : 'flat-out';
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
const now = Math.floor(Date.now() / 1000);
const centre = { lat: 35.6762, lon: 139.6503 };
const sessions = Array.from({ length: DRIVERS }, (_, i) => hex(0xf1ee_7600_0000_0000n + BigInt(i)));
const probeSessions = Array.from({ length: PROBES }, (_, i) => 0xf1ee_7700_0000_0000n + BigInt(i));

t.before(async () => {
  daemon = await startDaemon();
  const { primary, workers } = daemonPids(daemon);
  pinned = pinToCpu([primary, ...workers], 0);
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
t.teardown(() => daemon.stop());

function rssOfDaemon(): { total: number; byProcess: number[] } {
  const { primary, workers } = daemonPids(daemon);
  const byProcess = [primary, ...workers].map(rssBytes);
  return { total: byProcess.reduce((a, b) => a + b, 0), byProcess };
}

const mb = (b: number): string => `${Math.round(b / 1048576)} MB`;

/** Both senders at `rate` each (0: flat out), half of the fleet each. */
function load(rate: number, durationMs: number): Array<ReturnType<typeof startSender>> {
  return [0, 1].map((k) => {
    const sender = startSender({
      port: daemon.udpPort,
      rate,
      durationMs,
      sockets: 8,
      sessions: sessions.filter((_, i) => i % 2 === k),
      pack: PACK,
      firstTime: now - 600,
      centre,
    });
    // The senders are not pinned: they take the other core and what the daemon leaves of its own.
    return sender;
  });
}

t.test('overload for 20 s: bounded memory, answers throughout, full recovery', async (t) => {
  const snmp0 = udpCounters();
  const s0 = await scrape(daemon);
  let sent = 0;

  // Capacity: flat out for 3 s; the daemon's rate over the middle 2 s.
  const ramp = load(0, 3000);
  t.teardown(() => {
    for (const r of ramp) r.kill();
  });
  await sleep(700);
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
    `capacity: ${capacity} datagrams/s processed with both senders flat out (offering ${rampOffered}/s)`,
  );
  t.ok(capacity > 10_000, 'a capacity was measured');
  await sleep(500);
  const rss0 = rssOfDaemon();

  // The overload: flat out, or each sender at the capacity (twice it in all).
  const senders = load(OVERLOAD_RATE === 'flat-out' ? 0 : capacity, OVERLOAD_MS);
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
