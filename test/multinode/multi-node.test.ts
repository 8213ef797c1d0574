import { randomBytes } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditLog, createAuditLog } from '../../src/audit/audit.js';
import { systemClock } from '../../src/clock.js';
import { createPasswordHasher } from '../../src/crypto/passwords.js';
import { SIGN_IN_FAILED } from '../../src/interaction/routes.js';
import { type ClientInput, type CreatedClient, createClient } from '../../src/oidc/clients.js';
import type { Prisma } from '../../src/store/db.js';
import { type Database, type KvStore, openDatabase, openKv } from '../../src/store/index.js';
import { createTenant, publishTenantChange } from '../../src/tenants/tenants.js';
import { createUser } from '../../src/users/users.js';
import { cliJson, type Route, RoutedBrowser, roundRobin, rpVia } from '../helpers/cluster.js';
import { testDatabaseUrl } from '../helpers/env.js';
import { type HtmlForm, parseForms, signIn, textOf } from '../helpers/oidc.js';
import { killSpawned, removeTempDirs, runCli, type ServerProcess, startServerProcess } from '../helpers/processes.js';
import {
  createDatabase,
  type PrivateRedis,
  privateServicesUnavailable,
  startPrivateRedis,
  stopPrivateServices,
} from '../helpers/services.js';

/**
 * Two real `idp` processes (NODE_ENV=production) on one PostgreSQL database
 * and one Redis, behind one public URL: node A's address is the issuer of
 * both, and each request is sent to the node the test picks (see
 * helpers/cluster.ts), as a load balancer would. Everything that must hold
 * across nodes is checked by doing half of it on each: tokens, refresh-token
 * rotation and reuse detection, lockout and rate-limit counters, and a key
 * rotation published through Redis.
 *
 * The database is a fresh one on the shared PostgreSQL; Redis is a private
 * redis-server, because the nodes' key prefix is fixed (`idp:`) and must not
 * meet another suite's. Runs with the PostgreSQL + Redis suite (DATABASE_URL
 * set); the embedded run has no PostgreSQL to put two nodes on.
 */

const unavailable = privateServicesUnavailable();
// In CI a machine without redis-server fails the suite; elsewhere it is skipped with a word on stderr.
const runs = Boolean(testDatabaseUrl) && (!unavailable || Boolean(process.env.CI));
if (testDatabaseUrl && !runs) process.stderr.write(`multi-node.test.ts skipped: ${unavailable}\n`);
const ADMIN = { email: 'admin@example.com', password: 'multi-node-admin-password' };
const REDIRECT_URI = 'https://rp.example.com/cb';
const SCOPES = 'openid email profile offline_access';
const hex = () => randomBytes(5).toString('hex');

// Full sign-ins (Argon2) and CLI runs against two processes: generous on a loaded machine, never a measure of speed.
describe.runIf(runs)('two nodes on one PostgreSQL and Redis', { timeout: 180_000 }, () => {
  let redis: PrivateRedis;
  let database: { url: string; drop(): Promise<void> } | undefined;
  let env: Record<string, string>;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  /** The test's own connections, to seed data as the CLI or the management API would. */
  let db: Database | undefined;
  let kv: KvStore | undefined;
  let audit: AuditLog;
  let defaultTenantId: string;
  let web: CreatedClient;
  let api: CreatedClient;
  const toA: Route = () => a.url;
  const toB: Route = () => b.url;

  /** Creates a client and announces it, as `idp client create` does. */
  async function seedClient(tenantId: string, slug: string, input: ClientInput): Promise<CreatedClient> {
    if (!db || !kv) throw new Error('not set up');
    const created = await createClient({ prisma: db.prisma, audit }, tenantId, input, { type: 'system' });
    await publishTenantChange(kv, { tenantId, slug, what: 'clients' });
    return created;
  }

  /** Replaces the tenant's rate limits and announces it, as a settings change through the management API does. */
  async function setRateLimits(tenantId: string, slug: string, rateLimits: Prisma.InputJsonObject): Promise<void> {
    if (!db || !kv) throw new Error('not set up');
    const tenant = await db.prisma.tenant.findUniqueOrThrow({ where: { id: tenantId } });
    const settings = (tenant.settings ?? {}) as Prisma.InputJsonObject;
    await db.prisma.tenant.update({ where: { id: tenantId }, data: { settings: { ...settings, rateLimits } } });
    await publishTenantChange(kv, { tenantId, slug, what: 'tenant' });
  }

  beforeAll(async () => {
    if (unavailable) throw new Error(`the multi-node suite needs a private Redis: ${unavailable}`);
    redis = await startPrivateRedis();
    database = await createDatabase(testDatabaseUrl ?? '', `idp_mn_${hex()}`);
    env = {
      NODE_ENV: 'production',
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    };
    const migrated = await runCli(['migrate'], env);
    if (migrated.code !== 0) throw new Error(`idp migrate failed\n${migrated.stdout}\n${migrated.stderr}`);
    // A first, alone: it creates tenant `default` and its admin on first start.
    a = await startServerProcess(env);
    b = await startServerProcess({ ...env, PUBLIC_URL: a.url });
    issuer = `${a.url}/t/default`;

    db = await openDatabase({ url: database.url, poolSize: 2 });
    kv = await openKv({ url: redis.url });
    audit = createAuditLog({ prisma: db.prisma, clock: systemClock });
    defaultTenantId = (await db.prisma.tenant.findUniqueOrThrow({ where: { slug: 'default' } })).id;
    // Every request of this suite comes from 127.0.0.1: the per-IP limits are raised so that only the
    // rate-limit test, on a tenant of its own, meets them. The lockout keeps its defaults.
    await setRateLimits(defaultTenantId, 'default', { signInPerMinute: 10_000, tokenPerMinute: 100_000, stuffingDistinctAccounts: 10_000 });
    web = await seedClient(defaultTenantId, 'default', { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true });
    api = await seedClient(defaultTenantId, 'default', {
      name: 'API',
      grantTypes: ['client_credentials'],
      scope: 'reports:read',
      resourceServer: true,
    });
  }, 300_000);

  afterAll(async () => {
    // Every step runs even when one fails, so the database is always dropped and no process is left behind.
    const steps = [
      () => killSpawned(),
      async () => kv?.close(),
      async () => db?.close(),
      async () => database?.drop(),
      () => stopPrivateServices(),
      () => removeTempDirs(),
    ];
    const failed: unknown[] = [];
    for (const step of steps) await step().catch((error: unknown) => failed.push(error));
    if (failed.length) throw failed[0];
  }, 120_000);

  const webVia = (route: Route) => rpVia(issuer, web, route, { redirect_uris: [REDIRECT_URI] });
  const apiVia = (route: Route) => rpVia(issuer, api, route);

  /** A full code + PKCE sign-in whose browser requests and token request go where `route` says. */
  async function signInVia(route: Route, options: { email?: string; password?: string } = ADMIN) {
    const config = await webVia(route);
    return signIn(issuer, config, {
      ...options,
      browser: new RoutedBrowser(new URL(issuer).origin, route),
      scope: SCOPES,
      // oidc-provider issues a refresh token for offline_access only with prompt=consent (OpenID Connect Core §11).
      extraParams: { prompt: 'consent' },
    });
  }

  it('completes a sign-in whose every request alternates between the nodes', async () => {
    const { tokens } = await signInVia(roundRobin(a.url, b.url));
    expect(tokens.claims()?.email).toBe(ADMIN.email);
    expect(tokens.refresh_token).toBeTruthy();
  });

  it('answers introspection at B for tokens A issued, and sees at A a revocation done at B', async () => {
    const { tokens } = await signInVia(toA);
    const service = await oidc.clientCredentialsGrant(await apiVia(toA), { scope: 'reports:read' });
    const apiAtB = await apiVia(toB);
    for (const token of [tokens.access_token, service.access_token]) {
      expect(await oidc.tokenIntrospection(apiAtB, token)).toMatchObject({ active: true, iss: issuer });
    }
    expect((await oidc.tokenIntrospection(apiAtB, tokens.access_token)).sub).toBe(tokens.claims()?.sub);

    await oidc.tokenRevocation(await webVia(toB), tokens.access_token);
    expect(await oidc.tokenIntrospection(await apiVia(toA), tokens.access_token)).toEqual({ active: false });
  });

  it('rotates at B a refresh token issued at A; replaying it at A revokes the family, B’s newest token included', async () => {
    const { tokens } = await signInVia(toA);
    const r0 = tokens.refresh_token ?? '';
    const [webA, webB, apiA] = await Promise.all([webVia(toA), webVia(toB), apiVia(toA)]);
    const rotated = await oidc.refreshTokenGrant(webB, r0);
    expect(rotated.refresh_token).toBeTruthy();
    expect(rotated.refresh_token).not.toBe(r0);
    expect((await oidc.tokenIntrospection(apiA, rotated.access_token)).active).toBe(true);

    await expect(oidc.refreshTokenGrant(webA, r0)).rejects.toMatchObject({ error: 'invalid_grant' });
    await expect(oidc.refreshTokenGrant(webB, rotated.refresh_token ?? '')).rejects.toMatchObject({ error: 'invalid_grant' });
    for (const accessToken of [tokens.access_token, rotated.access_token]) {
      expect(await oidc.tokenIntrospection(apiA, accessToken)).toEqual({ active: false });
    }
  });

  it('lets exactly one of concurrent refreshes of one token succeed when they are split over both nodes', async () => {
    const { tokens } = await signInVia(toA);
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' }).toString();
    const basic = `Basic ${Buffer.from(`${web.clientId}:${web.clientSecret}`).toString('base64')}`;
    const answers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const response = await fetch(`${i % 2 ? b.url : a.url}/t/default/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
          body,
        });
        return { status: response.status, json: (await response.json()) as Record<string, unknown> };
      }),
    );
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
    for (const answer of answers.filter((x) => x.status !== 200))
      expect(answer).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
  });

  describe('lockout', () => {
    /** The sign-in form of a new authorization request, loaded through `browser`. */
    async function loginForm(browser: RoutedBrowser): Promise<{ url: URL; form: HtmlForm }> {
      const config = await webVia(browser.route);
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: 'openid',
        code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
        code_challenge_method: 'S256',
        prompt: 'login',
      });
      const outcome = await browser.follow(url);
      if (outcome.kind !== 'page') throw new Error(`expected the sign-in page, got a redirect to ${outcome.url.href}`);
      const form = parseForms(outcome.html).find((f) => f.action.endsWith('/login'));
      if (!form) throw new Error(`no sign-in form: ${outcome.status} ${textOf(outcome.html)}`);
      return { url: outcome.url, form };
    }

    /** Posts the sign-in form to the node `route` picks: 303 when the password was accepted, 422 when not. */
    async function attempt(browser: RoutedBrowser, page: { url: URL; form: HtmlForm }, password: string, route: Route, email: string) {
      browser.route = route;
      const response = await browser.request(new URL(page.form.action, page.url), { form: { ...page.form.fields, email, password } });
      return { status: response.status, html: await response.text() };
    }

    it('locks an account after five failed sign-ins split over A and B, on both nodes', async () => {
      if (!db) throw new Error('not set up');
      const email = `locked-${hex()}@example.com`;
      const password = 'the right password for this test';
      await createUser(
        { prisma: db.prisma, audit, passwords: createPasswordHasher() },
        defaultTenantId,
        { email, password },
        { type: 'system' },
      );

      const attacker = new RoutedBrowser(new URL(issuer).origin, toA);
      const page = await loginForm(attacker);
      // Five failures, the default lockout threshold: three at A, two at B.
      for (const route of [toA, toB, toA, toB, toA]) {
        const failed = await attempt(attacker, page, 'wrong password', route, email);
        expect(failed.status).toBe(422);
        expect(textOf(failed.html)).toContain(SIGN_IN_FAILED);
      }
      // Now even the right password fails, wherever it is sent, and from a browser that never failed.
      for (const route of [toB, toA]) {
        const owner = new RoutedBrowser(new URL(issuer).origin, route);
        const refused = await attempt(owner, await loginForm(owner), password, route, email);
        expect(refused.status).toBe(422);
        expect(textOf(refused.html)).toContain(SIGN_IN_FAILED);
      }
    });

    it('does not lock an account after four failures split over the nodes (the count is one, not one per node)', async () => {
      if (!db) throw new Error('not set up');
      const email = `unlocked-${hex()}@example.com`;
      const password = 'the right password for this test';
      await createUser(
        { prisma: db.prisma, audit, passwords: createPasswordHasher() },
        defaultTenantId,
        { email, password },
        { type: 'system' },
      );
      const browser = new RoutedBrowser(new URL(issuer).origin, toA);
      const page = await loginForm(browser);
      for (const route of [toA, toB, toA, toB]) expect((await attempt(browser, page, 'wrong password', route, email)).status).toBe(422);
      expect((await attempt(browser, page, password, toB, email)).status).toBe(303);
    });
  });

  it('counts the per-IP token limit once across both nodes', async () => {
    if (!db) throw new Error('not set up');
    const slug = `limits-${hex()}`;
    const tenant = await createTenant({ prisma: db.prisma, audit }, { slug }, { type: 'system' });
    await setRateLimits(tenant.id, slug, { tokenPerMinute: 6 });
    const client = await seedClient(tenant.id, slug, {
      name: 'Limited',
      grantTypes: ['client_credentials'],
      scope: 'reports:read',
      resourceServer: true,
    });
    const basic = `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`;
    const token = async (node: string) => {
      const response = await fetch(`${node}/t/${slug}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
        body: 'grant_type=client_credentials&scope=reports%3Aread',
      });
      return { status: response.status, retryAfter: response.headers.get('retry-after'), json: (await response.json()) as unknown };
    };
    // Six allowed in the minute: three at each node. One node alone would allow six more.
    for (const node of [a.url, b.url, a.url, b.url, a.url, b.url]) expect((await token(node)).status).toBe(200);
    for (const node of [a.url, b.url]) {
      const refused = await token(node);
      expect(refused.status).toBe(429);
      expect(Number(refused.retryAfter)).toBeGreaterThan(0);
      expect(refused.json).toMatchObject({ error: 'too_many_requests' });
    }
  });

  it('serves at B, within seconds, the keys of a rotation made by `idp keys rotate` (announced through Redis)', async () => {
    const jwksAt = async (node: string): Promise<string[]> => {
      const response = await fetch(`${node}/t/default/jwks`);
      expect(response.status).toBe(200);
      const { keys } = (await response.json()) as { keys: { kid: string }[] };
      return keys.map((key) => key.kid).sort();
    };
    // Both nodes have the tenant's provider, and so its keys, cached before the rotation: what is tested is the invalidation.
    await jwksAt(a.url);
    const before = await jwksAt(b.url);
    const signedBefore = await oidc.clientCredentialsGrant(await apiVia(toB), { scope: 'reports:read' });

    const { rotated } = await cliJson<{ rotated: { alg: string; activated: string; previous: string | null; next: string }[] }>(
      ['keys', 'rotate', '--tenant', 'default'],
      env,
    );
    const rs256 = rotated.find((entry) => entry.alg === 'RS256');
    if (!rs256) throw new Error(`no RS256 key rotated: ${JSON.stringify(rotated)}`);
    expect(before).not.toContain(rs256.next);

    // Each node is polled for up to 3 s: pub/sub delivery takes milliseconds; the margin is for a loaded machine.
    const published = async (node: string): Promise<string[]> => {
      const deadline = Date.now() + 3_000;
      let kids = await jwksAt(node);
      while (!kids.includes(rs256.next) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        kids = await jwksAt(node);
      }
      return kids;
    };
    const after = await published(b.url);
    expect(after).toContain(rs256.next);
    expect(after).toContain(rs256.activated);
    // Tokens signed before the rotation still verify: the old active key stays published as `previous`.
    expect(after).toContain(decodeProtectedHeader(signedBefore.access_token).kid);
    expect(await published(a.url)).toEqual(after);

    const signedAfter = await oidc.clientCredentialsGrant(await apiVia(toB), { scope: 'reports:read' });
    expect(decodeProtectedHeader(signedAfter.access_token).kid).toBe(rs256.activated);
    expect((await oidc.tokenIntrospection(await apiVia(toA), signedAfter.access_token)).active).toBe(true);
  });
});
