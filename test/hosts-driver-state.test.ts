import t from 'tap';
import { parseDriverState } from '../src/hosts/driver-state.ts';

/**
 * A driver's state as another host answers it (POST /internal/v1/handoff/{id}) is checked field by field
 * before a worker takes it: a peer of another version, or a broken one, costs the driver its ring (it
 * resumes from its trip in Redis), never a worker.
 */

const valid = () => ({
  id: 'drv-1',
  cab: 'CAB-1',
  sessionHi: 1,
  sessionLo: 2,
  latE6: 41_391_700,
  lonE6: 2_164_900,
  time: 1_796_000_000,
  speed: 120,
  bearing: 90,
  orderHi: 0,
  orderLo: 9001,
  cost: 250,
  points: [41_391_000, 2_164_000, 1_795_999_999, 41_391_700, 2_164_900, 1_796_000_000],
  trip: {
    orderId: '9001',
    orderHi: 0,
    orderLo: 9001,
    cost: 250,
    startTime: 1_795_999_999,
    lastTime: 1_796_000_000,
    points: 2,
    distanceM: 95.5,
  },
});

t.test('a well-formed state is taken as is, with or without a trip', async (t) => {
  const s = valid();
  t.equal(parseDriverState(s), s);
  const noTrip = { ...valid(), trip: null };
  t.equal(parseDriverState(noTrip), noTrip);
});

t.test('every broken field refuses the whole state', async (t) => {
  const cases: Array<[string, (s: Record<string, unknown>) => void]> = [
    ['not an object', () => {}],
    ['id missing', (s) => delete s['id']],
    ['id with a space', (s) => (s['id'] = 'drv 1')],
    ['cab too long', (s) => (s['cab'] = 'x'.repeat(65))],
    ['session part negative', (s) => (s['sessionHi'] = -1)],
    ['time not an integer', (s) => (s['time'] = 1.5)],
    ['speed as a string', (s) => (s['speed'] = '12')],
    ['cost above u32', (s) => (s['cost'] = 2 ** 32)],
    ['latitude out of range', (s) => (s['latE6'] = 90_000_001)],
    ['longitude out of range', (s) => (s['lonE6'] = -180_000_001)],
    ['points not triples', (s) => (s['points'] = [1, 2])],
    ['a point out of range', (s) => (s['points'] = [91_000_000, 0, 1])],
    ['a point time negative', (s) => (s['points'] = [0, 0, -1])],
    ['points not an array', (s) => (s['points'] = 'x')],
    ['points beyond any ring', (s) => (s['points'] = new Array(3 * 10_001).fill(0))],
    ['trip undefined', (s) => delete s['trip']],
    ['trip order id not a number', (s) => ((s['trip'] as Record<string, unknown>)['orderId'] = 'abc')],
    ['trip order id with a leading zero', (s) => ((s['trip'] as Record<string, unknown>)['orderId'] = '09')],
    ['trip distance negative', (s) => ((s['trip'] as Record<string, unknown>)['distanceM'] = -1)],
    ['trip distance NaN', (s) => ((s['trip'] as Record<string, unknown>)['distanceM'] = Number.NaN)],
    ['trip points missing', (s) => delete (s['trip'] as Record<string, unknown>)['points']],
  ];
  for (const [what, breakIt] of cases) {
    if (what === 'not an object') {
      for (const x of [null, undefined, 42, 'state', []])
        t.equal(parseDriverState(x), null, `${what}: ${String(x)}`);
      continue;
    }
    const s = valid() as unknown as Record<string, unknown>;
    breakIt(s);
    t.equal(parseDriverState(s), null, what);
  }
});
