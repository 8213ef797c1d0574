import type autocannon from 'autocannon';
import { signIn } from '../lib/browser.js';
import type { BenchContext, ScenarioResult } from '../lib/context.js';
import { warmThenMeasure } from '../lib/load.js';
import { REDIRECT_URI, userEmail } from '../lib/seed.js';

/** Fewer connections than elsewhere: each needs a refresh token of its own, and those come from real sign-ins. */
export const REFRESH_CONNECTIONS = 32;

/**
 * Live refresh tokens, each held by at most one request at a time: a request
 * takes one out, its answer puts the rotated one back. Taken and never sent (a
 * run ending) is lost, so the pool starts with three per connection.
 */
class TokenPool {
  private readonly tokens: string[] = [];
  exhausted = 0;

  put(token: string): void {
    this.tokens.push(token);
  }

  take(): string {
    const token = this.tokens.shift();
    if (token) return token;
    this.exhausted += 1;
    // Sent anyway and answered 400: an empty pool shows up as failures, not as a stalled run.
    return 'pool-exhausted';
  }

  get size(): number {
    return this.tokens.length;
  }
}

/** Real sign-ins with offline_access (code + PKCE through the hosted pages), each yielding a refresh token. */
async function fillPool(ctx: BenchContext, pool: TokenPool, count: number): Promise<void> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const tokens = await signIn(
        {
          publicUrl: ctx.server.publicUrl,
          baseUrl: ctx.server.publicUrl,
          slug: tenant.slug,
          clientId: ctx.seeded.publicClientId,
          redirectUri: REDIRECT_URI,
        },
        { email: userEmail(i % ctx.seeded.users), password: ctx.seeded.password },
        true,
      );
      if (!tokens.refresh_token) throw new Error('a sign-in with offline_access returned no refresh token');
      pool.put(tokens.refresh_token);
    }
  };
  await Promise.all(Array.from({ length: ctx.options.signInConcurrency }, worker));
}

/**
 * grant_type=refresh_token with rotation: every request spends a token and its
 * answer carries the next one. autocannon sends one request per connection at
 * a time (no pipelining) and calls onResponse before building the connection's
 * next request, so a token is never sent twice (which would, correctly, revoke
 * its whole family and fail every later request of that chain).
 */
function rotationRequests(ctx: BenchContext, pool: TokenPool): autocannon.Request[] {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  return [
    {
      method: 'POST',
      path: `/t/${tenant.slug}/token`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      setupRequest(request) {
        const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: pool.take(), client_id: ctx.seeded.publicClientId });
        return { ...request, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() };
      },
      onResponse(status, body) {
        if (status !== 200) return;
        const rotated = (JSON.parse(body) as { refresh_token?: string }).refresh_token;
        if (rotated) pool.put(rotated);
      },
    },
  ];
}

export async function runRefresh(ctx: BenchContext): Promise<ScenarioResult> {
  const pool = new TokenPool();
  const started = performance.now();
  await fillPool(ctx, pool, 3 * REFRESH_CONNECTIONS);
  const seedingS = (performance.now() - started) / 1000;
  const measurement = await warmThenMeasure(
    { urls: ctx.server.urls(), connections: REFRESH_CONNECTIONS, durationS: ctx.options.durationS, requests: rotationRequests(ctx, pool) },
    ctx.options.warmupS,
    ctx.server.pids(),
  );
  return {
    id: 'refresh',
    title: `refresh-token rotation, ${REFRESH_CONNECTIONS} connections`,
    measurement,
    connections: REFRESH_CONNECTIONS,
    note: pool.exhausted
      ? `the token pool ran dry ${pool.exhausted} times`
      : `${3 * REFRESH_CONNECTIONS} tokens from real sign-ins first (${seedingS.toFixed(1)} s, not measured)`,
  };
}
