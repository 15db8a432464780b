import t from 'tap';
import { haversineM } from '../src/geo/distance.ts';
import { reasonNames } from '../src/reasons.ts';
import { BAD_KINDS, badKindNames, badKindReason } from '../src/sim/bad-datagrams.ts';
import { DEFAULT_CENTRE, DEFAULT_RADIUS_M, DEFAULT_SPACING_M } from '../src/sim/city.ts';
import { driverId, runSimulation } from '../src/sim/run.ts';
import type { Simulation } from '../src/sim/simulation.ts';
import { CLIENT, OPERATOR, startDaemon } from './support/daemon.ts';

// The simulator against the real daemon: what it says it sent is what the daemon counted, reason by reason.

const CARS = 200;
const SECONDS = 4;

t.test(
  'a simulated fleet against the daemon: the counts reconcile and the cars are on the map',
  async (t) => {
    const daemon = await startDaemon();
    t.teardown(() => daemon.stop());
    let sim: Simulation | undefined;
    const lines: string[] = [];
    const report = await runSimulation({
      drivers: CARS,
      rate: 1,
      durationS: SECONDS,
      host: '127.0.0.1',
      udpPort: daemon.udpPort,
      http: daemon.url,
      token: OPERATOR,
      register: 'api',
      redisUrl: '',
      centreLat: DEFAULT_CENTRE.lat,
      centreLon: DEFAULT_CENTRE.lon,
      spacingM: DEFAULT_SPACING_M,
      radiusM: DEFAULT_RADIUS_M,
      badShare: 0.05,
      // Spells of 1-2 s, so that phones go offline and come back with their bursts within the run.
      offlineShare: 0.1,
      offlineMinS: 1,
      offlineMaxS: 2,
      seed: 7,
      carsPerSocket: 10,
      reportEveryS: 1,
      idPrefix: 'sim',
      print: (line) => lines.push(line),
      onStart: (s) => {
        sim = s;
      },
    });

    // What the run did (seed 7 makes each of these happen).
    t.equal(report.cars, CARS);
    t.equal(report.sent + report.held, CARS * SECONDS, 'one fix a second per car, sent or still held');
    t.ok(report.burst > 0, `${report.burst} datagrams in offline bursts`);
    t.ok(report.offlineEpisodes > 0, `${report.offlineEpisodes} offline spells`);
    for (const kind of badKindNames) t.ok(report.bad[kind]! > 0, `${report.bad[kind]} ${kind}`);
    t.equal(report.sendErrors, 0);
    t.match(
      lines.at(-1),
      /^\[sim done \d+\.\d s\] cars 200 \(live \d+, offline \d+\) \| sent /,
      'final report',
    );

    // Loopback UDP with a 32 MiB receive buffer loses nothing at 200 datagrams a second.
    await daemon.waitFor(
      async () => (await daemon.metric('cabtrack_datagrams_received_total')) === report.sent,
      `the daemon to receive ${report.sent} datagrams`,
    );
    // A driver's first fixes wait for the primary to grant it to the worker: let them land.
    await daemon.waitFor(
      async () => (await daemon.metric('cabtrack_datagrams_accepted_total')) >= report.good,
      'the good fixes to be applied',
    );
    const received = await daemon.metric('cabtrack_datagrams_received_total');
    const accepted = await daemon.metric('cabtrack_datagrams_accepted_total');
    t.equal(received, report.sent, 'received = sent');
    t.equal(accepted, report.good, 'accepted = good: no good fix is stale or too fast, bursts included');
    const expected = new Map<string, number>();
    for (let k = 0; k < BAD_KINDS; k++) {
      const reason = reasonNames[badKindReason[k]!]!;
      expected.set(reason, (expected.get(reason) ?? 0) + report.bad[badKindNames[k]!]!);
    }
    let rejected = 0;
    for (const reason of reasonNames.slice(1)) {
      const n = await daemon.metric('cabtrack_datagrams_rejected_total', { reason });
      rejected += n;
      t.equal(n, expected.get(reason) ?? 0, `rejected ${reason}`);
    }
    t.equal(accepted + rejected, received, 'accepted + rejected = received');
    t.equal(
      await daemon.metric('cabtrack_drivers'),
      report.carsLive,
      'every car that sent a good fix is live',
    );
    t.equal(await daemon.metric('cabtrack_worker_restarts_total'), 0);

    // The nearest 100 around the centre are the cars whose last good fix is nearest, at that fix.
    const { lat, lon } = DEFAULT_CENTRE;
    const res = await daemon.get(`/v1/drivers/nearest?lat=${lat}&lon=${lon}&k=100&radius=5000`, CLIENT);
    t.equal(res.status, 200);
    const s = sim!;
    const cars = [];
    for (let i = 0; i < CARS; i++) {
      if (s.lastLat[i] === 0 && s.lastLon[i] === 0) continue;
      const la = s.lastLat[i]! / 1e6;
      const lo = s.lastLon[i]! / 1e6;
      cars.push({ id: driverId('sim', i), lat: la, lon: lo, d: haversineM(lat, lon, la, lo) });
    }
    t.equal(cars.length, report.carsLive);
    cars.sort((a, b) => a.d - b.d);
    const want = cars.slice(0, 100);
    const got = res.body.drivers as Array<{ id: string; lat: number; lon: number }>;
    t.same(
      got.map((d) => d.id),
      want.map((c) => c.id),
      'the nearest cars, nearest first',
    );
    t.same(
      got.map((d) => [d.lat, d.lon]),
      want.map((c) => [c.lat, c.lon]),
      'each at its last fix',
    );
  },
);
