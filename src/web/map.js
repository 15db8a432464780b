// @ts-check
/**
 * What both pages share about the map: the settings from /config.json, a Leaflet map with the tiles of
 * CABTRACK_MAP_TILE_URL (or none, on a plain background), and the status line.
 */

/**
 * @typedef {object} PageConfig
 * @property {string} tileUrl `{z}/{x}/{y}` template, '' for no tiles
 * @property {string} attribution HTML
 * @property {number} riderRadiusM
 */

/** @returns {Promise<PageConfig>} */
export async function loadConfig() {
  const res = await fetch('/config.json');
  if (!res.ok) throw new Error(`/config.json answered ${res.status}`);
  return res.json();
}

/**
 * A map in `#map`. Tiles that do not load (offline, a tile server down) leave the plain background, and
 * the map says so once, in its corner: the cars are drawn either way.
 *
 * @param {PageConfig} config
 * @returns {L.Map}
 */
export function createMap(config) {
  const map = L.map('map', { zoomControl: true, worldCopyJump: true, minZoom: 2 });
  if (config.tileUrl !== '') {
    const tiles = L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.attribution });
    let told = false;
    tiles.on('tileerror', () => {
      if (told) return;
      told = true;
      const note = new L.Control({ position: 'bottomleft' });
      note.onAdd = () => {
        const el = L.DomUtil.create('div', 'map-note');
        el.textContent = 'Map tiles unavailable: cars are shown on a plain background.';
        return el;
      };
      note.addTo(map);
    });
    tiles.addTo(map);
  }
  return map;
}

/**
 * Shows the stream's state in the header.
 *
 * @param {import('./stream.js').StreamStatus | 'zoom'} status
 */
export function showStatus(status) {
  const el = document.getElementById('status');
  if (el === null) return;
  const text = {
    idle: '',
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    zoom: 'zoom in to see the cars',
  };
  el.textContent = text[status];
  el.className = `status ${status}`;
}

/**
 * Calls `f` once calls stop coming for `ms`.
 *
 * @param {() => void} f
 * @param {number} ms
 */
export function debounce(f, ms) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(f, ms);
  };
}
