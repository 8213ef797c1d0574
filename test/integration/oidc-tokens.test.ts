import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import { sha256 } from '../../src/crypto/random.js';
import { createTestApp, startSecondNode, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import {
  authorizationRequest,
  authorize,
  Browser,
  createTenantClient,
  parseForms,
  relaxRateLimits,
  rpConfig,
  type SignInOptions,
  signIn,
  type TenantClient,
  textOf,
} from '../helpers/oidc.js';

const REDIRECT_URI = 'https://rp.example.com/cb';
const POST_LOGOUT_URI = 'https://rp.example.com/bye';
const ADMIN = { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD };
const ALL_SCOPES = 'openid email profile offline_access roles';

type Tokens = Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;

/**
 * The authorization code flow end to end, with openid-client as the relying
 * party and the hosted HTML pages as the browser sees them; then everything a
 * token can go through: refresh rotation and reuse, revocation on one node seen
 * on another, logout, and the OpenID Basic OP checks that apply.
 */
describe('OIDC tokens through the code flow', () => {
  // The clock moves only in the last test (refresh lifetime); until then it reads real time.
  const clock = manualClock();
  let t: TestApp;
  let issuer: string;
  let tenantId: string;
  let adminId: string;
  /** First-party confidential client: no consent page. */
  let web: TenantClient;
  let webConfig: oidc.Configuration;
  /** A resource server, to introspect any token of the tenant. */
  let api: TenantClient;
  let apiConfig: oidc.Configuration;
  /** Signed in once (Argon2 is slow on purpose); later flows reuse its session. */
  let browser: Browser;
  let first: Tokens;
  let firstCallback: URL;
  let firstNonce: string;
  let jwks: ReturnType<typeof createRemoteJWKSet>;
  const startedAt = Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    t = await createTestApp({ seed: true, clock });
    issuer = `${await t.listen()}/t/default`;
    await relaxRateLimits(t);
    jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
    web = await createTenantClient(t, {
      name: 'Web app',
      redirectUris: [REDIRECT_URI],
      postLogoutRedirectUris: [POST_LOGOUT_URI],
      firstParty: true,
    });
    api = await createTenantClient(t, { name: 'API', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true });
    tenantId = web.tenantId;
    adminId = (await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId, email: ADMIN.email } })).id;
    webConfig = await rpConfig(issuer, web);
    apiConfig = await rpConfig(issuer, api);
    const result = await signIn(issuer, webConfig, { ...ADMIN, scope: ALL_SCOPES, extraParams: { prompt: 'login consent' } });
    browser = result.browser;
    first = result.tokens;
    firstCallback = result.callbackUrl;
    firstNonce = result.request.nonce;
  });
  afterAll(() => t.close());

  /**
   * Another authorization in the signed-in browser: no password, a new code.
   * oidc-provider honours offline_access only with prompt=consent (OpenID
   * Connect Core §11), so that is what a client wanting a refresh token sends.
   */
  function again(options: SignInOptions = {}, config = webConfig) {
    return signIn(issuer, config, { scope: ALL_SCOPES, browser, ...options, extraParams: { prompt: 'consent', ...options.extraParams } });
  }

  const introspect = (token: string) => oidc.tokenIntrospection(apiConfig, token);

  async function tokenRequest(
    body: Record<string, string>,
    client: TenantClient = web,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(client.clientSecret
          ? { authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}` }
          : {}),
      },
      body: new URLSearchParams(client.clientSecret ? body : { ...body, client_id: client.clientId }).toString(),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  }

  async function storedRefreshToken(token: string) {
    return t.deps.db.prisma.oidcPayload.findUnique({
      where: { tenantId_model_id: { tenantId, model: 'RefreshToken', id: sha256(token) } },
    });
  }

  describe('the authorization response and the tokens', () => {
    it('returns the code with state and iss (RFC 9207) to the registered redirect_uri', () => {
      expect(`${firstCallback.origin}${firstCallback.pathname}`).toBe(REDIRECT_URI);
      expect(firstCallback.searchParams.get('iss')).toBe(issuer);
      expect(firstCallback.searchParams.get('code')).toMatch(/^[\w-]{20,}$/);
      expect(firstCallback.searchParams.get('state')).toBeTruthy();
      expect(first.token_type.toLowerCase()).toBe('bearer');
      expect(first.expires_in).toBe(900);
    });

    it('issues an RS256 ID token with iss, aud, nonce, auth_time, sid, acr and amr', async () => {
      const idToken = first.id_token ?? '';
      expect(decodeProtectedHeader(idToken).alg).toBe('RS256');
      const { payload } = await jwtVerify(idToken, jwks, { issuer, audience: web.clientId, algorithms: ['RS256'] });
      expect(payload).toMatchObject({ iss: issuer, aud: web.clientId, sub: adminId, nonce: firstNonce, email: ADMIN.email });
      expect(payload.auth_time).toBeTypeOf('number');
      expect(Number(payload.auth_time)).toBeGreaterThanOrEqual(startedAt - 5);
      expect(Number(payload.auth_time)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 5);
      expect(payload.sid).toEqual(expect.any(String));
      expect(payload.acr).toEqual(expect.stringMatching(/^urn:idp:acr:/));
      expect(payload.amr).toEqual(['pwd']);
      // openid-client validated the same token (nonce, iss, aud) when redeeming the code.
      expect(first.claims()?.sub).toBe(adminId);
    });

    it('issues an at+jwt access token with the claims of DESIGN §3', async () => {
      expect(decodeProtectedHeader(first.access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt', kid: expect.any(String) });
      const { payload } = await jwtVerify(first.access_token, jwks, { issuer, typ: 'at+jwt', algorithms: ['RS256'] });
      expect(payload).toMatchObject({
        iss: issuer,
        sub: adminId,
        aud: `${issuer}/api`,
        client_id: web.clientId,
        scope: ALL_SCOPES,
        tid: tenantId,
        jti: expect.any(String),
        roles: ['owner'],
      });
      expect(Number(payload.exp) - Number(payload.iat)).toBe(900);
      expect(Math.abs(Number(payload.iat) - Date.now() / 1000)).toBeLessThan(120);
      expect(payload.permissions).toEqual(expect.arrayContaining(['users.read', 'users.write', 'keys.write']));
    });

    it('leaves roles and permissions out unless the roles scope is asked for', async () => {
      const { tokens } = await again({ scope: 'openid email' });
      const claims = decodeJwt(tokens.access_token);
      expect(claims.scope).toBe('openid email');
      expect(claims).not.toHaveProperty('roles');
      expect(claims).not.toHaveProperty('permissions');
      const info = await oidc.fetchUserInfo(webConfig, tokens.access_token, adminId);
      expect(info).toMatchObject({ sub: adminId, email: ADMIN.email, email_verified: true });
      expect(info).not.toHaveProperty('roles');
      expect(info).not.toHaveProperty('name');
      // No offline_access, no refresh token.
      expect(tokens.refresh_token).toBeUndefined();
    });

    it('answers userinfo for the JWT access token: sub, email, email_verified, name and roles', async () => {
      const info = await oidc.fetchUserInfo(webConfig, first.access_token, adminId);
      expect(info).toMatchObject({ sub: adminId, email: ADMIN.email, email_verified: true, name: expect.any(String), roles: ['owner'] });
      expect(info).not.toHaveProperty('permissions');
    });

    it('asks a third-party client’s user for consent, then issues tokens', async () => {
      const thirdParty = await createTenantClient(t, { name: 'Partner app', redirectUris: ['https://partner.example/cb'] });
      const config = await rpConfig(issuer, thirdParty);
      // Without pressing "Allow" the browser stops on the consent page.
      const { url } = await authorizationRequest(config, { scope: 'openid email' });
      const page = await browser.fork().follow(url, { consent: false });
      expect(page.kind).toBe('page');
      if (page.kind !== 'page') return;
      expect(page.status).toBe(200);
      expect(textOf(page.html)).toContain('Partner app');
      expect(parseForms(page.html).some((form) => /\/confirm$/.test(form.action))).toBe(true);
      const { tokens } = await signIn(issuer, config, { scope: 'openid email', browser });
      expect(decodeJwt(tokens.access_token)).toMatchObject({ sub: adminId, client_id: thirdParty.clientId });
      expect((await introspect(tokens.access_token)).active).toBe(true);
    });
  });

  describe('refresh tokens', () => {
    it('rotate on every use: a new refresh token each time, opaque, stored only as a hash', async () => {
      const { tokens } = await again();
      const r0 = tokens.refresh_token ?? '';
      expect(r0).toMatch(/^[\w-]{20,}$/);
      const one = await oidc.refreshTokenGrant(webConfig, r0);
      const r1 = one.refresh_token ?? '';
      const two = await oidc.refreshTokenGrant(webConfig, r1);
      const r2 = two.refresh_token ?? '';
      expect(new Set([r0, r1, r2]).size).toBe(3);
      expect(new Set([tokens.access_token, one.access_token, two.access_token]).size).toBe(3);
      expect(decodeJwt(two.access_token)).toMatchObject({ sub: adminId, client_id: web.clientId, scope: ALL_SCOPES });
      expect(decodeJwt(two.id_token ?? '')).toMatchObject({ sub: adminId, aud: web.clientId });
      expect((await introspect(two.access_token)).active).toBe(true);
      // The stored row is keyed by the token's hash and does not contain the token.
      const row = await storedRefreshToken(r2);
      expect(row).not.toBeNull();
      expect(JSON.stringify(row?.payload)).not.toContain(r2);
      const raw = await t.deps.db.prisma.$queryRawUnsafe<{ row: string }[]>(`SELECT row_to_json(p)::text AS row FROM "OidcPayload" p`);
      for (const { row: text } of raw) for (const token of [r0, r1, r2]) expect(text).not.toContain(token);
    });

    it('revoke the whole family when a rotated refresh token is replayed', async () => {
      const { tokens } = await again();
      const r0 = tokens.refresh_token ?? '';
      const one = await oidc.refreshTokenGrant(webConfig, r0);
      const two = await oidc.refreshTokenGrant(webConfig, one.refresh_token ?? '');
      expect((await introspect(two.access_token)).active).toBe(true);

      // The replay itself fails…
      await expect(oidc.refreshTokenGrant(webConfig, r0)).rejects.toMatchObject({ error: 'invalid_grant' });
      // …and takes the newest refresh token and every access token of the family with it.
      await expect(oidc.refreshTokenGrant(webConfig, two.refresh_token ?? '')).rejects.toMatchObject({ error: 'invalid_grant' });
      for (const accessToken of [tokens.access_token, one.access_token, two.access_token]) {
        expect(await introspect(accessToken)).toEqual({ active: false });
      }
      const userinfo = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${two.access_token}` } });
      expect(userinfo.status).toBe(401);
    });

    it('are revoked with their grant by RFC 7009 revocation', async () => {
      const { tokens } = await again();
      const refreshToken = tokens.refresh_token ?? '';
      expect((await introspect(tokens.access_token)).active).toBe(true);
      await oidc.tokenRevocation(webConfig, refreshToken);
      await expect(oidc.refreshTokenGrant(webConfig, refreshToken)).rejects.toMatchObject({ error: 'invalid_grant' });
      expect(await introspect(tokens.access_token)).toEqual({ active: false });
      expect(await storedRefreshToken(refreshToken)).toBeNull();
    });

    it('carry the roles the user holds now: each rotation reads the account afresh', async () => {
      const { tokens } = await again();
      const role = await t.deps.db.prisma.role.create({ data: { tenantId, name: 'auditor', permissions: ['audit.read'] } });
      await t.deps.db.prisma.roleAssignment.create({ data: { tenantId, roleId: role.id, userId: adminId } });
      const granted = await oidc.refreshTokenGrant(webConfig, tokens.refresh_token ?? '');
      expect(decodeJwt(granted.access_token)).toMatchObject({
        roles: ['auditor', 'owner'],
        permissions: expect.arrayContaining(['audit.read']),
      });
      await t.deps.db.prisma.role.delete({ where: { id: role.id } });
      const withdrawn = await oidc.refreshTokenGrant(webConfig, granted.refresh_token ?? '');
      expect(decodeJwt(withdrawn.access_token).roles).toEqual(['owner']);
    });

    it('stop working once their grant is gone, though the grant is read along with the token', async () => {
      const { tokens } = await again();
      const grantId = (await storedRefreshToken(tokens.refresh_token ?? ''))?.grantId ?? '';
      // As another node's revocation would leave it: the Grant deleted, the refresh token not (yet).
      await t.deps.db.prisma.oidcPayload.deleteMany({ where: { tenantId, model: 'Grant', id: sha256(grantId) } });
      await expect(oidc.refreshTokenGrant(webConfig, tokens.refresh_token ?? '')).rejects.toMatchObject({ error: 'invalid_grant' });
    });

    it('let exactly one of 20 concurrent refreshes of one token succeed', async () => {
      const { tokens } = await again();
      const body = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' };
      const answers = await Promise.all(Array.from({ length: 20 }, () => tokenRequest(body)));
      const ok = answers.filter((answer) => answer.status === 200);
      expect(ok).toHaveLength(1);
      for (const answer of answers.filter((a) => a.status !== 200)) {
        expect(answer).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
      }
    });
  });

  describe('access token revocation', () => {
    let second: { url: string; close(): Promise<void> };

    beforeAll(async () => {
      second = await startSecondNode(t, clock);
      return () => second.close();
    });

    async function introspectAt(base: string, token: string): Promise<Record<string, unknown>> {
      const response = await fetch(`${base}/t/default/token/introspection`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${api.clientId}:${api.clientSecret ?? ''}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }).toString(),
      });
      expect(response.status).toBe(200);
      return (await response.json()) as Record<string, unknown>;
    }

    it('is seen at once by introspection and userinfo, on this node and on another', async () => {
      const { tokens } = await again();
      expect(await introspectAt(second.url, tokens.access_token)).toMatchObject({ active: true, sub: adminId });
      await oidc.tokenRevocation(webConfig, tokens.access_token);
      expect(await introspect(tokens.access_token)).toEqual({ active: false });
      expect(await introspectAt(second.url, tokens.access_token)).toEqual({ active: false });
      const userinfo = await fetch(`${second.url}/t/default/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      expect(userinfo.status).toBe(401);
    });

    it('puts the jti on a denylist every node reads (a client_credentials token has no grant to revoke)', async () => {
      const token = (await oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' })).access_token;
      expect(await introspectAt(second.url, token)).toMatchObject({ active: true, client_id: api.clientId });
      await oidc.tokenRevocation(apiConfig, token);
      expect(await introspectAt(second.url, token)).toEqual({ active: false });
      expect(await introspect(token)).toEqual({ active: false });
      // Only that token: the next one of the same client is fine.
      const next = (await oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' })).access_token;
      expect((await introspectAt(second.url, next)).active).toBe(true);
    });

    it('by another client is refused (RFC 7009: a client revokes only its own tokens)', async () => {
      const { tokens } = await again();
      const other = await createTenantClient(t, { name: 'Other', grantTypes: ['client_credentials'], scope: 'reports:read' });
      await oidc.tokenRevocation(await rpConfig(issuer, other), tokens.access_token).catch(() => undefined);
      expect((await introspect(tokens.access_token)).active).toBe(true);
    });
  });

  describe('OpenID Basic OP checks', () => {
    it('refuses a reused code with invalid_grant and revokes the tokens of its first redemption', async () => {
      const { callbackUrl, request } = await authorize(issuer, webConfig, {
        scope: ALL_SCOPES,
        browser,
        extraParams: { prompt: 'consent' },
      });
      const checks = { pkceCodeVerifier: request.codeVerifier, expectedState: request.state, expectedNonce: request.nonce };
      const tokens = await oidc.authorizationCodeGrant(webConfig, callbackUrl, checks);
      expect((await introspect(tokens.access_token)).active).toBe(true);
      await expect(oidc.authorizationCodeGrant(webConfig, callbackUrl, checks)).rejects.toMatchObject({ error: 'invalid_grant' });
      expect(await introspect(tokens.access_token)).toEqual({ active: false });
      await expect(oidc.refreshTokenGrant(webConfig, tokens.refresh_token ?? '')).rejects.toMatchObject({ error: 'invalid_grant' });
    });

    it('lets exactly one of 20 concurrent redemptions of one code succeed', async () => {
      const { callbackUrl, request } = await authorize(issuer, webConfig, { scope: ALL_SCOPES, browser });
      const body = {
        grant_type: 'authorization_code',
        code: callbackUrl.searchParams.get('code') ?? '',
        redirect_uri: REDIRECT_URI,
        code_verifier: request.codeVerifier,
      };
      const answers = await Promise.all(Array.from({ length: 20 }, () => tokenRequest(body)));
      expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
      for (const answer of answers.filter((a) => a.status !== 200)) {
        expect(answer).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
      }
    });

    it('refuses a code redeemed with another redirect_uri or a wrong code_verifier', async () => {
      const { callbackUrl, request } = await authorize(issuer, webConfig, { scope: ALL_SCOPES, browser });
      const code = callbackUrl.searchParams.get('code') ?? '';
      const altered = await tokenRequest({
        grant_type: 'authorization_code',
        code,
        redirect_uri: `${REDIRECT_URI}/other`,
        code_verifier: request.codeVerifier,
      });
      expect(altered).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
      const { callbackUrl: next } = await authorize(issuer, webConfig, { scope: ALL_SCOPES, browser });
      const wrongVerifier = await tokenRequest({
        grant_type: 'authorization_code',
        code: next.searchParams.get('code') ?? '',
        redirect_uri: REDIRECT_URI,
        code_verifier: oidc.randomPKCECodeVerifier(),
      });
      expect(wrongVerifier).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
    });

    it('answers prompt=none without a session with login_required at the redirect_uri', async () => {
      const fresh = new Browser(new URL(issuer).origin);
      const { url, state } = await authorizationRequest(webConfig, { scope: 'openid', extraParams: { prompt: 'none' } });
      const outcome = await fresh.follow(url);
      expect(outcome.kind).toBe('redirect');
      if (outcome.kind !== 'redirect') return;
      expect(`${outcome.url.origin}${outcome.url.pathname}`).toBe(REDIRECT_URI);
      expect(outcome.url.searchParams.get('error')).toBe('login_required');
      expect(outcome.url.searchParams.get('state')).toBe(state);
      expect(outcome.url.searchParams.get('iss')).toBe(issuer);
      expect(outcome.url.searchParams.has('code')).toBe(false);
    });

    it('answers prompt=none with a session with a code, no page', async () => {
      const { tokens } = await again({ scope: 'openid', extraParams: { prompt: 'none' } });
      expect(decodeJwt(tokens.access_token).sub).toBe(adminId);
    });

    it('asks for the password again when max_age=0, and says so in auth_time', async () => {
      const { url } = await authorizationRequest(webConfig, { scope: 'openid', extraParams: { max_age: '0' } });
      const page = await browser.fork().follow(url);
      expect(page.kind).toBe('page');
      if (page.kind !== 'page') return;
      expect(parseForms(page.html).some((form) => /\/login$/.test(form.action))).toBe(true);

      const before = Number(decodeJwt(first.id_token ?? '').auth_time);
      const { tokens } = await again({ ...ADMIN, scope: 'openid', extraParams: { max_age: '0' } });
      const claims: JWTPayload = decodeJwt(tokens.id_token ?? '');
      expect(Number(claims.auth_time)).toBeGreaterThanOrEqual(before);
      expect(claims.sub).toBe(adminId);
    });
  });

  describe('public clients', () => {
    let spa: TenantClient;
    let spaConfig: oidc.Configuration;

    beforeAll(async () => {
      spa = await createTenantClient(t, { name: 'SPA', public: true, redirectUris: ['http://127.0.0.1:8080/cb'], firstParty: true });
      spaConfig = await rpConfig(issuer, spa);
    });

    it('get tokens with PKCE and no secret', async () => {
      expect(spa.clientSecret).toBeUndefined();
      const { tokens } = await again({ scope: 'openid email' }, spaConfig);
      expect(decodeJwt(tokens.access_token)).toMatchObject({ sub: adminId, client_id: spa.clientId });
    });

    it('must use PKCE, and only S256', async () => {
      for (const [label, extraParams] of [
        ['no code_challenge', { code_challenge: null, code_challenge_method: null }],
        ['plain', { code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' }],
      ] as const) {
        const { url } = await authorizationRequest(spaConfig, { scope: 'openid', extraParams });
        const outcome = await browser.fork().follow(url);
        expect(outcome.kind, label).toBe('redirect');
        if (outcome.kind !== 'redirect') continue;
        expect(outcome.url.searchParams.get('error'), label).toBe('invalid_request');
        expect(outcome.url.searchParams.has('code'), label).toBe(false);
      }
    });

    it('cannot use client_credentials', async () => {
      const answer = await tokenRequest({ grant_type: 'client_credentials', scope: 'openid' }, spa);
      expect(answer.status).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(500);
      expect(['unauthorized_client', 'invalid_request', 'invalid_client']).toContain(answer.json.error);
      expect(answer.json).not.toHaveProperty('access_token');
    });
  });

  describe('RP-initiated logout', () => {
    let session: Browser;
    let idToken: string;

    beforeAll(async () => {
      // A session of its own: ending it must not sign the other tests out.
      const result = await signIn(issuer, webConfig, { ...ADMIN, scope: 'openid' });
      session = result.browser;
      idToken = result.tokens.id_token ?? '';
    });

    it('refuses an unregistered post_logout_redirect_uri with an error page and no redirect', async () => {
      for (const uri of ['https://evil.example/bye', `${POST_LOGOUT_URI}/x`, REDIRECT_URI]) {
        const url = oidc.buildEndSessionUrl(webConfig, { id_token_hint: idToken, post_logout_redirect_uri: uri });
        const outcome = await session.fork().follow(url);
        expect(outcome.kind, uri).toBe('page');
        if (outcome.kind !== 'page') continue;
        expect(outcome.status, uri).toBe(400);
        expect(outcome.html, uri).not.toContain('evil.example');
      }
      // The session survived: prompt=none still signs in.
      const { callbackUrl } = await authorize(issuer, webConfig, {
        scope: 'openid',
        browser: session.fork(),
        extraParams: { prompt: 'none' },
      });
      expect(callbackUrl.searchParams.get('code')).toBeTruthy();
    });

    it('ends the session and returns to the exact post_logout_redirect_uri with state', async () => {
      const url = oidc.buildEndSessionUrl(webConfig, {
        id_token_hint: idToken,
        post_logout_redirect_uri: POST_LOGOUT_URI,
        state: 'bye-state',
      });
      const confirm = await session.follow(url);
      expect(confirm.kind).toBe('page');
      if (confirm.kind !== 'page') return;
      expect(confirm.status).toBe(200);
      const form = parseForms(confirm.html).find((f) => f.id === 'op.logoutForm');
      expect(form).toBeDefined();
      if (!form) return;
      const sessionPath = new URL(`${issuer}/auth`);
      expect(session.jar.names(sessionPath)).toContain('_session');

      const done = await session.submit(confirm.url, form, { logout: 'yes' });
      expect(done.kind).toBe('redirect');
      if (done.kind !== 'redirect') return;
      expect(`${done.url.origin}${done.url.pathname}`).toBe(POST_LOGOUT_URI);
      expect(done.url.searchParams.get('state')).toBe('bye-state');
      expect(session.jar.names(sessionPath)).not.toContain('_session');

      // Signed out: a silent authorization now needs a login.
      const { url: silent } = await authorizationRequest(webConfig, { scope: 'openid', extraParams: { prompt: 'none' } });
      const outcome = await session.follow(silent);
      expect(outcome.kind === 'redirect' && outcome.url.searchParams.get('error')).toBe('login_required');
    });
  });

  describe('refresh token lifetime', () => {
    it('is 7 days from the first grant, and rotation does not extend it', async () => {
      const { tokens } = await again();
      const firstRow = await storedRefreshToken(tokens.refresh_token ?? '');
      const issuedAt = Number((firstRow?.payload as { iat?: number } | undefined)?.iat);
      const expiresAt = firstRow?.expiresAt?.getTime() ?? 0;
      expect(Math.abs(expiresAt / 1000 - (issuedAt + 7 * 24 * 3600))).toBeLessThanOrEqual(2);

      // A day later (by the app's clock), a rotation yields a token that still ends with the first one.
      clock.advance(24 * 3600 * 1000);
      const rotated = await oidc.refreshTokenGrant(webConfig, tokens.refresh_token ?? '');
      const rotatedRow = await storedRefreshToken(rotated.refresh_token ?? '');
      expect(rotatedRow).not.toBeNull();
      expect(Math.abs((rotatedRow?.expiresAt?.getTime() ?? 0) - expiresAt)).toBeLessThanOrEqual(2000);
      expect((rotatedRow?.payload as { iiat?: number } | undefined)?.iiat).toBe(issuedAt);
    });
  });
});
