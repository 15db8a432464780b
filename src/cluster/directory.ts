/**
 * Which worker owns which driver: the primary's single source of truth for handoffs. A driver is owned
 * by at most one worker at any time, so no query can list it twice.
 */
export class Directory {
  readonly #owner = new Map<string, number>();

  get size(): number {
    return this.#owner.size;
  }

  owner(id: string): number | undefined {
    return this.#owner.get(id);
  }

  /** Gives the driver to `worker`; returns the previous owner, if another worker had it. */
  claim(id: string, worker: number): number | undefined {
    const prev = this.#owner.get(id);
    this.#owner.set(id, worker);
    return prev === worker ? undefined : prev;
  }

  /** The worker let the driver go (it expired there); ignored if another worker owns it by now. */
  drop(id: string, worker: number): void {
    if (this.#owner.get(id) === worker) this.#owner.delete(id);
  }

  forget(id: string): void {
    this.#owner.delete(id);
  }

  /** A worker died: its drivers are nobody's until their next fix lands somewhere. O(drivers), rare. */
  dropWorker(worker: number): string[] {
    const ids: string[] = [];
    for (const [id, w] of this.#owner) {
      if (w === worker) {
        this.#owner.delete(id);
        ids.push(id);
      }
    }
    return ids;
  }
}
