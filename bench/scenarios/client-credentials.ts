import type autocannon from 'autocannon';
import { type BenchContext, CONNECTIONS, type ScenarioResult } from '../lib/context.js';
import { warmThenMeasure } from '../lib/load.js';

export interface ClientCredentialsTarget {
  /** Path of the token endpoint, e.g. /t/bench-0001/token. */
  tokenPath: string;
  clientId: string;
  clientSecret: string;
}

const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/**
 * POST grant_type=client_credentials with client_secret_basic, each request to
 * the next target in turn (one tenant, or spread over many): the same request
 * building whatever the number of targets, so only the server side differs.
 */
export function clientCredentialsRequests(targets: ClientCredentialsTarget[]): autocannon.Request[] {
  if (targets.length === 0) throw new Error('no client_credentials target');
  const prepared = targets.map((t) => ({
    path: t.tokenPath,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(t.clientId, t.clientSecret) },
  }));
  let next = 0;
  return [
    {
      method: 'POST',
      body: 'grant_type=client_credentials',
      setupRequest(request) {
        const target = prepared[next++ % prepared.length];
        if (!target) return request;
        return { ...request, path: target.path, headers: { ...target.headers } };
      },
    },
  ];
}

/** One access token per target, fetched outside any measurement (for introspection). */
export async function fetchClientCredentialsToken(baseUrl: string, target: ClientCredentialsTarget): Promise<string> {
  const response = await fetch(`${baseUrl}${target.tokenPath}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(target.clientId, target.clientSecret) },
    body: 'grant_type=client_credentials',
  });
  const body = (await response.json()) as { access_token?: string };
  if (!response.ok || !body.access_token) throw new Error(`client_credentials failed: ${response.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

export const tokenTarget = (t: { slug: string; service: { clientId: string; clientSecret: string } }): ClientCredentialsTarget => ({
  tokenPath: `/t/${t.slug}/token`,
  ...t.service,
});

export { basic };

/** client_credentials on the first tenant only, or spread evenly over the first `tenants` tenants. */
export async function runClientCredentials(ctx: BenchContext, tenants: number): Promise<ScenarioResult> {
  const targets = ctx.seeded.tenants.slice(0, tenants).map(tokenTarget);
  const built = targets.length > 1 ? await firstTokenOfEach(ctx, targets) : undefined;
  const measurement = await warmThenMeasure(
    { urls: ctx.server.urls(), connections: CONNECTIONS, durationS: ctx.options.durationS, requests: clientCredentialsRequests(targets) },
    ctx.options.warmupS,
    ctx.server.pids(),
  );
  const spread = targets.length > 1;
  return {
    id: spread ? 'client_credentials_spread' : 'client_credentials',
    title: spread ? `client_credentials, ${targets.length.toLocaleString('en')} tenants` : 'client_credentials, 1 tenant',
    measurement,
    connections: CONNECTIONS,
    note: built ? `steady state: every tenant's provider was built first (${built.toFixed(1)} s for all, not measured)` : undefined,
  };
}

/**
 * One token from each tenant before measuring, so the spread scenario measures
 * serving 1,000 tenants, not building 1,000 providers (each decrypts its keys
 * and reads its clients once). Returns the seconds that took.
 */
async function firstTokenOfEach(ctx: BenchContext, targets: ClientCredentialsTarget[]): Promise<number> {
  const started = performance.now();
  const urls = ctx.server.urls();
  let next = 0;
  const worker = async (lane: number) => {
    for (let i = next++; i < targets.length; i = next++) {
      const target = targets[i];
      if (target) await fetchClientCredentialsToken(urls[lane % urls.length] ?? ctx.server.publicUrl, target);
    }
  };
  await Promise.all(Array.from({ length: 2 * ctx.options.cores }, (_, lane) => worker(lane)));
  return (performance.now() - started) / 1000;
}
