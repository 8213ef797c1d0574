import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ExportedEvent, verifyExportedEvents } from '../../src/audit/export.js';
import { apiKeyFor } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { rpConfig, signIn } from '../helpers/oidc.js';

/**
 * Issue 5's "done when", as one story told through the management API alone:
 * an admin with an API key sets up what a tenant needs, and the audit export
 * of all of it verifies.
 */

let t: TestApp;
let base: string;

beforeAll(async () => {
  t = await createTestApp({ seed: true, env: { TRUST_PROXY: 'true' } });
  base = await t.listen();
});
afterAll(() => t.close());

async function call(token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) as Record<string, unknown> & { id: string } };
}

async function machineToken(credentials: { client_id: string; client_secret: string; audience: string }, ip: string, scope: string) {
  const config = await oidc.discovery(new URL(`${base}/t/default`), credentials.client_id, credentials.client_secret, undefined, {
    execute: [oidc.allowInsecureRequests],
  });
  config[oidc.customFetch] = (url, options) => {
    const headers = new Headers(options.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set('x-forwarded-for', ip);
    return fetch(url, { ...options, headers } as RequestInit);
  };
  return (await oidc.clientCredentialsGrant(config, { scope, resource: credentials.audience })).access_token;
}

describe('a tenant set up through the management API alone', () => {
  it('gets a restricted service account, a custom role on a user, a stored secret and an audit export that verifies', async () => {
    const admin = (await apiKeyFor(t, 'default', { name: 'tenant admin' })).key;

    // 1. A service account with scoped credentials, usable only from 10.0.0.0/8.
    const account = await call(admin, 'POST', '/tenants/default/service-accounts', {
      name: 'ci-deployer',
      description: 'deploys and stores integration secrets',
      scopes: ['users.read', 'secrets.write'],
      allowed_ips: ['10.0.0.0/8'],
    });
    expect(account.status).toBe(201);
    const credentials = account.json().credentials as { client_id: string; client_secret: string; audience: string };
    const token = await machineToken(credentials, '10.4.4.4', 'users.read secrets.write');
    await expect(machineToken(credentials, '203.0.113.5', 'users.read')).rejects.toMatchObject({ error: 'invalid_client' });

    // 2. The service account stores a third-party secret; nobody reads it back through the API.
    const secret = await call(token, 'POST', '/tenants/default/secrets', { name: 'stripe/api-key', value: 'sk_live_do_not_leak' });
    expect(secret.status).toBe(201);
    expect(secret.text).not.toContain('sk_live_do_not_leak');
    expect((await call(token, 'GET', '/tenants/default/secrets')).status).toBe(403);
    const listed = await call(admin, 'GET', '/tenants/default/secrets');
    expect(listed.text).toContain('stripe/api-key');
    expect(listed.text).not.toContain('sk_live_do_not_leak');

    // 3. A custom role, with an app permission, assigned to a user: it shows in the user's tokens.
    const role = await call(admin, 'POST', '/tenants/default/roles', { name: 'support', permissions: ['users.read', 'read:tickets'] });
    expect(role.status).toBe(201);
    const user = await call(admin, 'POST', '/tenants/default/users', {
      email: 'agent@example.com',
      password: 'a long enough password',
      email_verified: true,
    });
    expect(user.status).toBe(201);
    const assigned = await call(admin, 'POST', `/tenants/default/roles/${role.json().id}/assignments`, { user_id: user.json().id });
    expect(assigned.status).toBe(201);
    expect((await call(admin, 'GET', `/tenants/default/users/${user.json().id}`)).json().roles).toEqual(['support']);
    const app = await call(admin, 'POST', '/tenants/default/clients', {
      name: 'helpdesk',
      redirect_uris: ['http://127.0.0.1:1/callback'],
      scope: 'openid email roles',
      first_party: true,
    });
    expect(app.status).toBe(201);
    const appConfig = await rpConfig(`${base}/t/default`, {
      clientId: String(app.json().client_id),
      clientSecret: String(app.json().client_secret),
      metadata: { token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['http://127.0.0.1:1/callback'] },
    });
    const { tokens } = await signIn(`${base}/t/default`, appConfig, {
      email: 'agent@example.com',
      password: 'a long enough password',
      scope: 'openid roles',
    });
    expect(decodeJwt(tokens.access_token)).toMatchObject({ roles: ['support'], permissions: ['read:tickets', 'users.read'] });

    // 4. The audit export: every step above, by whom, in a chain that verifies on its own.
    const exported = await call(admin, 'GET', '/tenants/default/audit-events/export?format=ndjson');
    expect(exported.status).toBe(200);
    const events = exported.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as ExportedEvent);
    expect(verifyExportedEvents(events)).toEqual({ ok: true, count: events.length });
    const did = (action: string) => events.find((e) => e.action === action);
    expect(did('service_account.created')).toMatchObject({ actor_type: 'api_key', resource_id: account.json().id });
    expect(did('service_account.token_refused')).toMatchObject({ ip: '203.0.113.5' });
    expect(did('secret.created')).toMatchObject({ actor_type: 'service_account', actor_id: account.json().id, ip: '127.0.0.1' });
    expect(did('role.created')).toMatchObject({ actor_type: 'api_key' });
    expect(did('role.assigned')).toMatchObject({ metadata: { user_id: user.json().id, role: 'support' } });
    expect(exported.text).not.toContain('sk_live_do_not_leak');
    expect(exported.text).not.toContain(credentials.client_secret);
    expect((await call(admin, 'GET', '/tenants/default/audit-events/verify')).json()).toMatchObject({ ok: true });
  });
});
