import t from 'tap';
import { type SessionInfo, sessionMatches } from '../src/sessions/registry.ts';
import { SessionTable } from '../src/sessions/session-table.ts';
import { Prng } from './support/prng.ts';

/** The primary's session table (no Redis) against a plain Map after random operations. */

t.test('agrees with a Map after random put, delete, get, lookup and find', async (t) => {
  const rnd = new Prng(0x5e55);
  const table = new SessionTable();
  const model = new Map<string, SessionInfo & { hi: number; lo: number }>();
  const key = (hi: number, lo: number): string => `${hi}:${lo}`;
  // A few hundred sessions of a hundred drivers and thirty cabs: replaced, revoked and registered again.
  const sessions = Array.from({ length: 400 }, () => ({ hi: rnd.uint32(), lo: rnd.uint32() }));
  let broken = 0;
  for (let step = 0; step < 40_000; step++) {
    const s = rnd.pick(sessions);
    const op = rnd.int(0, 9);
    if (op < 4) {
      const info = { driverId: `drv-${rnd.int(0, 99)}`, cab: `CAB-${rnd.int(0, 29)}` };
      const created = table.put(s.hi, s.lo, info);
      if (created !== !model.has(key(s.hi, s.lo))) broken++;
      model.set(key(s.hi, s.lo), { ...info, ...s });
    } else if (op < 6) {
      if (table.delete(s.hi, s.lo) !== model.delete(key(s.hi, s.lo))) broken++;
    } else if (op < 8) {
      const m = model.get(key(s.hi, s.lo));
      const got = table.get(s.hi, s.lo);
      const [l] = table.lookup([s.hi], [s.lo]);
      if (
        m === undefined ? got !== undefined || l !== null : got?.driverId !== m.driverId || got.cab !== m.cab
      )
        broken++;
      if (m !== undefined && (l?.[0] !== m.driverId || l[1] !== m.cab)) broken++;
    } else {
      const match = rnd.chance(0.5)
        ? { driverIds: new Set([`drv-${rnd.int(0, 99)}`]) }
        : {
            driverIds: new Set([`drv-${rnd.int(0, 99)}`, `drv-${rnd.int(0, 99)}`]),
            cab: `CAB-${rnd.int(0, 29)}`,
          };
      const want = [...model.values()].filter((x) => sessionMatches(x, match)).map((x) => key(x.hi, x.lo));
      const got = table.find(match).map(([hi, lo]) => key(hi, lo));
      if (got.sort().join() !== want.sort().join()) broken++;
    }
    if (table.size !== model.size) broken++;
  }
  t.equal(broken, 0, 'every answer agreed with the model');
  t.ok(model.size > 100, `${model.size} sessions at the end`);
});
