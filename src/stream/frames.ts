import { haversineM } from '../geo/distance.ts';
import { JsonBytes } from '../replica/json-bytes.ts';
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
  writeCar(slot: number, out: JsonBytes, roadPath: string | undefined, fromPrevious: boolean): void;
  writeMove(slot: number, out: JsonBytes, roadPath: string | undefined, fromPrevious: boolean): void;
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
  /** The tick that last found it in the cell: one that did not, it left. */
  seen: number;
  /** Its id as JSON, kept for the `left` list: the slot may be another driver's by then. */
  idJson: string;
}

interface Cell {
  readonly key: number;
  readonly box: [number, number, number, number];
  /** The free layer: only cars without an order. */
  readonly freeOnly: boolean;
  members: Map<number, Member>;
  /** This tick's scan: the cars in the cell with a fix it has not shown (new to it, or moved). */
  changed: number[];
  /** The ids that left it this tick, each after a comma (written after every cell's cars). */
  leftText: string;
  /**
   * Where this tick's bytes are in the arena, [from, to): the cars that moved into or within it, the
   * ids that left it, and its snapshot (-1: not made this tick). Each car or id follows a comma.
   */
  carsFrom: number;
  carsTo: number;
  leftFrom: number;
  leftTo: number;
  snapFrom: number;
  snapTo: number;
}

/** What a frame takes from its cells (runs()). */
export const CARS = 0;
export const LEFT = 1;
export const SNAPSHOT = 2;
export type Part = typeof CARS | typeof LEFT | typeof SNAPSHOT;

const EMPTY = Buffer.alloc(0);

/**
 * The shared work of the streams: once a tick, for every map cell some viewer covers (src/stream/cells.ts),
 * the JSON of the cars that moved into or within the cell since the last tick, and of those that left
 * it, prepared once as bytes (a car new to the cell whole, one that moved within it as a move: every
 * viewer of the cell already shows it); a viewer's frame is assembled from its cells' bytes (src/stream/hub.ts),
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
  /** The cells in key order: the order their bytes are laid out in (see runs()). */
  #order: Cell[] = [];
  /**
   * This tick's bytes: every cell's cars, left and snapshot are views of it. Written afresh each tick
   * (the hub copies what it sends before the next one).
   */
  readonly #out = new JsonBytes(1 << 20);
  #tick = 0;
  /**
   * Where this tick wrote each car's JSON, whole (writeCar) and as a move (writeMove): a car in cells of
   * several zooms is written once of each kind, copied after.
   */
  #carAt = new Int32Array(1024);
  #carLen = new Int32Array(1024);
  #carTick = new Uint32Array(1024);
  #moveAt = new Int32Array(1024);
  #moveLen = new Int32Array(1024);
  #moveTick = new Uint32Array(1024);
  /** The tick a car's new fix was first sent (the stream latency is observed once per fix). */
  #newTick = new Uint32Array(1024);
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
   * have a path worth matching to the roads (the caller may fetch those before build()), when asked.
   */
  prepare(active: Iterable<number>, wantMoved = true): number[] {
    const tick = ++this.#tick;
    const keep = new Set<number>();
    const moved: number[] = [];
    const src = this.#src;
    for (const key of active) {
      keep.add(key);
      let cell = this.#cells.get(key);
      if (cell === undefined) {
        cell = {
          key,
          box: cellBox(key < 0 ? -key - 1 : key),
          freeOnly: key < 0,
          members: new Map(),
          changed: [],
          leftText: '',
          carsFrom: 0,
          carsTo: 0,
          leftFrom: 0,
          leftTo: 0,
          snapFrom: -1,
          snapTo: -1,
        };
        this.#cells.set(key, cell);
      }
      const changed: number[] = [];
      const members = cell.members;
      const freeOnly = cell.freeOnly;
      const [a, b, c, d] = cell.box;
      src.forEachIn(a, b, c, d, (slot) => {
        if (freeOnly && !src.free(slot)) return;
        const m = members.get(slot);
        if (m !== undefined && m.gen === src.generation(slot) && m.time === src.time(slot)) {
          m.seen = tick;
          return;
        }
        changed.push(slot);
        if (wantMoved && src.prevTime(slot) !== 0 && this.#moveM(slot) >= STANDSTILL_M) moved.push(slot);
      });
      cell.changed = changed;
    }
    for (const key of this.#cells.keys()) if (!keep.has(key)) this.#cells.delete(key);
    this.#order = [...this.#cells.values()].sort((x, y) => x.key - y.key);
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
    this.#roadPath = roadPath;
    const out = this.#out.reset();
    const tick = this.#tick;
    const src = this.#src;
    // Every cell's cars first, in key order, then every cell's left ids in the same order: the cells
    // of a view are mostly neighbours in that order, so their bytes are mostly one run (see runs()).
    for (const cell of this.#order) {
      const members = cell.members;
      let left = '';
      cell.carsFrom = out.at;
      for (const slot of cell.changed) {
        const gen = src.generation(slot);
        const m = members.get(slot);
        out.byte(44);
        if (m !== undefined && m.gen === gen) {
          // Moved within the cell: a new fix of a car every viewer of the cell shows, so a move.
          m.time = src.time(slot);
          m.seen = tick;
          this.#grow(slot);
          if (this.#newTick[slot] !== tick) {
            this.#newTick[slot] = tick;
            onNew(slot);
          }
          this.#move(slot);
        } else {
          // New to the cell; a slot now another driver's: the one it was has left.
          if (m !== undefined) left += `,${m.idJson}`;
          members.set(slot, { gen, time: src.time(slot), seen: tick, idJson: src.idJson(slot) });
          this.#car(slot);
        }
      }
      cell.carsTo = out.at;
      // What the cell had and has no more: the cars that left it (moved away, or gone).
      for (const [slot, m] of members) {
        if (m.seen === tick) continue;
        left += `,${m.idJson}`;
        members.delete(slot);
      }
      cell.leftText = left;
      cell.snapFrom = -1;
      cell.snapTo = -1;
      cell.changed = [];
    }
    for (const cell of this.#order) {
      cell.leftFrom = out.at;
      if (cell.leftText !== '') out.text(cell.leftText);
      cell.leftTo = out.at;
      cell.leftText = '';
    }
  }

  /**
   * A frame's part from these cells (in key order, as a viewer keeps them): their cars, left ids or
   * snapshots, comma-separated, pushed onto `parts` as views of this tick's bytes, with neighbouring
   * cells' bytes joined into one view where they lie next to each other. Returns how many bytes.
   */
  runs(cells: readonly number[], part: Part, parts: Buffer[]): number {
    const out = this.#out;
    const first = parts.length;
    let from = -1;
    let to = -1;
    let n = 0;
    for (let i = 0; i <= cells.length; i++) {
      let a = -1;
      let b = -1;
      if (i < cells.length) {
        const cell = this.#cells.get(cells[i]!);
        if (cell === undefined) continue;
        if (part === CARS) {
          a = cell.carsFrom;
          b = cell.carsTo;
        } else if (part === LEFT) {
          a = cell.leftFrom;
          b = cell.leftTo;
        } else {
          if (cell.snapFrom < 0) this.#snapshot(cell);
          a = cell.snapFrom;
          b = cell.snapTo;
        }
        if (a === b) continue;
        if (a === to) {
          to = b;
          continue;
        }
      }
      if (from >= 0) {
        // The first run's leading comma is dropped: it starts the list.
        const at = parts.length === first ? from + 1 : from;
        parts.push(out.range(at, to));
        n += to - at;
      }
      from = a;
      to = b;
    }
    return n;
  }

  /** The cars in the cell at the last tick; undefined for a cell no viewer covered. */
  count(key: number): number | undefined {
    return this.#cells.get(key)?.members.size;
  }

  /** This tick's cars that moved into or within the cell: JSON objects, comma-separated. */
  cars(key: number): Buffer {
    return this.#one(key, CARS);
  }

  /** This tick's ids of cars that left the cell: JSON strings, comma-separated. */
  left(key: number): Buffer {
    return this.#one(key, LEFT);
  }

  /** Every car in the cell now (made on the first call in a tick). */
  snapshot(key: number): Buffer {
    return this.#one(key, SNAPSHOT);
  }

  #one(key: number, part: Part): Buffer {
    const parts: Buffer[] = [];
    this.runs([key], part, parts);
    return parts[0] ?? EMPTY;
  }

  #snapshot(cell: Cell): void {
    const out = this.#out;
    cell.snapFrom = out.at;
    for (const slot of cell.members.keys()) {
      out.byte(44);
      this.#car(slot);
    }
    cell.snapTo = out.at;
  }

  /** The car's new fix as a move (writeMove), written the first time this tick and copied after. */
  #move(slot: number): void {
    const out = this.#out;
    if (this.#moveTick[slot] === this.#tick) {
      out.again(this.#moveAt[slot]!, this.#moveLen[slot]!);
      return;
    }
    const at = out.at;
    this.#src.writeMove(slot, out, this.#roadPath(slot), this.#fromPrevious(slot));
    this.#moveTick[slot] = this.#tick;
    this.#moveAt[slot] = at;
    this.#moveLen[slot] = out.at - at;
  }

  /** A path from the previous fix in a straight line, or the current point alone at a standstill. */
  #fromPrevious(slot: number): boolean {
    return this.#src.prevTime(slot) !== 0 && this.#moveM(slot) >= STANDSTILL_M;
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

  /** The car's JSON, written the first time this tick and copied after. */
  #car(slot: number): void {
    this.#grow(slot);
    const out = this.#out;
    if (this.#carTick[slot] === this.#tick) {
      out.again(this.#carAt[slot]!, this.#carLen[slot]!);
      return;
    }
    const at = out.at;
    this.#src.writeCar(slot, out, this.#roadPath(slot), this.#fromPrevious(slot));
    this.#carTick[slot] = this.#tick;
    this.#carAt[slot] = at;
    this.#carLen[slot] = out.at - at;
  }

  #grow(slot: number): void {
    if (slot < this.#carAt.length) return;
    const n = Math.max(slot + 1, this.#carAt.length * 2);
    const grow = <T extends Int32Array | Uint32Array>(a: T, b: T): T => {
      b.set(a);
      return b;
    };
    this.#carAt = grow(this.#carAt, new Int32Array(n));
    this.#carLen = grow(this.#carLen, new Int32Array(n));
    this.#carTick = grow(this.#carTick, new Uint32Array(n));
    this.#moveAt = grow(this.#moveAt, new Int32Array(n));
    this.#moveLen = grow(this.#moveLen, new Int32Array(n));
    this.#moveTick = grow(this.#moveTick, new Uint32Array(n));
    this.#newTick = grow(this.#newTick, new Uint32Array(n));
  }
}
