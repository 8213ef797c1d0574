import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** `target` URL rewritten to reach it through the proxy. */
  url: string;
  port: number;
  /**
   * Takes the dependency away as a crash or a network partition would: open
   * connections are reset and new ones refused.
   */
  cut(): Promise<void>;
}

/**
 * A TCP proxy in front of PostgreSQL or Redis, so a test can make a real
 * dependency disappear without stopping the shared server.
 */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const remote = connect(Number(upstream.port), upstream.hostname);
    for (const socket of [client, remote]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      // A reset is the point of cut(); neither side's error may crash the test.
      socket.on('error', () => {});
    }
    client.pipe(remote).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    async cut() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.resetAndDestroy();
      await closed;
    },
  };
}
