import net from 'node:net';
import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { haversineM } from '../src/geo/distance.ts';
import { cellAt, NEAR_ZOOM } from '../src/stream/cells.ts';
import { CLIENT, type Daemon, OPERATOR, Phone, startDaemon } from './support/daemon.ts';
import { hex, scrape, sleep } from './support/hostile-net.ts';
import { SseClient } from './support/sse.ts';

/**
 * The live streams (issue 11) over real sockets: frames (a snapshot, then deltas with paths), cars
 * leaving the view (driven away, deleted, taking an order on a free view), reconnection, auth with the
 * API token and with stream tokens (forged, for the wrong role, expired), the viewer cap, and tokens
 * kept out of the logs.
 */

let daemon: Daemon;
const phones = new Map<string, Phone>();
const now = Math.floor(Date.now() / 1000);
const pos = new Map<string, { lat: number; lon: number; time: number; order: bigint }>();
const P = { lat: 41.3874, lon: 2.1686 };

t.before(async () => {
  daemon = await startDaemon({
    CABTRACK_STREAM_TOKEN_TTL_S: '2',
    CABTRACK_STREAM_MAX_BEHIND_MS: '3000',
    CABTRACK_LOG_LEVEL: 'debug',
  });
});
t.teardown(async () => {
  for (const p of phones.values()) p.close();
  await daemon.stop();
});

let nextSession = 1;
async function driver(id: string, lat: number, lon: number, order = 0n): Promise<void> {
  const session = 0x57e0_0000_0000_0000n + BigInt(nextSession++);
  const r = await daemon.request('PUT', `/v1/sessions/${hex(session)}`, {
    body: { driverId: id, cab: `C-${id}` },
  });
  if (r.status !== 201) throw new Error(`PUT ${r.status}`);
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  phones.set(id, phone);
  (phone as unknown as { session: bigint }).session = session;
  pos.set(id, { lat, lon, time: now - 800, order });
  await move(id, lat, lon, order);
}

async function move(id: string, lat: number, lon: number, order?: bigint): Promise<void> {
  const p = pos.get(id)!;
  // Time enough for the move at under 250 km/h (70 m/s), and at least a second.
  p.time += Math.max(1, Math.ceil(haversineM(p.lat, p.lon, lat, lon) / 60));
  p.lat = lat;
  p.lon = lon;
  if (order !== undefined) p.order = order;
  const phone = phones.get(id)!;
  await phone.send(
    encodeTrack({
      session: (phone as unknown as { session: bigint }).session,
      lat: Math.round(lat * 1e6),
      lon: Math.round(lon * 1e6),
      time: p.time,
      orderId: p.order,
      cost: p.order === 0n ? 0 : 300,
    }),
  );
}

const nearbyUrl = (extra = ''): string =>
  `${daemon.url}/v1/stream/nearby?lat=${P.lat}&lon=${P.lon}&radius=1000${extra}`;
const ids = (f: { cars: Array<{ id: string }> }): string[] => f.cars.map((c) => c.id).sort();

t.test('a snapshot, then deltas with paths; cars that leave are said to have left', async (t) => {
  await driver('in-a', P.lat + 0.001, P.lon);
  await driver('in-b', P.lat - 0.002, P.lon + 0.002);
  await driver('far', P.lat + 0.5, P.lon);
  await daemon.waitFor(async () => (await daemon.metric('cabtrack_replica_drivers')) === 3, 'drivers listed');

  const s = await SseClient.open(nearbyUrl(), { authorization: `Bearer ${CLIENT}` });
  t.teardown(() => s.close());
  t.equal(s.status, 200);
  t.match(s.headers.get('content-type'), /^text\/event-stream/);
  const [first] = await s.waitFrames(1);
  t.equal(first!.snapshot, true, 'the first frame is a snapshot');
  t.same(ids(first!), ['in-a', 'in-b'], 'the cars in view, not the far one');
  t.equal(first!.id, String(first!.frame), 'the event id is the frame number');
  t.same(first!.left, []);

  // in-a drives 110 m north: a delta with it alone, its path from the previous fix to this one.
  await move('in-a', P.lat + 0.002, P.lon);
  const moved = await s.waitFor((f) => f.cars.some((c) => c.id === 'in-a'), 1);
  t.equal(moved.snapshot, false, 'then deltas');
  t.same(ids(moved), ['in-a'], 'only what changed');
  const a = moved.cars[0]!;
  t.same(
    a.path.map(([lon, lat]) => [lon, lat]),
    [
      [P.lon, P.lat + 0.001],
      [P.lon, P.lat + 0.002],
    ],
  );
  t.same(
    a.path.map((x) => x[2]),
    [pos.get('in-a')!.time - 2, pos.get('in-a')!.time],
    'times of the two fixes',
  );
  // Whole when it entered another map cell of the view (and left its old one), else a move: the cab
  // and position the client has are not sent again.
  const crossed = cellAt(P.lat + 0.001, P.lon, NEAR_ZOOM) !== cellAt(P.lat + 0.002, P.lon, NEAR_ZOOM);
  t.equal('cab' in a, crossed, crossed ? 'a new cell: the whole car' : 'the same cell: a move');
  t.same(moved.left, crossed ? ['in-a'] : []);
  t.match(s.shown.get('in-a'), { id: 'in-a', cab: 'C-in-a', lat: P.lat + 0.002, lon: P.lon, free: true });

  // in-b drives 5.5 km away, out of every cell of the view: it leaves it.
  const n = s.frames.length;
  await move('in-b', P.lat + 0.05, P.lon);
  const gone = await s.waitFor((f) => f.left.includes('in-b'), n);
  t.notOk(ids(gone).includes('in-b'), 'not among the cars');
  // in-a is deleted by an operator: it leaves too.
  const m = s.frames.length;
  t.equal((await daemon.request('DELETE', '/v1/drivers/in-a')).status, 204);
  const deleted = await s.waitFor((f) => f.left.includes('in-a'), m);
  t.ok(deleted, 'a deleted driver leaves the view');

  // A reconnect with Last-Event-ID starts again from a snapshot. in-b drives back into the view first,
  // and is seen there before the reconnect: a fix still on its way to the replicas would reach the new
  // stream in a delta after an empty snapshot.
  const back = s.frames.length;
  await move('in-b', P.lat, P.lon + 0.001);
  await s.waitFor((f) => f.cars.some((c) => c.id === 'in-b'), back);
  s.close();
  const again = await SseClient.open(nearbyUrl(), {
    authorization: `Bearer ${CLIENT}`,
    'last-event-id': gone.id,
  });
  t.teardown(() => again.close());
  const [snap] = await again.waitFrames(1);
  t.equal(snap!.snapshot, true, 'a reconnect gets a snapshot');
  t.same(ids(snap!), ['in-b'], 'of the view as it is now');
  t.ok(Number(snap!.id) > Number(gone.id), 'frame numbers go on');
});

/** A stream read over a raw socket in this HTTP version for `ms`: the response's head and body bytes. */
async function rawStream(version: string, ms: number): Promise<{ head: string; body: Buffer }> {
  const sock = net.connect(daemon.httpPort, '127.0.0.1');
  const chunks: Buffer[] = [];
  sock.on('data', (b: Buffer) => chunks.push(b));
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  sock.write(
    `GET /v1/stream?bbox=${P.lon - 0.01},${P.lat - 0.01},${P.lon + 0.01},${P.lat + 0.01} HTTP/${version}\r\n` +
      `Host: x\r\nAuthorization: Bearer ${OPERATOR}\r\n\r\n`,
  );
  await sleep(ms);
  sock.destroy();
  const all = Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  return { head: all.subarray(0, end).toString(), body: all.subarray(end + 4) };
}

/** The events of a text/event-stream body, as text. */
function events(text: string): string[] {
  return text.split('\n\n').filter((e) => e !== '');
}

/** The ids of the cars in a frame event's `data:` line (`id: <n>\ndata: {...}`). */
function carIds(event: string): string[] {
  const data = JSON.parse(event.split('\n')[1]!.slice('data: '.length)) as { cars: Array<{ id: string }> };
  return data.cars.map((c) => c.id);
}

t.test(
  'frames are HTTP/1.1 chunks of whole events, and an HTTP/1.0 client gets the events alone',
  async (t) => {
    const v11 = await rawStream('1.1', 2500);
    t.match(v11.head, /^HTTP\/1\.1 200 OK\r\n/);
    t.match(v11.head, /\r\ntransfer-encoding: chunked/i);
    // Decoded chunk by chunk: each size line is its data's length, and each frame is one chunk of whole events.
    const decoded: string[] = [];
    let at = 0;
    const body = v11.body;
    while (at < body.length) {
      const eol = body.indexOf('\r\n', at);
      if (eol < 0) break;
      const size = Number.parseInt(body.subarray(at, eol).toString(), 16);
      if (!Number.isFinite(size) || eol + 2 + size + 2 > body.length) break;
      t.equal(
        body.subarray(eol + 2 + size, eol + 4 + size).toString(),
        '\r\n',
        'a chunk ends where its size says',
      );
      decoded.push(body.subarray(eol + 2, eol + 2 + size).toString());
      at = eol + 4 + size;
    }
    t.equal(at, body.length, 'the body is chunks, nothing else');
    t.equal(decoded[0], 'retry: 2000\n\n');
    const frames11 = decoded.slice(1);
    t.ok(frames11.length >= 1, `${frames11.length} frames in 2.5 s`);
    for (const f of frames11) {
      t.match(f, /^id: \d+\ndata: \{.*\}\n\n$/s, 'a chunk is one whole frame');
      const data = JSON.parse(f.split('\n')[1]!.slice('data: '.length));
      t.ok(Array.isArray(data.cars) && Array.isArray(data.left));
    }
    t.same(carIds(frames11[0]!), ['in-b']);

    const v10 = await rawStream('1.0', 2500);
    t.match(v10.head, /^HTTP\/1\.1 200 OK\r\n/);
    t.notMatch(v10.head, /transfer-encoding/i, 'no chunks for HTTP/1.0');
    const ev = events(v10.body.toString());
    t.equal(ev[0], 'retry: 2000');
    t.ok(ev.length >= 2, `${ev.length - 1} frames in 2.5 s`);
    for (const e of ev.slice(1)) t.match(e, /^id: \d+\ndata: \{.*\}$/s, 'an event, no chunk framing');
    t.same(carIds(ev[1]!), ['in-b']);
  },
);

t.test('a free-only view: a car that takes an order leaves it, and comes back when free', async (t) => {
  await driver('cab-free', P.lat + 0.003, P.lon - 0.003);
  await daemon.caughtUp();
  const s = await SseClient.open(nearbyUrl('&free=1'), { authorization: `Bearer ${CLIENT}` });
  t.teardown(() => s.close());
  await s.waitFor((f) => ids(f).includes('cab-free'));
  const n = s.frames.length;
  await move('cab-free', P.lat + 0.0031, P.lon - 0.003, 777n);
  await s.waitFor((f) => f.left.includes('cab-free'), n);
  const k = s.frames.length;
  await move('cab-free', P.lat + 0.0032, P.lon - 0.003, 0n);
  const back = await s.waitFor((f) => ids(f).includes('cab-free'), k);
  t.equal(back.cars.find((c) => c.id === 'cab-free')!.free, true);
});

t.test(
  "a rider's stream follows its nearest cars (limit), and chooses again when they drive off",
  async (t) => {
    // 40 cars on a line east of Q, 50 m apart: 30 of them within the 1,500 m radius.
    const Q = { lat: P.lat + 0.1, lon: P.lon };
    const mLon = 111_195 * Math.cos((Q.lat * Math.PI) / 180);
    const line = Array.from({ length: 40 }, (_, i) => `ln-${String(i).padStart(2, '0')}`);
    for (let i = 0; i < line.length; i++) await driver(line[i]!, Q.lat, Q.lon + (25 + 50 * i) / mLon);
    await daemon.caughtUp();
    const url = (limit: number): string =>
      `${daemon.url}/v1/stream/nearby?lat=${Q.lat}&lon=${Q.lon}&radius=1500&limit=${limit}`;
    const few = await SseClient.open(url(5), { authorization: `Bearer ${CLIENT}` });
    t.teardown(() => few.close());
    const all = await SseClient.open(url(1000), { authorization: `Bearer ${CLIENT}` });
    t.teardown(() => all.close());
    const [a] = await all.waitFrames(1);
    t.ok(
      line.slice(0, 30).every((id) => ids(a!).includes(id)),
      `limit=1000: every car within the radius (${ids(a!).length} cars)`,
    );
    const [f] = await few.waitFrames(1);
    const got = ids(f!);
    t.ok(
      line.slice(0, 5).every((id) => got.includes(id)),
      'limit=5: the five nearest',
    );
    t.ok(got.length < 15, `and not the whole circle (${got.length} cars: whole cells)`);
    // The cars it shows drive 20 km away: they leave, and the view is chosen again around the next ones.
    const n = few.frames.length;
    for (const id of got) await move(id, Q.lat + 0.2, Q.lon);
    const next = await few.waitFor((fr) => fr.snapshot && ids(fr).length > 0, n, 10_000);
    const rest = line.filter((id) => !got.includes(id));
    t.ok(
      rest.slice(0, 5).every((id) => ids(next).includes(id)),
      `then a snapshot of the next nearest (${ids(next).slice(0, 6).join(', ')}...)`,
    );
    t.notOk(
      got.some((id) => ids(next).includes(id)),
      'without the cars that left',
    );
    const bad = await daemon.request('GET', '/v1/stream/nearby?lat=1&lon=1&limit=0', { token: CLIENT });
    t.equal(bad.status, 400);
    t.match(bad.body, { error: { code: 'invalid_parameter', parameter: 'limit' } });
  },
);

t.test('stream tokens: EventSource auth, for the right role, until they expire; 401 and 403', async (t) => {
  const noAuth = await SseClient.open(nearbyUrl());
  t.equal(noAuth.status, 401, 'no token');
  const wrongBearer = await SseClient.open(`${daemon.url}/v1/stream?bbox=2,41,3,42`, {
    authorization: `Bearer ${CLIENT}`,
  });
  t.equal(wrongBearer.status, 403, 'the box stream is for operators');

  const clientTok = (await daemon.request('POST', '/v1/stream-tokens', { token: CLIENT })).body;
  t.match(clientTok, { token: /^v1\.c\./, expiresAt: Number });
  const opTok = (await daemon.request('POST', '/v1/stream-tokens', { token: OPERATOR })).body;
  const nearby = await SseClient.open(nearbyUrl(`&token=${clientTok.token}`));
  t.equal(nearby.status, 200, 'a client stream token opens the nearby stream');
  nearby.close();
  const box = await SseClient.open(`${daemon.url}/v1/stream?bbox=2,41,3,42&token=${clientTok.token}`);
  t.equal(box.status, 403, 'but not the operator stream');
  const opBox = await SseClient.open(`${daemon.url}/v1/stream?bbox=2,41,3,42&token=${opTok.token}`);
  t.equal(opBox.status, 200, 'an operator stream token does');
  const [frame] = await opBox.waitFrames(1);
  t.equal(frame!.snapshot, true);
  opBox.close();
  const forged = `${clientTok.token.slice(0, -2)}xx`;
  t.equal((await SseClient.open(nearbyUrl(`&token=${forged}`))).status, 401, 'a forged token');
  t.equal(
    (await daemon.request('POST', '/v1/stream-tokens', { token: 'nobody-nobody-nobody-1' })).status,
    401,
    'no token for a wrong API token',
  );
  // CABTRACK_STREAM_TOKEN_TTL_S=2 here.
  await sleep(3000);
  const expired = await SseClient.open(nearbyUrl(`&token=${clientTok.token}`));
  t.equal(expired.status, 401, 'an expired token');
  t.match(expired.body, /expired/);
  // Tokens never reach the logs, though every request above was logged at debug level.
  t.notOk(
    daemon.logs.some((l) => l.includes(clientTok.token) || l.includes(opTok.token) || l.includes(CLIENT)),
    'no token in any log line',
  );
});

t.test('a viewer that never reads: frames skipped, then cut off; memory stays bounded', async (t) => {
  // Enough cars in view (1.2 MB a frame) that its frames fill the kernel's socket buffers in seconds.
  const N = 6000;
  const session = (i: number): bigint => 0x5a0e_0000_0000_0000n + BigInt(i + 1);
  for (let i = 0; i < N; i += 300) {
    await Promise.all(
      Array.from({ length: 300 }, (_, k) =>
        daemon.request('PUT', `/v1/sessions/${hex(session(i + k))}`, {
          body: { driverId: `bp-${i + k}`, cab: `BP-${i + k}` },
        }),
      ),
    );
  }
  const phone = new Phone(daemon.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  const sendRound = async (r: number): Promise<void> => {
    for (let i = 0; i < N; i++) {
      await phone.send(
        encodeTrack({
          session: session(i),
          lat: Math.round((P.lat + ((i % 80) - 40) * 0.0002) * 1e6) + r * 20,
          lon: Math.round((P.lon + (Math.floor(i / 80) - 37) * 0.0002) * 1e6),
          time: now + r,
          orderId: 0n,
        }),
      );
    }
  };
  await sendRound(0);
  await daemon.waitFor(
    async () => (await daemon.metric('cabtrack_replica_drivers')) >= N,
    'the fleet listed',
    20_000,
  );
  const before = await scrape(daemon);
  // A raw connection that asks for the operator's stream of the whole fleet (a rider's follows its
  // nearest 100 cars) and never reads a byte.
  const stuck = net.connect(daemon.httpPort, '127.0.0.1');
  await new Promise((r) => stuck.once('connect', r));
  stuck.pause();
  stuck.write(
    `GET /v1/stream?bbox=${P.lon - 0.01},${P.lat - 0.01},${P.lon + 0.01},${P.lat + 0.01} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${OPERATOR}\r\n\r\n`,
  );
  stuck.on('error', () => {});
  t.teardown(() => stuck.destroy());
  // Every car moves every second: each frame carries all 6,000 (about 1.2 MB).
  let maxBacklog = 0;
  let cut = false;
  for (let r = 1; r <= 30 && !cut; r++) {
    await sendRound(r);
    await sleep(1000);
    const s = await scrape(daemon);
    maxBacklog = Math.max(maxBacklog, s.get('cabtrack_stream_backlog_bytes'));
    cut =
      s.get('cabtrack_stream_disconnects_total', { reason: 'slow' }) >
      before.get('cabtrack_stream_disconnects_total', { reason: 'slow' });
  }
  const after = await scrape(daemon);
  const skipped =
    after.get('cabtrack_stream_frames_skipped_total') - before.get('cabtrack_stream_frames_skipped_total');
  t.comment(
    `${skipped} frames skipped; at most ${(maxBacklog / 2 ** 20).toFixed(2)} MiB queued in the daemon`,
  );
  t.ok(skipped >= 2, 'frames skipped while the socket was full');
  t.ok(cut, 'then the viewer was cut off, counted as slow');
  t.equal(after.get('cabtrack_stream_viewers'), before.get('cabtrack_stream_viewers'), 'and is gone');
  // Queued at most: the 256 KiB a viewer may hold at a frame, and the frame written then.
  t.ok(maxBacklog > 0 && maxBacklog < 2 * 2 ** 20, 'what the daemon holds for it stays bounded');
  // Its socket was reset: the client, once it reads, finds it closed.
  stuck.resume();
  await new Promise<void>((resolve) => {
    if (stuck.destroyed) resolve();
    else stuck.once('close', () => resolve());
  });
  t.pass('the connection is closed');
});

t.test('past CABTRACK_STREAM_MAX_VIEWERS: 503 with Retry-After', async (t) => {
  const d = await startDaemon({ CABTRACK_HTTP_WORKERS: '1', CABTRACK_STREAM_MAX_VIEWERS: '2' });
  t.teardown(() => d.stop());
  const url = `${d.url}/v1/stream/nearby?lat=1&lon=1`;
  const a = await SseClient.open(url, { authorization: `Bearer ${CLIENT}` });
  const b = await SseClient.open(url, { authorization: `Bearer ${CLIENT}` });
  t.teardown(() => {
    a.close();
    b.close();
  });
  t.same([a.status, b.status], [200, 200]);
  const c = await SseClient.open(url, { authorization: `Bearer ${CLIENT}` });
  t.equal(c.status, 503);
  t.equal(c.headers.get('retry-after'), '5');
  t.match(JSON.parse(c.body), { error: { code: 'unavailable' } });
  t.equal(await d.metric('cabtrack_stream_viewers'), 2);
  a.close();
  await d.waitFor(async () => (await d.metric('cabtrack_stream_viewers')) === 1, 'a viewer gone');
  const e = await SseClient.open(url, { authorization: `Bearer ${CLIENT}` });
  t.teardown(() => e.close());
  t.equal(e.status, 200, 'a place again once one left');
});
