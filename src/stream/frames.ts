import { haversineM } from '../geo/distance.ts';
import { JsonBytes } from '../replica/json-bytes.ts';
import { cellAt, cellBox, cellKey, mercatorX, mercatorY, tileOf } from './cells.ts';

/** What the frames need of the read replica (src/replica/replica.ts). */
export interface CarSource {
  /** The slots that changed since the last call (Replica.takeChanged): CellFrames is its one caller. */
  takeChanged(visit: (slot: number) => void): void;
  forEach(visit: (slot: number) => void): void;
  placed(slot: number): boolean;
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

interface Cell {
  readonly key: number;
  /** Its key in the all-cars layer (the free layer's cell is keyed apart, see freeLayer). */
  readonly base: number;
  readonly zoom: number;
  /** The free layer: only cars without an order. */
  readonly freeOnly: boolean;
  /** No viewer covers it any more: forgotten (a slot's reference to it means nothing now). */
  closed: boolean;
  /** The cars in it (as of the last prepare). */
  count: number;
  /** This tick: the cars new to it (sent whole), and those with a new fix within it (sent as moves). */
  entered: number[];
  moved: number[];
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

/**
 * A zoom some viewer's cells are at: for each slot, the cell it was in at the last tick (all-cars key,
 * NaN for none), and the open cells that list it, of each layer (the free layer's only kept while one
 * of its cells is open).
 */
interface Zoom {
  readonly z: number;
  at: Float64Array;
  readonly cell: Array<Cell | undefined>;
  readonly freeCell: Array<Cell | undefined>;
  freeCells: number;
}

/**
 * Where this tick wrote each car's JSON of one kind (per slot: from, length, and the tick): a car shown
 * in cells of several zooms is written once, copied after.
 */
class Written {
  at = new Int32Array(1024);
  len = new Int32Array(1024);
  tick = new Uint32Array(1024);

  grow(n: number): void {
    const at = new Int32Array(n);
    const len = new Int32Array(n);
    const tick = new Uint32Array(n);
    at.set(this.at);
    len.set(this.len);
    tick.set(this.tick);
    this.at = at;
    this.len = len;
    this.tick = tick;
  }
}

/**
 * The cells viewers cover, as StreamHub keeps them: `version` changes whenever the set does, so a tick
 * whose set is the one of the tick before skips opening, closing and ordering cells.
 */
export interface Cover {
  readonly version: number;
  readonly size: number;
  has(key: number): boolean;
  keys(): Iterable<number>;
}

/** What a frame takes from its cells (runs()). */
export const CARS = 0;
export const LEFT = 1;
export const SNAPSHOT = 2;
export type Part = typeof CARS | typeof LEFT | typeof SNAPSHOT;

const EMPTY = Buffer.alloc(0);

/** Cells are boxes of whole micro-degrees apart: a box query this much wider finds every car of a cell. */
const PAD_DEG = 2e-6;

/** Per slot, what the cells last saw of it (#state). */
const SEEN_PLACED = 1;
const SEEN_FREE = 2;

/**
 * The shared work of the streams: once a tick, for every map cell some viewer covers (src/stream/cells.ts),
 * the JSON of the cars that moved into or within the cell since the last tick, and of those that left
 * it, prepared once as bytes (a car new to the cell whole, one that moved within it as a move: every
 * viewer of the cell already shows it); a viewer's frame is assembled from its cells' bytes
 * (src/stream/hub.ts), never by a query of its own. A cell's snapshot (every car in it, for a viewer that
 * joins or falls behind) is made only when one is needed, once a tick.
 *
 * Which cell a car is in is kept per car, not per cell: for each zoom some viewer uses, the cell each
 * slot was in at the last tick (#zooms), with what the cells last saw of its driver (generation, fix
 * time, free). A tick follows the replica's changed slots (Replica.takeChanged) and, for each, compares
 * its cell then and now: so its cost is one cell computation per changed car and zoom, with no query of
 * the replica's index per cell and no per-cell set of members to look up and sweep. Only a cell that
 * comes into view is read from the index (its cars are then all new to it), and a snapshot.
 *
 * A tick is two steps: prepare() follows the changes and says which cars moved, so that their road paths
 * can be fetched; build() makes the bytes, with each car's JSON made once of each kind however many cells
 * (of several zooms) show it. Cells no viewer covers any more are forgotten.
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
  /** The zooms in use. */
  readonly #zooms = new Map<number, Zoom>();
  #zoomList: Zoom[] = [];
  /** Per slot, what the cells last saw of it: SEEN_* flags, the driver's generation and fix time. */
  #state = new Uint8Array(1024);
  #gen = new Uint16Array(1024);
  #time = new Uint32Array(1024);
  /** Per slot, the driver's id as JSON, kept for the `left` lists: the slot may be another's by then. */
  #idJson: string[] = [];
  /** Where this tick wrote each car's JSON whole (writeCar), and as a move (writeMove). */
  readonly #whole = new Written();
  readonly #moves = new Written();
  /** The tick a car's new fix was first sent (the stream latency is observed once per fix). */
  #newTick = new Uint32Array(1024);
  /** The tick a car was last listed by prepare() as moved (listed once). */
  #pathTick = new Uint32Array(1024);
  #roadPath: (slot: number) => string | undefined = () => undefined;
  /** The cover the cells were last opened for, and its version then. */
  #cover: Cover | null = null;
  #coverVersion = -1;

  constructor(source: CarSource) {
    this.#src = source;
  }

  /** Cells with state (covered at the last tick). */
  get cells(): number {
    return this.#cells.size;
  }

  /**
   * Follows the replica's changes into the cells viewers cover now; returns the cars new to a cell or
   * moved within one that moved far enough since their previous fix to have a path worth matching to
   * the roads (the caller may fetch those before build()), when asked.
   */
  prepare(active: Cover | Iterable<number>, wantMoved = true): number[] {
    const tick = ++this.#tick;
    // What changed since the last tick, in the cells (and at the zooms) viewers covered then.
    this.#src.takeChanged((slot) => this.#follow(slot));
    const cover: Cover = 'version' in active ? active : coverOf(active);
    if (cover !== this.#cover || cover.version !== this.#coverVersion || cover.version < 0) {
      this.#cover = cover;
      this.#coverVersion = cover.version;
      this.#recover(cover);
    }
    const moved: number[] = [];
    if (!wantMoved) return moved;
    for (const cell of this.#order) {
      this.#listMoved(cell.entered, tick, moved);
      this.#listMoved(cell.moved, tick, moved);
    }
    return moved;
  }

  /** Adds the cars of `slots` with a previous fix to path from, each once a tick. */
  #listMoved(slots: readonly number[], tick: number, moved: number[]): void {
    for (const slot of slots) {
      if (this.#pathTick[slot] === tick || !this.#fromPrevious(slot)) continue;
      this.#pathTick[slot] = tick;
      moved.push(slot);
    }
  }

  /**
   * The cells and zooms viewers cover now: a zoom coming into use places every car once, a cell coming
   * into view is read from the index, a cell out of view is forgotten.
   */
  #recover(cover: Cover): void {
    const zooms = new Set<number>();
    for (const key of cover.keys()) zooms.add((key < 0 ? -key - 1 : key) % 32);
    for (const z of this.#zooms.keys()) if (!zooms.has(z)) this.#zooms.delete(z);
    for (const z of zooms) if (!this.#zooms.has(z)) this.#placeAll(z);
    for (const [key, cell] of this.#cells) {
      if (cover.has(key)) continue;
      cell.closed = true;
      if (cell.freeOnly) {
        const zoom = this.#zooms.get(cell.zoom);
        if (zoom !== undefined) zoom.freeCells--;
      }
      this.#cells.delete(key);
    }
    for (const key of cover.keys()) if (!this.#cells.has(key)) this.#open(key);
    this.#zoomList = [...this.#zooms.values()];
    this.#order = [...this.#cells.values()].sort((x, y) => x.key - y.key);
  }

  /**
   * Makes this tick's bytes for every cell prepare() followed. `roadPath` gives a car's matched path, if
   * any; `onNew` hears of each car with a new fix going out this tick, once (the stream latency).
   */
  build(
    roadPath: (slot: number) => string | undefined = () => undefined,
    onNew: (slot: number) => void = () => {},
  ): void {
    this.#roadPath = roadPath;
    const out = this.#out.reset();
    const tick = this.#tick;
    // Every cell's cars first, in key order, then every cell's left ids in the same order: the cells
    // of a view are mostly neighbours in that order, so their bytes are mostly one run (see runs()).
    for (const cell of this.#order) {
      cell.carsFrom = out.at;
      for (const slot of cell.entered) {
        if (!this.#current(slot)) continue;
        out.byte(44);
        this.#car(slot);
      }
      for (const slot of cell.moved) {
        if (!this.#current(slot)) continue;
        if (this.#newTick[slot] !== tick) {
          this.#newTick[slot] = tick;
          onNew(slot);
        }
        out.byte(44);
        this.#move(slot);
      }
      cell.carsTo = out.at;
      cell.entered.length = 0;
      cell.moved.length = 0;
      cell.snapFrom = -1;
      cell.snapTo = -1;
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
    return this.#cells.get(key)?.count;
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

  /**
   * A changed slot: for each zoom in use, the cell it was in and the one it is in now, in both layers.
   * Same driver, same cell: a move, if its fix is new. Otherwise it left the one and entered the other.
   */
  #follow(slot: number): void {
    this.#grow(slot);
    const src = this.#src;
    const was = this.#state[slot]!;
    const placed = src.placed(slot);
    const gen = src.generation(slot);
    const free = placed && src.free(slot);
    const time = placed ? src.time(slot) : 0;
    const wasFree = (was & SEEN_FREE) !== 0;
    const same = (was & SEEN_PLACED) !== 0 && this.#gen[slot] === gen;
    const news = same && (time !== this.#time[slot] || free !== wasFree);
    const zooms = this.#zoomList;
    if (zooms.length > 0) {
      // Where it is across and down the world once; its tile at each zoom is then a multiplication.
      const x = placed ? mercatorX(src.lonE6(slot) / 1e6) : 0;
      const y = placed ? mercatorY(src.latE6(slot) / 1e6) : 0;
      for (const zoom of zooms) {
        const z = zoom.z;
        const then = zoom.at[slot]!;
        const now = placed ? cellKey(z, tileOf(x, z), tileOf(y, z)) : Number.NaN;
        zoom.at[slot] = now;
        zoom.cell[slot] = this.#change(slot, zoom.cell[slot], then, now, same, news, false);
        if (zoom.freeCells > 0) {
          const a = wasFree ? then : Number.NaN;
          const b = free ? now : Number.NaN;
          zoom.freeCell[slot] = this.#change(slot, zoom.freeCell[slot], a, b, same, news, true);
        }
      }
    }
    this.#state[slot] = placed ? SEEN_PLACED | (free ? SEEN_FREE : 0) : 0;
    this.#gen[slot] = gen;
    this.#time[slot] = time;
    if (placed && (!same || this.#idJson[slot] === undefined)) this.#idJson[slot] = src.idJson(slot);
  }

  /**
   * One layer of #follow at one zoom: the slot was in cell `then` and is in `now` (all-cars keys; NaN:
   * none). `had` is the open cell that listed it, if any. Returns the open cell that lists it now. Only
   * a car that changed cells looks its new one up.
   */
  #change(
    slot: number,
    had: Cell | undefined,
    then: number,
    now: number,
    same: boolean,
    news: boolean,
    free: boolean,
  ): Cell | undefined {
    const cur = had === undefined || had.closed ? undefined : had;
    if (then === now && same) {
      // Still in the same cell: a move if it is open, and nothing if not (it would list the car).
      if (news && cur !== undefined) cur.moved.push(slot);
      return cur;
    }
    if (cur !== undefined) {
      cur.leftText += `,${this.#idJson[slot]}`;
      cur.count--;
    }
    if (Number.isNaN(now)) return undefined;
    const c = this.#cells.get(free ? freeLayer(now) : now);
    if (c !== undefined) {
      c.entered.push(slot);
      c.count++;
    }
    return c;
  }

  /** A zoom comes into use: every listed car's cell at it. */
  #placeAll(z: number): void {
    const src = this.#src;
    const zoom: Zoom = {
      z,
      at: new Float64Array(this.#state.length).fill(Number.NaN),
      cell: [],
      freeCell: [],
      freeCells: 0,
    };
    this.#zooms.set(z, zoom);
    src.forEach((slot) => {
      if ((this.#state[slot]! & SEEN_PLACED) === 0) return;
      this.#grow(slot);
      zoom.at[slot] = cellAt(src.latE6(slot) / 1e6, src.lonE6(slot) / 1e6, z);
    });
  }

  /** A cell comes into view: its cars, all new to it. */
  #open(key: number): void {
    const base = key < 0 ? -key - 1 : key;
    const cell: Cell = {
      key,
      base,
      zoom: base % 32,
      freeOnly: key < 0,
      closed: false,
      count: 0,
      entered: [],
      moved: [],
      leftText: '',
      carsFrom: 0,
      carsTo: 0,
      leftFrom: 0,
      leftTo: 0,
      snapFrom: -1,
      snapTo: -1,
    };
    const zoom = this.#zooms.get(cell.zoom)!;
    const refs = cell.freeOnly ? zoom.freeCell : zoom.cell;
    if (cell.freeOnly) zoom.freeCells++;
    this.#members(cell, (slot) => {
      cell.entered.push(slot);
      cell.count++;
      refs[slot] = cell;
    });
    this.#cells.set(key, cell);
  }

  /**
   * The cars in a cell as the last prepare() placed them: those in its box (a little wider: the box's
   * edges are computed, the cars' cells too) placed in it at its zoom.
   */
  #members(cell: Cell, visit: (slot: number) => void): void {
    const at = this.#zooms.get(cell.zoom)?.at;
    if (at === undefined) return;
    const [a, b, c, d] = cellBox(cell.base);
    const base = cell.base;
    const state = this.#state;
    const need = cell.freeOnly ? SEEN_PLACED | SEEN_FREE : SEEN_PLACED;
    this.#src.forEachIn(a - PAD_DEG, b - PAD_DEG, c + PAD_DEG, d + PAD_DEG, (slot) => {
      if (slot < at.length && at[slot] === base && (state[slot]! & need) === need) visit(slot);
    });
  }

  #snapshot(cell: Cell): void {
    const out = this.#out;
    cell.snapFrom = out.at;
    this.#members(cell, (slot) => {
      if (!this.#current(slot)) return;
      out.byte(44);
      this.#car(slot);
    });
    cell.snapTo = out.at;
  }

  /**
   * Still the driver the cells last saw, and listed: a batch applied while road paths were fetched
   * (between prepare and build) may have moved it on or emptied its slot, and then the next tick says so.
   */
  #current(slot: number): boolean {
    return (
      (this.#state[slot]! & SEEN_PLACED) !== 0 &&
      this.#src.placed(slot) &&
      this.#src.generation(slot) === this.#gen[slot]
    );
  }

  /** The car's new fix as a move (writeMove), written the first time this tick and copied after. */
  #move(slot: number): void {
    this.#once(slot, this.#moves, true);
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
    this.#once(slot, this.#whole, false);
  }

  /** The car's JSON of one kind: written the first time this tick, copied from there after. */
  #once(slot: number, written: Written, move: boolean): void {
    const out = this.#out;
    const tick = this.#tick;
    if (written.tick[slot] === tick) {
      out.again(written.at[slot]!, written.len[slot]!);
      return;
    }
    const at = out.at;
    const src = this.#src;
    if (move) src.writeMove(slot, out, this.#roadPath(slot), this.#fromPrevious(slot));
    else src.writeCar(slot, out, this.#roadPath(slot), this.#fromPrevious(slot));
    written.tick[slot] = tick;
    written.at[slot] = at;
    written.len[slot] = out.at - at;
  }

  /** Room in the per-slot arrays for this slot. */
  #grow(slot: number): void {
    if (slot < this.#state.length) return;
    const n = Math.max(slot + 1, this.#state.length * 2);
    const grow = <T extends Int32Array | Uint32Array | Uint16Array | Uint8Array>(a: T, b: T): T => {
      b.set(a as never);
      return b;
    };
    this.#state = grow(this.#state, new Uint8Array(n));
    this.#gen = grow(this.#gen, new Uint16Array(n));
    this.#time = grow(this.#time, new Uint32Array(n));
    this.#whole.grow(n);
    this.#moves.grow(n);
    this.#newTick = grow(this.#newTick, new Uint32Array(n));
    this.#pathTick = grow(this.#pathTick, new Uint32Array(n));
    for (const zoom of this.#zooms.values()) {
      const more = new Float64Array(n).fill(Number.NaN);
      more.set(zoom.at);
      zoom.at = more;
    }
  }
}

/** A plain list of cells as a Cover of no version: prepare() opens and closes cells for it every time. */
function coverOf(cells: Iterable<number>): Cover {
  const set = new Set(cells);
  return { version: -1, size: set.size, has: (key) => set.has(key), keys: () => set };
}
