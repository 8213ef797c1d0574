import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../../src/tenants/tenants.js';
import { apiKeyFor } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { rpConfig, signIn } from '../helpers/oidc.js';

/**
 * Service accounts end to end: credentials from the API, a real token from the
 * tenant's token endpoint (openid-client), the token presented to the API; and
 * what disabling a user does to tokens already out there.
 */

let t: TestApp;
let base: string;
let issuer: string;
let admin: string;

/** The management API over real HTTP, as an automation script would call it. */
async function call(token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** openid-client for a service account's credentials, its requests coming from `ip` (X-Forwarded-For, TRUST_PROXY is on). */
async function machine(credentials: { client_id: string; client_secret: string }, ip: string): Promise<oidc.Configuration> {
  const config = await oidc.discovery(new URL(issuer), credentials.client_id, credentials.client_secret, undefined, {
    execute: [oidc.allowInsecureRequests],
  });
  config[oidc.customFetch] = (url, options) => {
    const headers = new Headers(options.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set('x-forwarded-for', ip);
    return fetch(url, { ...options, headers } as RequestInit);
  };
  return config;
}

async function tokenFor(config: oidc.Configuration, scope: string, resource?: string): Promise<string> {
  const tokens = await oidc.clientCredentialsGrant(config, { scope, ...(resource ? { resource } : {}) });
  return tokens.access_token;
}

async function refusal(promise: Promise<unknown>): Promise<{ error?: string; status?: number }> {
  try {
    await promise;
  } catch (error) {
    const { error: code, status } = error as { error?: string; status?: number };
    return { error: code, status };
  }
  throw new Error('the request was not refused');
}

beforeAll(async () => {
  t = await createTestApp({ seed: true, env: { TRUST_PROXY: 'true' } });
  base = await t.listen();
  issuer = `${base}/t/default`;
  admin = (await apiKeyFor(t, 'default', { name: 'admin' })).key;
});
afterAll(() => t.close());

describe('service accounts', () => {
  let credentials: { client_id: string; client_secret: string; token_endpoint: string; audience: string };
  let accountId: string;

  beforeAll(async () => {
    const created = await call(admin, 'POST', '/tenants/default/service-accounts', {
      name: 'deployer',
      scopes: ['users.read', 'audit.read', 'read:reports'],
      allowed_ips: ['10.0.0.0/8', '2001:db8::/32'],
    });
    expect(created.status).toBe(201);
    credentials = created.body.credentials as typeof credentials;
    accountId = String(created.body.id);
    expect(credentials).toMatchObject({ token_endpoint: `${issuer}/token`, audience: `${base}/api/v1` });
    expect(created.body.client_id).toBe(credentials.client_id);
  });

  it('get a token at the token endpoint from an allowed address and use it on the API', async () => {
    const config = await machine(credentials, '10.20.30.40');
    const token = await tokenFor(config, 'users.read audit.read', credentials.audience);
    expect(decodeJwt(token)).toMatchObject({ aud: credentials.audience, client_id: credentials.client_id, scope: 'users.read audit.read' });
    expect((await call(token, 'GET', '/me')).body).toMatchObject({
      kind: 'service_account',
      id: accountId,
      permissions: ['users.read', 'audit.read'],
    });
    expect((await call(token, 'GET', '/tenants/default/users')).status).toBe(200);
    // Only what the token was granted: secrets.read is neither requested nor held.
    expect((await call(token, 'GET', '/tenants/default/secrets')).status).toBe(403);
    // A token for the tenant's default API (no resource indicator) is accepted too.
    const plain = await tokenFor(config, 'users.read');
    expect(decodeJwt(plain).aud).toBe(`${issuer}/api`);
    expect((await call(plain, 'GET', '/tenants/default/users')).status).toBe(200);
  });

  it('are refused at the token endpoint outside their allowlist, before any token is issued', async () => {
    const refusals = () => t.deps.db.prisma.auditEvent.count({ where: { action: 'service_account.token_refused' } });
    const before = await refusals();
    for (const ip of ['192.0.2.1', '11.0.0.1', '2001:db9::1', '127.0.0.1']) {
      expect(await refusal(tokenFor(await machine(credentials, ip), 'users.read'))).toEqual({ error: 'invalid_client', status: 401 });
    }
    // IPv6 and IPv4-mapped spellings of allowed addresses pass.
    await tokenFor(await machine(credentials, '2001:db8::7'), 'users.read');
    await tokenFor(await machine(credentials, '::ffff:10.0.0.1'), 'users.read');
    // Each refusal was recorded before the answer (issuance events are written after the response, so not counted here).
    expect(await refusals()).toBe(before + 4);
    const refused = await t.deps.db.prisma.auditEvent.findFirst({
      where: { action: 'service_account.token_refused' },
      orderBy: { id: 'desc' },
    });
    expect(refused).toMatchObject({ resourceId: accountId, ip: '127.0.0.1', metadata: { reason: 'ip_not_allowed' } });
  });

  it('lose access at once when their scopes shrink, when disabled, and when their secret is rotated', async () => {
    const config = await machine(credentials, '10.0.0.2');
    const token = await tokenFor(config, 'users.read audit.read');
    expect((await call(admin, 'PATCH', `/tenants/default/service-accounts/${accountId}`, { scopes: ['audit.read'] })).status).toBe(200);
    expect((await call(token, 'GET', '/tenants/default/users')).status).toBe(403);
    expect((await call(token, 'GET', '/tenants/default/audit-events?limit=1')).status).toBe(200);
    expect(await refusal(tokenFor(config, 'users.read'))).toMatchObject({ error: 'invalid_scope' });

    expect((await call(admin, 'PATCH', `/tenants/default/service-accounts/${accountId}`, { disabled: true })).status).toBe(200);
    expect((await call(token, 'GET', '/tenants/default/audit-events?limit=1')).status).toBe(401);
    expect(await refusal(tokenFor(config, 'audit.read'))).toEqual({ error: 'invalid_client', status: 401 });
    expect((await call(admin, 'PATCH', `/tenants/default/service-accounts/${accountId}`, { disabled: false })).status).toBe(200);

    const rotated = await call(admin, 'POST', `/tenants/default/service-accounts/${accountId}/credentials`);
    expect(rotated.status).toBe(201);
    expect(rotated.body.client_id).toBe(credentials.client_id);
    expect(await refusal(tokenFor(config, 'audit.read'))).toMatchObject({ error: 'invalid_client' });
    credentials = rotated.body as typeof credentials;
    await tokenFor(await machine(credentials, '10.0.0.2'), 'audit.read');
  });

  it('gain the permissions of roles assigned to them', async () => {
    const role = await call(admin, 'POST', '/tenants/default/roles', { name: 'secret keeper', permissions: ['secrets.read'] });
    expect(role.status).toBe(201);
    const config = await machine(credentials, '10.0.0.3');
    expect(await refusal(tokenFor(config, 'secrets.read'))).toMatchObject({ error: 'invalid_scope' });
    const assigned = await call(admin, 'POST', `/tenants/default/roles/${role.body.id}/assignments`, { service_account_id: accountId });
    expect(assigned.status).toBe(201);
    const token = await tokenFor(config, 'secrets.read');
    expect((await call(token, 'GET', '/tenants/default/secrets')).status).toBe(200);
    expect((await call(admin, 'DELETE', `/tenants/default/roles/${role.body.id}/assignments/${assigned.body.id}`)).status).toBe(204);
    expect((await call(token, 'GET', '/tenants/default/secrets')).status).toBe(403);
  });

  it('cannot reach another tenant with their token', async () => {
    await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug: 'neighbour' }, { type: 'system' });
    const token = await tokenFor(await machine(credentials, '10.0.0.4'), 'audit.read');
    const foreign = await call(token, 'GET', '/tenants/neighbour/audit-events');
    expect(foreign.status).toBe(404);
  });

  it('refuse tokens that are not a service account’s', async () => {
    const plain = await call(admin, 'POST', '/tenants/default/clients', {
      name: 'batch job',
      grant_types: ['client_credentials'],
      scope: 'users.read',
    });
    expect(plain.status).toBe(201);
    const config = await machine({ client_id: String(plain.body.client_id), client_secret: String(plain.body.client_secret) }, '10.0.0.5');
    const token = await tokenFor(config, 'users.read');
    expect((await call(token, 'GET', '/tenants/default/users')).status).toBe(401);
    // A forged token signed by nobody we know.
    const [header, payload] = token.split('.');
    expect((await call(`${header}.${payload}.${'A'.repeat(342)}`, 'GET', '/me')).status).toBe(401);
  });
});

describe('disabling a user', () => {
  it('kills their refresh token and access token at once', async () => {
    const client = await call(admin, 'POST', '/tenants/default/clients', {
      name: 'web app',
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: ['http://127.0.0.1:1/callback'],
      scope: 'openid email offline_access',
      first_party: true,
    });
    expect(client.status).toBe(201);
    const user = await call(admin, 'POST', '/tenants/default/users', {
      email: 'leaver@example.com',
      password: 'correct horse battery',
      email_verified: true,
    });
    expect(user.status).toBe(201);
    const config = await rpConfig(issuer, {
      clientId: String(client.body.client_id),
      clientSecret: String(client.body.client_secret),
      metadata: { token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['http://127.0.0.1:1/callback'] },
    });
    const { tokens } = await signIn(issuer, config, {
      email: 'leaver@example.com',
      password: 'correct horse battery',
      scope: 'openid email offline_access',
      extraParams: { prompt: 'consent' },
    });
    const refreshToken = tokens.refresh_token ?? '';
    expect(refreshToken).not.toBe('');
    // The user's access token is not a service account's: the management API refuses it.
    expect((await call(tokens.access_token, 'GET', '/me')).status).toBe(401);
    const userId = String(user.body.id);
    const rows = () => t.deps.db.prisma.oidcPayload.count({ where: { payload: { path: ['accountId'], equals: userId } } });
    expect(await rows()).toBeGreaterThan(0);

    const disabled = await call(admin, 'POST', `/tenants/default/users/${userId}/disable`);
    expect(disabled.status).toBe(200);
    expect(disabled.body.disabled).toBe(true);
    expect(await rows()).toBe(0);
    expect(await refusal(oidc.refreshTokenGrant(config, refreshToken))).toMatchObject({ error: 'invalid_grant', status: 400 });
    const userinfo = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(userinfo.status).toBe(401);
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    expect(introspected.active).toBe(false);
  });
});
