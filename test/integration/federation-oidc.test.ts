import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reencryptAll } from '../../src/crypto/reencrypt.js';
import { createVault } from '../../src/crypto/vault.js';
import { findConnection, openClientSecret } from '../../src/federation/connections.js';
import { createUser } from '../../src/users/users.js';
import { apiKeyFor, api as managementApi } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import {
  auditEvents,
  expectRefusedPage,
  lastRejection,
  startSso,
  startUpstreamOidc,
  throughUpstream,
  type UpstreamAccount,
  type UpstreamOidc,
  upstreamUrl,
} from '../helpers/federation.js';
import type { Browser, Outcome } from '../helpers/oidc.js';
import { createTenantClient, rpConfig, tenantIdOf, textOf } from '../helpers/oidc.js';

/**
 * Upstream OIDC end to end: a Google-like OpenID Provider played by a second
 * oidc-provider on another loopback port. Discovery, code + PKCE, state and
 * nonce, ID token validation by openid-client, claim mapping, the client
 * secret in the vault, and the Workspace domain (`hd`) rule.
 */

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
let t: TestApp;
let api: ReturnType<typeof managementApi>;
let config: oidc.Configuration;
let tenantId: string;
let upstream: UpstreamOidc;
let google: { id: string; [key: string]: unknown };

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  await t.listen();
  tenantId = await tenantIdOf(t);
  api = managementApi(t, (await apiKeyFor(t)).key);
  const client = await createTenantClient(t, { name: 'App', redirectUris: [REDIRECT_URI], firstParty: true });
  config = await rpConfig(`${t.url}/t/default`, client);
  upstream = await startUpstreamOidc();
  const created = await api.post('/tenants/default/connections', {
    name: 'Google',
    type: 'oidc',
    preset: 'google',
    domains: ['corp.example'],
    role_mapping: {},
    oidc: { issuer: upstream.issuer, client_id: upstream.clientId, client_secret: upstream.clientSecret },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  google = created.body;
  await upstream.register((google.oidc as { redirect_uri: string }).redirect_uri);
  // A fresh database, an app, an RSA key for the SP and a client: more than the default hook time on a busy machine.
}, 180_000);

afterAll(async () => {
  await upstream?.close();
  await t?.close();
});

interface OidcSignIn {
  outcome: Outcome;
  browser: Browser;
  request: { codeVerifier: string; state: string; nonce: string };
  callback: URL;
}

async function oidcSignIn(account: UpstreamAccount): Promise<OidcSignIn> {
  upstream.signInAs(account);
  const { browser, request, upstream: redirect } = await startSso(config, t.url, { connectionId: google.id });
  const callback = await throughUpstream(upstreamUrl(redirect), t.url);
  const outcome = await browser.follow(callback);
  return { outcome, browser, request, callback };
}

async function subjectOf(signIn: OidcSignIn): Promise<string | undefined> {
  if (signIn.outcome.kind !== 'redirect') throw new Error(`not signed in: ${signIn.outcome.status} ${textOf(signIn.outcome.html)}`);
  const tokens = await oidc.authorizationCodeGrant(config, signIn.outcome.url, {
    pkceCodeVerifier: signIn.request.codeVerifier,
    expectedState: signIn.request.state,
    expectedNonce: signIn.request.nonce,
  });
  return tokens.claims()?.sub;
}

const userByEmail = (email: string) => t.deps.db.prisma.user.findUnique({ where: { tenantId_email: { tenantId, email } } });

describe('the connection', () => {
  it('keeps the client secret in the vault and never returns it', async () => {
    expect(JSON.stringify(google)).not.toContain(upstream.clientSecret);
    expect(google.oidc).toMatchObject({
      has_client_secret: true,
      scopes: ['openid', 'email', 'profile'],
      redirect_uri: expect.stringContaining('/federation/oidc/'),
    });
    const row = await t.deps.db.prisma.connection.findUniqueOrThrow({ where: { id: google.id } });
    expect(row.clientSecret).toMatch(/^v1\./);
    expect(JSON.stringify(row.config)).not.toContain(upstream.clientSecret);
    const events = await auditEvents(t, 'connection.created');
    expect(JSON.stringify(events.map((e) => e.metadata))).not.toContain(upstream.clientSecret);
  });

  it('tests discovery and the JWKS with a readable report', async () => {
    const report = await api.post(`/tenants/default/connections/${google.id}/test`);
    expect(report.status).toBe(200);
    expect(report.body.ok, JSON.stringify(report.body)).toBe(true);
    expect(report.body.checks).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ check: 'discovery', ok: true }),
        expect.objectContaining({ check: 'jwks', ok: true, detail: expect.stringMatching(/1 signing key/) }),
      ]),
    );
  });

  it('reports an issuer that does not answer', async () => {
    const created = await api.post('/tenants/default/connections', {
      name: 'Nowhere',
      type: 'oidc',
      enabled: false,
      oidc: { issuer: 'http://127.0.0.1:9/', client_id: 'x', token_endpoint_auth_method: 'none' },
    });
    const report = await api.post(`/tenants/default/connections/${created.body.id}/test`);
    expect(report.body.ok).toBe(false);
    expect(report.body.checks[0]).toMatchObject({ check: 'discovery', ok: false });
  });

  it('re-encrypts the client secret with the vault after a master key rotation', async () => {
    const next = createVault({ masterKey: Buffer.alloc(32, 7), previousMasterKeys: [t.deps.masterKey] });
    const results = await reencryptAll(t.deps.db.prisma, next);
    expect(results.find((r) => r.column === 'clientSecret')).toMatchObject({ failed: 0 });
    expect(results.find((r) => r.column === 'clientSecret')?.reencrypted).toBeGreaterThan(0);
    expect(results.find((r) => r.column === 'spPrivateKey')).toMatchObject({ failed: 0 });
    const connection = await findConnection(t.deps.db.prisma, tenantId, google.id);
    expect(connection?.type === 'oidc' && openClientSecret(next, connection)).toBe(upstream.clientSecret);
    // Back to the app's key, so the rest of the suite signs in as before.
    await reencryptAll(t.deps.db.prisma, createVault({ masterKey: t.deps.masterKey, previousMasterKeys: [Buffer.alloc(32, 7)] }));
  });
});

describe('signing in through the OpenID Provider', () => {
  it('provisions a user from the ID token’s claims and issues our tokens', async () => {
    const signIn = await oidcSignIn({
      sub: 'g-1001',
      email: 'grace@corp.example',
      email_verified: true,
      name: 'Grace Hopper',
      hd: 'corp.example',
    });
    const sub = await subjectOf(signIn);
    const user = await userByEmail('grace@corp.example');
    expect(user).toMatchObject({ id: sub, name: 'Grace Hopper', emailVerified: true });
    const identity = await t.deps.db.prisma.federatedIdentity.findFirstOrThrow({ where: { connectionId: google.id } });
    expect(identity).toMatchObject({ subject: 'g-1001', userId: sub });
  });

  it('links an existing user only by an address the provider says it verified', async () => {
    const henry = await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenantId,
      { email: 'henry@corp.example', password: 'correct horse battery staple' },
      { type: 'system' },
    );
    const unverified = await oidcSignIn({ sub: 'g-2002', email: 'henry@corp.example', email_verified: false, hd: 'corp.example' });
    expectRefusedPage(unverified.outcome);
    expect(await lastRejection(t)).toBe('account_conflict');
    const verified = await oidcSignIn({ sub: 'g-2002', email: 'henry@corp.example', email_verified: true, hd: 'corp.example' });
    expect(await subjectOf(verified)).toBe(henry.id);
  });

  it('refuses an account of another Workspace domain, or a consumer account (hd)', async () => {
    const consumer = await oidcSignIn({ sub: 'g-3003', email: 'ivy@corp.example', email_verified: true });
    expectRefusedPage(consumer.outcome);
    expect(await lastRejection(t)).toBe('domain_not_allowed');
    const elsewhere = await oidcSignIn({ sub: 'g-3004', email: 'ivy@other.example', email_verified: true, hd: 'other.example' });
    expectRefusedPage(elsewhere.outcome);
    expect(await lastRejection(t)).toBe('domain_not_allowed');
  });

  it('refuses a callback whose state is unknown, and the same callback a second time', async () => {
    const signIn = await oidcSignIn({ sub: 'g-1001', email: 'grace@corp.example', email_verified: true, hd: 'corp.example' });
    expect(await subjectOf(signIn)).toBeTruthy();
    const replay = await signIn.browser.follow(signIn.callback);
    expectRefusedPage(replay);
    expect(await lastRejection(t)).toBe('unknown_state');
    const forged = new URL(signIn.callback);
    forged.searchParams.set('state', 'A'.repeat(43));
    expectRefusedPage(await signIn.browser.follow(forged));
    expect(await lastRejection(t)).toBe('unknown_state');
  });

  it('refuses a code the upstream issued for another flow (the PKCE verifier and nonce do not match)', async () => {
    upstream.signInAs({ sub: 'g-1001', email: 'grace@corp.example', email_verified: true, hd: 'corp.example' });
    const first = await startSso(config, t.url, { connectionId: google.id });
    const second = await startSso(config, t.url, { connectionId: google.id });
    const firstCallback = await throughUpstream(upstreamUrl(first.upstream), t.url);
    const secondState = new URL(upstreamUrl(second.upstream)).searchParams.get('state') ?? '';
    // The first flow's code with the second flow's state: openid-client sends the second flow's verifier.
    const mixed = new URL(firstCallback);
    mixed.searchParams.set('state', secondState);
    expectRefusedPage(await second.browser.follow(mixed));
    expect(await lastRejection(t)).toMatch(/token_exchange_failed|id_token_invalid/);
  });

  it('passes an upstream error back as a refusal, audited with its reason', async () => {
    const { browser, upstream: redirect } = await startSso(config, t.url, { connectionId: google.id });
    const state = new URL(upstreamUrl(redirect)).searchParams.get('state') ?? '';
    const callback = new URL((google.oidc as { redirect_uri: string }).redirect_uri);
    callback.searchParams.set('error', 'access_denied');
    callback.searchParams.set('state', state);
    callback.searchParams.set('iss', upstream.issuer);
    expectRefusedPage(await browser.follow(callback));
    expect(await lastRejection(t)).toBe('upstream_error');
  });
});

describe('an Okta-like OpenID Provider with groups from userinfo', () => {
  let okta: UpstreamOidc;
  let connectionId: string;

  beforeAll(async () => {
    okta = await startUpstreamOidc();
    const created = await api.post('/tenants/default/connections', {
      name: 'Okta OIDC',
      type: 'oidc',
      preset: 'okta',
      domains: ['okta-corp.example'],
      role_mapping: { 'idp-admins': 'admin', engineers: ['member'] },
      oidc: {
        issuer: okta.issuer,
        client_id: okta.clientId,
        client_secret: okta.clientSecret,
        userinfo: true,
        token_endpoint_auth_method: 'client_secret_post',
      },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    connectionId = created.body.id;
    expect(created.body.oidc.scopes).toEqual(['openid', 'email', 'profile', 'groups']);
    await okta.register(created.body.oidc.redirect_uri);
  }, 120_000);

  afterAll(async () => {
    await okta?.close();
  });

  async function signInAt(account: UpstreamAccount): Promise<string | undefined> {
    okta.signInAs(account);
    const { browser, request, upstream: redirect } = await startSso(config, t.url, { connectionId });
    const outcome = await browser.follow(await throughUpstream(upstreamUrl(redirect), t.url));
    return subjectOf({ outcome, browser, request, callback: new URL(t.url) });
  }

  it('maps the groups claim to roles, and follows the groups on the next sign-in', async () => {
    const sub = await signInAt({
      sub: 'o-1',
      email: 'kim@okta-corp.example',
      email_verified: true,
      groups: ['engineers', 'idp-admins', 'other'],
    });
    const roles = async () =>
      (await t.deps.db.prisma.roleAssignment.findMany({ where: { tenantId, userId: sub }, select: { role: { select: { name: true } } } }))
        .map((r) => r.role.name)
        .sort();
    expect(await roles()).toEqual(['admin', 'member']);
    expect(await signInAt({ sub: 'o-1', email: 'kim@okta-corp.example', email_verified: true, groups: ['engineers'] })).toBe(sub);
    expect(await roles()).toEqual(['member']);
  });
});
