import type * as oidc from 'openid-client';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { manualClock } from '../../src/clock.js';
import type { TenantContext } from '../../src/tenants/tenants.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import {
  announce,
  authorizationRequest,
  Browser,
  createTenantClient,
  type HtmlForm,
  parseForms,
  rpConfig,
  textOf,
} from '../helpers/oidc.js';

/**
 * Per-IP limits of the sign-in form and the token endpoint with their
 * defaults (10 a minute), the credential-stuffing block, floods from one
 * address and from many, and a KvStore outage. The app trusts
 * X-Forwarded-For (TRUST_PROXY=true), which is how requests from other
 * addresses are made here; requests without it come from 127.0.0.1.
 */

const REDIRECT_URI = 'https://rp.example.com/cb';
const PASSWORD = 'correct horse battery staple';

const clock = manualClock(Date.now());
let t: TestApp;
let baseUrl: string;
let tenant: TenantContext;
let config: oidc.Configuration;

const FAKE_LOGIN = '/t/default/interaction/not-a-real-interaction/login';

/** A sign-in post from `ip` that fails before any password check (no interaction): it still counts. */
function bogusSignIn(app: TestApp['app'], ip: string) {
  return request(app.callback()).post(FAKE_LOGIN).set('X-Forwarded-For', ip).type('form').send({ email: 'x@example.com', password: 'x' });
}

function tokenRequest(app: TestApp['app'], ip: string, slug = 'default') {
  return request(app.callback())
    .post(`/t/${slug}/token`)
    .set('X-Forwarded-For', ip)
    .type('form')
    .send({ grant_type: 'client_credentials', client_id: 'nobody', client_secret: 'nothing' });
}

async function rateLimitedEvents() {
  return t.deps.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id, action: 'auth.rate_limited' }, orderBy: { seq: 'asc' } });
}

async function setLimits(rateLimits: Record<string, number>) {
  await t.deps.db.prisma.tenant.update({ where: { id: tenant.id }, data: { settings: { rateLimits } } });
  await announce(t, { tenantId: tenant.id, slug: 'default', what: 'tenant' });
}

async function loginPage(browser: Browser): Promise<{ url: URL; form: HtmlForm }> {
  const authorization = await authorizationRequest(config, { scope: 'openid', extraParams: { prompt: 'login' } });
  const outcome = await browser.follow(authorization.url);
  if (outcome.kind !== 'page') throw new Error(`expected the sign-in page, got ${outcome.url.href}`);
  const form = parseForms(outcome.html).find((f) => f.action.endsWith('/login'));
  if (!form) throw new Error(`no sign-in form: ${textOf(outcome.html)}`);
  return { url: outcome.url, form };
}

async function signInAttempt(browser: Browser, page: { url: URL; form: HtmlForm }, email: string, password: string) {
  const response = await browser.request(new URL(page.form.action, page.url), { form: { ...page.form.fields, email, password } });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), html: await response.text() };
}

beforeAll(async () => {
  t = await createTestApp({ seed: true, clock, limits: 'default', env: { TRUST_PROXY: 'true' } });
  baseUrl = await t.listen();
  const found = await t.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
  config = await rpConfig(
    `${baseUrl}/t/default`,
    await createTenantClient(t, { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true }),
  );
});
afterAll(() => t?.close());

describe('per-IP limits', () => {
  it('allow 10 sign-in posts a minute from one address, then answer 429 with Retry-After as a page, audited once', async () => {
    for (let i = 0; i < 10; i++) expect((await bogusSignIn(t.app, '198.51.100.1')).status).toBe(403);
    const limited = await bogusSignIn(t.app, '198.51.100.1');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(limited.headers['content-type']).toContain('text/html');
    expect(limited.text).toContain('Too many attempts');
    expect((await bogusSignIn(t.app, '198.51.100.1')).status).toBe(429);
    // Another address has its own allowance.
    expect((await bogusSignIn(t.app, '198.51.100.2')).status).toBe(403);
    // All of one IPv6 /64 counts as one subscriber.
    for (let i = 0; i < 10; i++) expect((await bogusSignIn(t.app, `2001:db8:1:2::${i + 1}`)).status).toBe(403);
    expect((await bogusSignIn(t.app, '2001:db8:1:2:ffff::99')).status).toBe(429);

    const events = await rateLimitedEvents();
    expect(events.map((e) => [e.ip, (e.metadata as { limit: string }).limit])).toEqual([
      ['198.51.100.1', 'sign_in_per_minute'],
      ['2001:db8:1:2:ffff::99', 'sign_in_per_minute'],
    ]);
  });

  it('allow 10 token requests a minute from one address, counted across two nodes, then answer 429 as an OAuth JSON error', async () => {
    const infra = { config: t.deps.config, db: t.stores.db, kv: t.stores.kv, logger: t.deps.logger, clock, masterKey: t.deps.masterKey };
    const otherDeps = await createAppDeps(infra);
    try {
      const other = createApp(otherDeps);
      for (let i = 0; i < 10; i++) {
        const response = await tokenRequest(i % 2 ? other : t.app, '203.0.113.5');
        expect(response.status).toBe(401);
      }
      for (const app of [t.app, other]) {
        const limited = await tokenRequest(app, '203.0.113.5');
        expect(limited.status).toBe(429);
        expect(limited.headers['content-type']).toContain('application/json');
        expect(limited.body).toMatchObject({ error: 'too_many_requests' });
        expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      }
      expect((await tokenRequest(other, '203.0.113.6')).status).toBe(401);
      // Sign-in posts from that address have their own counter.
      expect((await bogusSignIn(other, '203.0.113.5')).status).toBe(403);
      const events = (await rateLimitedEvents()).filter((e) => e.ip === '203.0.113.5');
      expect(events.map((e) => (e.metadata as { limit: string }).limit)).toEqual(['token_per_minute']);
    } finally {
      await closeAppDeps(otherDeps);
    }
  });

  it('start over in the next minute', async () => {
    expect((await bogusSignIn(t.app, '198.51.100.1')).status).toBe(429);
    clock.advance(61_000);
    if (t.deps.kv.kind === 'memory') {
      expect((await bogusSignIn(t.app, '198.51.100.1')).status).toBe(403);
    } else {
      // Redis windows run on its own clock; what the test can check is that the window is a minute long.
      const limited = await bogusSignIn(t.app, '198.51.100.1');
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    }
  });
});

describe('credential stuffing and floods', () => {
  it('blocks an address that fails against 20 different accounts for an hour, even with a right password', async () => {
    // The per-minute limit is raised so that only the stuffing rule can refuse here.
    await setLimits({ signInPerMinute: 1_000 });
    await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenant.id,
      { email: 'victim@example.com', password: PASSWORD },
      { type: 'system' },
    );
    const browser = new Browser(baseUrl);
    const page = await loginPage(browser);
    for (let i = 1; i <= 19; i++) expect((await signInAttempt(browser, page, `user${i}@example.com`, 'Summer2024!')).status).toBe(422);
    // Retrying addresses already tried does not count them again.
    for (let i = 1; i <= 3; i++) expect((await signInAttempt(browser, page, `user${i}@example.com`, 'Winter2024!')).status).toBe(422);
    expect(await rateLimitedEvents()).toHaveLength(3);
    expect((await signInAttempt(browser, page, 'user20@example.com', 'Summer2024!')).status).toBe(422);

    const blocked = await signInAttempt(browser, page, 'victim@example.com', PASSWORD);
    expect(blocked.status).toBe(429);
    expect(Number(blocked.retryAfter)).toBeGreaterThan(3500);
    expect(Number(blocked.retryAfter)).toBeLessThanOrEqual(3600);
    const events = await rateLimitedEvents();
    expect(events).toHaveLength(4);
    expect(events.at(-1)).toMatchObject({ ip: '127.0.0.1' });
    expect(events.at(-1)?.metadata).toMatchObject({ limit: 'credential_stuffing', distinct_accounts: 20 });

    // Another address is not affected, and the block ends after the hour.
    expect((await bogusSignIn(t.app, '192.0.2.77')).status).toBe(403);
    clock.advance(59 * 60_000);
    expect((await signInAttempt(browser, await loginPage(browser), 'victim@example.com', PASSWORD)).status).toBe(429);
    clock.advance(60_001);
    expect((await signInAttempt(browser, await loginPage(browser), 'victim@example.com', PASSWORD)).status).toBe(303);
    expect(await rateLimitedEvents()).toHaveLength(4);
  });

  it('locks an account attacked from many addresses, each within its own limit', async () => {
    await setLimits({});
    await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenant.id,
      { email: 'popular@example.com', password: PASSWORD },
      { type: 'system' },
    );
    const browser = new Browser(baseUrl);
    const page = await loginPage(browser);
    const from = (ip: string, password: string) => postFrom(browser, page, ip, 'popular@example.com', password);
    // Five failures from five addresses, each far below its own limit.
    for (let i = 0; i < 5; i++) expect((await from(`192.0.2.${10 + i}`, `guess ${i}`)).status).toBe(422);
    const user = await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant.id, email: 'popular@example.com' } });
    const locked = await t.deps.db.prisma.auditEvent.findMany({
      where: { tenantId: tenant.id, action: 'auth.lockout.locked', resourceId: user.id },
    });
    expect(locked).toHaveLength(1);
    expect((await from('192.0.2.50', PASSWORD)).status).toBe(422);
  });
});

/** The browser's sign-in post, sent as if from `ip` (X-Forwarded-For), with its cookies and form. */
function postFrom(browser: Browser, page: { url: URL; form: HtmlForm }, ip: string, email: string, password: string) {
  const target = new URL(page.form.action, page.url);
  return fetch(target, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: browser.jar.header(target), 'x-forwarded-for': ip },
    body: new URLSearchParams({ ...page.form.fields, email, password }).toString(),
    redirect: 'manual',
  });
}

describe('a KvStore outage (last: it closes the store of the suite)', () => {
  it('fails sign-in and the token endpoint closed with 503, never silently unlimited', async () => {
    await t.stores.kv.close();
    const signIn = await request(t.app.callback()).post(FAKE_LOGIN).type('form').send({ email: 'a@example.com', password: 'b' });
    expect(signIn.status).toBe(503);
    expect(signIn.headers['content-type']).toContain('text/html');
    expect(signIn.headers['retry-after']).toBeDefined();
    const forgot = await request(t.app.callback()).post('/t/default/password/forgot').type('form').send({ email: 'a@example.com' });
    expect(forgot.status).toBe(503);
    const token = await request(t.app.callback()).post('/t/default/token').type('form').send({ grant_type: 'client_credentials' });
    expect(token.status).toBe(503);
    expect(token.body).toMatchObject({ error: 'temporarily_unavailable' });
  });
});
