import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { authorizationRequest, createTenantClient, leaksInternals, rpConfig, type TenantClient, textOf } from '../helpers/oidc.js';

/**
 * Regression: a store out of reach while oidc-provider handled a request (the
 * KvStore behind the adapter, at introspection and at the authorization
 * endpoint) answered oidc-provider's generic 500 `server_error`, where every
 * other route answers 503 `temporarily_unavailable` with Retry-After. The
 * KvStore is closed under the running app, which its clients then report as
 * "Connection is closed", as Redis's do when Redis is gone (the fault suite,
 * test/multinode/faults.test.ts, kills a real one).
 */
describe('oidc-provider routes while the KvStore is unreachable', () => {
  let t: TestApp;
  let issuer: string;
  let api: TenantClient;
  let webConfig: oidc.Configuration;
  let accessToken: string;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    issuer = `${await t.listen()}/t/default`;
    api = await createTenantClient(t, { name: 'API', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true });
    const web = await createTenantClient(t, { name: 'Web', redirectUris: ['https://rp.example.com/cb'], firstParty: true });
    webConfig = await rpConfig(issuer, web);
    accessToken = (await oidc.clientCredentialsGrant(await rpConfig(issuer, api), { scope: 'reports:read' })).access_token;
    await t.stores.kv.close();
  });
  afterAll(() => t?.close());

  it('answers introspection 503 temporarily_unavailable as JSON with Retry-After', async () => {
    const response = await fetch(`${issuer}/token/introspection`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        authorization: `Basic ${Buffer.from(`${api.clientId}:${api.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token: accessToken }).toString(),
    });
    const text = await response.text();
    expect(response.status, text).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Object.keys(JSON.parse(text)).sort()).toEqual(['error', 'error_description']);
    expect(JSON.parse(text).error).toBe('temporarily_unavailable');
  });

  it('answers the authorization endpoint with the 503 error page for browsers', async () => {
    const { url } = await authorizationRequest(webConfig, { scope: 'openid' });
    const response = await fetch(url, { headers: { accept: 'text/html' }, redirect: 'manual' });
    const html = await response.text();
    expect(response.status, textOf(html)).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(textOf(html)).toContain('Temporarily unavailable');
    expect(textOf(html)).toContain('temporarily_unavailable');
    expect(leaksInternals(html)).toBe(false);
  });
});
