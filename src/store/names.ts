/**
 * The ids and cabs of a store's drivers, by slot, with a lookup of the slot by id (and, optionally, of
 * the slots by cab): no string object per driver. Used by the read replicas (src/replica/replica.ts)
 * and the ingest workers' shards (src/store/shard.ts). Each slot's names are one record in a byte arena,
 *
 *   record   u8 idLen | id bytes | u8 cabLen | cab bytes      (ASCII: the API allows A-Z a-z 0-9 . _ : -)
 *
 * and ids are found through an open-addressing table of slot numbers (linear probing, backward-shift
 * deletion, at most half full), hashed with FNV-1a; cabs likewise, in a second table that may hold
 * several slots with the same cab (two drivers logged in with one cab). About 22 bytes of arena and 8 of
 * table a driver for ids like `drv-123456`, where a JS string for each of the two names and a Map entry
 * would take about 100 (issue 10's budget for a whole replica is 96 B a driver at 1M).
 *
 * Names arrive as bytes of a batch in a replica and are copied as bytes: loading a million-driver
 * snapshot makes no string. Strings are made only when a driver is shown (a query's results), and ids
 * are compared as bytes for the operators' paging by id. Zero is the empty value in every array (offsets
 * start at 1, the tables hold slot + 1), so a grown array needs no fill and never-used capacity is never
 * touched, and so never resident. Freed records leave holes; the arena is compacted when they are half
 * of it.
 */
const NONE = -1;

export interface NamesOptions {
  /** Keep the index of slots by id (find, findBytes): true unless said otherwise. */
  byId?: boolean;
  /** Keep an index of slots by cab (the shard's GET /v1/cabs/{cab}); the replicas need none. */
  byCab?: boolean;
}

export class Names {
  #arena = Buffer.allocUnsafeSlow(64 * 1024);
  /** Bytes used; offset 0 is never a record, so 0 can mean none. */
  #used = 1;
  #holes = 0;
  /** Per slot: the record's offset in the arena, 0 for none. */
  #at = new Int32Array(1024);
  /** Open addressing by id (null without the index): slot + 1, 0 for a free place. */
  #table: Int32Array | null;
  /** Open addressing by cab (null without the option): slot + 1, 0 for a free place; cabs may repeat. */
  #cabs: Int32Array | null;
  #size = 0;
  /** Scratch for ids and cabs given as strings: written here as bytes first. */
  #scratch = Buffer.allocUnsafeSlow(512);

  constructor(options: NamesOptions = {}) {
    this.#table = options.byId === false ? null : new Int32Array(2048);
    this.#cabs = options.byCab === true ? new Int32Array(2048) : null;
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes of typed arrays held (for memory accounting). */
  get byteLength(): number {
    return (
      this.#arena.byteLength +
      this.#at.byteLength +
      (this.#table?.byteLength ?? 0) +
      (this.#cabs?.byteLength ?? 0)
    );
  }

  /** The slot holding this id, or -1. */
  find(id: string): number {
    const table = this.#ids();
    const mask = table.length - 1;
    for (let i = hashString(id) & mask; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) return NONE;
      if (this.#textAt(this.#at[e - 1]!, id)) return e - 1;
    }
  }

  /** The slot holding the id in bytes[at, at + len), or -1: no string made. */
  findBytes(bytes: Uint8Array, at: number, len: number): number {
    const table = this.#ids();
    const mask = table.length - 1;
    for (let i = hashBytes(bytes, at, len) & mask; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) return NONE;
      if (this.#equalsAt(this.#at[e - 1]!, bytes, at, len)) return e - 1;
    }
  }

  /** Calls visit(slot) for every slot whose cab is `cab` (needs the byCab option). */
  forCab(cab: string, visit: (slot: number) => void): void {
    const cabs = this.#cabs;
    if (cabs === null) throw new Error('Names: no index by cab (the byCab option)');
    const mask = cabs.length - 1;
    for (let i = hashString(cab) & mask; ; i = (i + 1) & mask) {
      const e = cabs[i]!;
      if (e === 0) return;
      if (this.#textAt(this.#cabAt(e - 1), cab)) visit(e - 1);
    }
  }

  /**
   * Gives the slot the id in bytes[idAt, +idLen) and the cab in bytes[cabAt, +cabLen) (a new slot: the
   * id must not be held by another).
   */
  set(slot: number, bytes: Uint8Array, idAt: number, idLen: number, cabAt: number, cabLen: number): void {
    if (slot >= this.#at.length) this.#growSlots(slot + 1);
    if (this.#at[slot] !== 0) this.delete(slot);
    if (this.#table !== null && (this.#size + 1) * 2 > this.#table.length) {
      this.#table = this.#rehash(this.#table.length * 2, false);
    }
    if (this.#cabs !== null && (this.#size + 1) * 2 > this.#cabs.length) {
      this.#cabs = this.#rehash(this.#cabs.length * 2, true);
    }
    this.#at[slot] = this.#write(bytes, idAt, idLen, cabAt, cabLen, bytes);
    if (this.#table !== null) insert(this.#table, hashBytes(bytes, idAt, idLen), slot);
    if (this.#cabs !== null) insert(this.#cabs, hashBytes(bytes, cabAt, cabLen), slot);
    this.#size++;
  }

  /** set() with the id and cab as strings (ASCII, at most 255 characters each). */
  setText(slot: number, id: string, cab: string): void {
    const b = this.#scratch;
    const idLen = b.write(id, 0, 'latin1');
    const cabLen = b.write(cab, idLen, 'latin1');
    this.set(slot, b, 0, idLen, idLen, cabLen);
  }

  /** Whether the slot's cab is bytes[at, at + len). */
  cabIs(slot: number, bytes: Uint8Array, at: number, len: number): boolean {
    return this.#equalsAt(this.#cabAt(slot), bytes, at, len);
  }

  /** A new cab for the slot's id (a driver logged in with another cab). */
  setCab(slot: number, bytes: Uint8Array, cabAt: number, cabLen: number): void {
    const old = this.#at[slot]!;
    if (this.#cabs !== null) this.#unindex(this.#cabs, this.#hashAt(this.#cabAt(slot)), slot, true);
    // The id is copied out first: writing may compact the arena and move it.
    const id = Buffer.from(this.#arena.subarray(old + 1, old + 1 + this.#arena[old]!));
    this.#holes += this.#recordBytes(old);
    this.#at[slot] = this.#write(id, 0, id.length, cabAt, cabLen, bytes);
    if (this.#cabs !== null) insert(this.#cabs, hashBytes(bytes, cabAt, cabLen), slot);
    this.#maybeCompact();
  }

  /** setCab() with the cab as a string. */
  setCabText(slot: number, cab: string): void {
    const b = this.#scratch;
    this.setCab(slot, b, 0, b.write(cab, 0, 'latin1'));
  }

  delete(slot: number): void {
    const at = this.#at[slot];
    if (at === undefined || at === 0) return;
    if (this.#table !== null) this.#unindex(this.#table, this.#hashAt(at), slot, false);
    if (this.#cabs !== null) this.#unindex(this.#cabs, this.#hashAt(this.#cabAt(slot)), slot, true);
    this.#holes += this.#recordBytes(at);
    this.#at[slot] = 0;
    this.#size--;
    this.#maybeCompact();
  }

  has(slot: number): boolean {
    return slot < this.#at.length && this.#at[slot] !== 0;
  }

  id(slot: number): string {
    const at = this.#at[slot]!;
    return this.#arena.toString('latin1', at + 1, at + 1 + this.#arena[at]!);
  }

  cab(slot: number): string {
    const cabAt = this.#cabAt(slot);
    return this.#arena.toString('latin1', cabAt + 1, cabAt + 1 + this.#arena[cabAt]!);
  }

  /**
   * Copies the slot's id into `to` at `at` as bytes (ASCII, at most 255), no string made; returns how
   * many (the nearest route writes its answer as bytes: src/replica/json-bytes.ts).
   */
  copyId(slot: number, to: Uint8Array, at: number): number {
    const from = this.#at[slot]!;
    const arena = this.#arena;
    const len = arena[from]!;
    // A loop, not Buffer#copy: names are a few bytes, shorter than a call into C++ is worth.
    for (let i = 0; i < len; i++) to[at + i] = arena[from + 1 + i]!;
    return len;
  }

  /** As copyId, for the slot's cab. */
  copyCab(slot: number, to: Uint8Array, at: number): number {
    const from = this.#cabAt(slot);
    const arena = this.#arena;
    const len = arena[from]!;
    // A loop, not Buffer#copy: names are a few bytes, shorter than a call into C++ is worth.
    for (let i = 0; i < len; i++) to[at + i] = arena[from + 1 + i]!;
    return len;
  }

  /** Whether the slot's id is `id` (no string made). */
  idIs(slot: number, id: string): boolean {
    return this.#textAt(this.#at[slot]!, id);
  }

  /** Whether the slot's cab is `cab` (no string made). */
  cabIsText(slot: number, cab: string): boolean {
    return this.#textAt(this.#cabAt(slot), cab);
  }

  /** One past the highest slot that may hold names. */
  get slotLimit(): number {
    return this.#at.length;
  }

  /** Compares two slots' ids as the API orders them (byte order, which is code unit order for ASCII). */
  compareIds(a: number, b: number): number {
    const arena = this.#arena;
    const pa = this.#at[a]!;
    const pb = this.#at[b]!;
    const la = arena[pa]!;
    const lb = arena[pb]!;
    const n = la < lb ? la : lb;
    for (let i = 1; i <= n; i++) {
      const d = arena[pa + i]! - arena[pb + i]!;
      if (d !== 0) return d;
    }
    return la - lb;
  }

  /** Compares a slot's id with a string id (negative: the slot's comes first). */
  compareIdTo(slot: number, id: string): number {
    const arena = this.#arena;
    const p = this.#at[slot]!;
    const len = arena[p]!;
    const n = len < id.length ? len : id.length;
    for (let i = 0; i < n; i++) {
      const d = arena[p + 1 + i]! - id.charCodeAt(i);
      if (d !== 0) return d;
    }
    return len - id.length;
  }

  /** For tests: entries in the cab index. */
  get cabEntries(): number {
    let n = 0;
    if (this.#cabs !== null) for (const e of this.#cabs) if (e !== 0) n++;
    return n;
  }

  #ids(): Int32Array {
    if (this.#table === null) throw new Error('Names: no index by id (the byId option)');
    return this.#table;
  }

  /** The offset of the slot's length-prefixed cab. */
  #cabAt(slot: number): number {
    const at = this.#at[slot]!;
    return at + 1 + this.#arena[at]!;
  }

  /** Whether the length-prefixed bytes at arena[p] are bytes[at, at + len). */
  #equalsAt(p: number, bytes: Uint8Array, at: number, len: number): boolean {
    const arena = this.#arena;
    if (arena[p] !== len) return false;
    for (let i = 0; i < len; i++) if (arena[p + 1 + i] !== bytes[at + i]) return false;
    return true;
  }

  /** Whether the length-prefixed bytes at arena[p] spell the string. */
  #textAt(p: number, s: string): boolean {
    const arena = this.#arena;
    if (arena[p] !== s.length) return false;
    for (let i = 0; i < s.length; i++) if (arena[p + 1 + i] !== s.charCodeAt(i)) return false;
    return true;
  }

  /** Removes the slot from a table (found from the hash of its name), shifting its probe run back. */
  #unindex(table: Int32Array, hash: number, slot: number, byCab: boolean): void {
    const mask = table.length - 1;
    let i = hash & mask;
    while (table[i] !== slot + 1) i = (i + 1) & mask;
    let hole = i;
    for (let j = (hole + 1) & mask; table[j] !== 0; j = (j + 1) & mask) {
      const s = table[j]! - 1;
      const home = this.#hashAt(byCab ? this.#cabAt(s) : this.#at[s]!) & mask;
      // Move j back into the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        table[hole] = table[j]!;
        hole = j;
      }
    }
    table[hole] = 0;
  }

  #recordBytes(at: number): number {
    const idLen = this.#arena[at]!;
    return 2 + idLen + this.#arena[at + 1 + idLen]!;
  }

  /** Appends a record: the id from bytes[idAt, +idLen), the cab from cabBytes[cabAt, +cabLen). */
  #write(
    bytes: Uint8Array,
    idAt: number,
    idLen: number,
    cabAt: number,
    cabLen: number,
    cabBytes: Uint8Array,
  ): number {
    const need = 2 + idLen + cabLen;
    if (this.#used + need > this.#arena.length) this.#makeRoom(need);
    const at = this.#used;
    const arena = this.#arena;
    arena[at] = idLen;
    arena.set(bytes.subarray(idAt, idAt + idLen), at + 1);
    arena[at + 1 + idLen] = cabLen;
    arena.set(cabBytes.subarray(cabAt, cabAt + cabLen), at + 2 + idLen);
    this.#used += need;
    return at;
  }

  /** Hash of the length-prefixed name at arena[p]. */
  #hashAt(p: number): number {
    return hashBytes(this.#arena, p + 1, this.#arena[p]!);
  }

  #maybeCompact(): void {
    if (this.#holes > 4096 && this.#holes * 2 > this.#used) this.#compact(this.#arena.length);
  }

  #makeRoom(need: number): void {
    // Compacting frees the holes; grow only if that is not enough room.
    const live = this.#used - this.#holes;
    let size = this.#arena.length;
    while (live + need > size * 0.75) size *= 2;
    this.#compact(size);
  }

  /** Copies the live records into a new arena (not zeroed: its unused tail stays untouched). */
  #compact(size: number): void {
    const from = this.#arena;
    const to = Buffer.allocUnsafeSlow(size);
    let used = 1;
    for (let slot = 0; slot < this.#at.length; slot++) {
      const at = this.#at[slot]!;
      if (at === 0) continue;
      const n = this.#recordBytes(at);
      from.copy(to, used, at, at + n);
      this.#at[slot] = used;
      used += n;
    }
    this.#arena = to;
    this.#used = used;
    this.#holes = 0;
  }

  /** A new table of `size` places holding every slot, by id or by cab. */
  #rehash(size: number, byCab: boolean): Int32Array {
    const table = new Int32Array(size);
    for (let slot = 0; slot < this.#at.length; slot++) {
      const at = this.#at[slot]!;
      if (at !== 0) insert(table, this.#hashAt(byCab ? this.#cabAt(slot) : at), slot);
    }
    return table;
  }

  #growSlots(min: number): void {
    let n = this.#at.length;
    while (n < min) n *= 2;
    const at = new Int32Array(n);
    at.set(this.#at);
    this.#at = at;
  }
}

/** Puts slot + 1 at the first free place from the hash's home. */
function insert(table: Int32Array, hash: number, slot: number): void {
  const mask = table.length - 1;
  let i = hash & mask;
  while (table[i] !== 0) i = (i + 1) & mask;
  table[i] = slot + 1;
}

/** FNV-1a over bytes; the same as over the code units of the ASCII string they spell. */
function hashBytes(bytes: Uint8Array, at: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ bytes[at + i]!, 0x01000193);
  return h >>> 0;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
