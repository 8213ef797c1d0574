import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { type StoreCost, storeCost } from '../helpers/cost.js';
import { createTenantClient, relaxRateLimits, rpConfig, signIn, type TenantClient } from '../helpers/oidc.js';

const REDIRECT_URI = 'https://app.example/cb';

/**
 * A sign-in records several audit events; whether two of them share a batch
 * (and its statements) depends on timing, so statements may come in under
 * budget, never over it. KvStore operations are exact.
 */
function expectWithinBudget(cost: StoreCost, budget: StoreCost): void {
  expect(cost.kvOperations).toBe(budget.kvOperations);
  expect(cost.statements).toBeLessThanOrEqual(budget.statements);
}
const ADMIN = { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD };

/**
 * What the hot paths cost the stores, counted (never timed): every SQL
 * statement and Redis round trip is a syscall pair and a wait, the main cost of
 * a request on this kind of machine (bench/README.md). The budgets are today's
 * counts: a change that adds a round trip to a hot path fails here and has to
 * say why in the budget.
 */
describe('store round trips per request', () => {
  let t: TestApp;
  let issuer: string;
  let web: TenantClient;
  let api: TenantClient;
  let webConfig: oidc.Configuration;
  let apiConfig: oidc.Configuration;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    issuer = `${await t.listen()}/t/default`;
    await relaxRateLimits(t);
    web = await createTenantClient(t, { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true });
    api = await createTenantClient(t, { name: 'API', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true });
    webConfig = await rpConfig(issuer, web);
    apiConfig = await rpConfig(issuer, api);
    // Warm: the tenant's provider, its keys and the client caches are built once per node, not per request.
    await oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' });
  });
  afterAll(() => t.close());

  it('client_credentials', async () => {
    const cost = await storeCost(t, () => oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' }));
    expect(cost).toEqual({ statements: 3, kvOperations: 1 });
  });

  it('introspection of a JWT access token', async () => {
    const token = (await oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' })).access_token;
    const cost = await storeCost(t, () => oidc.tokenIntrospection(apiConfig, token));
    expect(cost).toEqual({ statements: 0, kvOperations: 1 });
  });

  it('password sign-in through the hosted pages, code + PKCE, then one refresh rotation', async () => {
    let refreshToken = '';
    const signin = await storeCost(t, async () => {
      const { tokens } = await signIn(issuer, webConfig, {
        ...ADMIN,
        scope: 'openid email profile offline_access roles',
        extraParams: { prompt: 'login consent' },
      });
      refreshToken = tokens.refresh_token ?? '';
    });
    expect(refreshToken).not.toBe('');
    expectWithinBudget(signin, { statements: 38, kvOperations: 23 });
    const refresh = await storeCost(t, () => oidc.refreshTokenGrant(webConfig, refreshToken));
    expect(refresh).toEqual({ statements: 7, kvOperations: 1 });
  });

  it('password sign-in as the benchmark does it: a new browser, no consent, tenant settings already cached', async () => {
    const benchSignIn = () => signIn(issuer, webConfig, { ...ADMIN, scope: 'openid email' });
    // The first sign-in of a node reads the tenant's network policy, which later ones find cached.
    await benchSignIn();
    const signin = await storeCost(t, benchSignIn);
    expectWithinBudget(signin, { statements: 20, kvOperations: 16 });
  });
});
