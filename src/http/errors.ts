/**
 * An error the API answers with: a status, a stable machine-readable code and a message for people.
 * Thrown by parameter parsing and handlers; the server turns it into `{"error":{...}}`.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly parameter: string | undefined;
  constructor(status: number, code: string, message: string, parameter?: string) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
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
