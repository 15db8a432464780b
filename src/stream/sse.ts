import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ViewerSink } from './hub.ts';

/**
 * A Server-Sent Events response as a stream hub's viewer sink: the headers that keep proxies from
 * buffering or transforming it, a retry hint for EventSource, and a socket backlog the hub reads for its
 * back-pressure.
 */
export function sseSink(req: IncomingMessage, res: ServerResponse): ViewerSink {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // nginx buffers responses unless told not to.
    'x-accel-buffering': 'no',
  });
  // A stream has no end the client waits for: no request timeout applies to it.
  req.socket.setTimeout(0);
  res.write('retry: 2000\n\n');
  return {
    // The callback runs once the socket has written the bytes, or with an error when it was destroyed
    // first: either way they are no longer held.
    write: (bytes, done) => {
      res.write(bytes, done);
    },
    backlog: () => res.writableLength + (res.socket?.writableLength ?? 0),
    // Cut off: its socket may be stuck with a full buffer, so reset it (RST: what is queued for a client
    // that does not read is dropped at once, in the kernel too) rather than end it gracefully.
    close: () => {
      if (res.socket !== null) res.socket.resetAndDestroy();
      else res.destroy();
    },
  };
}
