import { cosDeg, METRES_PER_DEGREE_LAT } from '../geo/distance.ts';

/**
 * A street grid around a city centre: streets run east-west and north-south every `spacingM` metres, out
 * to `radiusM` from the centre in each direction, and cross at the nodes (ix * spacing, iy * spacing) for
 * ix, iy in [-half, half]. Positions are metres east (x) and north (y) of the centre.
 *
 * Metres become degrees with an equirectangular projection about the centre. Over a city (a few km)
 * it is exact to centimetres against the great-circle distances the daemon measures, and it keeps the
 * streets on lines of constant latitude and longitude, so "on a street" is a test anyone can write.
 *
 * The default is Barcelona's Eixample, a real grid city: Cerdà's blocks are 113.3 m with 20 m streets,
 * 133.3 m from one street's axis to the next.
 */
export const DEFAULT_CENTRE = { lat: 41.3917, lon: 2.1649 } as const;
export const DEFAULT_SPACING_M = 133.3;
export const DEFAULT_RADIUS_M = 3000;

export interface CityOptions {
  centreLat: number;
  centreLon: number;
  spacingM: number;
  radiusM: number;
}

export class City {
  readonly centreLat: number;
  readonly centreLon: number;
  readonly spacingM: number;
  /** Nodes run from -half to half on each axis. */
  readonly half: number;
  /** Degrees x 1e6 per metre, north and east. */
  readonly #latE6PerM: number;
  readonly #lonE6PerM: number;
  readonly #centreLatE6: number;
  readonly #centreLonE6: number;

  constructor(o: CityOptions) {
    // Programmer errors: the CLI checks user input and names the option before it gets here.
    if (!(Math.abs(o.centreLat) <= 80))
      throw new RangeError(`centre latitude ${o.centreLat} not in [-80, 80]`);
    if (!(Math.abs(o.centreLon) <= 180)) throw new RangeError(`centre longitude ${o.centreLon} not in ±180`);
    if (!(o.spacingM >= 20 && o.spacingM <= 2000)) throw new RangeError(`spacing ${o.spacingM} m`);
    this.half = Math.floor(o.radiusM / o.spacingM);
    // Two blocks each way at least: a car must always have a way on at a crossing that is not a U-turn.
    if (!(this.half >= 2)) throw new RangeError(`radius ${o.radiusM} m is less than 2 blocks`);
    this.centreLat = o.centreLat;
    this.centreLon = o.centreLon;
    this.spacingM = o.spacingM;
    this.#latE6PerM = 1e6 / METRES_PER_DEGREE_LAT;
    this.#lonE6PerM = 1e6 / (METRES_PER_DEGREE_LAT * cosDeg(o.centreLat));
    this.#centreLatE6 = o.centreLat * 1e6;
    this.#centreLonE6 = o.centreLon * 1e6;
    const edgeLon = Math.abs(o.centreLon) + (this.half * o.spacingM * this.#lonE6PerM) / 1e6;
    // Streets that cross the date line would need wrapping everywhere; no real taxi grid does.
    if (edgeLon >= 180) throw new RangeError(`the city around ${o.centreLon} crosses the date line`);
  }

  /** Half the width of the grid, metres: x and y lie in [-extent, extent]. */
  get extentM(): number {
    return this.half * this.spacingM;
  }

  /** Latitude in degrees x 1e6 (integer) of a point `y` metres north of the centre. */
  latE6(y: number): number {
    return Math.round(this.#centreLatE6 + y * this.#latE6PerM);
  }

  lonE6(x: number): number {
    return Math.round(this.#centreLonE6 + x * this.#lonE6PerM);
  }

  /** Metres north of the centre of a latitude in degrees x 1e6: the inverse of latE6, for tests. */
  yOf(latE6: number): number {
    return (latE6 - this.#centreLatE6) / this.#latE6PerM;
  }

  xOf(lonE6: number): number {
    return (lonE6 - this.#centreLonE6) / this.#lonE6PerM;
  }

  /** Metres from (x, y) to the nearest street axis. */
  offStreetM(x: number, y: number): number {
    const s = this.spacingM;
    return Math.min(Math.abs(x - Math.round(x / s) * s), Math.abs(y - Math.round(y / s) * s));
  }
}
