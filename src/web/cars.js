// @ts-check
import { fixOf } from './fixes.js';
import { FRAME_MS, placeOnPath } from './motion.js';

/**
 * The cars of a stream on a Leaflet map: the frames applied to a model of the cars in the view, and a
 * marker for each car the page shows (`shows`: inside the map for the operator, within the radius for
 * the rider; the stream sends whole map cells, so some cars it sends are just outside).
 *
 * Frames (GET /v1/stream, the StreamFrame schema in /openapi.json): a snapshot is the whole view, so the
 * cars it does not list are dropped and those it lists are put at their fix at once; a delta lists the
 * ids that left (applied first) and the cars with a new fix (a car moving between two cells of the view
 * is in both), whole or as a move (src/web/fixes.js). A car with a new fix replays its path over the next frame interval: each animation
 * frame (requestAnimationFrame) moves the markers to their place along their paths and turns them to
 * the heading of the road they are on (the car's reported bearing on a straight path or standing).
 */

/** @typedef {import('./motion.js').PathPoint} PathPoint */

/** @typedef {import('./fixes.js').StreamCar} StreamCar */
/** @typedef {import('./fixes.js').StreamMove} StreamMove */

/**
 * @typedef {object} Frame
 * @property {number} frame
 * @property {number} time
 * @property {boolean} snapshot
 * @property {Array<StreamCar | StreamMove>} cars
 * @property {string[]} left
 */

/**
 * @typedef {object} Car
 * @property {StreamCar} fix the last one the stream sent
 * @property {PathPoint[] | null} replay the path being replayed, null when the car stands at its fix
 * @property {number} start when the replay started (performance.now())
 * @property {L.Marker | null} marker
 * @property {HTMLElement | null} arrow the marker's element that turns with the heading
 */

/**
 * @typedef {object} CarLayerOptions
 * @property {(lat: number, lon: number) => boolean} shows whether the page draws a car at its fix
 * @property {(id: string) => void} [onClick]
 * @property {() => void} [onChange] cars added, removed, or changed status
 */

/**
 * The path a car replays to its new fix: the stream's, or a straight one from its previous fix when the
 * stream sent the fix alone. The stream does that for moves under 20 m since the previous fix (a
 * standstill, whose GPS jitter must not make a marker dance: src/stream/frames.ts), which at one fix a
 * second is also every car under 72 km/h; gliding those few metres in a second makes no dance either,
 * and a car in town moves instead of hopping once a second.
 *
 * @param {StreamCar} before
 * @param {StreamCar} fix
 * @returns {PathPoint[] | null}
 */
function replayOf(before, fix) {
  if (fix.path.length > 1) return fix.path;
  if (before.lat === fix.lat && before.lon === fix.lon) return null;
  return [
    [before.lon, before.lat, before.time],
    [fix.lon, fix.lat, fix.time],
  ];
}

export class CarLayer {
  /** @type {Map<string, Car>} */
  cars = new Map();
  /** @type {L.Map} */
  #map;
  /** @type {CarLayerOptions} */
  #o;
  /** @type {L.LayerGroup} */
  #group;
  #animating = false;
  /** @type {string | null} */
  #selected = null;

  /**
   * @param {L.Map} map
   * @param {CarLayerOptions} o
   */
  constructor(map, o) {
    this.#map = map;
    this.#o = o;
    this.#group = L.layerGroup().addTo(map);
  }

  /**
   * Applies a frame (the `data` of a stream event).
   *
   * @param {Frame} frame
   */
  apply(frame) {
    const now = performance.now();
    if (frame.snapshot) {
      const listed = new Set(frame.cars.map((c) => c.id));
      for (const id of this.cars.keys()) if (!listed.has(id)) this.#remove(id);
    } else {
      for (const id of frame.left) this.#remove(id);
    }
    for (const record of frame.cars) {
      let car = this.cars.get(record.id);
      const fix = fixOf(record, car?.fix);
      if (fix === null) continue;
      if (car === undefined) {
        car = { fix, replay: null, start: now, marker: null, arrow: null };
        this.cars.set(fix.id, car);
      } else if (car.fix.time === fix.time) {
        // The same fix again (a car in two cells of the view): nothing moved.
        car.fix = fix;
        this.#show(car);
        continue;
      }
      const before = car.fix;
      car.fix = fix;
      // A snapshot puts cars at their fix; a delta replays the path to it.
      car.replay = frame.snapshot ? null : replayOf(before, fix);
      car.start = now;
      this.#show(car);
      if (car.marker !== null) this.#place(car, now);
    }
    if (!this.#animating && [...this.cars.values()].some((c) => c.replay !== null)) {
      this.#animating = true;
      requestAnimationFrame((t) => this.#frame(t));
    }
    this.#o.onChange?.();
  }

  /** Decides again which cars are shown (the view or the point moved). */
  refilter() {
    for (const car of this.cars.values()) this.#show(car);
    this.#o.onChange?.();
  }

  /** Removes every car (the stream closed). */
  clear() {
    for (const id of [...this.cars.keys()]) this.#remove(id);
    this.#o.onChange?.();
  }

  /** The cars drawn now. */
  shown() {
    return [...this.cars.values()].filter((c) => c.marker !== null).map((c) => c.fix);
  }

  /**
   * Marks a car as selected (its card is open), or none.
   *
   * @param {string | null} id
   */
  select(id) {
    const before = this.#selected === null ? undefined : this.cars.get(this.#selected);
    before?.marker?.getElement()?.classList.remove('selected');
    this.#selected = id;
    const now = id === null ? undefined : this.cars.get(id);
    now?.marker?.getElement()?.classList.add('selected');
  }

  /**
   * Where a car's marker is drawn now, or null.
   *
   * @param {string} id
   */
  position(id) {
    return this.cars.get(id)?.marker?.getLatLng() ?? null;
  }

  /** @param {string} id */
  #remove(id) {
    const car = this.cars.get(id);
    if (car === undefined) return;
    if (car.marker !== null) this.#group.removeLayer(car.marker);
    this.cars.delete(id);
  }

  /**
   * Adds or removes the car's marker as the page shows it or not, and keeps its look up to date.
   *
   * @param {Car} car
   */
  #show(car) {
    const shows = this.#o.shows(car.fix.lat, car.fix.lon);
    if (!shows) {
      if (car.marker !== null) this.#group.removeLayer(car.marker);
      car.marker = null;
      car.arrow = null;
      return;
    }
    if (car.marker === null) {
      const el = document.createElement('div');
      el.className = 'car-body';
      const arrow = document.createElement('div');
      arrow.className = 'car-arrow';
      el.append(arrow);
      const marker = L.marker([car.fix.lat, car.fix.lon], {
        icon: L.divIcon({ className: 'car', html: el, iconSize: [22, 22], iconAnchor: [11, 11] }),
        title: car.fix.cab,
        alt: car.fix.cab,
        keyboard: false,
        riseOnHover: true,
      });
      const id = car.fix.id;
      marker.on('click', () => this.#o.onClick?.(id));
      this.#group.addLayer(marker);
      car.marker = marker;
      car.arrow = arrow;
      this.#place(car, performance.now());
    }
    const el = car.marker.getElement();
    if (el !== undefined) {
      el.classList.toggle('free', car.fix.free);
      el.classList.toggle('busy', !car.fix.free);
      el.classList.toggle('selected', car.fix.id === this.#selected);
      el.dataset['id'] = car.fix.id;
      el.dataset['cab'] = car.fix.cab;
    }
  }

  /**
   * Moves a car's marker to where it is at `now` on its replay.
   *
   * @param {Car} car
   * @param {number} now
   * @returns {boolean} still replaying
   */
  #place(car, now) {
    let lat = car.fix.lat;
    let lon = car.fix.lon;
    let heading = null;
    let going = false;
    if (car.replay !== null) {
      const f = (now - car.start) / FRAME_MS;
      const at = placeOnPath(car.replay, f);
      // Along a road-matched path (more than its two ends) the road's turns; on a straight one the
      // phone's own bearing, steadier than the line between two fixes with a few metres of GPS noise.
      if (car.replay.length > 2) heading = at.heading;
      if (f < 1) {
        lat = at.lat;
        lon = at.lon;
        going = true;
      } else car.replay = null;
    }
    car.marker?.setLatLng([lat, lon]);
    if (car.arrow !== null) {
      const deg = heading ?? car.fix.bearing;
      car.arrow.style.transform = `rotate(${Math.round(deg)}deg)`;
    }
    return going;
  }

  /** @param {number} now */
  #frame(now) {
    let any = false;
    for (const car of this.cars.values()) {
      if (car.replay === null) continue;
      // Cars not shown still go along (their replay ends on time), without a marker to move.
      if (this.#place(car, Math.max(now, car.start))) any = true;
    }
    this.#animating = any;
    if (any) requestAnimationFrame((t) => this.#frame(t));
  }
}
