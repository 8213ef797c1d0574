import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACR } from '../../src/interaction/routes.js';
import { createClient } from '../../src/oidc/clients.js';
import type { TenantContext } from '../../src/tenants/tenants.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { Browser, type BrowserResponse } from '../helpers/browser.js';

/**
 * Code + PKCE end to end through the hosted pages: openid-client is the
 * relying party, a cookie-keeping HTTP client is the browser, and every step a
 * person would take is a form post read out of the rendered HTML.
 */

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const POST_LOGOUT_URI = 'http://127.0.0.1:1/signed-out';

let t: TestApp;
let baseUrl: string;
let issuer: string;
let tenant: TenantContext;
let adminId: string;
let thirdParty: oidc.Configuration;
let firstParty: oidc.Configuration;

async function configFor(name: string, firstPartyClient: boolean): Promise<oidc.Configuration> {
  const client = await createClient(
    { prisma: t.deps.db.prisma, audit: t.deps.audit },
    tenant.id,
    {
      name,
      redirectUris: [REDIRECT_URI],
      postLogoutRedirectUris: [POST_LOGOUT_URI],
      scope: 'openid profile email offline_access',
      firstParty: firstPartyClient,
    },
    { type: 'system' },
  );
  // A tenant's provider is built from its clients (supported scopes): rebuild it, as the CLI does.
  t.deps.oidc.evict(tenant.id);
  return oidc.discovery(new URL(issuer), client.clientId, client.clientSecret, undefined, { execute: [oidc.allowInsecureRequests] });
}

interface Authorization {
  url: string;
  verifier: string;
  state: string;
  nonce: string;
}

async function startAuthorization(config: oidc.Configuration, extra: Record<string, string> = {}): Promise<Authorization> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url: url.toString(), verifier, state, nonce };
}

function signIn(browser: Browser, page: BrowserResponse, password = TEST_ADMIN_PASSWORD) {
  return browser.submit(page, '/login', { email: 'admin@example.com', password }, REDIRECT_URI);
}

async function redeem(config: oidc.Configuration, callback: BrowserResponse, authorization: Authorization) {
  expect(callback.location?.startsWith(REDIRECT_URI)).toBe(true);
  return oidc.authorizationCodeGrant(config, new URL(callback.location ?? ''), {
    pkceCodeVerifier: authorization.verifier,
    expectedState: authorization.state,
    expectedNonce: authorization.nonce,
  });
}

async function lastAudit(action: string) {
  return t.deps.db.prisma.auditEvent.findFirst({ where: { tenantId: tenant.id, action }, orderBy: { seq: 'desc' } });
}

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  baseUrl = await t.listen();
  issuer = `${baseUrl}/t/default`;
  const found = await t.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
  adminId = (await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant.id, email: 'admin@example.com' } })).id;
  thirdParty = await configFor('Third Party App', false);
  firstParty = await configFor('Our Own App', true);
});
afterAll(() => t?.close());

describe('authorization code + PKCE through the hosted pages', () => {
  it('signs in, asks a third-party client for consent, and issues verifiable tokens', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(thirdParty);

    const login = await browser.follow(authorization.url, REDIRECT_URI);
    expect(login.status).toBe(200);
    expect(login.url).toMatch(/\/t\/default\/interaction\/[A-Za-z0-9_-]+$/);
    expect(login.text).toContain('Third Party App');
    expect(login.headers.get('cache-control')).toBe('no-store');

    const wrong = await signIn(browser, login, 'not-the-password');
    expect(wrong.status).toBe(422);
    expect(wrong.text).toContain('Incorrect email or password.');

    const consent = await signIn(browser, wrong);
    expect(consent.status).toBe(200);
    expect(consent.text).toContain('Allow access?');
    expect(consent.text).toContain('See your email address');

    const callback = await browser.submit(consent, '/confirm', {}, REDIRECT_URI);
    expect(callback.status).toBe(303);
    const tokens = await redeem(thirdParty, callback, authorization);

    const claims = tokens.claims();
    expect(claims).toMatchObject({ sub: adminId, nonce: authorization.nonce });
    expect(decodeProtectedHeader(tokens.access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer, typ: 'at+jwt' });
    expect(payload.sub).toBe(adminId);

    expect((await lastAudit('auth.sign_in.failed'))?.metadata).toMatchObject({
      reason: 'bad_password',
      client_id: thirdParty.clientMetadata().client_id,
    });
    expect(await lastAudit('auth.sign_in.succeeded')).toMatchObject({ actorId: adminId, userAgent: 'idp-test-browser/1.0' });
    expect(await lastAudit('auth.consent.granted')).toMatchObject({ actorId: adminId, resourceId: thirdParty.clientMetadata().client_id });

    // The session now signs the user in without a form, and the grant covers what was consented to.
    const again = await startAuthorization(thirdParty);
    const silent = await browser.follow(again.url, REDIRECT_URI);
    expect(silent.location?.startsWith(REDIRECT_URI)).toBe(true);
    expect((await redeem(thirdParty, silent, again)).claims()?.sub).toBe(adminId);
  });

  it('puts how the user signed in (acr, amr, auth_time) in the ID token', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(firstParty);
    const tokens = await redeem(firstParty, await signIn(browser, await browser.follow(authorization.url, REDIRECT_URI)), authorization);
    const claims = tokens.claims();
    expect(claims).toMatchObject({ sub: adminId, amr: ['pwd'], acr: ACR.password });
    expect(claims?.auth_time).toBeTypeOf('number');
  });

  it('skips consent for a first-party client', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(firstParty);
    const login = await browser.follow(authorization.url, REDIRECT_URI);
    const callback = await signIn(browser, login);
    expect(callback.status).toBe(303);
    const tokens = await redeem(firstParty, callback, authorization);
    expect(tokens.claims()?.sub).toBe(adminId);
  });

  it('rotates the session cookie at sign-in', async () => {
    const browser = new Browser(baseUrl);
    // A first, anonymous visit that leaves a session cookie behind (prompt=none fails without a login).
    const probe = await startAuthorization(firstParty, { prompt: 'none' });
    const denied = await browser.follow(probe.url, REDIRECT_URI);
    expect(new URL(denied.location ?? '').searchParams.get('error')).toBe('login_required');
    const before = browser.cookie('_session');

    const authorization = await startAuthorization(firstParty);
    const callback = await signIn(browser, await browser.follow(authorization.url, REDIRECT_URI));
    expect(callback.location?.startsWith(REDIRECT_URI)).toBe(true);
    const after = browser.cookie('_session');
    expect(after).toBeTruthy();
    expect(after).not.toBe(before);
  });

  it('returns access_denied to the client when consent is denied', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(thirdParty, { scope: 'openid email offline_access', prompt: 'consent' });
    const consent = await signIn(browser, await browser.follow(authorization.url, REDIRECT_URI));
    expect(consent.text).toContain('Allow access?');
    const callback = await browser.submit(consent, '/abort', {}, REDIRECT_URI);
    const params = new URL(callback.location ?? '').searchParams;
    expect(params.get('error')).toBe('access_denied');
    expect(params.get('state')).toBe(authorization.state);
    expect(await lastAudit('auth.consent.denied')).toMatchObject({ actorId: adminId });
  });

  it('refuses a login post without the CSRF token, and a stale interaction, with pages', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(firstParty);
    const login = await browser.follow(authorization.url, REDIRECT_URI);
    const forged = await browser.request(login.url.replace(/$/, '/login'), {
      form: { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD },
    });
    expect(forged.status).toBe(403);
    expect(forged.headers.get('content-type')).toMatch(/^text\/html/);

    const stale = await new Browser(baseUrl).request(login.url);
    expect(stale.status).toBe(400);
    expect(stale.text).toContain('This sign-in request has expired or is no longer valid.');
  });

  it('renders an unregistered redirect_uri as our escaped error page, without redirecting', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(firstParty, { redirect_uri: 'https://evil.example/<script>' });
    const page = await browser.request(authorization.url);
    expect(page.status).toBe(400);
    expect(page.location).toBeUndefined();
    expect(page.text).toContain('<code>invalid_redirect_uri</code>');
    expect(page.text).not.toContain('<script>');
  });

  it('signs out through the logout page and returns to the post-logout URI', async () => {
    const browser = new Browser(baseUrl);
    const authorization = await startAuthorization(firstParty);
    const tokens = await redeem(firstParty, await signIn(browser, await browser.follow(authorization.url, REDIRECT_URI)), authorization);
    const endSession = oidc.buildEndSessionUrl(firstParty, {
      id_token_hint: tokens.id_token ?? '',
      post_logout_redirect_uri: POST_LOGOUT_URI,
      state: 'bye',
    });
    const page = await browser.follow(endSession.toString(), POST_LOGOUT_URI);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Sign out?');
    expect(page.text).toContain('Our Own App');
    expect(page.text).not.toMatch(/<script/i);
    expect(page.headers.get('content-security-policy')).toContain("form-action 'self' http://127.0.0.1:1");

    const done = await browser.submit(page, '/session/end/confirm', { logout: 'yes' }, POST_LOGOUT_URI);
    expect(done.location).toBe(`${POST_LOGOUT_URI}?state=bye`);

    // Signed out: the next authorization asks for credentials again.
    const next = await browser.follow((await startAuthorization(firstParty)).url, REDIRECT_URI);
    expect(next.text).toContain('autocomplete="current-password"');
  });
});
