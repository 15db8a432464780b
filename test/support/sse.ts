import { fixOf, type StreamCar, type StreamMove } from '../../src/web/fixes.js';
import { daemonResponses } from './openapi.ts';

/**
 * A Server-Sent Events client for the stream tests: reads a stream over fetch and hands out its frames
 * (the `data:` of each event, parsed), its event ids and its comment lines, as a browser's EventSource
 * would see them. Each frame is checked against the StreamFrame schema of the OpenAPI document and
 * applied, as the pages apply it (src/web/fixes.js), to `shown`: the cars the client shows, each at its
 * fix. A frame that does not fit, or a move of a car not shown, makes every later wait throw.
 */
export interface Frame {
  id: string;
  frame: number;
  time: number;
  snapshot: boolean;
  cars: Array<StreamCar | StreamMove>;
  left: string[];
}

export type { StreamCar, StreamMove };

export class SseClient {
  readonly status: number;
  readonly headers: Headers;
  readonly frames: Frame[] = [];
  readonly comments: string[] = [];
  /** The cars the client shows after every frame so far. */
  readonly shown = new Map<string, StreamCar>();
  /** What was wrong with a frame: a schema mismatch, or a move of a car not shown. */
  readonly problems: string[] = [];
  /** Bytes received. */
  bytes = 0;
  ended = false;
  readonly #ac: AbortController;
  #waiters: Array<() => void> = [];
  readonly body: string;

  private constructor(res: Response, ac: AbortController, body: string) {
    this.status = res.status;
    this.headers = res.headers;
    this.#ac = ac;
    this.body = body;
    if (res.ok && res.body !== null) void this.#read(res.body);
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const ac = new AbortController();
    const res = await fetch(url, { headers, signal: ac.signal });
    const body = res.ok ? '' : await res.text();
    return new SseClient(res, ac, body);
  }

  /** Waits until `n` frames in all have arrived (or throws after timeoutMs). */
  async waitFrames(n: number, timeoutMs = 10_000): Promise<Frame[]> {
    const end = Date.now() + timeoutMs;
    while (this.frames.length < n || this.problems.length > 0) {
      if (this.problems.length > 0) throw new Error(`a bad frame: ${this.problems[0]}`);
      if (this.ended) throw new Error(`stream ended after ${this.frames.length} frames`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${this.frames.length} frames after ${timeoutMs} ms, waiting for ${n}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.frames;
  }

  /** Waits for a frame that satisfies `test`, among those after the first `from`. */
  async waitFor(test: (f: Frame) => boolean, from = 0, timeoutMs = 10_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (let i = from; ; i++) {
      await this.waitFrames(i + 1, Math.max(1, end - Date.now()));
      if (test(this.frames[i]!)) return this.frames[i]!;
    }
  }

  close(): void {
    this.#ac.abort();
  }

  #apply(f: Frame): void {
    const { id, ...data } = f;
    const wrong = daemonResponses.mismatch('StreamFrame', data);
    if (wrong !== null) this.problems.push(`frame ${id}: ${wrong}`);
    if (f.snapshot) this.shown.clear();
    for (const gone of f.left) this.shown.delete(gone);
    for (const record of f.cars) {
      const fix = fixOf(record, this.shown.get(record.id));
      if (fix === null)
        this.problems.push(`frame ${id}: a move of ${record.id}, which the client does not show`);
      else this.shown.set(record.id, fix);
    }
    this.frames.push(f);
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of body) {
        this.bytes += chunk.length;
        buf += decoder.decode(chunk, { stream: true });
        for (;;) {
          const end = buf.indexOf('\n\n');
          if (end < 0) break;
          const event = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let id = '';
          let data = '';
          for (const line of event.split('\n')) {
            if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data !== '') this.#apply({ ...(JSON.parse(data) as Omit<Frame, 'id'>), id });
        }
        for (const w of this.#waiters.splice(0)) w();
      }
    } catch {
      // aborted
    }
    this.ended = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}
