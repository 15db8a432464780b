/**
 * One decoded Track datagram. The worker owns a single instance and decodes every datagram into it, so
 * the hot path allocates nothing and every fix has the same hidden class. 64-bit fields are kept as two
 * uint32 halves: no Long, no BigInt, no string on the hot path.
 */
export class Fix {
  /** fixed64 session, high and low 32 bits (unsigned). */
  sessionHi = 0;
  sessionLo = 0;
  /** Degrees x 1e6 (sint32). */
  lat = 0;
  lon = 0;
  /** Unix seconds (uint32). */
  time = 0;
  /** uint64 order id, high and low 32 bits (unsigned); both 0 when the driver is free. */
  orderHi = 0;
  orderLo = 0;
  /** Minor currency units (uint32). */
  cost = 0;
  /** km/h (uint32). */
  speed = 0;
  /** Degrees clockwise from north (uint32). */
  bearing = 0;

  reset(): void {
    this.sessionHi = 0;
    this.sessionLo = 0;
    this.lat = 0;
    this.lon = 0;
    this.time = 0;
    this.orderHi = 0;
    this.orderLo = 0;
    this.cost = 0;
    this.speed = 0;
    this.bearing = 0;
  }
}
