/**
 * Every error class cabtrack throws on purpose, each with a stable `code` that logs, tests and callers
 * match on (after undici's lib/core/errors.js). Programmer and configuration errors are thrown; bad
 * network input is never thrown but counted (src/reasons.ts).
 */

export class CabtrackError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A bad setting at start-up, naming the variable (or config/default.json key); the daemon exits 2. */
export class ConfigError extends CabtrackError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('CABTRACK_CONFIG', `${key}: ${message}`);
    this.key = key;
  }
}

/**
 * An answer of the HTTP API: a status, a stable machine-readable code for the body
 * (`{"error":{"code","message","parameter"?}}`) and a message for people. `code` here is the API's
 * code (`invalid_parameter`, `not_found`...), part of the API contract (openapi.json).
 */
export class HttpError extends CabtrackError {
  readonly status: number;
  readonly parameter: string | undefined;
  constructor(status: number, code: string, message: string, parameter?: string) {
    super(code, message);
    this.status = status;
    this.parameter = parameter;
  }

  toJSON(): { error: { code: string; message: string; parameter?: string } } {
    const error: { code: string; message: string; parameter?: string } = {
      code: this.code,
      message: this.message,
    };
    if (this.parameter !== undefined) error.parameter = this.parameter;
    return { error };
  }
}

export const badParam = (parameter: string, message: string): HttpError =>
  new HttpError(400, 'invalid_parameter', `${parameter}: ${message}`, parameter);

export const notFound = (what: string): HttpError => new HttpError(404, 'not_found', `${what} not found`);

/** A backing service (Redis) failed or was too slow: the API's 503, not a 500. */
export const unavailable = (what: string, err: unknown): HttpError =>
  new HttpError(
    503,
    'unavailable',
    `${what} is unavailable: ${err instanceof Error ? err.message : String(err)}`,
  );

/** Another process of the daemon did not answer a call in time. */
export class RpcTimeoutError extends CabtrackError {
  constructor(message: string) {
    super('CABTRACK_RPC_TIMEOUT', message);
  }
}

/** Another process of the daemon went away (died, or its channel closed) before it answered. */
export class PeerGoneError extends CabtrackError {
  constructor(message: string) {
    super('CABTRACK_PEER_GONE', message);
  }
}

/**
 * The other process's handler failed; `code` is that error's code. An HttpError thrown there keeps its
 * status, parameter and message (`detail`) here, so the API answers as if it had been thrown here.
 */
export class RemoteError extends CabtrackError {
  readonly status: number | undefined;
  readonly parameter: string | undefined;
  readonly detail: string;
  constructor(code: string, message: string, detail: string, status?: number, parameter?: string) {
    super(code, message);
    this.detail = detail;
    this.status = status;
    this.parameter = parameter;
  }

  /** The HttpError it was on the other side, if it was one. */
  toHttp(): HttpError | null {
    return this.status === undefined
      ? null
      : new HttpError(this.status, this.code, this.detail, this.parameter);
  }
}

/** A replica batch that is malformed or out of sequence (src/replica/batch.ts): the source resyncs. */
export class BatchError extends CabtrackError {
  constructor(message: string) {
    super('CABTRACK_BATCH', message);
  }
}
