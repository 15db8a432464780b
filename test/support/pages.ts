import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { encodeTrack } from '../../src/codec/encode.ts';
import { cosDeg, METRES_PER_DEGREE_LAT } from '../../src/geo/distance.ts';
import { type Daemon, Phone } from './daemon.ts';
import { hex } from './hostile-net.ts';

/**
 * What the browser tests share: cars driven by test phones along known routes, the page's markers as
 * the browser draws them, and where the screenshots go.
 */

/**
 * Where the screenshots go: docs/, the README's, with CABTRACK_SCREENSHOTS=1 (`npm run screenshots`);
 * a temporary directory otherwise, so that a test run leaves the checkout as it found it (every run
 * draws different pixels) while still taking the pictures.
 */
export const DOCS =
  process.env.CABTRACK_SCREENSHOTS === '1'
    ? new URL('../../docs/', import.meta.url)
    : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'cabtrack-screens-'))}/`);
mkdirSync(DOCS, { recursive: true });

let nextSession = 0x7e57_0000_0000_0001n;

/**
 * A car driven by the test: its session registered, then one fix a second along `route` (metres east
 * and north of `origin`), round and round. `sent` holds every fix sent, as the daemon received it
 * (degrees rounded to 1e-6, as the datagram carries them).
 */
export class TestCar {
  readonly id: string;
  readonly cab: string;
  readonly sent: Array<{ lat: number; lon: number; time: number }> = [];
  readonly #phone: Phone;
  readonly #session = nextSession++;
  readonly #points: Array<{ lat: number; lon: number }>;
  readonly #orderId: bigint;
  #timer: NodeJS.Timeout | undefined;
  #k = 0;
  #time = Math.floor(Date.now() / 1000) - 1;

  private constructor(
    daemon: Daemon,
    id: string,
    origin: { lat: number; lon: number },
    route: ReadonlyArray<[east: number, north: number]>,
    orderId: bigint,
  ) {
    this.id = id;
    this.cab = id.toUpperCase();
    this.#phone = new Phone(daemon.udpPort);
    this.#orderId = orderId;
    const mLon = METRES_PER_DEGREE_LAT * cosDeg(origin.lat);
    this.#points = route.map(([e, n]) => ({
      lat: Math.round((origin.lat + n / METRES_PER_DEGREE_LAT) * 1e6) / 1e6,
      lon: Math.round((origin.lon + e / mLon) * 1e6) / 1e6,
    }));
  }

  /** Registers the session and sends the first fix; then one a second until stop(). */
  static async start(
    daemon: Daemon,
    id: string,
    origin: { lat: number; lon: number },
    route: ReadonlyArray<[number, number]>,
    options: { orderId?: bigint; move?: boolean } = {},
  ): Promise<TestCar> {
    const car = new TestCar(daemon, id, origin, route, options.orderId ?? 0n);
    const r = await daemon.request('PUT', `/v1/sessions/${hex(car.#session)}`, {
      body: { driverId: car.id, cab: car.cab },
    });
    if (r.status !== 201) throw new Error(`PUT session for ${id}: ${r.status}`);
    await car.#phone.open();
    await car.#send();
    if (options.move !== false) car.#timer = setInterval(() => void car.#send(), 1000);
    return car;
  }

  /** Where it is now. */
  get at(): { lat: number; lon: number } {
    return this.sent.at(-1)!;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#phone.close();
  }

  async #send(): Promise<void> {
    const p = this.#points[this.#k++ % this.#points.length]!;
    this.#time++;
    this.sent.push({ ...p, time: this.#time });
    await this.#phone.send(
      encodeTrack({
        session: this.#session,
        lat: Math.round(p.lat * 1e6),
        lon: Math.round(p.lon * 1e6),
        time: this.#time,
        orderId: this.#orderId,
        cost: this.#orderId === 0n ? 0 : 250 + 12 * this.#k,
        speed: 29,
        bearing: 0,
      }),
    );
  }
}

/**
 * A square of `side` metres driven anticlockwise from a corner, `step` metres a second, turned `turn`
 * degrees anticlockwise (so that its sides do not run along the pixel grid).
 */
export function squareLoop(side: number, step: number, turn = 0): Array<[number, number]> {
  const n = Math.round(side / step);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) out.push([i * step, 0]);
  for (let i = 0; i < n; i++) out.push([side, i * step]);
  for (let i = 0; i < n; i++) out.push([side - i * step, side]);
  for (let i = 0; i < n; i++) out.push([0, side - i * step]);
  const r = (turn * Math.PI) / 180;
  return out.map(([x, y]) => [x * Math.cos(r) - y * Math.sin(r), x * Math.sin(r) + y * Math.cos(r)]);
}

/** A point `metres` from `from` on a bearing (degrees clockwise from north), on the local plane. */
export function offset(
  from: { lat: number; lon: number },
  metres: number,
  bearing: number,
): { lat: number; lon: number } {
  const r = (bearing * Math.PI) / 180;
  return {
    lat: from.lat + (metres * Math.cos(r)) / METRES_PER_DEGREE_LAT,
    lon: from.lon + (metres * Math.sin(r)) / (METRES_PER_DEGREE_LAT * cosDeg(from.lat)),
  };
}

/** The ids of the cars the page draws now (each marker carries its car's id). */
export function markerIds(page: Page): Promise<string[]> {
  return page.$$eval('.leaflet-marker-pane .car', (els) =>
    els.map((e) => (e as unknown as { dataset: { id: string } }).dataset.id).sort(),
  );
}
