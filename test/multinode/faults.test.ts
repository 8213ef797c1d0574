import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/audit/audit.js';
import { systemClock } from '../../src/clock.js';
import { type CreatedClient, createClient } from '../../src/oidc/clients.js';
import { openDatabase, openKv } from '../../src/store/index.js';
import { publishTenantChange } from '../../src/tenants/tenants.js';
import { cliJson, RoutedBrowser, rpVia } from '../helpers/cluster.js';
import { testDatabaseUrl } from '../helpers/env.js';
import { authorizationRequest, Browser, type HtmlForm, leaksInternals, parseForms, signIn, textOf } from '../helpers/oidc.js';
import { killSpawned, removeTempDirs, runCli, type ServerProcess, startServerProcess } from '../helpers/processes.js';
import {
  createDatabase,
  type PrivatePostgres,
  type PrivateRedis,
  privateServicesUnavailable,
  startPrivatePostgres,
  startPrivateRedis,
  stopPrivateServices,
} from '../helpers/services.js';

/**
 * A production `idp` process on a PostgreSQL and a Redis of its own, which
 * the tests take away and bring back: Redis killed under load and restarted
 * empty, PostgreSQL shut down and started again, and SIGTERM with sign-ins in
 * flight. The shared services of the other suites are never touched.
 *
 * Runs with the PostgreSQL + Redis suite (DATABASE_URL set), which is where
 * these backends are in play; in CI a machine without the server binaries
 * fails the suite instead of skipping it.
 */

const unavailable = privateServicesUnavailable();
// In CI a machine without the server binaries fails the suite; elsewhere it is skipped with a word on stderr.
const runs = Boolean(testDatabaseUrl) && (!unavailable || Boolean(process.env.CI));
if (testDatabaseUrl && !runs) process.stderr.write(`faults.test.ts skipped: ${unavailable}\n`);

const ADMIN = { email: 'admin@example.com', password: 'faults-admin-password' };
const REDIRECT_URI = 'https://rp.example.com/cb';
const SCOPES = 'openid email profile offline_access';
/** Long enough that a slow shutdown under load is never cut short; the test checks the process exits before it. */
const SHUTDOWN_GRACE_MS = 30_000;

type Answer =
  | { kind: string; status: number; type: string; retryAfter: string | null; body: string; at: number }
  | { kind: string; error: string; at: number };

const isResponse = (answer: Answer): answer is Extract<Answer, { status: number }> => 'status' in answer;

/** Sleeping between polls of something the test waits for, never to let time pass in the code under test. */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await pause(100);
  }
}

/** A JSON error as DESIGN.md §3 specifies it: exactly error and error_description, nothing internal. */
function expectJsonError(answer: Answer, status: number, error: string) {
  if (!isResponse(answer)) throw new Error(`${answer.kind} got no response: ${answer.error}`);
  expect(answer.status, `${answer.kind}: ${answer.body.slice(0, 300)}`).toBe(status);
  expect(answer.type).toMatch(/^application\/json/);
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
  expect(leaksInternals(answer.body)).toBe(false);
}

/** The hosted pages' HTML error page for a dependency that is down. */
function expectUnavailablePage(answer: Answer) {
  if (!isResponse(answer)) throw new Error(`${answer.kind} got no response: ${answer.error}`);
  expect(answer.status, `${answer.kind}: ${textOf(answer.body)}`).toBe(503);
  expect(answer.type).toMatch(/^text\/html/);
  expect(answer.retryAfter).toBeTruthy();
  expect(textOf(answer.body)).toContain('Temporarily unavailable');
  expect(leaksInternals(answer.body)).toBe(false);
}

// Each test takes a dependency away and waits for it to come back: minutes on a loaded machine, never a measure of speed.
describe.runIf(runs)('faults: Redis and PostgreSQL going away, and SIGTERM', { timeout: 300_000 }, () => {
  let pg: PrivatePostgres;
  let redis: PrivateRedis;
  let env: Record<string, string>;
  let node: ServerProcess;
  let issuer: string;
  let publicOrigin: string;
  let tenantId: string;
  let web: CreatedClient;
  let api: CreatedClient;
  let webConfig: oidc.Configuration;
  let apiConfig: oidc.Configuration;

  beforeAll(async () => {
    if (unavailable) throw new Error(`the fault suite needs private PostgreSQL and Redis servers: ${unavailable}`);
    [pg, redis] = await Promise.all([startPrivatePostgres(), startPrivateRedis()]);
    const database = await createDatabase(pg.url, 'idp');
    env = {
      NODE_ENV: 'production',
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
    };
    const migrated = await runCli(['migrate'], env);
    if (migrated.code !== 0) throw new Error(`idp migrate failed\n${migrated.stdout}\n${migrated.stderr}`);
    node = await startServerProcess(env);
    issuer = `${node.url}/t/default`;
    publicOrigin = node.url;

    // Seeded through connections of the test's own, closed again before anything is taken away.
    const db = await openDatabase({ url: database.url, poolSize: 1 });
    const kv = await openKv({ url: redis.url });
    try {
      const audit = createAuditLog({ prisma: db.prisma, clock: systemClock });
      const tenant = await db.prisma.tenant.findUniqueOrThrow({ where: { slug: 'default' } });
      tenantId = tenant.id;
      // Every request comes from 127.0.0.1: the per-IP limits would otherwise be what the tests meet.
      await db.prisma.tenant.update({
        where: { id: tenantId },
        data: { settings: { rateLimits: { signInPerMinute: 10_000, tokenPerMinute: 100_000, stuffingDistinctAccounts: 10_000 } } },
      });
      web = await createClient(
        { prisma: db.prisma, audit },
        tenantId,
        { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true },
        {
          type: 'system',
        },
      );
      api = await createClient(
        { prisma: db.prisma, audit },
        tenantId,
        { name: 'API', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true },
        { type: 'system' },
      );
      await publishTenantChange(kv, { tenantId, slug: 'default', what: 'clients' });
    } finally {
      await kv.close();
      await db.close();
    }
    webConfig = await rpVia(issuer, web, () => node.url, { redirect_uris: [REDIRECT_URI] });
    apiConfig = await rpVia(issuer, api, () => node.url);
  }, 300_000);

  afterAll(async () => {
    const steps = [() => killSpawned(), () => stopPrivateServices(), () => removeTempDirs()];
    const failed: unknown[] = [];
    for (const step of steps) await step().catch((error: unknown) => failed.push(error));
    if (failed.length) throw failed[0];
  }, 120_000);

  /** One request, recorded whatever happens; a request that hangs is recorded as an error after 30 s. */
  async function send(kind: string, url: string, init: RequestInit = {}): Promise<Answer> {
    try {
      const response = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(30_000), ...init });
      return {
        kind,
        status: response.status,
        type: response.headers.get('content-type') ?? '',
        retryAfter: response.headers.get('retry-after'),
        body: await response.text(),
        at: Date.now(),
      };
    } catch (error) {
      return { kind, error: String((error as Error).cause ?? error), at: Date.now() };
    }
  }

  const basic = (client: CreatedClient) => `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`;
  const form = (client: CreatedClient, body: Record<string, string>): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(client), accept: 'application/json' },
    body: new URLSearchParams(body).toString(),
  });
  const tokenRequest = () => send('token', `${issuer}/token`, form(api, { grant_type: 'client_credentials', scope: 'reports:read' }));

  /** A full sign-in through the hosted pages, with the browser kept for its session. */
  const signInAdmin = () =>
    signIn(issuer, webConfig, {
      ...ADMIN,
      browser: new RoutedBrowser(publicOrigin, () => node.url),
      scope: SCOPES,
      extraParams: { prompt: 'consent' },
    });

  /** The sign-in form of a new authorization request in a new browser. */
  async function loginPage(): Promise<{ browser: Browser; url: URL; form: HtmlForm }> {
    const browser = new Browser(publicOrigin);
    const request = await authorizationRequest(webConfig, { scope: 'openid' });
    const outcome = await browser.follow(request.url);
    if (outcome.kind !== 'page') throw new Error(`expected the sign-in page, got a redirect to ${outcome.url.href}`);
    const found = parseForms(outcome.html).find((f) => f.action.endsWith('/login'));
    if (!found) throw new Error(`no sign-in form: ${outcome.status} ${textOf(outcome.html)}`);
    return { browser, url: outcome.url, form: found };
  }

  const postLogin = (page: { browser: Browser; url: URL; form: HtmlForm }, password = ADMIN.password) =>
    send('sign-in', new URL(page.form.action, page.url).toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: publicOrigin, cookie: page.browser.jar.header(page.url) },
      body: new URLSearchParams({ ...page.form.fields, email: ADMIN.email, password }).toString(),
    });

  async function ready(): Promise<boolean> {
    const answer = await send('readyz', `${node.url}/readyz`);
    return isResponse(answer) && answer.status === 200;
  }

  /**
   * What `kind` may answer while a dependency is down or coming back: success, or a clean 503.
   * Regression: inside oidc-provider (introspection, the authorization endpoint) Redis being gone was
   * its generic 500 server_error, as JSON and as the error page.
   */
  function checkAnswer(answer: Answer) {
    if (!isResponse(answer)) throw new Error(`${answer.kind} got no response: ${answer.error}`);
    if (answer.status === 503) {
      if (answer.kind === 'authorize') expectUnavailablePage(answer);
      else expectJsonError(answer, 503, 'temporarily_unavailable');
      if (answer.kind !== 'readyz') expect(answer.retryAfter, answer.kind).toBeTruthy();
      return;
    }
    const expected: Record<string, number[]> = { token: [200], introspect: [200], jwks: [200], readyz: [200], authorize: [303] };
    expect(expected[answer.kind], `${answer.kind} answered ${answer.status}: ${answer.body.slice(0, 300)}`).toContain(answer.status);
  }

  describe('Redis killed under load, then restarted empty', () => {
    it('answers 503 (JSON, or the error page on hosted pages) while it is gone, never 500, and recovers without a restart', async () => {
      const before = await signInAdmin();
      const pending = await loginPage();
      const service = await oidc.clientCredentialsGrant(apiConfig, { scope: 'reports:read' });

      // A bounded mixed load: each worker stops at `stop` or after 400 requests, whichever comes first.
      const answers: Answer[] = [];
      let stop = false;
      const kinds: (() => Promise<Answer>)[] = [
        tokenRequest,
        () => send('introspect', `${issuer}/token/introspection`, form(api, { token: service.access_token })),
        () => send('jwks', `${issuer}/jwks`),
        async () => send('authorize', (await authorizationRequest(webConfig, { scope: 'openid' })).url.toString()),
        () => send('readyz', `${node.url}/readyz`),
      ];
      const worker = async (offset: number) => {
        for (let i = 0; i < 400 && !stop; i++) {
          const next = kinds[(i + offset) % kinds.length];
          if (next) answers.push(await next());
        }
      };
      const load = Promise.all([0, 1, 2].map(worker));
      try {
        await waitFor('load before the outage', () => answers.length >= 10, 60_000);
        await redis.kill();
        const killedAt = Date.now();
        await waitFor('load during the outage', () => answers.filter((a) => a.at > killedAt).length >= 10, 120_000);

        // While Redis is down: the token endpoint, readiness, and a hosted page's form.
        expectJsonError(await tokenRequest(), 503, 'temporarily_unavailable');
        const readiness = await send('readyz', `${node.url}/readyz`);
        expectJsonError(readiness, 503, 'temporarily_unavailable');
        if (isResponse(readiness)) expect(JSON.parse(readiness.body).checks).toEqual({ database: 'ok', kv: 'unreachable' });
        expectUnavailablePage(await postLogin(pending));

        await redis.start();
        const restartedAt = Date.now();
        await waitFor('readiness after Redis is back', ready, 60_000);
        await waitFor(
          'load served after the restart',
          () => answers.filter((a) => a.at > restartedAt && isResponse(a) && a.status === 200).length >= 10,
          120_000,
        );
      } finally {
        stop = true;
        await load;
      }

      for (const answer of answers) checkAnswer(answer);
      expect(answers.some((answer) => isResponse(answer) && answer.status === 503)).toBe(true);

      // Nothing durable was lost with Redis: the refresh token from before rotates, the session still signs in.
      const rotated = await oidc.refreshTokenGrant(webConfig, before.tokens.refresh_token ?? '');
      expect(rotated.access_token).toBeTruthy();
      const again = await signIn(issuer, webConfig, { browser: before.browser, scope: 'openid' });
      expect(again.tokens.claims()?.sub).toBe(before.tokens.claims()?.sub);
      expect(await tokenRequest()).toMatchObject({ status: 200 });
    });

    it('still receives cache invalidations after Redis came back: a key rotation reaches its JWKS', async () => {
      const { rotated } = await cliJson<{ rotated: { alg: string; next: string }[] }>(['keys', 'rotate', '--tenant', 'default'], env);
      const next = rotated.find((entry) => entry.alg === 'RS256')?.next ?? '';
      const kids = async () => {
        const answer = await send('jwks', `${issuer}/jwks`);
        return isResponse(answer) && answer.status === 200
          ? (JSON.parse(answer.body) as { keys: { kid: string }[] }).keys.map((k) => k.kid)
          : [];
      };
      // The subscription was re-established on reconnect; polled for up to 3 s on a loaded machine.
      await waitFor('the rotated keys at the node', async () => (await kids()).includes(next), 3_000);
    });
  });

  describe('PostgreSQL shut down, then started again', () => {
    it('answers /readyz 503 and clean JSON errors while it is down, and recovers once it is back', async () => {
      const before = await signInAdmin();
      const pending = await loginPage();
      await pg.stop();

      const readiness = await send('readyz', `${node.url}/readyz`);
      expectJsonError(readiness, 503, 'temporarily_unavailable');
      expect(readiness).toMatchObject({ retryAfter: '5' });
      if (isResponse(readiness)) expect(JSON.parse(readiness.body).checks).toEqual({ database: 'unreachable', kv: 'ok' });
      expect(await send('healthz', `${node.url}/healthz`)).toMatchObject({ status: 200 });

      // Each of these needs the database: a refresh token, a tenant never loaded, a password.
      const refresh = await send(
        'refresh',
        `${issuer}/token`,
        form(web, { grant_type: 'refresh_token', refresh_token: before.tokens.refresh_token ?? '' }),
      );
      expectJsonError(refresh, 503, 'temporarily_unavailable');
      expectJsonError(await send('tenant', `${node.url}/t/never-loaded-${randomBytes(3).toString('hex')}`), 503, 'temporarily_unavailable');
      expectUnavailablePage(await postLogin(pending));

      await pg.start();
      await waitFor('readiness after PostgreSQL is back', ready, 60_000);
      // The pool replaced the connections the shutdown ended: the same requests now succeed.
      const rotated = await oidc.refreshTokenGrant(webConfig, before.tokens.refresh_token ?? '');
      expect(rotated.refresh_token).toBeTruthy();
      const signedIn = await signInAdmin();
      expect(signedIn.tokens.claims()?.email).toBe(ADMIN.email);
    });
  });

  describe('SIGTERM with sign-ins in flight', () => {
    it('completes every in-flight sign-in, refuses new connections, and exits 0 within the grace period', async () => {
      const BATCH = 6;
      const pages = await Promise.all(Array.from({ length: BATCH }, () => loginPage()));
      // The sign-in rate-limit counter is the first thing a sign-in post touches (before Argon2): once it has
      // grown by BATCH, every post of the batch is being handled, so SIGTERM finds them in flight.
      const counterKey = `ratelimit:sign_in:${tenantId}:127.0.0.1`;
      const kv = await openKv({ url: redis.url });
      let answers: Answer[];
      let exit: { code: number | null; signal: NodeJS.Signals | null };
      let refusedNewConnection = false;
      let stoppedAfterMs: number;
      try {
        const counted = Number((await kv.get(counterKey)) ?? 0);
        const batch = Promise.all(pages.map((page) => postLogin(page)));
        await waitFor('the batch in flight', async () => Number((await kv.get(counterKey)) ?? 0) >= counted + BATCH, 60_000);
        const signalledAt = Date.now();
        const exited = node.stop('SIGTERM');
        // The listening socket closes first: a new connection is refused while the batch is still being answered.
        await waitFor(
          'a new connection refused',
          async () => {
            refusedNewConnection = await connectionRefused(node.port);
            return refusedNewConnection;
          },
          10_000,
        );
        answers = await batch;
        exit = await exited;
        stoppedAfterMs = Date.now() - signalledAt;
      } finally {
        await kv.close();
      }
      for (const answer of answers) {
        if (!isResponse(answer)) throw new Error(`an in-flight sign-in got no response: ${answer.error}`);
        // 303: the password was accepted and the browser sent on to finish the authorization.
        expect(answer.status, textOf(answer.body)).toBe(303);
      }
      expect(refusedNewConnection).toBe(true);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(stoppedAfterMs).toBeLessThan(SHUTDOWN_GRACE_MS);
      expect(await connectionRefused(node.port)).toBe(true);
    });
  });
});

/** True when nothing accepts a TCP connection on the port (ECONNREFUSED). */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}
