import t from 'tap';
import { Rpc } from '../src/cluster/rpc.ts';
import { CRASH_LOOP_MS, Supervisor, type WorkerHandle } from '../src/cluster/supervisor.ts';
import { HttpError, PeerGoneError, RemoteError, RpcTimeoutError } from '../src/errors.ts';

/** The typed calls between processes, and the supervisor's restart policy, without processes. */

interface Calc {
  [m: string]: (...args: any[]) => unknown;
  add(a: number, b: number): number;
  slow(ms: number): Promise<string>;
  refuse(): never;
  note(text: string): void;
}

/** Two ends of an ordered channel; delivery when the test says (as IPC: in order, later). */
function pair() {
  const toB: unknown[] = [];
  const toA: unknown[] = [];
  let open = true;
  const notes: string[] = [];
  const a = new Rpc<Record<string, never>, Calc>(
    { send: (m) => toB.push(m), connected: () => open },
    {},
    { timeoutMs: 100, peer: 'b' },
  );
  const b = new Rpc<Calc, Record<string, never>>(
    { send: (m) => toA.push(m), connected: () => open },
    {
      add: (x: number, y: number) => x + y,
      slow: (ms: number) => new Promise<string>((r) => setTimeout(() => r(`after ${ms}`), ms)),
      refuse: () => {
        throw new HttpError(503, 'unavailable', 'redis is unavailable: down', 'session');
      },
      note: (text: string) => {
        notes.push(text);
      },
    },
    { timeoutMs: 100, peer: 'a' },
  );
  const flush = (): void => {
    while (toB.length + toA.length > 0) {
      for (const m of toB.splice(0)) b.receive(m);
      for (const m of toA.splice(0)) a.receive(m);
    }
  };
  return { a, b, flush, notes, close: () => (open = false) };
}

t.test('tellSoon coalesces one-way messages of a turn, and keeps the order of everything sent', async (t) => {
  const p = pair();
  p.a.tellSoon('note', 'one');
  p.a.tellSoon('note', 'two');
  const sum = p.a.call('add', 1, 1);
  p.a.tellSoon('note', 'three');
  p.a.tell('note', 'four');
  p.a.tellSoon('note', 'five');
  p.a.tellSoon('note', 'six');
  p.flush();
  t.same(p.notes, ['one', 'two', 'three', 'four'], 'a call or a tell sends what waits first');
  t.equal(await sum, 2);
  await new Promise((r) => setImmediate(r));
  p.flush();
  t.same(p.notes, ['one', 'two', 'three', 'four', 'five', 'six'], 'the rest at the end of the turn');
  // What crosses: one message for each run of tellSoon.
  const sent: unknown[] = [];
  const a = new Rpc<Record<string, never>, Calc>(
    { send: (m) => sent.push(m), connected: () => true },
    {},
    { timeoutMs: 100, peer: 'b' },
  );
  for (let i = 0; i < 10_000; i++) a.tellSoon('note', String(i));
  await new Promise((r) => setImmediate(r));
  t.same(
    sent.map((m) => (m as { calls: unknown[] }).calls.length),
    [8192, 1808],
    'coalesced, at most 8,192 a message',
  );
});

t.test('calls are typed end to end and answered in order; tells are one-way', async (t) => {
  const p = pair();
  const sum = p.a.call('add', 2, 3);
  p.a.tell('note', 'hello');
  p.flush();
  t.equal(await sum, 5);
  t.same(p.notes, ['hello']);
  const slow = p.a.call('slow', 10);
  p.flush();
  await new Promise((r) => setTimeout(r, 20));
  p.flush();
  t.equal(await slow, 'after 10');
});

t.test('request() hands the answer over while its message is handled, before the next message', async (t) => {
  const p = pair();
  const seen: string[] = [];
  p.a.request('add', [1, 1], (err, v) => seen.push(`answer ${v} ${err}`));
  // Deliver by hand: the answer, then something after it.
  p.flush();
  seen.push('after the flush');
  t.same(seen, ['answer 2 null', 'after the flush']);
});

t.test(
  'errors cross as RemoteError with their code; an HttpError keeps its status and parameter',
  async (t) => {
    const p = pair();
    const call = p.a.call('refuse');
    p.flush();
    const err = await call.catch((e: unknown) => e);
    t.type(err, RemoteError);
    t.equal((err as RemoteError).code, 'unavailable');
    const http = (err as RemoteError).toHttp()!;
    t.same(
      [http.status, http.code, http.parameter, http.message],
      [503, 'unavailable', 'session', 'redis is unavailable: down'],
    );
    const missing = p.a.call('nope' as never);
    p.flush();
    t.equal(((await missing.catch((e: unknown) => e)) as RemoteError).code, 'CABTRACK_RPC_NO_METHOD');
  },
);

t.test(
  'no answer in time: RpcTimeoutError; the channel closes: PeerGoneError, now and for later calls',
  async (t) => {
    const p = pair();
    const lost = p.a.call('add', 1, 2);
    t.type(await lost.catch((e: unknown) => e), RpcTimeoutError);
    const waiting = p.a.call('add', 1, 2);
    t.equal(p.a.pending, 1);
    p.a.close();
    t.type(await waiting.catch((e: unknown) => e), PeerGoneError);
    t.type(await p.a.call('add', 1, 2).catch((e: unknown) => e), PeerGoneError);
    t.equal(p.a.receive({ not: 'rpc' }), false, 'other messages are left to the caller');
  },
);

t.test(
  'the supervisor restarts the dead, backs off a crash loop, and resets once all are ready',
  async (t) => {
    let now = 0;
    let nextId = 1;
    const scheduled: Array<{ fn: () => void; ms: number }> = [];
    const live = new Map<number, (code: number | null, signal: string | null) => void>();
    const forked: string[] = [];
    const deaths: number[] = [];
    const sup = new Supervisor<'ingest' | 'http'>({
      counts: { ingest: 2, http: 1 },
      now: () => now,
      schedule: (fn, ms) => scheduled.push({ fn, ms }),
      fork: (role): WorkerHandle => {
        const id = nextId++;
        forked.push(`${role}${id}`);
        return {
          id,
          onExit: (fn) => live.set(id, fn),
          kill: () => live.get(id)?.(0, 'SIGTERM'),
        };
      },
      onDeath: (_role, _w, info) => deaths.push(info.delayMs),
    });
    sup.start();
    t.same(forked, ['ingest1', 'ingest2', 'http3']);
    for (const id of [1, 2, 3]) sup.ready(id);
    t.equal(sup.readyCount('ingest'), 2);
    // A worker that ran a while dies: forked again at once.
    now = 60_000;
    live.get(1)!(null, 'SIGKILL');
    t.same(deaths, [0]);
    scheduled.shift()!.fn();
    t.same(forked.at(-1), 'ingest4');
    // It dies young, again and again: 100, 200, 400 ms...
    for (const expect of [100, 200, 400]) {
      now += CRASH_LOOP_MS - 1;
      live.get(nextId - 1)!(1, null);
      t.equal(deaths.at(-1), expect);
      scheduled.shift()!.fn();
    }
    // Once the role is all ready again, the delay resets.
    sup.ready(nextId - 1);
    now += 60_000;
    live.get(2)!(null, 'SIGKILL');
    t.equal(deaths.at(-1), 0);
    t.equal(sup.restarts, 5);
    await sup.stop().then(() => t.pass('stopped'));
  },
);
