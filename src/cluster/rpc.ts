import { HttpError, PeerGoneError, RemoteError, RpcTimeoutError } from '../errors.ts';

/**
 * Typed calls between the processes of one daemon, over an ordered message channel (cluster IPC):
 *
 *   { rpc: 'call', id, method, args }        a call that wants an answer
 *   { rpc: 'done', id, value }               its answer
 *   { rpc: 'fail', id, code, message, ... }  its error (the handler threw or rejected; an HttpError
 *                                            keeps its status and parameter)
 *   { rpc: 'tell', method, args }            a one-way message
 *   { rpc: 'tells', method, calls }          one-way messages of one method, in order (tellSoon)
 *
 * Each side declares the methods it serves (`Local`) and those of the other side (`Remote`), so a call
 * site gets the answer's type from the interface, not from a cast. Handlers may return a value or a
 * promise. A value is answered at once, in order with everything else this side sends: the embedded
 * session registry depends on that (an answer to a lookup must not overtake a registration sent after
 * it, src/sessions/primary-registry.ts).
 *
 * request() delivers an answer synchronously, while the message that carries it is handled, before any
 * later message on the channel: a caller that must act before the next message (as a session lookup
 * must, before a revocation that follows it) uses it instead of call(), whose promise resolves a
 * microtask later, after every message of the same chunk. Both time out, and fail at once when the
 * channel closes.
 *
 * tellSoon() coalesces the one-way messages of one method told in one event-loop turn into one message,
 * sent at the end of the turn, or at once before anything else this side sends (so the order of all
 * messages is kept). A million drivers coming back at once cost the primary a claim and the worker a
 * grant each: one IPC message each was more than the two cores had (bench/cold-start.ts --1m, issue 14).
 */
export type Methods = { [name: string]: (...args: any[]) => unknown };

export interface Channel {
  send(message: unknown): void;
  /** Whether send() can still deliver. */
  connected(): boolean;
}

type Answer<F> = F extends (...args: any[]) => infer R ? Awaited<R> : never;
type Args<F> = F extends (...args: infer A) => unknown ? A : never;

interface Waiting {
  settle: (err: Error | null, value: unknown) => void;
  timer: NodeJS.Timeout | null;
  method: string;
}

export type RpcMessage =
  | { rpc: 'call'; id: number; method: string; args: unknown[] }
  | { rpc: 'done'; id: number; value: unknown }
  | { rpc: 'fail'; id: number; code: string; message: string; status?: number; parameter?: string }
  | { rpc: 'tell'; method: string; args: unknown[] }
  | { rpc: 'tells'; method: string; calls: unknown[][] };

/** One-way messages coalesced into one message, at most (a few hundred kB of ids). */
const MAX_COALESCED = 8192;

export interface RpcOptions {
  /** A call with no answer by then fails with RpcTimeoutError; 0 for no limit. */
  timeoutMs: number;
  /** What this side is called in errors ("worker 3"). */
  peer: string;
  /** A handler threw on a one-way message: nobody is waiting to hear of it. */
  onTellError?: (method: string, err: unknown) => void;
}

export class Rpc<Local extends Methods, Remote extends Methods> {
  readonly #channel: Channel;
  readonly #local: Local;
  readonly #o: RpcOptions;
  readonly #waiting = new Map<number, Waiting>();
  #next = 1;
  #closed = false;
  /** tellSoon()'s messages not sent yet, all of one method. */
  #soonMethod = '';
  #soon: unknown[][] = [];
  #soonScheduled = false;
  readonly #flushSoon = (): void => {
    this.#soonScheduled = false;
    this.#sendSoon();
  };

  constructor(channel: Channel, local: Local, options: RpcOptions) {
    this.#channel = channel;
    this.#local = local;
    this.#o = options;
  }

  /** Calls waiting for an answer. */
  get pending(): number {
    return this.#waiting.size;
  }

  call<K extends keyof Remote & string>(method: K, ...args: Args<Remote[K]>): Promise<Answer<Remote[K]>> {
    return new Promise((resolve, reject) => {
      this.request(method, args, (err, value) =>
        err === null ? resolve(value as Answer<Remote[K]>) : reject(err),
      );
    });
  }

  /** A call whose answer is handed to `done` synchronously when it arrives (see the class comment). */
  request<K extends keyof Remote & string>(
    method: K,
    args: Args<Remote[K]>,
    done: (err: Error | null, value: Answer<Remote[K]> | undefined) => void,
  ): void {
    if (this.#closed || !this.#channel.connected()) {
      done(new PeerGoneError(`${this.#o.peer} is gone (${method})`), undefined);
      return;
    }
    const id = this.#next++;
    const w: Waiting = { settle: done as Waiting['settle'], timer: null, method };
    if (this.#o.timeoutMs > 0) {
      w.timer = setTimeout(() => {
        this.#waiting.delete(id);
        done(
          new RpcTimeoutError(`${this.#o.peer} did not answer ${method} within ${this.#o.timeoutMs} ms`),
          undefined,
        );
      }, this.#o.timeoutMs);
    }
    this.#waiting.set(id, w);
    this.#sendSoon();
    this.#channel.send({ rpc: 'call', id, method, args } satisfies RpcMessage);
  }

  /** A one-way message. */
  tell<K extends keyof Remote & string>(method: K, ...args: Args<Remote[K]>): void {
    if (this.#closed || !this.#channel.connected()) return;
    this.#sendSoon();
    this.#channel.send({ rpc: 'tell', method, args } satisfies RpcMessage);
  }

  /**
   * A one-way message, sent with the others of the same method told in this event-loop turn (see the
   * class comment); the other side's handler is called once for each, in order.
   */
  tellSoon<K extends keyof Remote & string>(method: K, ...args: Args<Remote[K]>): void {
    if (this.#closed || !this.#channel.connected()) return;
    if (this.#soon.length > 0 && (this.#soonMethod !== method || this.#soon.length >= MAX_COALESCED)) {
      this.#sendSoon();
    }
    this.#soonMethod = method;
    this.#soon.push(args);
    if (!this.#soonScheduled) {
      this.#soonScheduled = true;
      setImmediate(this.#flushSoon);
    }
  }

  /** Handles a message from the channel; false if it is not an RPC message. */
  receive(m: unknown): boolean {
    if (typeof m !== 'object' || m === null || !('rpc' in m)) return false;
    const msg = m as RpcMessage;
    switch (msg.rpc) {
      case 'done':
      case 'fail': {
        const w = this.#waiting.get(msg.id);
        if (w === undefined) return true;
        this.#waiting.delete(msg.id);
        if (w.timer !== null) clearTimeout(w.timer);
        if (msg.rpc === 'done') w.settle(null, msg.value);
        else {
          w.settle(
            new RemoteError(
              msg.code,
              `${this.#o.peer}: ${w.method}: ${msg.message}`,
              msg.message,
              msg.status,
              msg.parameter,
            ),
            undefined,
          );
        }
        return true;
      }
      case 'call':
        this.#serve(msg.id, msg.method, msg.args);
        return true;
      case 'tell':
        this.#told(msg.method, msg.args);
        return true;
      case 'tells':
        for (const args of msg.calls) this.#told(msg.method, args);
        return true;
    }
    return false;
  }

  #told(method: string, args: unknown[]): void {
    const f = this.#handler(method);
    try {
      const r = f(...args);
      if (r instanceof Promise) r.catch((err: unknown) => this.#o.onTellError?.(method, err));
    } catch (err) {
      this.#o.onTellError?.(method, err);
    }
  }

  /** Sends what tellSoon() holds. */
  #sendSoon(): void {
    if (this.#soon.length === 0) return;
    const calls = this.#soon;
    this.#soon = [];
    if (this.#closed || !this.#channel.connected()) return;
    this.#channel.send({ rpc: 'tells', method: this.#soonMethod, calls } satisfies RpcMessage);
  }

  /** The channel closed: every waiting call fails now, and later ones at once. */
  close(): void {
    this.#closed = true;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) {
      if (w.timer !== null) clearTimeout(w.timer);
      w.settle(new PeerGoneError(`${this.#o.peer} is gone (${w.method})`), undefined);
    }
  }

  #handler(method: string): (...args: unknown[]) => unknown {
    const f = Object.hasOwn(this.#local, method) ? this.#local[method] : undefined;
    if (typeof f !== 'function') {
      return () => {
        throw new RemoteError('CABTRACK_RPC_NO_METHOD', `no method ${method}`, `no method ${method}`);
      };
    }
    return f as (...args: unknown[]) => unknown;
  }

  #serve(id: number, method: string, args: unknown[]): void {
    const fail = (err: unknown): void => {
      const code = (err as { code?: unknown }).code;
      const m: RpcMessage = {
        rpc: 'fail',
        id,
        code: typeof code === 'string' ? code : 'CABTRACK_RPC_HANDLER',
        message: err instanceof Error ? err.message : String(err),
      };
      if (err instanceof HttpError) {
        m.status = err.status;
        if (err.parameter !== undefined) m.parameter = err.parameter;
      }
      this.#reply(m);
    };
    let r: unknown;
    try {
      r = this.#handler(method)(...args);
    } catch (err) {
      fail(err);
      return;
    }
    if (r instanceof Promise) r.then((value) => this.#reply({ rpc: 'done', id, value }), fail);
    else this.#reply({ rpc: 'done', id, value: r });
  }

  #reply(m: RpcMessage): void {
    this.#sendSoon();
    if (this.#channel.connected()) this.#channel.send(m);
  }
}
