// @ts-check
/**
 * The page's API token: where it comes from, where it is kept, and the calls made with it.
 *
 * A token arrives in the address's fragment (`/#token=...`, what `npm run demo` prints: a fragment is
 * never sent to a server, so it reaches no log) or through the sign-in form. It is kept in
 * sessionStorage (this tab only, gone when the tab closes) and taken off the address bar at once, so it
 * is not in the history, a bookmark or a shared link. It goes to the API in an Authorization header only;
 * streams get a short-lived stream token of their own (src/web/stream.js).
 */

/** @typedef {'operator' | 'client'} Role */
/** @typedef {{ lat: number, lon: number, zoom: number | null }} At */

const KEYS = { operator: 'cabtrack.operatorToken', client: 'cabtrack.clientToken' };

/** The API said 401: the token is wrong, or was changed on the server. */
export class Unauthorized extends Error {
  constructor() {
    super('the token was refused');
    this.name = 'Unauthorized';
  }
}

/**
 * Takes `#token=...&at=lat,lon[,zoom]` off the address at once: the token into sessionStorage, the place
 * to the caller.
 *
 * @param {Role} role
 * @returns {At | null}
 */
export function takeFragment(role) {
  const hash = location.hash.slice(1);
  if (hash === '') return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (token !== null && token !== '') sessionStorage.setItem(KEYS[role], token);
  history.replaceState(history.state, '', location.pathname + location.search);
  return parseAt(params.get('at'));
}

/**
 * `lat,lon` or `lat,lon,zoom`.
 *
 * @param {string | null} text
 * @returns {At | null}
 */
export function parseAt(text) {
  if (text === null) return null;
  const [lat, lon, zoom] = text.split(',').map(Number);
  if (lat === undefined || lon === undefined || !(Math.abs(lat) <= 85) || !(Math.abs(lon) <= 180))
    return null;
  return { lat, lon, zoom: zoom !== undefined && zoom >= 0 && zoom <= 19 ? zoom : null };
}

/** @param {Role} role */
export function storedToken(role) {
  return sessionStorage.getItem(KEYS[role]);
}

/** @param {Role} role */
export function forgetToken(role) {
  sessionStorage.removeItem(KEYS[role]);
}

/**
 * A call to the API with a token; a 401 throws Unauthorized.
 *
 * @param {string} token
 * @param {string} path
 * @param {RequestInit} [init]
 */
export async function call(token, path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { ...init.headers, authorization: `Bearer ${token}` },
    cache: 'no-store',
  });
  if (res.status === 401) throw new Unauthorized();
  return res;
}

/**
 * A stream token for EventSource (which cannot send a header): POST /v1/stream-tokens.
 *
 * @param {string} token the API token
 * @returns {Promise<string>}
 */
export async function streamToken(token) {
  const res = await call(token, '/v1/stream-tokens', { method: 'POST' });
  if (res.status !== 201) throw new Error(`POST /v1/stream-tokens answered ${res.status}`);
  return /** @type {{ token: string }} */ (await res.json()).token;
}

/**
 * Signs the page in: the token of this tab's session (from the fragment or an earlier sign-in) if `check`
 * accepts it, else the sign-in form until one passes. `check` answers null for a good token, or what to
 * tell the user.
 *
 * @param {Role} role
 * @param {(token: string) => Promise<string | null>} check
 * @returns {Promise<string>}
 */
export async function signIn(role, check) {
  const saved = storedToken(role);
  /** @type {string | null} */
  let why = '';
  if (saved !== null) {
    why = await check(saved).catch(() => 'The server did not answer: try again.');
    if (why === null) return saved;
    forgetToken(role);
  }
  const dialog = /** @type {HTMLElement} */ (document.getElementById('login'));
  const form = /** @type {HTMLFormElement} */ (document.getElementById('login-form'));
  const input = /** @type {HTMLInputElement} */ (document.getElementById('login-token'));
  const error = /** @type {HTMLElement} */ (document.getElementById('login-error'));
  const button = /** @type {HTMLButtonElement} */ (form.querySelector('button'));
  error.textContent = why;
  dialog.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (token === '') return;
      button.disabled = true;
      const problem = await check(token).catch(() => 'The server did not answer: try again.');
      button.disabled = false;
      if (problem !== null) {
        error.textContent = problem;
        input.select();
        return;
      }
      sessionStorage.setItem(KEYS[role], token);
      input.value = '';
      dialog.hidden = true;
      resolve(token);
    });
  });
}

/**
 * Signs out: forgets the token and starts the page again (at its sign-in form).
 *
 * @param {Role} role
 */
export function signOut(role) {
  forgetToken(role);
  location.reload();
}
