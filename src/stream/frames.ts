import { haversineM } from '../geo/distance.ts';
import { cellBox } from './cells.ts';

/** What the frames need of the read replica (src/replica/replica.ts). */
export interface CarSource {
  forEachIn(
    minLon: number,
    minLat: number,
    maxLon: number,
    maxLat: number,
    visit: (slot: number) => void,
  ): void;
  generation(slot: number): number;
  time(slot: number): number;
  latE6(slot: number): number;
  lonE6(slot: number): number;
  prevLatE6(slot: number): number;
  prevLonE6(slot: number): number;
  prevTime(slot: number): number;
  idJson(slot: number): string;
  carJson(slot: number, pathJson: string): string;
  free(slot: number): boolean;
}

/**
 * A layer of cells: every car, or only the free ones (a rider asking `free=1`). A car that takes an
 * order leaves the free layer's cell as if it had driven away. The free layer's cells are keyed by the
 * negative of the cell's key minus one.
 */
export function freeLayer(key: number): number {
  return -key - 1;
}

/**
 * Below this move since the previous fix a car's path is just its current point: GPS jitter at a
 * standstill must not make a marker dance (the path matcher's rule, src/paths/path-matcher.ts). At one
 * fix a second that is every car under 72 km/h, which then never gets a road-matched path: that is
 * what matching is for, not a loss. A straight chord of at most 20 m cuts a corner by a few metres
 * (a few pixels at street zoom), and the pages glide along it; it is the long moves (fast roads, fixes
 * lost on the way) that cross blocks and water, and those are matched.
 */
export const STANDSTILL_M = 20;

/** A car a cell showed at the last tick: which driver it was (the slot's generation) and its fix. */
interface Member {
  gen: number;
  time: number;
  /** Its id as JSON, kept for the `left` list: the slot may be another driver's by then. */
  idJson: string;
}

interface Cell {
  readonly box: [number, number, number, number];
  /** The free layer: only cars without an order. */
  readonly freeOnly: boolean;
  members: Map<number, Member>;
  /** This tick's scan: the cars in the cell now. */
  now: number[];
  cars: Buffer;
  left: Buffer;
  snapshot: Buffer | null;
}

const EMPTY = Buffer.alloc(0);

/**
 * The shared work of the streams: once a tick, for every map cell some viewer covers (src/stream/cells.ts),
 * the JSON of the cars that moved into or within the cell since the last tick, and of those that left
 * it, prepared once as bytes; a viewer's frame is assembled from its cells' bytes (src/stream/hub.ts),
 * never by a query of its own. A cell's snapshot (every car in it, for a viewer that joins or falls
 * behind) is made only when one is needed, once a tick.
 *
 * A tick is two steps: prepare() scans the cells (one box query of the replica each) and says which cars
 * moved, so that their road paths can be fetched; build() makes the bytes, with each car's JSON made once
 * however many cells (of several zooms) show it. Cells no viewer covers any more are forgotten.
 */
export class CellFrames {
  readonly #src: CarSource;
  readonly #cells = new Map<number, Cell>();
  /** This tick's car JSON by slot: a car in cells of several zooms is written once. */
  #carJson = new Map<number, string>();
  #roadPath: (slot: number) => string | undefined = () => undefined;

  constructor(source: CarSource) {
    this.#src = source;
  }

  /** Cells with state (covered at the last tick). */
  get cells(): number {
    return this.#cells.size;
  }

  /**
   * Scans the cells viewers cover now; returns the cars that moved far enough since the last tick to
   * have a path worth matching to the roads (the caller may fetch those before build()).
   */
  prepare(active: Iterable<number>): number[] {
    const keep = new Set<number>();
    const moved: number[] = [];
    const src = this.#src;
    for (const key of active) {
      keep.add(key);
      let cell = this.#cells.get(key);
      if (cell === undefined) {
        cell = {
          box: cellBox(key < 0 ? -key - 1 : key),
          freeOnly: key < 0,
          members: new Map(),
          now: [],
          cars: EMPTY,
          left: EMPTY,
          snapshot: null,
        };
        this.#cells.set(key, cell);
      }
      const now: number[] = [];
      const members = cell.members;
      const freeOnly = cell.freeOnly;
      const [a, b, c, d] = cell.box;
      src.forEachIn(a, b, c, d, (slot) => {
        if (freeOnly && !src.free(slot)) return;
        now.push(slot);
        const m = members.get(slot);
        if (m !== undefined && m.gen === src.generation(slot) && m.time === src.time(slot)) return;
        if (src.prevTime(slot) !== 0 && this.#moveM(slot) >= STANDSTILL_M) moved.push(slot);
      });
      cell.now = now;
    }
    for (const key of this.#cells.keys()) if (!keep.has(key)) this.#cells.delete(key);
    return moved;
  }

  /**
   * Makes this tick's bytes for every cell prepare() scanned. `roadPath` gives a car's matched path, if
   * any; `onNew` hears of each car with a new fix going out this tick, once (the stream latency).
   */
  build(
    roadPath: (slot: number) => string | undefined = () => undefined,
    onNew: (slot: number) => void = () => {},
  ): void {
    this.#carJson = new Map();
    this.#roadPath = roadPath;
    const seen = new Set<number>();
    const fresh = (slot: number): string => {
      if (!seen.has(slot)) {
        seen.add(slot);
        onNew(slot);
      }
      return this.#car(slot);
    };
    const src = this.#src;
    for (const cell of this.#cells.values()) {
      const members = cell.members;
      const next = new Map<number, Member>();
      let cars = '';
      for (const slot of cell.now) {
        const gen = src.generation(slot);
        const time = src.time(slot);
        const m = members.get(slot);
        if (m !== undefined && m.gen === gen) {
          members.delete(slot);
          if (m.time !== time) {
            m.time = time;
            cars += (cars === '' ? '' : ',') + fresh(slot);
          }
          next.set(slot, m);
        } else {
          next.set(slot, { gen, time, idJson: src.idJson(slot) });
          cars += (cars === '' ? '' : ',') + this.#car(slot);
        }
      }
      // What the cell had and has no more: the cars that left it (moved away, or gone).
      let left = '';
      for (const m of members.values()) left += (left === '' ? '' : ',') + m.idJson;
      cell.members = next;
      cell.cars = cars === '' ? EMPTY : Buffer.from(cars, 'latin1');
      cell.left = left === '' ? EMPTY : Buffer.from(left, 'latin1');
      cell.snapshot = null;
      cell.now = [];
    }
  }

  /** The cars in the cell at the last tick; undefined for a cell no viewer covered. */
  count(key: number): number | undefined {
    return this.#cells.get(key)?.members.size;
  }

  /** This tick's cars that moved into or within the cell: JSON objects, comma-separated. */
  cars(key: number): Buffer {
    return this.#cells.get(key)?.cars ?? EMPTY;
  }

  /** This tick's ids of cars that left the cell: JSON strings, comma-separated. */
  left(key: number): Buffer {
    return this.#cells.get(key)?.left ?? EMPTY;
  }

  /** Every car in the cell now (made on the first call in a tick). */
  snapshot(key: number): Buffer {
    const cell = this.#cells.get(key);
    if (cell === undefined) return EMPTY;
    if (cell.snapshot === null) {
      let s = '';
      for (const slot of cell.members.keys()) s += (s === '' ? '' : ',') + this.#car(slot);
      cell.snapshot = s === '' ? EMPTY : Buffer.from(s, 'latin1');
    }
    return cell.snapshot;
  }

  #moveM(slot: number): number {
    const src = this.#src;
    return haversineM(
      src.prevLatE6(slot) / 1e6,
      src.prevLonE6(slot) / 1e6,
      src.latE6(slot) / 1e6,
      src.lonE6(slot) / 1e6,
    );
  }

  #car(slot: number): string {
    let json = this.#carJson.get(slot);
    if (json === undefined) {
      json = this.#src.carJson(slot, this.#roadPath(slot) ?? this.#straight(slot));
      this.#carJson.set(slot, json);
    }
    return json;
  }

  /** From the previous fix to this one, in a straight line; the current point alone at a standstill. */
  #straight(slot: number): string {
    const src = this.#src;
    const here = `[${src.lonE6(slot) / 1e6},${src.latE6(slot) / 1e6},${src.time(slot)}]`;
    if (src.prevTime(slot) === 0 || this.#moveM(slot) < STANDSTILL_M) return `[${here}]`;
    return `[[${src.prevLonE6(slot) / 1e6},${src.prevLatE6(slot) / 1e6},${src.prevTime(slot)}],${here}]`;
  }
}
