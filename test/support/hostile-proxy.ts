import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that counts what reaches a neighbour (OSRM, say): connections, and HTTP
 * requests by their request lines. The stand-in OSRM counts the requests it answers, but in its 'down'
 * mode a connection is cut before any request is read; the proxy sees the attempt either way.
 */
export interface CountingProxy {
  readonly url: string;
  readonly port: number;
  /** TCP connections made to the proxy. */
  readonly connections: number;
  /** HTTP requests seen on them (lines starting with the given method and a space). */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startCountingProxy(upstreamPort: number, method = 'GET'): Promise<CountingProxy> {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const marker = `${method} /`;
  const server: Server = createServer((client) => {
    connections++;
    const upstream = connect(upstreamPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    // Request lines may be split across reads: keep the tail of the previous chunk.
    let tail = '';
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      let at = text.startsWith(marker) && tail === '' ? 0 : -1;
      if (at === 0) requests++;
      for (;;) {
        at = text.indexOf(`\n${marker}`, at + 1);
        if (at < 0) break;
        requests++;
      }
      tail = text.slice(-marker.length);
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get connections() {
      return connections;
    },
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
