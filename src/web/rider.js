// @ts-check
import { CarLayer } from './cars.js';
import { createMap, loadConfig, showStatus } from './map.js';
import { distanceM } from './motion.js';
import { signIn, signOut, takeFragment } from './session.js';
import { LiveStream } from './stream.js';

/**
 * The rider's screen (`/rider`): the free cars within the radius of the pick-up point, from the nearby
 * stream (GET /v1/stream/nearby?free=1), each replaying the last second's path so that it moves along
 * the road. The point is the pin at the centre of the map: dragging the map moves it, and the stream
 * follows once the map stops. The stream sends whole map cells; only the cars within the radius are
 * drawn.
 */

const ROLE = 'client';
const POINT_KEY = 'cabtrack.riderPoint';
const ZOOM = 15;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const at = takeFragment(ROLE);
const [config, token] = await Promise.all([loadConfig(), signIn(ROLE, checkToken)]);
const radius = config.riderRadiusM;

const map = createMap(config);
const start = at ?? savedPoint();
map.setView(start === null ? [30, 0] : [start.lat, start.lon], start?.zoom ?? (start === null ? 2 : ZOOM));
let point = map.getCenter();
const circle = L.circle(point, { radius, className: 'radius', interactive: false }).addTo(map);
const layer = new CarLayer(map, {
  shows: (lat, lon) => distanceM(point.lat, point.lng, lat, lon) <= radius,
  onChange: summarise,
});
const stream = new LiveStream({
  path: '/v1/stream/nearby',
  token,
  onFrame: (data) => layer.apply(JSON.parse(data)),
  onStatus: showStatus,
  onUnauthorized: () => signOut(ROLE),
  debounceMs: 400,
});
map.on('move', () => {
  point = map.getCenter();
  circle.setLatLng(point);
  layer.refilter();
});
map.on('moveend', () => {
  localStorage.setItem(POINT_KEY, JSON.stringify({ lat: point.lat, lon: point.lng, zoom: map.getZoom() }));
  follow(false);
});
follow(true);
if (start === null) locate();
// For the browser tests and the console: the map, the cars and the point.
Object.assign(window, { cabtrack: { map, cars: layer, point: () => point, radius } });

$('logout').addEventListener('click', () => signOut(ROLE));

/** @param {boolean} now */
function follow(now) {
  const lon = ((((point.lng + 180) % 360) + 360) % 360) - 180;
  stream.show(`lat=${point.lat.toFixed(6)}&lon=${lon.toFixed(6)}&radius=${radius}&free=1`, now);
}

/** @returns {import('./session.js').At | null} */
function savedPoint() {
  try {
    return JSON.parse(localStorage.getItem(POINT_KEY) ?? 'null');
  } catch {
    return null;
  }
}

/** No point yet: ask the browser where the rider is (it asks the rider first). */
function locate() {
  $('summary').textContent = 'Drag the map to your pick-up point.';
  navigator.geolocation?.getCurrentPosition(
    (p) => map.setView([p.coords.latitude, p.coords.longitude], ZOOM),
    () => {},
    { timeout: 10_000, maximumAge: 60_000 },
  );
}

/** @param {string} token */
async function checkToken(token) {
  const res = await fetch('/v1/stream-tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.status === 201) return null;
  if (res.status === 401) return 'That token is not valid here.';
  return `The server answered ${res.status}: try again.`;
}

/** How many cars, and how far the nearest. */
function summarise() {
  const shown = layer.shown();
  const within = radius >= 1000 ? `${radius / 1000} km` : `${radius} m`;
  if (shown.length === 0) {
    $('summary').textContent = `No free car within ${within} yet.`;
    return;
  }
  const nearest = Math.min(...shown.map((c) => distanceM(point.lat, point.lng, c.lat, c.lon)));
  const away = nearest < 1000 ? `${Math.round(nearest / 10) * 10} m` : `${(nearest / 1000).toFixed(1)} km`;
  $('summary').textContent =
    `${shown.length} free ${shown.length === 1 ? 'car' : 'cars'} within ${within} · nearest ${away}`;
}
