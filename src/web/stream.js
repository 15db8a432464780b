// @ts-check
import { streamToken, Unauthorized } from './session.js';

/**
 * A live stream of the cars in a view (GET /v1/stream or /v1/stream/nearby) through EventSource, kept
 * open across what goes wrong:
 *
 * - Each opening asks for a fresh stream token (POST /v1/stream-tokens, with the API token in a header)
 *   and passes it in `?token=`: the API token never goes into a URL.
 * - A dropped connection is retried by the browser itself, with the same URL; after the stream token's
 *   5 minutes that retry is refused (401), and an EventSource that got a refusal (401, 403, 503) stops
 *   for good. Then this opens a new one with a new token, after a backoff (0.5-1 s, doubling up to 30 s,
 *   random so that many pages do not come back in step), which a frame received resets.
 * - A view that changes (the map moved) closes the stream and opens one for the new view once the
 *   changes stop for `debounceMs`.
 * - A refused API token (the token endpoint answering 401) is the page's to handle: it signs in again.
 *
 * Every opening starts with a snapshot frame, which the car layer takes as the whole view.
 */

/** @typedef {'idle' | 'connecting' | 'live' | 'reconnecting'} StreamStatus */

/**
 * @typedef {object} StreamOptions
 * @property {string} path `/v1/stream` or `/v1/stream/nearby`
 * @property {string} token the API token
 * @property {(data: string) => void} onFrame each event's `data`
 * @property {(status: StreamStatus) => void} onStatus
 * @property {() => void} onUnauthorized
 * @property {number} [debounceMs]
 */

const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;

export class LiveStream {
  /** @type {StreamOptions} */
  #o;
  /** @type {string | null} */
  #query = null;
  /** @type {EventSource | null} */
  #source = null;
  /** Openings so far: an answer for an older one is dropped. */
  #generation = 0;
  #failures = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;

  /** @param {StreamOptions} o */
  constructor(o) {
    this.#o = o;
  }

  /**
   * Shows this view (a query string without the token), or none (null), after the debounce.
   *
   * @param {string | null} query
   * @param {boolean} [now] without waiting (the first view)
   */
  show(query, now = false) {
    if (query === this.#query && this.#source !== null) return;
    this.#query = query;
    clearTimeout(this.#timer);
    this.#failures = 0;
    if (now) void this.#open();
    else this.#timer = setTimeout(() => void this.#open(), this.#o.debounceMs ?? 300);
  }

  close() {
    this.#query = null;
    clearTimeout(this.#timer);
    this.#generation++;
    this.#source?.close();
    this.#source = null;
  }

  async #open() {
    const generation = ++this.#generation;
    this.#source?.close();
    this.#source = null;
    const query = this.#query;
    if (query === null) {
      this.#o.onStatus('idle');
      return;
    }
    this.#o.onStatus(this.#failures === 0 ? 'connecting' : 'reconnecting');
    let token;
    try {
      token = await streamToken(this.#o.token);
    } catch (err) {
      if (generation !== this.#generation) return;
      if (err instanceof Unauthorized) this.#o.onUnauthorized();
      else this.#retry(generation);
      return;
    }
    if (generation !== this.#generation) return;
    const source = new EventSource(`${this.#o.path}?${query}&token=${encodeURIComponent(token)}`);
    this.#source = source;
    source.onopen = () => this.#o.onStatus('live');
    source.onmessage = (e) => {
      this.#failures = 0;
      this.#o.onFrame(e.data);
    };
    source.onerror = () => {
      if (source !== this.#source) return;
      this.#o.onStatus('reconnecting');
      // CONNECTING: the browser retries by itself. CLOSED: it was refused and will not.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.#source = null;
        this.#retry(generation);
      }
    };
  }

  /** @param {number} generation */
  #retry(generation) {
    const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.#failures);
    this.#failures++;
    this.#timer = setTimeout(
      () => {
        if (generation === this.#generation) void this.#open();
      },
      base * (0.5 + Math.random() / 2),
    );
  }
}
