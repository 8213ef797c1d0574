import type autocannon from 'autocannon';
import { type BenchContext, CONNECTIONS, type ScenarioResult } from '../lib/context.js';
import { warmThenMeasure } from '../lib/load.js';
import { basic, fetchClientCredentialsToken, tokenTarget } from './client-credentials.js';

/** Distinct live tokens the requests cycle through. */
const TOKENS = 16;

/**
 * RFC 7662 introspection of live client_credentials access tokens (our JWTs)
 * by the tenant's resource server, at 64 connections as the goal states.
 * Every answer is checked to say `active: true`: an inactive answer is a 200
 * that measures nothing.
 */
export async function runIntrospection(ctx: BenchContext): Promise<ScenarioResult> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  const tokens = await Promise.all(
    Array.from({ length: TOKENS }, () => fetchClientCredentialsToken(ctx.server.publicUrl, tokenTarget(tenant))),
  );
  const { clientId, clientSecret } = ctx.seeded.resourceServer;
  let inactive = 0;
  const requests: autocannon.Request[] = tokens.map((token) => ({
    method: 'POST',
    path: `/t/${tenant.slug}/token/introspection`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(clientId, clientSecret) },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    onResponse(status, body) {
      if (status === 200 && !body.includes('"active":true')) inactive += 1;
    },
  }));
  const measurement = await warmThenMeasure(
    { urls: ctx.server.urls(), connections: CONNECTIONS, durationS: ctx.options.durationS, requests },
    ctx.options.warmupS,
    ctx.server.pids(),
  );
  return {
    id: 'introspection',
    title: `introspection, ${CONNECTIONS} connections`,
    measurement,
    connections: CONNECTIONS,
    note: inactive ? `${inactive} answers said active: false` : undefined,
  };
}
