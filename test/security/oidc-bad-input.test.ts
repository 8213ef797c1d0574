import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/audit/audit.js';
import { sha256 } from '../../src/crypto/random.js';
import { migrate, openDatabase } from '../../src/store/index.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import {
  announce,
  authorizationRequest,
  Browser,
  createTenantClient,
  leaksInternals,
  parseForms,
  relaxRateLimits,
  rpConfig,
  type TenantClient,
  textOf,
} from '../helpers/oidc.js';
import { killSpawned, runCli, tempDir } from '../helpers/processes.js';

interface Answer {
  status: number;
  type: string;
  location: string | null;
  body: string;
}

const FORM = 'application/x-www-form-urlencoded';
const REDIRECT_URI = 'https://rp.example.com/cb';
/** oidc-provider's own limit for form bodies; the brief's "oversized" is anything above it. */
const FORM_LIMIT = 56 * 1024;

/**
 * Malformed, oversized, duplicated and unauthenticated input at every OIDC
 * endpoint: each answer is a 4xx in the OAuth error format (JSON) or, where a
 * browser is on the other end, an HTML error page — never a 5xx, never a stack
 * trace, never a redirect to somewhere unregistered.
 */
describe('bad input at the OIDC endpoints', () => {
  let t: TestApp;
  let issuer: string;
  let endpoints: Record<string, string>;
  let machine: TenantClient;
  let web: TenantClient;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    issuer = `${await t.listen()}/t/default`;
    await relaxRateLimits(t);
    machine = await createTenantClient(t, { name: 'machine', grantTypes: ['client_credentials'], scope: 'reports:read' });
    web = await createTenantClient(t, { name: 'web', redirectUris: [REDIRECT_URI] });
    endpoints = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, string>;
  });
  afterAll(async () => {
    await killSpawned();
    await t.close();
  });

  const basic = (id: string, secret: string) =>
    `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  const machineAuth = () => basic(machine.clientId, machine.clientSecret ?? '');

  async function send(url: string, init: RequestInit = {}): Promise<Answer> {
    const response = await fetch(url, { redirect: 'manual', ...init });
    return {
      status: response.status,
      type: response.headers.get('content-type') ?? '',
      location: response.headers.get('location'),
      body: await response.text(),
    };
  }

  function post(endpoint: string, body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string> = {}): Promise<Answer> {
    return send(endpoint, { method: 'POST', headers: { 'content-type': FORM, ...headers }, body });
  }

  /** A JSON OAuth error with this status and code, nothing more revealing. */
  function expectOAuthError(answer: Answer, status: number, error?: string | string[], label = ''): Record<string, unknown> {
    expect(answer.status, `${label}: ${answer.body}`).toBe(status);
    expect(answer.type, label).toMatch(/^application\/json/);
    const body = JSON.parse(answer.body) as Record<string, unknown>;
    expect(Object.keys(body).sort(), label).toEqual(
      expect.arrayContaining(['error', 'error_description'].filter((key) => key !== 'error_description' || 'error_description' in body)),
    );
    expect(body.error, label).toMatch(/^[a-z_]+$/);
    if (typeof error === 'string') expect(body.error, label).toBe(error);
    if (Array.isArray(error)) expect(error, label).toContain(body.error);
    expect(leaksInternals(answer.body), `${label} leaks: ${answer.body}`).toBe(false);
    return body;
  }

  /** The tenant's HTML error page, with no redirect anywhere. */
  function expectErrorPage(answer: Answer, status: number, label = ''): void {
    expect(answer.status, `${label}: ${textOf(answer.body)}`).toBe(status);
    expect(answer.type, label).toMatch(/^text\/html/);
    expect(answer.location, label).toBeNull();
    expect(answer.body, label).toMatch(/Error code:/);
    expect(leaksInternals(answer.body), `${label} leaks: ${textOf(answer.body)}`).toBe(false);
  }

  describe('token endpoint', () => {
    it('refuses malformed bodies with invalid_request', async () => {
      const auth = { authorization: machineAuth() };
      const cases: [string, Answer][] = [
        ['empty body', await post(endpoints.token_endpoint ?? '', '', auth)],
        ['no grant_type', await post(endpoints.token_endpoint ?? '', 'scope=reports%3Aread', auth)],
        [
          'JSON',
          await post(endpoints.token_endpoint ?? '', '{"grant_type":"client_credentials"}', {
            ...auth,
            'content-type': 'application/json',
          }),
        ],
        ['truncated JSON', await post(endpoints.token_endpoint ?? '', '{"grant_type":', { ...auth, 'content-type': 'application/json' })],
        [
          'text/plain',
          await post(endpoints.token_endpoint ?? '', 'grant_type=client_credentials', { ...auth, 'content-type': 'text/plain' }),
        ],
        [
          'multipart',
          await post(endpoints.token_endpoint ?? '', '--x\r\n\r\n--x--', { ...auth, 'content-type': 'multipart/form-data; boundary=x' }),
        ],
        ['no content type', await send(endpoints.token_endpoint ?? '', { method: 'POST', headers: auth, body: new Uint8Array([1, 2, 3]) })],
      ];
      for (const [label, answer] of cases) expectOAuthError(answer, 400, 'invalid_request', label);
    });

    it('refuses garbage encodings and bytes without a server error', async () => {
      const auth = { authorization: machineAuth() };
      const bodies: [string, string | Uint8Array<ArrayBuffer>][] = [
        ['bad percent-encoding', 'grant_type=%zz&scope=%'],
        ['NUL bytes', 'grant_type=client_credentials%00&scope=%00'],
        ['invalid UTF-8', new Uint8Array([0x67, 0x72, 0x61, 0x6e, 0x74, 0x5f, 0x74, 0x79, 0x70, 0x65, 0x3d, 0xc3, 0x28, 0xff, 0xfe])],
        ['only separators', '&&&==&='],
        ['array-style names', 'grant_type[]=client_credentials&grant_type[x]=1'],
        ['prototype pollution', '__proto__[admin]=1&constructor[prototype][admin]=1&grant_type=client_credentials&scope=reports%3Aread'],
      ];
      for (const [label, body] of bodies) {
        const answer = await post(endpoints.token_endpoint ?? '', body, auth);
        if (label === 'prototype pollution') {
          // Harmless extra names are ignored: the request is otherwise valid.
          expect(answer.status, label).toBe(200);
          expect(({} as Record<string, unknown>).admin).toBeUndefined();
          continue;
        }
        expectOAuthError(answer, 400, ['invalid_request', 'unsupported_grant_type'], label);
      }
    });

    it('refuses bodies over the form limit with a 4xx, large or huge', async () => {
      const auth = { authorization: machineAuth() };
      const justOver = `grant_type=client_credentials&scope=${'a'.repeat(FORM_LIMIT + 1024)}`;
      const huge = `grant_type=client_credentials&scope=${'a'.repeat(2 * 1024 * 1024)}`;
      const over = await post(endpoints.token_endpoint ?? '', justOver, auth);
      expect(over.status).toBeGreaterThanOrEqual(400);
      expect(over.status).toBeLessThan(500);
      expectOAuthError(over, over.status, undefined, 'just over the limit');
      const tooLarge = await post(endpoints.token_endpoint ?? '', huge, auth);
      expectOAuthError(tooLarge, 413, 'payload_too_large', 'huge');
      // The limit is on size, not on the client: the same client still gets tokens.
      expect((await post(endpoints.token_endpoint ?? '', 'grant_type=client_credentials&scope=reports%3Aread', auth)).status).toBe(200);
    });

    it('answers an unknown client and a wrong secret identically: 401 invalid_client', async () => {
      const body = 'grant_type=client_credentials&scope=reports%3Aread';
      const unknownBasic = await post(endpoints.token_endpoint ?? '', body, { authorization: basic('no-such-client', 'whatever') });
      const wrongBasic = await post(endpoints.token_endpoint ?? '', body, { authorization: basic(machine.clientId, 'whatever') });
      const unknownPost = await post(endpoints.token_endpoint ?? '', `${body}&client_id=no-such-client&client_secret=whatever`);
      const wrongPost = await post(endpoints.token_endpoint ?? '', `${body}&client_id=${machine.clientId}&client_secret=whatever`);
      const hashAsSecret = await post(endpoints.token_endpoint ?? '', body, {
        // The stored value is the secret's SHA-256: presenting the hash itself must not work.
        authorization: basic(machine.clientId, sha256(machine.clientSecret ?? '')),
      });
      for (const [label, answer] of Object.entries({ unknownBasic, wrongBasic, unknownPost, wrongPost, hashAsSecret })) {
        expectOAuthError(answer, 401, 'invalid_client', label);
      }
      expect(unknownBasic.body).toBe(wrongBasic.body);
      expect(unknownPost.body).toBe(wrongPost.body);
      expect(unknownBasic.body).toBe(unknownPost.body);
      expect(wrongBasic.body).not.toContain(machine.clientId);
    });

    it('refuses unusual client identifiers and broken Basic credentials as client errors', async () => {
      const body = 'grant_type=client_credentials';
      const cases: [string, Answer][] = [
        ['NUL in client_id', await post(endpoints.token_endpoint ?? '', `${body}&client_id=%00&client_secret=x`)],
        ['NUL in Basic id', await post(endpoints.token_endpoint ?? '', body, { authorization: basic('a\u0000b', 'x') })],
        ['10k client_id', await post(endpoints.token_endpoint ?? '', `${body}&client_id=${'c'.repeat(10_000)}&client_secret=x`)],
        ['not base64', await post(endpoints.token_endpoint ?? '', body, { authorization: 'Basic !!!' })],
        ['no colon', await post(endpoints.token_endpoint ?? '', body, { authorization: `Basic ${Buffer.from('abc').toString('base64')}` })],
        [
          'two mechanisms',
          await post(endpoints.token_endpoint ?? '', `${body}&client_id=${machine.clientId}&client_secret=x`, {
            authorization: machineAuth(),
          }),
        ],
        ['no authentication', await post(endpoints.token_endpoint ?? '', body)],
      ];
      for (const [label, answer] of cases) {
        expect([400, 401], `${label}: ${answer.body}`).toContain(answer.status);
        expectOAuthError(answer, answer.status, ['invalid_request', 'invalid_client'], label);
      }
    });

    it('refuses duplicated parameters', async () => {
      const auth = { authorization: machineAuth() };
      for (const body of [
        'grant_type=client_credentials&grant_type=client_credentials',
        'grant_type=client_credentials&scope=reports%3Aread&scope=reports%3Aread',
        `grant_type=client_credentials&client_id=${machine.clientId}&client_id=${machine.clientId}`,
      ]) {
        const error = expectOAuthError(await post(endpoints.token_endpoint ?? '', body, auth), 400, 'invalid_request', body);
        expect(String(error.error_description)).toMatch(/twice|once|duplicate/i);
      }
    });

    it('does not offer the password or implicit grants, nor grants a client was not registered for', async () => {
      const auth = { authorization: machineAuth() };
      for (const grant of [
        'password',
        'implicit',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
        'urn:ietf:params:oauth:grant-type:device_code',
      ]) {
        const body = `grant_type=${encodeURIComponent(grant)}&username=admin%40example.com&password=x&scope=openid`;
        expectOAuthError(await post(endpoints.token_endpoint ?? '', body, auth), 400, 'unsupported_grant_type', grant);
      }
      // A supported grant this client may not use. RFC 6749 §5.2 names it unauthorized_client; oidc-provider says invalid_request.
      const notRegistered = await post(endpoints.token_endpoint ?? '', `grant_type=refresh_token&refresh_token=x`, auth);
      expectOAuthError(notRegistered, 400, ['unauthorized_client', 'invalid_request'], 'refresh_token for a machine client');
      expect(notRegistered.body).not.toMatch(/access_token/);
    });

    it('refuses invented and replayed codes and refresh tokens with invalid_grant', async () => {
      const auth = { authorization: basic(web.clientId, web.clientSecret ?? '') };
      for (const body of [
        `grant_type=authorization_code&code=${'x'.repeat(43)}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&code_verifier=${'v'.repeat(43)}`,
        `grant_type=authorization_code&code=${'x'.repeat(5000)}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&code_verifier=${'v'.repeat(43)}`,
        `grant_type=refresh_token&refresh_token=${'r'.repeat(43)}`,
        'grant_type=refresh_token&refresh_token=a.b.c',
      ]) {
        expectOAuthError(await post(endpoints.token_endpoint ?? '', body, auth), 400, 'invalid_grant', body.slice(0, 40));
      }
    });

    it('answers a GET or an unknown path under the issuer in JSON', async () => {
      expectOAuthError(await send(endpoints.token_endpoint ?? ''), 404, 'not_found', 'GET /token');
      expectOAuthError(await send(`${issuer}/no/such/endpoint`), 404, 'not_found', 'unknown path');
    });
  });

  describe('authorization endpoint', () => {
    const authUrl = (params: string) => `${endpoints.authorization_endpoint}?${params}`;
    const challenge = `code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`;

    it('shows an error page, and redirects nowhere, for an unknown or malformed client', async () => {
      const evil = encodeURIComponent('https://evil.example/cb');
      const cases: [string, string][] = [
        ['unknown client', `client_id=no-such-client&response_type=code&scope=openid&redirect_uri=${evil}`],
        ['no client', `response_type=code&scope=openid&redirect_uri=${evil}`],
        ['NUL client id', `client_id=%00&response_type=code&scope=openid&redirect_uri=${evil}`],
        ['invalid UTF-8', `client_id=%C3%28&response_type=code&redirect_uri=${evil}`],
        ['bad percent-encoding', `client_id=%zz&response_type=code&redirect_uri=${evil}`],
        ['duplicate client_id', `client_id=${web.clientId}&client_id=${web.clientId}&response_type=code&redirect_uri=${evil}`],
        ['12k client id', `client_id=${'c'.repeat(12_000)}&response_type=code&redirect_uri=${evil}`],
      ];
      for (const [label, params] of cases) expectErrorPage(await send(authUrl(params)), 400, label);
    });

    it('shows an error page, and does not redirect, for an unregistered or altered redirect_uri', async () => {
      const base = `client_id=${web.clientId}&response_type=code&scope=openid&state=s&${challenge}`;
      for (const uri of [
        'https://evil.example/cb',
        'https://rp.example.com/cb/',
        'https://rp.example.com/cb?x=1',
        'https://rp.example.com/cb#frag',
        'https://rp.example.com/CB',
        'https://rp.example.com:443/cb/../cb',
        'http://rp.example.com/cb',
        'https://rp.example.com.evil.example/cb',
        'https://user@rp.example.com/cb',
        `https://rp.example.com/cb${'x'.repeat(4000)}`,
      ]) {
        const answer = await send(authUrl(`${base}&redirect_uri=${encodeURIComponent(uri)}`));
        expectErrorPage(answer, 400, uri.slice(0, 60));
      }
      // Without any redirect_uri (one registered is not enough: exact matching means it must be sent).
      expectErrorPage(await send(authUrl(base)), 400, 'no redirect_uri');
    });

    it('refuses what it does not offer, reporting to the registered redirect_uri only', async () => {
      const redirect = `redirect_uri=${encodeURIComponent(REDIRECT_URI)}`;
      const cases: [string, string, string][] = [
        ['implicit', `client_id=${web.clientId}&response_type=token&scope=openid&${redirect}`, 'unsupported_response_type'],
        ['hybrid', `client_id=${web.clientId}&response_type=code%20id_token&scope=openid&nonce=n&${redirect}`, 'unsupported_response_type'],
        [
          'PKCE plain',
          `client_id=${web.clientId}&response_type=code&scope=openid&${redirect}&code_challenge=${'a'.repeat(43)}&code_challenge_method=plain`,
          'invalid_request',
        ],
        [
          'request object',
          `client_id=${web.clientId}&response_type=code&scope=openid&${redirect}&${challenge}&request=a.b.c`,
          'request_not_supported',
        ],
      ];
      for (const [label, params, error] of cases) {
        const answer = await send(authUrl(params));
        expect(answer.status, label).toBe(303);
        const location = new URL(answer.location ?? '');
        expect(`${location.origin}${location.pathname}`, label).toBe(REDIRECT_URI);
        const response = new URLSearchParams(location.hash ? location.hash.slice(1) : location.search);
        expect(response.get('error'), label).toBe(error);
        expect(response.get('iss'), label).toBe(issuer);
        expect(response.has('code'), label).toBe(false);
        expect(response.has('access_token'), label).toBe(false);
        expect(response.has('id_token'), label).toBe(false);
      }
    });

    it('refuses oversized requests with a 4xx and no redirect', async () => {
      // Past Node's header limit the connection is refused before the app sees it (431, empty body).
      const huge = await send(authUrl(`client_id=${web.clientId}&response_type=code&scope=${'s'.repeat(100_000)}`));
      expect(huge.status).toBeGreaterThanOrEqual(400);
      expect(huge.status).toBeLessThan(500);
      expect(huge.location).toBeNull();
      expect(leaksInternals(huge.body)).toBe(false);
      // A POSTed authorization request with an oversized body.
      const posted = await post(endpoints.authorization_endpoint ?? '', `client_id=${web.clientId}&scope=${'s'.repeat(FORM_LIMIT + 1024)}`);
      expect(posted.status).toBeGreaterThanOrEqual(400);
      expect(posted.status).toBeLessThan(500);
      expect(posted.location).toBeNull();
      expect(leaksInternals(posted.body)).toBe(false);
    });
  });

  describe('introspection, revocation, userinfo and end_session', () => {
    it('refuses unknown clients, bad bodies and oversized bodies in the OAuth format', async () => {
      for (const name of ['introspection_endpoint', 'revocation_endpoint']) {
        const endpoint = endpoints[name] ?? '';
        expectOAuthError(await post(endpoint, 'token=abc', { authorization: basic('no-such-client', 'x') }), 401, 'invalid_client', name);
        expectOAuthError(
          await post(endpoint, 'token=abc', { authorization: basic(machine.clientId, 'wrong') }),
          401,
          'invalid_client',
          name,
        );
        expectOAuthError(
          await post(endpoint, 'token=abc', { authorization: machineAuth(), 'content-type': 'application/json' }),
          400,
          'invalid_request',
          name,
        );
        expectOAuthError(await post(endpoint, 'token=a&token=b', { authorization: machineAuth() }), 400, 'invalid_request', name);
        expectOAuthError(await post(endpoint, '', { authorization: machineAuth() }), 400, 'invalid_request', name);
        const big = await post(endpoint, `token=${'a'.repeat(FORM_LIMIT + 1024)}`, { authorization: machineAuth() });
        expect(big.status, name).toBeGreaterThanOrEqual(400);
        expect(big.status, name).toBeLessThan(500);
        expectOAuthError(big, big.status, undefined, name);
        expectOAuthError(
          await post(endpoint, `token=${'a'.repeat(2 * 1024 * 1024)}`, { authorization: machineAuth() }),
          413,
          'payload_too_large',
          name,
        );
      }
    });

    it('answers garbage tokens as inactive (introspection) and as done (revocation, RFC 7009 §2.2)', async () => {
      const config = await rpConfig(issuer, machine);
      for (const token of ['abc', 'a.b.c', 'x'.repeat(20_000), 'e30.e30.', '\u00ff\u0000', 'jwt-handle.forged']) {
        expect(await oidc.tokenIntrospection(config, token), token.slice(0, 20)).toEqual({ active: false });
        const revoked = await post(endpoints.revocation_endpoint ?? '', new URLSearchParams({ token }).toString(), {
          authorization: machineAuth(),
        });
        expect(revoked.status, token.slice(0, 20)).toBe(200);
      }
    });

    it('answers userinfo without a usable bearer token with 400/401 in JSON', async () => {
      const endpoint = endpoints.userinfo_endpoint ?? '';
      const cases: [string, Record<string, string>][] = [
        ['no token', {}],
        ['empty bearer', { authorization: 'Bearer ' }],
        ['garbage', { authorization: 'Bearer abc' }],
        ['three dots', { authorization: 'Bearer a.b.c' }],
        ['basic scheme', { authorization: machineAuth() }],
        ['12k token', { authorization: `Bearer ${'x'.repeat(12_000)}` }],
      ];
      for (const [label, headers] of cases) {
        const answer = await send(endpoint, { headers });
        expect([400, 401], `${label}: ${answer.body}`).toContain(answer.status);
        expectOAuthError(answer, answer.status, ['invalid_request', 'invalid_token'], label);
      }
      const machineToken = (await oidc.clientCredentialsGrant(await rpConfig(issuer, machine), { scope: 'reports:read' })).access_token;
      // A client's own token has no user behind it.
      const answer = await send(endpoint, { headers: { authorization: `Bearer ${machineToken}` } });
      expect([400, 401, 403], answer.body).toContain(answer.status);
      expectOAuthError(answer, answer.status, undefined, 'client_credentials token');
    });

    it('shows an error page for a forged id_token_hint or an unregistered post_logout_redirect_uri', async () => {
      const evil = encodeURIComponent('https://evil.example/bye');
      for (const params of [
        `id_token_hint=abc.def.ghi&post_logout_redirect_uri=${evil}`,
        `id_token_hint=${'x'.repeat(10_000)}`,
        `client_id=${web.clientId}&post_logout_redirect_uri=${evil}`,
        `client_id=no-such-client&post_logout_redirect_uri=${evil}`,
      ]) {
        const answer = await send(`${endpoints.end_session_endpoint}?${params}`, { headers: { accept: 'text/html' } });
        expectErrorPage(answer, 400, params.slice(0, 50));
      }
    });
  });

  describe('hosted sign-in form', () => {
    it('treats an email with a NUL byte as a wrong password, not a server error (regression: it was a 500)', async () => {
      const config = await rpConfig(issuer, web);
      for (const email of ['admin@example.com\u0000', 'a\u0000b@example.com', '\u0000']) {
        const { url } = await authorizationRequest(config, { scope: 'openid' });
        const page = await new Browser(new URL(issuer).origin).follow(url, { credentials: { email, password: 'pass\u0000word' } });
        expect(page.kind, JSON.stringify(email)).toBe('page');
        if (page.kind !== 'page') continue;
        expect(page.status, `${JSON.stringify(email)}: ${textOf(page.html)}`).toBeGreaterThanOrEqual(400);
        expect(page.status, JSON.stringify(email)).toBeLessThan(500);
        expect(
          parseForms(page.html).some((form) => /\/login$/.test(form.action)),
          JSON.stringify(email),
        ).toBe(true);
        expect(leaksInternals(page.html)).toBe(false);
      }
    });
  });

  it('issued nothing for all of the above', async () => {
    const issued = await t.deps.db.prisma.oidcPayload.count({ where: { model: { in: ['RefreshToken', 'Grant', 'Session'] } } });
    expect(issued).toBe(0);
  });

  describe('idp client create', () => {
    it('prints client_id and client_secret once, and stores only the secret’s hash', async () => {
      const args = [
        'client',
        'create',
        '--tenant',
        'default',
        '--name',
        'cli-app',
        '--grant',
        'client_credentials',
        '--scope',
        'reports:read',
      ];
      let result: Awaited<ReturnType<typeof runCli>>;
      let inspect: (work: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<void>) => Promise<void>;
      const databaseUrl = t.stores.databaseUrl;
      if (databaseUrl) {
        // PostgreSQL: the CLI writes to this suite's own database, which the running app serves.
        result = await runCli(args, { DATABASE_URL: databaseUrl });
        inspect = (work) => work(t.stores.db);
      } else {
        // PGlite is single-process: the CLI gets a data directory of its own.
        const dir = await tempDir('client-create');
        const setup = await openDatabase({ dataDir: dir.path });
        await migrate(setup);
        const audit = createAuditLog({ prisma: setup.prisma, clock: t.deps.clock });
        await createTenant({ prisma: setup.prisma, audit }, { slug: 'default' }, { type: 'system' });
        await setup.close();
        result = await runCli(args, { DATA_DIR: dir.path });
        inspect = async (work) => {
          const db = await openDatabase({ dataDir: dir.path });
          try {
            await work(db);
          } finally {
            await db.close();
            await dir.remove();
          }
        };
      }
      expect(result.code, result.stderr).toBe(0);
      const clientId = /^client_id: (\S+)$/m.exec(result.stdout)?.[1] ?? '';
      const secret = /^client_secret: (\S+)$/m.exec(result.stdout)?.[1] ?? '';
      expect(clientId).not.toBe('');
      expect(secret.length).toBeGreaterThanOrEqual(32);
      expect(result.stdout.split(secret)).toHaveLength(2);
      expect(result.stderr).not.toContain(secret);

      await inspect(async (db) => {
        const row = await db.prisma.client.findUniqueOrThrow({ where: { clientId } });
        expect(row.secretHash).toBe(sha256(secret));
        const tables = await db.prisma.$queryRawUnsafe<{ row: string }[]>(
          `SELECT row_to_json(c)::text AS row FROM "Client" c UNION ALL SELECT row_to_json(a)::text FROM "AuditEvent" a`,
        );
        expect(tables.length).toBeGreaterThan(1);
        for (const { row } of tables) expect(row).not.toContain(secret);
      });

      if (databaseUrl) {
        // The printed secret is the real one: the running app accepts it (once told about the new client).
        const tenantId = (await t.deps.db.prisma.client.findUniqueOrThrow({ where: { clientId } })).tenantId;
        await announce(t, { tenantId, slug: 'default', what: 'clients' });
        const config = await rpConfig(issuer, {
          clientId,
          clientSecret: secret,
          metadata: { token_endpoint_auth_method: 'client_secret_basic' },
        });
        expect((await oidc.clientCredentialsGrant(config, { scope: 'reports:read' })).access_token).toMatch(/^ey/);
      }
      // A real process (tsx start-up, and on PGlite a data directory of its own) on two busy cores.
    }, 120_000);
  });
});
