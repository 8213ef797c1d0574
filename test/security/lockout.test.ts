import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppDeps, closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { manualClock } from '../../src/clock.js';
import { SIGN_IN_FAILED } from '../../src/interaction/routes.js';
import { completePasswordReset, issueEmailToken } from '../../src/mail/flows.js';
import { unlockUser } from '../../src/security/lockout.js';
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
 * Lockout without lockout abuse, through the hosted sign-in form: five wrong
 * passwords lock an account for everyone except browsers that signed in to it
 * before, which are throttled on their own; a locked account answers exactly
 * like a wrong password. Two app instances share the stores, as two nodes do.
 */

const REDIRECT_URI = 'https://rp.example.com/cb';
const PASSWORD = 'correct horse battery staple';
const MINUTE = 60_000;

const clock = manualClock(Date.now());
let t: TestApp;
let baseUrl: string;
let issuer: string;
let tenant: TenantContext;
let config: oidc.Configuration;
/** The second node: same database, KvStore, master key and public URL. */
let other: { deps: AppDeps; server: Server; url: string };

interface LoginPage {
  url: URL;
  form: HtmlForm;
}

interface Attempt {
  status: number;
  html: string;
  location: string | null;
  setCookies: string[];
}

async function newUser(email: string) {
  return createUser(
    { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
    tenant.id,
    { email, password: PASSWORD },
    { type: 'system' },
  );
}

/** A fresh authorization request in `browser`, up to its sign-in form (prompt=login: even a signed-in browser gets it). */
async function loginPage(browser: Browser): Promise<LoginPage> {
  const request = await authorizationRequest(config, { scope: 'openid', extraParams: { prompt: 'login' } });
  const outcome = await browser.follow(request.url);
  if (outcome.kind !== 'page') throw new Error(`expected the sign-in page, got a redirect to ${outcome.url.href}`);
  const form = parseForms(outcome.html).find((f) => f.action.endsWith('/login'));
  if (!form) throw new Error(`no sign-in form: ${outcome.status} ${textOf(outcome.html)}`);
  return { url: outcome.url, form };
}

/** Posts the sign-in form, to this node or to `node` (the other one), without following the answer. */
async function attempt(browser: Browser, page: LoginPage, email: string, password: string, node = baseUrl): Promise<Attempt> {
  const target = new URL(new URL(page.form.action, page.url).pathname, node);
  const response = await browser.request(target, { form: { ...page.form.fields, email, password } });
  return {
    status: response.status,
    html: await response.text(),
    location: response.headers.get('location'),
    setCookies: response.headers.getSetCookie(),
  };
}

/** A whole sign-in from a new authorization request; true when it got past the password. */
async function signsIn(browser: Browser, email: string, password: string, node = baseUrl): Promise<boolean> {
  const result = await attempt(browser, await loginPage(browser), email, password, node);
  return result.status === 303;
}

async function auditOf(action: string, userId: string) {
  return t.deps.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id, action, resourceId: userId }, orderBy: { seq: 'asc' } });
}

beforeAll(async () => {
  t = await createTestApp({ seed: true, clock });
  baseUrl = await t.listen();
  issuer = `${baseUrl}/t/default`;
  const found = await t.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
  config = await rpConfig(issuer, await createTenantClient(t, { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true }));
  const deps = await createAppDeps({
    config: t.deps.config,
    db: t.stores.db,
    kv: t.stores.kv,
    logger: t.deps.logger,
    clock,
    masterKey: t.deps.masterKey,
  });
  const server = createServer(createApp(deps).callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  other = { deps, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
});
afterAll(async () => {
  if (other) {
    other.server.closeAllConnections();
    await new Promise<void>((resolve) => other.server.close(() => resolve()));
    await closeAppDeps(other.deps);
  }
  await t?.close();
});

describe('account lockout', () => {
  it('answers a wrong password for a known and an unknown address alike: status, page and cookies', async () => {
    await newUser('known@example.com');
    const browser = new Browser(baseUrl);
    const page = await loginPage(browser);
    const known = await attempt(browser, page, 'known@example.com', 'not the password');
    const unknown = await attempt(browser, page, 'unknown@example.com', 'not the password');
    expect(known.status).toBe(422);
    expect(unknown.status).toBe(known.status);
    expect(unknown.html.replaceAll('unknown@example.com', 'X')).toBe(known.html.replaceAll('known@example.com', 'X'));
    expect(known.setCookies).toEqual([]);
    expect(unknown.setCookies).toEqual([]);
  });

  it('locks an account after five failures, on either node, and the lock looks like a wrong password', async () => {
    const user = await newUser('target@example.com');
    const attacker = new Browser(baseUrl);
    const page = await loginPage(attacker);
    // Three failures on this node, two on the other: they count together.
    for (const node of [baseUrl, baseUrl, baseUrl, other.url, other.url]) {
      expect((await attempt(attacker, page, 'target@example.com', 'guess', node)).status).toBe(422);
    }
    expect(await auditOf('auth.lockout.locked', user.id)).toHaveLength(1);

    const wrong = await attempt(attacker, page, 'target@example.com', 'another guess');
    const right = await attempt(attacker, page, 'target@example.com', PASSWORD, other.url);
    expect(right.status).toBe(422);
    expect(right.html).toBe(wrong.html);
    expect(right.html).toContain(SIGN_IN_FAILED);
    expect(right.setCookies).toEqual([]);
    const failures = await auditOf('auth.sign_in.failed', user.id);
    expect(failures.at(-1)?.metadata).toMatchObject({ reason: 'locked' });
    expect(await auditOf('auth.lockout.locked', user.id)).toHaveLength(1);

    // Fifteen minutes later the lock is over.
    clock.advance(15 * MINUTE + 1);
    expect(await signsIn(new Browser(baseUrl), 'target@example.com', PASSWORD)).toBe(true);
  });

  it('lets the owner sign in from a browser that signed in before while the account is locked for everyone else', async () => {
    const user = await newUser('owner@example.com');
    const owner = new Browser(baseUrl);
    expect(await signsIn(owner, 'owner@example.com', PASSWORD)).toBe(true);
    expect(owner.jar.names(new URL(issuer)).filter((name) => name === 'idp_device')).toHaveLength(1);

    const attacker = new Browser(baseUrl);
    const page = await loginPage(attacker);
    for (let i = 0; i < 5; i++) await attempt(attacker, page, 'owner@example.com', `guess ${i}`);
    expect(await signsIn(new Browser(baseUrl), 'owner@example.com', PASSWORD)).toBe(false);

    // The owner's browser, on either node: not subject to the account-wide lock.
    expect(await signsIn(owner, 'owner@example.com', PASSWORD)).toBe(true);
    expect(await signsIn(owner, 'owner@example.com', PASSWORD, other.url)).toBe(true);

    // A forged or copied-over device cookie counts for nothing.
    const forger = new Browser(baseUrl);
    forger.jar.store([`idp_device=${'A'.repeat(22)}.${'B'.repeat(43)}; Path=/t/default`], new URL(issuer));
    expect(await signsIn(forger, 'owner@example.com', PASSWORD)).toBe(false);

    // The owner's own mistakes throttle only that browser, and only after five.
    const ownPage = await loginPage(owner);
    for (let i = 0; i < 5; i++) expect((await attempt(owner, ownPage, 'owner@example.com', `typo ${i}`)).status).toBe(422);
    expect(await signsIn(owner, 'owner@example.com', PASSWORD)).toBe(false);
    const locks = await auditOf('auth.lockout.locked', user.id);
    expect(locks.map((event) => (event.metadata as { scope: string }).scope)).toEqual(['account', 'device']);

    // An admin unlock releases the account and every device at once.
    expect(await unlockUser(t.deps.kv, tenant.id, user.id)).toBe(true);
    expect(await signsIn(owner, 'owner@example.com', PASSWORD)).toBe(true);
    expect(await signsIn(new Browser(baseUrl), 'owner@example.com', PASSWORD)).toBe(true);
  });

  it('starts counting afresh after a successful sign-in', async () => {
    const user = await newUser('typist@example.com');
    const browser = new Browser(baseUrl);
    const page = await loginPage(browser);
    for (let i = 0; i < 4; i++) expect((await attempt(browser, page, 'typist@example.com', `typo ${i}`)).status).toBe(422);
    expect(await signsIn(new Browser(baseUrl), 'typist@example.com', PASSWORD)).toBe(true);
    // Had the success left the four failures counted, the next one would lock the account.
    const elsewhere = new Browser(baseUrl);
    const again = await loginPage(elsewhere);
    for (let i = 0; i < 4; i++) expect((await attempt(elsewhere, again, 'typist@example.com', `typo ${i}`)).status).toBe(422);
    expect(await auditOf('auth.lockout.locked', user.id)).toHaveLength(0);
    expect(await signsIn(new Browser(baseUrl), 'typist@example.com', PASSWORD)).toBe(true);
  });

  it('is lifted by a completed password reset, audited as unlocked', async () => {
    const user = await newUser('reset@example.com');
    const attacker = new Browser(baseUrl);
    const page = await loginPage(attacker);
    for (let i = 0; i < 5; i++) await attempt(attacker, page, 'reset@example.com', `guess ${i}`);
    expect(await signsIn(new Browser(baseUrl), 'reset@example.com', PASSWORD)).toBe(false);

    const flows = {
      prisma: t.deps.db.prisma,
      audit: t.deps.audit,
      passwords: t.deps.passwords,
      kv: t.deps.kv,
      clock,
      mailer: t.deps.mailer,
      config: t.deps.config,
    };
    const { token } = await issueEmailToken(flows, tenant.id, user.id, 'reset_password');
    expect((await completePasswordReset(flows, tenant, token, 'the owner chose this', {})).ok).toBe(true);
    expect(await signsIn(new Browser(baseUrl), 'reset@example.com', 'the owner chose this')).toBe(true);
    expect((await auditOf('auth.lockout.unlocked', user.id)).at(-1)?.metadata).toMatchObject({ reason: 'password_reset' });
  });

  it('follows the tenant settings', async () => {
    await t.deps.db.prisma.tenant.update({
      where: { id: tenant.id },
      data: { settings: { lockout: { maxFailures: 2, lockMinutes: 1 }, rateLimits: { signInPerMinute: 10_000 } } },
    });
    await announce(t, { tenantId: tenant.id, slug: 'default', what: 'tenant' });
    await newUser('strict@example.com');
    const attacker = new Browser(baseUrl);
    const page = await loginPage(attacker);
    for (let i = 0; i < 2; i++) await attempt(attacker, page, 'strict@example.com', `guess ${i}`);
    expect(await signsIn(new Browser(baseUrl), 'strict@example.com', PASSWORD)).toBe(false);
    clock.advance(MINUTE + 1);
    expect(await signsIn(new Browser(baseUrl), 'strict@example.com', PASSWORD)).toBe(true);
  });
});
