import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Short-lived signed stream tokens, for EventSource, which cannot send an Authorization header: a
 * client asks POST /v1/stream-tokens with its API token in the header and opens the stream with
 * `?token=`, so the API token itself never appears in a URL (URLs end up in proxy logs, browser
 * history, Referer headers).
 *
 *   token   v1.<role>.<expires>.<signature>      role: c (client) or o (operator), expires: Unix s
 *   signature  base64url(HMAC-SHA256(key, "v1.<role>.<expires>")), key = SHA-256 of the operator token
 *
 * The key is derived from the operator token, so every HTTP worker (and every host behind one load
 * balancer, with the same configuration) verifies the others' tokens with nothing shared at run time,
 * and rotating the operator token revokes every stream token. A token only opens streams, for the role
 * it was issued to, until it expires; a stream already open stays open.
 */
export const STREAM_TOKEN_TTL_S = 300;

export type StreamRole = 'client' | 'operator';

export class StreamTokens {
  readonly #key: Buffer;
  readonly #now: () => number;

  constructor(operatorToken: string, now: () => number = Date.now) {
    this.#key = createHmac('sha256', 'cabtrack stream tokens').update(operatorToken).digest();
    this.#now = now;
  }

  issue(role: StreamRole, ttlS = STREAM_TOKEN_TTL_S): { token: string; expiresAt: number } {
    const expires = Math.floor(this.#now() / 1000) + ttlS;
    const body = `v1.${role === 'operator' ? 'o' : 'c'}.${expires}`;
    return { token: `${body}.${this.#sign(body)}`, expiresAt: expires };
  }

  /** The role a token grants now: null for a malformed or forged one, 'expired' for an old one. */
  verify(token: string): StreamRole | 'expired' | null {
    const m = /^v1\.([co])\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (m === null) return null;
    const body = `v1.${m[1]}.${m[2]}`;
    const want = Buffer.from(this.#sign(body));
    const got = Buffer.from(m[3]!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
    if (Number(m[2]) * 1000 <= this.#now()) return 'expired';
    return m[1] === 'o' ? 'operator' : 'client';
  }

  #sign(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}
