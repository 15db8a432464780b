/**
 * The Redis session registry against a real redis-server: sessions written by a "dispatch system" client
 * straight into Redis, the caches, revocation through the key and the channel, the lookup cap under a
 * flood of random sessions, and a Redis outage. Redis commands are counted with INFO commandstats; time
 * is an injected clock.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { parseSessionHex, sessionToHex } from '../src/codec/session.ts';
import {
  REVOKE_CHANNEL,
  RedisRegistry,
  type RedisRegistryOptions,
  type Resolved,
} from '../src/sessions/redis-registry.ts';
import { FAILED, PENDING, THROTTLED } from '../src/sessions/registry.ts';
import { Prng } from './support/prng.ts';
import { type RedisServer, startRedis } from './support/redis.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A client as the daemon would make one, reconnecting quickly so outage tests do not wait. */
async function client(t: Teardown, server: RedisServer): Promise<Redis> {
  const c = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50 });
  c.on('error', () => {});
  t.teardown(() => c.disconnect());
  await c.ping();
  return c;
}

/** A registry whose answers are collected; `resolved(n)` waits for the n-th. */
function registry(
  t: Teardown,
  redis: Redis,
  options: Partial<RedisRegistryOptions> = {},
): {
  reg: RedisRegistry;
  answers: Array<[string, Resolved]>;
  revoked: string[];
  resolved: (n: number) => Promise<void>;
  revocations: (n: number) => Promise<void>;
} {
  const answers: Array<[string, Resolved]> = [];
  const revoked: string[] = [];
  const reg = new RedisRegistry({
    redis,
    onResolved: (hi, lo, result) => answers.push([sessionToHex(hi, lo), result]),
    onRevoked: (hi, lo) => revoked.push(sessionToHex(hi, lo)),
    ...options,
  });
  t.teardown(() => reg.close());
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + 10_000;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return {
    reg,
    answers,
    revoked,
    resolved: (n) => until(() => answers.length >= n, `${n} answers`),
    revocations: (n) => until(() => revoked.length >= n, `${n} revocations`),
  };
}

async function calls(server: RedisServer, command: string): Promise<number> {
  return (await server.commandStats())[command] ?? 0;
}

const S1 = '00000001deadbeef';
const S2 = 'ffffffff00000002';
const h = (hex: string): [number, number] => {
  const s = parseSessionHex(hex)!;
  return [s.hi, s.lo];
};

t.test(
  'a session written by the dispatch system: PENDING, then onResolved with it, then a cache hit',
  async (t) => {
    const server = await startRedis(t);
    const dispatch = await client(t, server);
    await dispatch.hset(`cabtrack:session:${S1}`, 'driverId', 'driver-1', 'cab', 'CAB-1');
    await dispatch.expire(`cabtrack:session:${S1}`, 3600);
    const { reg, answers, resolved } = registry(t, await client(t, server));
    await reg.subscribed();
    const before = await calls(server, 'hgetall');

    t.equal(reg.lookup(...h(S1)), PENDING);
    t.equal(reg.lookup(...h(S1)), PENDING, 'asked again while in flight');
    await resolved(1);
    t.same(answers, [[S1, { driverId: 'driver-1', cab: 'CAB-1' }]]);
    t.same(reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-1' }, 'answered from the cache');
    t.same(reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-1' });
    t.equal((await calls(server, 'hgetall')) - before, 1, 'one HGETALL for four lookups');
    t.same(reg.outcomes, { cache_hit: 2, redis_hit: 1, unknown: 0, error: 0, rate_limited: 0 });
    t.equal(reg.up, true);
  },
);

t.test('lookups in one event-loop turn go out as one pipeline and resolve each session', async (t) => {
  const server = await startRedis(t);
  const dispatch = await client(t, server);
  const rnd = new Prng(3);
  const known: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < 50; i++) {
    const hex = sessionToHex(rnd.uint32(), rnd.uint32());
    if (i % 2 === 0) {
      known.push(hex);
      await dispatch.hset(`cabtrack:session:${hex}`, 'driverId', `d-${i}`, 'cab', `C-${i}`);
    } else {
      unknown.push(hex);
    }
  }
  const { reg, answers, resolved } = registry(t, await client(t, server));
  await reg.subscribed();
  for (const hex of [...known, ...unknown]) t.equal(reg.lookup(...h(hex)), PENDING);
  await resolved(50);
  const byHex = new Map(answers);
  t.equal(byHex.size, 50, 'each session answered once');
  for (const [k, hex] of known.entries())
    t.same(byHex.get(hex), { driverId: `d-${2 * k}`, cab: `C-${2 * k}` });
  for (const hex of unknown) t.equal(byHex.get(hex), undefined);
  t.same(reg.outcomes, { cache_hit: 0, redis_hit: 25, unknown: 25, error: 0, rate_limited: 0 });
});

t.test('an unknown session is remembered: one HGETALL per negative-cache period', async (t) => {
  const server = await startRedis(t);
  let now = 1_000_000;
  const { reg, answers, resolved } = registry(t, await client(t, server), {
    now: () => now,
    negativeTtlMs: 5000,
  });
  await reg.subscribed();
  const before = await calls(server, 'hgetall');

  t.equal(reg.lookup(...h(S2)), PENDING);
  await resolved(1);
  t.same(answers, [[S2, undefined]]);
  for (let i = 0; i < 1000; i++) if (reg.lookup(...h(S2)) !== undefined) t.fail('not refused at once');
  now += 4999;
  t.equal(reg.lookup(...h(S2)), undefined, 'still remembered just before the period ends');
  t.equal((await calls(server, 'hgetall')) - before, 1);

  now += 1;
  t.equal(reg.lookup(...h(S2)), PENDING, 'asked again once the period is over');
  await resolved(2);
  t.equal((await calls(server, 'hgetall')) - before, 2);
  t.same(reg.outcomes, { cache_hit: 0, redis_hit: 0, unknown: 1003, error: 0, rate_limited: 0 });
});

t.test('a known session is asked again once its cache TTL is over', async (t) => {
  const server = await startRedis(t);
  const dispatch = await client(t, server);
  await dispatch.hset(`cabtrack:session:${S1}`, 'driverId', 'driver-1', 'cab', 'CAB-1');
  let now = 0;
  const { reg, answers, resolved } = registry(t, await client(t, server), {
    now: () => now,
    cacheTtlMs: 60_000,
  });
  t.equal(reg.lookup(...h(S1)), PENDING);
  await resolved(1);
  // The dispatch system deletes the key without publishing: honoured once the cached entry is too old.
  await dispatch.del(`cabtrack:session:${S1}`);
  now = 59_999;
  t.same(reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-1' });
  now = 60_000;
  t.equal(reg.lookup(...h(S1)), PENDING);
  await resolved(2);
  t.equal(answers[1]![1], undefined);
});

t.test('revocation through the key and the channel drops the session at once', async (t) => {
  const server = await startRedis(t);
  const dispatch = await client(t, server);
  await dispatch.hset(`cabtrack:session:${S1}`, 'driverId', 'driver-1', 'cab', 'CAB-1');
  const { reg, revoked, resolved, revocations } = registry(t, await client(t, server));
  await reg.subscribed();
  t.equal(reg.lookup(...h(S1)), PENDING);
  await resolved(1);
  t.same(reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-1' });

  // The dispatch system's side of the contract: delete the key, then publish the session.
  await dispatch.del(`cabtrack:session:${S1}`);
  t.equal(await dispatch.publish(REVOKE_CHANNEL, S1), 1, 'one subscriber heard it');
  await revocations(1);
  t.same(revoked, [S1]);
  const before = await calls(server, 'hgetall');
  t.equal(reg.lookup(...h(S1)), undefined, 'unknown at once, without asking Redis');
  t.equal(await calls(server, 'hgetall'), before);

  // A message that is not a session is ignored.
  await dispatch.publish(REVOKE_CHANNEL, 'not-a-session');
  await dispatch.publish(REVOKE_CHANNEL, S2);
  await revocations(2);
  t.same(revoked, [S1, S2]);
});

t.test("the API's put and revoke: the hash, 201/200, and every worker hears the revocation", async (t) => {
  const server = await startRedis(t);
  const dispatch = await client(t, server);
  const api = registry(t, await client(t, server), { subscribe: false });
  const worker = registry(t, await client(t, server));
  await worker.reg.subscribed();

  t.equal(await api.reg.put(...h(S1), { driverId: 'driver-1', cab: 'CAB-1' }), true, 'new');
  t.same(await dispatch.hgetall(`cabtrack:session:${S1}`), { driverId: 'driver-1', cab: 'CAB-1' });
  t.equal(await api.reg.put(...h(S1), { driverId: 'driver-1', cab: 'CAB-9' }), false, 'replaced');
  t.same(await dispatch.hgetall(`cabtrack:session:${S1}`), { driverId: 'driver-1', cab: 'CAB-9' });
  t.same(api.reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-9' }, 'the writer has it cached');

  t.equal(worker.reg.lookup(...h(S1)), PENDING);
  await worker.resolved(1);
  t.equal(await api.reg.revoke(...h(S1)), true);
  await worker.revocations(1);
  t.same(worker.revoked, [S1]);
  t.equal(await dispatch.exists(`cabtrack:session:${S1}`), 0);
  t.equal(worker.reg.lookup(...h(S1)), undefined);
  t.equal(api.reg.lookup(...h(S1)), undefined);
  t.equal(await api.reg.revoke(...h(S1)), false, 'already gone');
});

t.test('a revocation that arrives while the lookup is in flight wins over the answer', async (t) => {
  const server = await startRedis(t);
  const dispatch = await client(t, server);
  // The key stays: as when the HGETALL ran just before the dispatch system deleted it.
  await dispatch.hset(`cabtrack:session:${S1}`, 'driverId', 'driver-1', 'cab', 'CAB-1');
  const redis = await client(t, server);
  const { reg, answers, resolved, revocations } = registry(t, redis, { lookupTimeoutMs: 5000 });
  await reg.subscribed();
  // A blocking command ahead of it on the same connection holds the HGETALL back until released.
  const blocked = redis.blpop('cabtrack:test:gate', 0);
  t.equal(reg.lookup(...h(S1)), PENDING);
  await dispatch.publish(REVOKE_CHANNEL, S1);
  await revocations(1);
  t.equal(answers.length, 0, 'still in flight when the revocation arrived');
  await dispatch.lpush('cabtrack:test:gate', 'go');
  await blocked;
  await resolved(1);
  t.same(answers, [[S1, undefined]], 'the answer that crossed the revocation is not believed');
  t.equal(reg.lookup(...h(S1)), undefined);
  t.same(reg.outcomes, { cache_hit: 0, redis_hit: 0, unknown: 2, error: 0, rate_limited: 0 });
});

t.test('a flood of random sessions costs at most the lookup cap in HGETALLs', async (t) => {
  const server = await startRedis(t);
  let now = 0;
  const cap = 1000;
  const { reg, resolved } = registry(t, await client(t, server), {
    now: () => now,
    lookupsPerSecond: cap,
    lookupBurst: cap,
    negativeTtlMs: 60_000,
  });
  await reg.subscribed();
  const rnd = new Prng(42);
  const sessions: Array<[number, number]> = [];
  for (let i = 0; i < 20_000; i++) sessions.push([rnd.uint32(), rnd.uint32() | 1]);
  const before = await calls(server, 'hgetall');

  // 20 rounds of 1000 sessions, 100 ms apart on the clock: 1.9 s elapse between the first and the last.
  let pending = 0;
  for (let round = 0; round < 20; round++) {
    for (let i = round * 1000; i < (round + 1) * 1000; i++) {
      const [hi, lo] = sessions[i]!;
      const r = reg.lookup(hi, lo);
      if (r === PENDING) pending++;
      else if (r !== THROTTLED) t.fail(`session ${i}: ${String(r)}`);
    }
    await new Promise((r) => setImmediate(r));
    if (round < 19) now += 100;
  }
  await resolved(pending);
  const elapsedS = now / 1000;
  const hgetalls = (await calls(server, 'hgetall')) - before;
  // The whole burst at once, then 100 per 100 ms.
  t.equal(pending, cap + 19 * 100);
  t.equal(hgetalls, pending, 'one HGETALL per session let through');
  t.ok(hgetalls <= cap * elapsedS + cap, `${hgetalls} <= cap x ${elapsedS} s + one burst`);
  t.same(reg.outcomes, {
    cache_hit: 0,
    redis_hit: 0,
    unknown: pending,
    error: 0,
    rate_limited: 20_000 - pending,
  });

  // The same flood again within the negative-cache period: no Redis call at all.
  for (const [hi, lo] of sessions) {
    const r = reg.lookup(hi, lo);
    if (r !== undefined && r !== THROTTLED) t.fail('not refused at once');
  }
  await new Promise((r) => setImmediate(r));
  t.equal((await calls(server, 'hgetall')) - before, hgetalls);
  t.equal(reg.cached.unknown, pending);
});

t.test(
  'Redis down: FAILED for new sessions, cached ones still answer, and back after a restart',
  async (t) => {
    const server = await startRedis(t);
    const dispatch = await client(t, server);
    await dispatch.hset(`cabtrack:session:${S1}`, 'driverId', 'driver-1', 'cab', 'CAB-1');
    const redis = await client(t, server);
    const { reg, answers, resolved, revocations } = registry(t, redis, { lookupTimeoutMs: 200 });
    await reg.subscribed();
    t.equal(reg.lookup(...h(S1)), PENDING);
    await resolved(1);

    // A lookup Redis does not answer in time (held behind a blocking command) is reported FAILED, and
    // its late answer, once the command is released, is not.
    const blocked = redis.blpop('cabtrack:test:gate', 0);
    const slow = '0000000000000777';
    t.equal(reg.lookup(...h(slow)), PENDING);
    await resolved(2);
    t.same(answers[1], [slow, FAILED]);
    await dispatch.lpush('cabtrack:test:gate', 'go');
    await blocked;

    await server.stop();
    await until(() => !reg.up, 'the registry to see Redis down');
    t.same(reg.lookup(...h(S1)), { driverId: 'driver-1', cab: 'CAB-1' }, 'cached: still answers');
    t.equal(reg.lookup(...h(S2)), FAILED, 'new: FAILED at once');
    t.equal(reg.lookup(...h(S2)), FAILED, 'and not remembered as unknown');
    t.equal(answers.length, 2);

    await server.restart();
    await until(() => reg.up, 'the registry to reconnect');
    // A new server starts empty: the dispatch system writes the session again.
    await until(
      async () => (await dispatch.hset(`cabtrack:session:${S2}`, 'driverId', 'd-2', 'cab', 'C-2')) >= 0,
    );
    t.equal(reg.lookup(...h(S2)), PENDING);
    await resolved(3);
    t.same(answers[2], [S2, { driverId: 'd-2', cab: 'C-2' }]);
    // The subscriber is back on the channel too.
    await until(async () => ((await dispatch.pubsub('NUMSUB', REVOKE_CHANNEL)) as [string, number])[1] === 1);
    await dispatch.publish(REVOKE_CHANNEL, S2);
    await revocations(1);
    t.equal(reg.lookup(...h(S2)), undefined);
    t.equal(reg.outcomes.error, 3);
  },
);

async function until(cond: () => boolean | Promise<boolean>, what = 'a condition'): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      // not yet (Redis still down)
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('bad cache and cap options are refused at construction, naming the option', async (t) => {
  // Checked before any connection is used: a stand-in client is enough.
  const redis = {} as unknown as Redis;
  for (const bad of [{ cacheMax: 0 }, { negativeTtlMs: -1 }, { lookupsPerSecond: Number.NaN }]) {
    t.throws(
      () => new RedisRegistry({ redis, onResolved: () => {}, subscribe: false, ...bad }),
      { name: 'RangeError', message: new RegExp(Object.keys(bad)[0]!) },
      JSON.stringify(bad),
    );
  }
});
