/**
 * The ids and cabs of a replica's drivers, by slot, with a lookup of the slot by id: no string object
 * per driver. Each slot's names are one record in a byte arena,
 *
 *   record   u8 idLen | id bytes | u8 cabLen | cab bytes      (ASCII: the API allows A-Z a-z 0-9 . _ : -)
 *
 * and ids are found through an open-addressing table of slot numbers (linear probing, backward-shift
 * deletion, at most half full), hashed with FNV-1a. About 22 bytes of arena and 8 of table a driver
 * for ids like `drv-123456`, where a JS string for each of the two names and a Map entry would take
 * about 100 (issue 10's budget for a whole replica is 96 B a driver at 1M).
 *
 * Names arrive as bytes of a batch and are copied as bytes: loading a million-driver snapshot makes no
 * string. Strings are made only when a driver is shown (a query's results), and ids are compared as
 * bytes for the operators' paging by id. Zero is the empty value in every array (offsets start at 1,
 * the table holds slot + 1), so a grown array needs no fill and never-used capacity is never touched,
 * and so never resident. Freed records leave holes; the arena is compacted when they are half of it.
 */
const NONE = -1;

export class Names {
  #arena = Buffer.allocUnsafeSlow(64 * 1024);
  /** Bytes used; offset 0 is never a record, so 0 can mean none. */
  #used = 1;
  #holes = 0;
  /** Per slot: the record's offset in the arena, 0 for none. */
  #at = new Int32Array(1024);
  /** Open addressing: slot + 1, 0 for a free place. */
  #table = new Int32Array(2048);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Bytes of typed arrays held (for memory accounting). */
  get byteLength(): number {
    return this.#arena.byteLength + this.#at.byteLength + this.#table.byteLength;
  }

  /** The slot holding this id, or -1. */
  find(id: string): number {
    const mask = this.#table.length - 1;
    for (let i = hashString(id) & mask; ; i = (i + 1) & mask) {
      const e = this.#table[i]!;
      if (e === 0) return NONE;
      if (this.#idEquals(e - 1, id)) return e - 1;
    }
  }

  /** The slot holding the id in bytes[at, at + len), or -1: no string made. */
  findBytes(bytes: Uint8Array, at: number, len: number): number {
    const mask = this.#table.length - 1;
    for (let i = hashBytes(bytes, at, len) & mask; ; i = (i + 1) & mask) {
      const e = this.#table[i]!;
      if (e === 0) return NONE;
      if (this.#equalsAt(this.#at[e - 1]!, bytes, at, len)) return e - 1;
    }
  }

  /**
   * Gives the slot the id in bytes[idAt, +idLen) and the cab in bytes[cabAt, +cabLen) (a new slot: the
   * id must not be held by another).
   */
  set(slot: number, bytes: Uint8Array, idAt: number, idLen: number, cabAt: number, cabLen: number): void {
    if (slot >= this.#at.length) this.#growSlots(slot + 1);
    if (this.#at[slot] !== 0) this.delete(slot);
    if ((this.#size + 1) * 2 > this.#table.length) this.#rehash(this.#table.length * 2);
    this.#at[slot] = this.#write(bytes, idAt, idLen, cabAt, cabLen, bytes);
    const mask = this.#table.length - 1;
    let i = hashBytes(bytes, idAt, idLen) & mask;
    while (this.#table[i] !== 0) i = (i + 1) & mask;
    this.#table[i] = slot + 1;
    this.#size++;
  }

  /** Whether the slot's cab is bytes[at, at + len). */
  cabIs(slot: number, bytes: Uint8Array, at: number, len: number): boolean {
    const p = this.#at[slot]!;
    return this.#equalsAt(p + 1 + this.#arena[p]!, bytes, at, len);
  }

  /** A new cab for the slot's id (a driver logged in with another cab). */
  setCab(slot: number, bytes: Uint8Array, cabAt: number, cabLen: number): void {
    const old = this.#at[slot]!;
    // The id is copied out first: writing may compact the arena and move it.
    const id = Buffer.from(this.#arena.subarray(old + 1, old + 1 + this.#arena[old]!));
    this.#holes += this.#recordBytes(old);
    this.#at[slot] = this.#write(id, 0, id.length, cabAt, cabLen, bytes);
    this.#maybeCompact();
  }

  delete(slot: number): void {
    const at = this.#at[slot];
    if (at === undefined || at === 0) return;
    // Find the slot's place in the table, then shift back the entries of its probe run behind it.
    const mask = this.#table.length - 1;
    let i = this.#hashAt(at) & mask;
    while (this.#table[i] !== slot + 1) i = (i + 1) & mask;
    let hole = i;
    for (let j = (hole + 1) & mask; this.#table[j] !== 0; j = (j + 1) & mask) {
      const home = this.#hashAt(this.#at[this.#table[j]! - 1]!) & mask;
      // Move j back into the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        this.#table[hole] = this.#table[j]!;
        hole = j;
      }
    }
    this.#table[hole] = 0;
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
    const at = this.#at[slot]!;
    const cabAt = at + 1 + this.#arena[at]!;
    return this.#arena.toString('latin1', cabAt + 1, cabAt + 1 + this.#arena[cabAt]!);
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

  /** Whether the length-prefixed bytes at arena[p] are bytes[at, at + len). */
  #equalsAt(p: number, bytes: Uint8Array, at: number, len: number): boolean {
    const arena = this.#arena;
    if (arena[p] !== len) return false;
    for (let i = 0; i < len; i++) if (arena[p + 1 + i] !== bytes[at + i]) return false;
    return true;
  }

  #idEquals(slot: number, id: string): boolean {
    const p = this.#at[slot]!;
    const arena = this.#arena;
    if (arena[p] !== id.length) return false;
    for (let i = 0; i < id.length; i++) if (arena[p + 1 + i] !== id.charCodeAt(i)) return false;
    return true;
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

  #hashAt(at: number): number {
    return hashBytes(this.#arena, at + 1, this.#arena[at]!);
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

  #rehash(size: number): void {
    const table = new Int32Array(size);
    const mask = size - 1;
    for (let slot = 0; slot < this.#at.length; slot++) {
      const at = this.#at[slot]!;
      if (at === 0) continue;
      let i = this.#hashAt(at) & mask;
      while (table[i] !== 0) i = (i + 1) & mask;
      table[i] = slot + 1;
    }
    this.#table = table;
  }

  #growSlots(min: number): void {
    let n = this.#at.length;
    while (n < min) n *= 2;
    const at = new Int32Array(n);
    at.set(this.#at);
    this.#at = at;
  }
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
