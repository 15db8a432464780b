// @ts-check
import { CarLayer } from './cars.js';
import { createMap, loadConfig, showStatus } from './map.js';
import { call, signIn, signOut, takeFragment, Unauthorized } from './session.js';
import { LiveStream } from './stream.js';

/**
 * The operator's live map (`/`): every car in the view from the box stream (GET /v1/stream), free and
 * busy in their colours, turned to their heading and moving along their paths; counts of the cars in
 * view; a cab search; and a card for the car clicked, with its trip and its recent track on the map.
 */

const ROLE = 'operator';
/**
 * Below this zoom a view is a region, not a city: its stream would carry every car of it each second. The
 * page asks to zoom in instead.
 */
const MIN_STREAM_ZOOM = 10;
const VIEW_KEY = 'cabtrack.operatorView';
const CARD_REFRESH_MS = 2000;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const at = takeFragment(ROLE);
const [config, token] = await Promise.all([loadConfig(), signIn(ROLE, checkToken)]);
/** @type {(err: unknown) => void} */
const failed = (err) => {
  if (err instanceof Unauthorized) signOut(ROLE);
  else throw err;
};

const map = createMap(config);
await placeView();
let bounds = map.getBounds();
const layer = new CarLayer(map, {
  shows: (lat, lon) => bounds.contains([lat, lon]),
  onClick: (id) => void openCard(id).catch(failed),
  onChange: count,
});
const stream = new LiveStream({
  path: '/v1/stream',
  token,
  onFrame: (data) => layer.apply(JSON.parse(data)),
  onStatus: showStatus,
  onUnauthorized: () => signOut(ROLE),
});
map.on('moveend', () => {
  bounds = map.getBounds();
  layer.refilter();
  const c = map.getCenter();
  localStorage.setItem(VIEW_KEY, JSON.stringify({ lat: c.lat, lon: c.lng, zoom: map.getZoom() }));
  follow(false);
});
follow(true);
// For the browser tests and the console: the map and the cars.
Object.assign(window, { cabtrack: { map, cars: layer } });

$('logout').addEventListener('click', () => signOut(ROLE));

/**
 * Opens the stream of the view, or closes it when the view is too wide.
 *
 * @param {boolean} now
 */
function follow(now) {
  if (map.getZoom() < MIN_STREAM_ZOOM) {
    stream.close();
    layer.clear();
    showStatus('zoom');
    return;
  }
  stream.show(`bbox=${bboxOf(bounds)}`, now);
}

/**
 * The view's box for the stream: longitudes brought into ±180 (a box across the date line has
 * minLon > maxLon), latitudes within Web Mercator's.
 *
 * @param {L.LatLngBounds} b
 */
function bboxOf(b) {
  const wrap = (/** @type {number} */ lon) => ((((lon + 180) % 360) + 360) % 360) - 180;
  const wide = b.getEast() - b.getWest() >= 360;
  const west = wide ? -180 : wrap(b.getWest());
  const east = wide ? 180 : wrap(b.getEast());
  const south = Math.max(-85.05, b.getSouth());
  const north = Math.min(85.05, b.getNorth());
  return [west, south, east, north].map((v) => v.toFixed(5)).join(',');
}

/**
 * The first view: the place in the address (`#at=lat,lon,zoom`), else where this browser last looked,
 * else the whole fleet (its first 1,000 cars), else the world.
 */
async function placeView() {
  if (at !== null) {
    map.setView([at.lat, at.lon], at.zoom ?? 15);
    return;
  }
  try {
    const saved = JSON.parse(localStorage.getItem(VIEW_KEY) ?? 'null');
    if (saved !== null) {
      map.setView([saved.lat, saved.lon], saved.zoom);
      return;
    }
  } catch {
    // Not a view: forget it.
    localStorage.removeItem(VIEW_KEY);
  }
  const res = await call(token, '/v1/drivers?bbox=-180,-90,180,90&limit=1000').catch(failed);
  /** @type {Array<{ lat: number, lon: number }>} */
  const drivers = res?.ok ? (await res.json()).drivers : [];
  if (drivers.length > 0) {
    map.fitBounds(L.latLngBounds(drivers.map((d) => L.latLng(d.lat, d.lon))), {
      padding: [40, 40],
      maxZoom: 16,
    });
  } else map.setView([30, 0], 2);
}

/** @param {string} token */
async function checkToken(token) {
  const res = await fetch('/v1/drivers?bbox=0,0,0,0&limit=1', {
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.ok) return null;
  if (res.status === 401) return 'That token is not valid here.';
  if (res.status === 403) return 'That is a client token: the live map needs the operator token.';
  return `The server answered ${res.status}: try again.`;
}

/** The counts of the cars in view. */
function count() {
  const shown = layer.shown();
  const free = shown.filter((c) => c.free).length;
  $('n-live').textContent = String(shown.length);
  $('n-free').textContent = String(free);
  $('n-busy').textContent = String(shown.length - free);
}

// The card of a car: what GET /v1/drivers/{id} says, again every CARD_REFRESH_MS while it is open.

/**
 * @typedef {object} Trip
 * @property {string} orderId
 * @property {number} cost minor currency units
 * @property {number} distanceM
 * @property {number} startTime
 * @property {number} lastTime
 */
/**
 * @typedef {object} DriverDetail
 * @property {string} id
 * @property {string} cab
 * @property {number} lat
 * @property {number} lon
 * @property {number} time
 * @property {number} speed
 * @property {boolean} free
 * @property {{ path: Array<[number, number, number]>, matched: boolean }} track
 * @property {Trip | null} trip
 */

/** @type {string | null} */
let cardId = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let cardTimer;
/** @type {L.Polyline | null} */
let track = null;

/**
 * @param {string} id
 * @param {DriverDetail | null} [known]
 */
async function openCard(id, known = null) {
  clearTimeout(cardTimer);
  cardId = id;
  layer.select(id);
  $('card').hidden = false;
  const detail = known ?? (await fetchDetail(id));
  if (cardId !== id) return;
  renderCard(detail);
  if (detail !== null) cardTimer = setTimeout(() => void openCard(id).catch(failed), CARD_REFRESH_MS);
}

function closeCard() {
  clearTimeout(cardTimer);
  cardId = null;
  layer.select(null);
  $('card').hidden = true;
  track?.remove();
  track = null;
}

/**
 * @param {string} id
 * @returns {Promise<DriverDetail | null>} null when the driver is not live
 */
async function fetchDetail(id) {
  const res = await call(token, `/v1/drivers/${encodeURIComponent(id)}`);
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`GET /v1/drivers/${id} answered ${res.status}`);
  return res.json();
}

/** @param {DriverDetail | null} d */
function renderCard(d) {
  $('card-gone').hidden = d !== null;
  $('card-facts').hidden = d === null;
  if (d === null) {
    track?.remove();
    track = null;
    return;
  }
  $('card-cab').textContent = d.cab;
  const state = $('card-state');
  state.textContent = d.free ? 'free' : 'on a trip';
  state.className = `badge ${d.free ? 'free' : 'busy'}`;
  $('card-driver').textContent = d.id;
  $('card-speed').textContent = `${d.speed} km/h`;
  $('card-seen').textContent = `${Math.max(0, Math.round(Date.now() / 1000 - d.time))} s ago`;
  $('card-trip').hidden = d.trip === null;
  $('card-no-trip').hidden = d.trip !== null;
  if (d.trip !== null) {
    $('card-order').textContent = d.trip.orderId;
    $('card-cost').textContent = (d.trip.cost / 100).toFixed(2);
    $('card-distance').textContent =
      d.trip.distanceM < 1000
        ? `${Math.round(d.trip.distanceM)} m`
        : `${(d.trip.distanceM / 1000).toFixed(2)} km`;
    $('card-duration').textContent = duration(d.trip.lastTime - d.trip.startTime);
  }
  /** @type {L.LatLngExpression[]} */
  const path = d.track.path.map(([lon, lat]) => [lat, lon]);
  if (track === null) track = L.polyline(path, { className: 'track', interactive: false }).addTo(map);
  else track.setLatLngs(path);
}

/** @param {number} s */
function duration(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.max(0, s % 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${sec} s` : `${sec} s`;
}

$('card-close').addEventListener('click', closeCard);
map.on('click', closeCard);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeCard();
});

// Search by cab: GET /v1/cabs/{cab}, then the map on it and its card open.
$('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('search-cab'));
  const cab = input.value.trim();
  const message = $('search-message');
  message.textContent = '';
  if (cab === '') return;
  void (async () => {
    const res = await call(token, `/v1/cabs/${encodeURIComponent(cab)}`);
    if (res.status === 404) message.textContent = `No live cab ${cab}.`;
    else if (res.status === 400) message.textContent = `${cab} is not a cab number.`;
    else if (!res.ok) message.textContent = `The server answered ${res.status}.`;
    else {
      /** @type {DriverDetail} */
      const d = await res.json();
      map.setView([d.lat, d.lon], Math.max(map.getZoom(), 16));
      await openCard(d.id, d);
    }
  })().catch(failed);
});
