/**
 * The clock, read by a timer every few milliseconds instead of once per datagram: the hot path reads
 * two fields. nowMs is at most one timer period behind the wall clock (10 ms in the ingest workers),
 * which is also the resolution of the replica lag they report.
 */
export class CoarseClock {
  nowMs = Date.now();
  nowS = Math.floor(this.nowMs / 1000);

  tick(): void {
    this.nowMs = Date.now();
    this.nowS = Math.floor(this.nowMs / 1000);
  }
}
