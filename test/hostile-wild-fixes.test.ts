import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { haversineM } from '../src/geo/distance.ts';
import { MAX_FUTURE_S } from '../src/ingest/filter.ts';
import { type Daemon, startDaemon } from './support/daemon.ts';
import { Fleet } from './support/hostile-fleet.ts';
import { Pacer, safeWindow, scrape, settle } from './support/hostile-net.ts';
import { Prng } from './support/prng.ts';

/**
 * Issue 12, part 1, as it was found: 200 registered drivers send one fix a second each, and from each
 * driver's own socket hostile fixes are mixed in: old, replayed, future, out of range, (0, 0), and
 * jumps of 2-10 degrees of latitude stamped with the next second, several within one second. Before
 * the fix, 10 of the 200 drivers ended hundreds of km from their last real fix (the sixth jump in a
 * row re-anchored them), and every real fix after that was refused as too_fast. Every driver must end
 * exactly at its last real fix, with every real fix accepted.
 */

const DRIVERS = 200;
const ROUNDS = 40;
let daemon: Daemon;
let fleet: Fleet;

t.before(async () => {
  daemon = await startDaemon();
  fleet = new Fleet({
    size: DRIVERS,
    seed: 0x3a11d,
    prefix: 'wild',
    sessionBase: 0x3a11_d000_0000_0001n,
    orderBase: 7_000_000_000n,
    // Fix times run ahead of the clock (40 rounds sent in seconds), so start well in the past.
    startTime: Math.floor(Date.now() / 1000) - 600,
    centre: { lat: 42.8874, lon: 74.5275 },
    orderRounds: [8, 15],
    freeRounds: [2, 5],
  });
  await fleet.register(daemon);
  await fleet.open(daemon.udpPort);
});
t.teardown(async () => {
  fleet.close();
  await daemon.stop();
});

t.test('wild fixes mixed into a fleet never move a driver', async (t) => {
  const rnd = new Prng(0x3a11d);
  const pacer = new Pacer(daemon, await safeWindow(daemon), 0);
  const nowS = (): number => Math.floor(Date.now() / 1000);
  let real = 0;
  let hostile = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const batch: Array<[(typeof fleet.drivers)[number], Uint8Array]> = [];
    for (const d of fleet.drivers) {
      const before = d.last;
      const good = fleet.next(d);
      real++;
      const wild: Uint8Array[] = [];
      const session = d.session;
      // The first round is clean: a driver's very first fix has nothing to be checked against.
      const n = round === 0 ? 0 : rnd.int(0, 4);
      for (let j = 0; j < n; j++) {
        const kind = rnd.int(0, 5);
        const at = { session, lat: d.lat, lon: d.lon, time: d.time };
        if (kind === 0)
          wild.push(encodeTrack({ ...at, time: d.time - rnd.int(5, 300) })); // old
        else if (kind === 1 && before !== undefined)
          wild.push(encodeTrack({ session, lat: before.lat, lon: before.lon, time: before.time })); // replayed
        else if (kind === 2)
          // Future: clearly past the daemon's MAX_FUTURE_S allowance. Not by one second only: the
          // daemon reads its clock when it takes the datagram, which may be in the next second, and a
          // fix 60 s ahead of that is within the allowance, a plausible real fix (CI saw it once).
          wild.push(encodeTrack({ ...at, time: nowS() + rnd.int(MAX_FUTURE_S + 10, 3600) }));
        else if (kind === 3)
          wild.push(encodeTrack({ ...at, lat: 91_000_000 + rnd.int(0, 1e6) })); // out of range
        else if (kind === 4)
          wild.push(encodeTrack({ session, lat: 0, lon: 0, time: d.time + 1 })); // (0, 0)
        // A jump of 2-10 degrees of latitude, stamped with the next second: several may come in a second.
        else
          for (let k = rnd.int(1, 3); k > 0; k--) {
            const dLat = (rnd.float() < 0.5 ? -1 : 1) * rnd.int(2_000_000, 10_000_000);
            wild.push(encodeTrack({ ...at, lat: d.lat + dLat, time: d.time + 1 }));
          }
      }
      // Hostile fixes before and after the real one, in random order.
      const cut = rnd.int(0, wild.length);
      for (const w of wild.slice(0, cut)) batch.push([d, w]);
      batch.push([d, good]);
      for (const w of wild.slice(cut)) batch.push([d, w]);
      hostile += wild.length;
    }
    await pacer.room(batch.length);
    for (const [d, b] of batch) d.socket.send(b);
    pacer.note(batch.length);
  }
  const s = await settle(daemon);
  t.equal(s.received, real + hostile, 'every datagram arrived');
  t.equal(s.received, s.accepted + s.rejected, 'every datagram counted');
  t.equal(s.accepted, real, 'every real fix accepted, no hostile one');
  t.comment(
    `real ${real}, hostile ${hostile}: ${JSON.stringify(s.byLabel('cabtrack_datagrams_rejected_total', 'reason'))}`,
  );

  let far = 0;
  for (const d of fleet.drivers) {
    const got = (await daemon.get(`/v1/drivers/${d.id}`)).body;
    const last = d.last!;
    const off = haversineM(got.lat, got.lon, last.lat / 1e6, last.lon / 1e6);
    if (off > 0.5 || got.time !== last.time) {
      far++;
      t.comment(
        `${d.id} at ${got.lat},${got.lon} t=${got.time}; last real fix ${last.lat / 1e6},${last.lon / 1e6} t=${last.time}`,
      );
    }
  }
  t.equal(far, 0, 'every driver is at its last real fix');
  t.equal((await scrape(daemon)).get('cabtrack_drivers'), DRIVERS);
});
