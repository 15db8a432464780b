import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { type Daemon, Phone, startDaemon } from './support/daemon.ts';

function workerPids(d: Daemon): number[] {
  return d.logs
    .filter((l) => l.includes('"worker ready"'))
    .map((l) => (JSON.parse(l) as { pid: number }).pid);
}

t.test(
  'a worker killed with SIGKILL is replaced and its drivers come back with their next fixes',
  async (t) => {
    const daemon = await startDaemon();
    t.teardown(() => daemon.stop());
    const phones: Phone[] = [];
    t.teardown(() => {
      for (const p of phones) p.close();
    });
    const N = 20;
    let time = Math.floor(Date.now() / 1000) - 100;
    for (let i = 0; i < N; i++) {
      const hex = (0x1000 + i).toString(16).padStart(16, '0');
      await daemon.request('PUT', `/v1/sessions/${hex}`, { body: { driverId: `k${i}`, cab: `CAB-K${i}` } });
      const p = new Phone(daemon.udpPort);
      await p.open();
      phones.push(p);
    }
    const sendAll = async (): Promise<void> => {
      time += 1;
      for (const [i, p] of phones.entries()) {
        await p.send(
          encodeTrack({ session: BigInt(0x1000 + i), lat: 35_676_200 + i * 100, lon: 139_650_300, time }),
        );
      }
    };
    await sendAll();
    await daemon.waitFor(async () => (await daemon.metric('cabtrack_drivers')) === N, 'all drivers live');

    const [victim] = workerPids(daemon);
    t.ok(victim, 'found a worker pid in the logs');
    process.kill(victim!, 'SIGKILL');
    await daemon.waitFor(async () => workerPids(daemon).length === 3, 'a new worker ready');
    await daemon.waitFor(async () => (await daemon.get('/readyz')).status === 200, 'ready again');
    t.equal(await daemon.metric('cabtrack_worker_restarts_total'), 1);
    const lost = N - (await daemon.metric('cabtrack_drivers'));
    t.ok(lost > 0 && lost < N, `the killed worker's ${lost} drivers are gone until they send again`);

    await sendAll();
    await daemon.waitFor(async () => (await daemon.metric('cabtrack_drivers')) === N, 'all drivers back');
    await daemon.caughtUp();
    const near = await daemon.get('/v1/drivers/nearest?lat=35.6762&lon=139.6503&k=100&radius=10000');
    t.equal(near.body.drivers.length, N, 'every driver listed, once');
    t.equal(new Set(near.body.drivers.map((d: { id: string }) => d.id)).size, N);
    t.ok(
      near.body.drivers.every((d: { time: number }) => d.time === time),
      'all at their latest fix',
    );
  },
);
