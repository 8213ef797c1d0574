import { freePort, spawnTs, waitForOk } from '../lib/processes.js';
import { clientCredentialsRequests } from '../scenarios/client-credentials.js';

const BARE_CLIENT = { clientId: 'bare-client', clientSecret: 'bare-client-secret-0123456789abcdef' };

export interface BareProvider {
  urls: string[];
  pids: number[];
  stop(): Promise<void>;
}

/** `processes` bare oidc-provider servers, as many as the server under test runs, in production mode. */
export async function startBareProvider(processes: number): Promise<BareProvider> {
  const running: { url: string; pid: number; stop(): Promise<number | null> }[] = [];
  const stop = async () => {
    await Promise.all(running.map((r) => r.stop()));
  };
  try {
    for (let i = 0; i < processes; i++) {
      const port = await freePort();
      const child = spawnTs('bench/ceilings/bare-provider-server.ts', {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE_ENV: 'production',
          PORT: String(port),
          BARE_CLIENT_ID: BARE_CLIENT.clientId,
          BARE_CLIENT_SECRET: BARE_CLIENT.clientSecret,
        },
      });
      const url = `http://127.0.0.1:${port}`;
      running.push({ url, pid: child.child.pid ?? 0, stop: () => child.stop() });
      await waitForOk(`${url}/.well-known/openid-configuration`, { alive: () => child.child.exitCode === null });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { urls: running.map((r) => r.url), pids: running.map((r) => r.pid), stop };
}

/** The same requests as our client_credentials scenario, at the bare provider's token endpoint. */
export function bareClientCredentialsRequests() {
  return clientCredentialsRequests([{ tokenPath: '/token', ...BARE_CLIENT }]);
}
