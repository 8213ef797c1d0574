import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type AppDeps, closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { ACCOUNT_CLIENT_SCOPE, accountClientIdFor } from '../../src/oidc/account-client.js';
import { createTenant, onTenantChange, type TenantChange, type TenantContext } from '../../src/tenants/tenants.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { Browser, type BrowserResponse } from '../helpers/browser.js';

/**
 * The account page that `npm start` points people at: sign in through the
 * hosted pages with the built-in account client, see who you are, sign out.
 */

let t: TestApp;
let baseUrl: string;
let tenant: TenantContext;
const others: { deps: AppDeps }[] = [];

const SYSTEM = { type: 'system' as const };
const PASSWORD = 'a-long-test-password';

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  baseUrl = await t.listen();
  const found = await t.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
});
afterAll(async () => {
  for (const other of others) await closeAppDeps(other.deps);
  await t?.close();
});

/** A second node on the same stores, optionally with another PUBLIC_URL (a restart with a new one, say). */
async function anotherNode(publicUrl = baseUrl) {
  const config = loadConfig({ NODE_ENV: 'test', ADMIN_PASSWORD: TEST_ADMIN_PASSWORD, LOG_LEVEL: 'silent', PUBLIC_URL: publicUrl });
  const deps = await createAppDeps({
    config,
    db: t.stores.db,
    kv: t.stores.kv,
    logger: t.deps.logger,
    clock: t.deps.clock,
    masterKey: t.deps.masterKey,
  });
  const node = { deps, app: createApp(deps) };
  others.push(node);
  return node;
}

async function newTenant(slug: string, users: { email: string; name?: string; roles?: string[] }[] = []) {
  const created = await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug }, SYSTEM);
  for (const user of users) {
    await createUser(userDeps(), created.id, { ...user, password: PASSWORD }, SYSTEM);
  }
  return created;
}

const userDeps = () => ({ prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords });

const accountUrl = (slug: string) => `${baseUrl}/t/${slug}/account`;

/** Every step a person takes from the printed URL: the page, its sign-in button, the hosted login form. */
async function signIn(browser: Browser, slug: string, email: string, password: string): Promise<BrowserResponse> {
  const start = await browser.follow(`/t/${slug}/account`);
  expect(start.text).toContain(`href="/t/${slug}/account/login"`);
  const login = await browser.follow(`/t/${slug}/account/login`);
  expect(login.status).toBe(200);
  expect(login.url).toMatch(new RegExp(`/t/${slug}/interaction/[A-Za-z0-9_-]+$`));
  return browser.submit(login, '/login', { email, password });
}

function signOutHref(page: BrowserResponse): string {
  const href = /<a class="button secondary" href="([^"]+)">Sign out<\/a>/.exec(page.text)?.[1];
  if (!href) throw new Error(`no sign-out link in:\n${page.text.slice(0, 2000)}`);
  return href.replace(/&amp;/g, '&');
}

async function clientRows(tenantId: string) {
  return t.deps.db.prisma.client.findMany({ where: { clientId: accountClientIdFor(tenantId) } });
}

async function auditCount(tenantId: string, action: string) {
  return t.deps.db.prisma.auditEvent.count({ where: { tenantId, action, resourceId: accountClientIdFor(tenantId) } });
}

describe('the account page', () => {
  it('offers a sign-in button when nobody is signed in, as a strict, script-free page', async () => {
    const page = await new Browser(baseUrl).request('/t/default/account');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('cache-control')).toBe('no-store');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.text).toContain('You are not signed in');
    expect(page.text).toContain('<a class="button primary" href="/t/default/account/login">Sign in</a>');
    expect(page.text).not.toMatch(/<script/i);
  });

  it('starts sign-in at the authorization endpoint as the built-in public client, with PKCE S256', async () => {
    const response = await new Browser(baseUrl).request('/t/default/account/login');
    expect(response.status).toBe(302);
    const location = new URL(response.location ?? '');
    expect(`${location.origin}${location.pathname}`).toBe(`${baseUrl}/t/default/auth`);
    const params = Object.fromEntries(location.searchParams);
    expect(params).toMatchObject({
      client_id: accountClientIdFor(tenant.id),
      response_type: 'code',
      scope: ACCOUNT_CLIENT_SCOPE,
      redirect_uri: accountUrl('default'),
      code_challenge_method: 'S256',
    });
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.state).toMatch(/^[A-Za-z0-9_-]{16,}$/);

    const [client] = await clientRows(tenant.id);
    expect(client).toMatchObject({ tenantId: tenant.id, secretHash: null, firstParty: true, resourceServer: false });
    expect(client?.metadata).toMatchObject({
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      redirect_uris: [accountUrl('default')],
      post_logout_redirect_uris: [accountUrl('default')],
    });
  });

  it('signs the admin in through the hosted pages, shows who is signed in, and signs out through the logout page', async () => {
    const browser = new Browser(baseUrl);
    const start = await browser.follow('/t/default/account/login');
    // Stop where the provider hands back the code, to see that the page cleans it out of the URL.
    const callback = await browser.submit(
      start,
      '/login',
      { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD },
      `${accountUrl('default')}?`,
    );
    expect(new URL(callback.location ?? '').searchParams.get('code')).toBeTruthy();
    const cleaned = await browser.request(callback.location ?? '');
    expect(cleaned.status).toBe(303);
    expect(cleaned.location).toBe(accountUrl('default'));

    const page = await browser.follow(accountUrl('default'));
    expect(page.status).toBe(200);
    expect(page.text).toContain('Signed in as <strong>admin@example.com</strong>');
    expect(page.text).toContain('Administrator');
    expect(page.text).toContain('<li>owner</li>');
    expect(page.text).toContain(`<code>${baseUrl}/t/default</code>`);
    expect(page.text).toContain(`href="${baseUrl}/t/default/.well-known/openid-configuration"`);
    expect(page.text).not.toMatch(/<script/i);

    const signOut = new URL(signOutHref(page), baseUrl);
    expect(`${signOut.origin}${signOut.pathname}`).toBe(`${baseUrl}/t/default/session/end`);
    expect(Object.fromEntries(signOut.searchParams)).toEqual({
      client_id: accountClientIdFor(tenant.id),
      post_logout_redirect_uri: accountUrl('default'),
    });
    const confirm = await browser.follow(signOut.href);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain('Sign out?');
    const after = await browser.submit(confirm, '/session/end/confirm', { logout: 'yes' });
    expect(after.url).toBe(accountUrl('default'));
    expect(after.text).toContain('You are not signed in');
    expect((await browser.request('/t/default/account')).text).toContain('You are not signed in');
  });

  it('signs in with the whole round trip in one call and says when sign-in was cancelled', async () => {
    const browser = new Browser(baseUrl);
    const page = await signIn(browser, 'default', 'admin@example.com', TEST_ADMIN_PASSWORD);
    expect(page.url).toBe(accountUrl('default'));
    expect(page.text).toContain('Signed in as <strong>admin@example.com</strong>');

    const other = new Browser(baseUrl);
    const login = await other.follow('/t/default/account/login');
    const cancelled = await other.submit(login, '/abort');
    expect(cancelled.url).toMatch(/\/t\/default\/account\?error=access_denied/);
    expect(cancelled.status).toBe(200);
    expect(cancelled.text).toContain('Sign-in was cancelled.');
    expect(cancelled.text).toContain('You are not signed in');
  });

  it('creates the built-in client once, across requests and nodes, even when they race', async () => {
    const browser = new Browser(baseUrl);
    await browser.request('/t/default/account/login');
    await browser.request('/t/default/account/login');
    const second = await anotherNode();
    await request(second.app.callback()).get('/t/default/account/login').expect(302);
    expect(await clientRows(tenant.id)).toHaveLength(1);
    expect(await auditCount(tenant.id, 'client.created')).toBe(1);
    expect(await auditCount(tenant.id, 'client.updated')).toBe(0);

    // Two nodes asked at the same moment on a tenant that has no account client yet.
    const fresh = await newTenant('racing');
    const third = await anotherNode();
    const answers = await Promise.all([
      request(second.app.callback()).get('/t/racing/account/login'),
      request(third.app.callback()).get('/t/racing/account/login'),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([302, 302]);
    expect(await clientRows(fresh.id)).toHaveLength(1);
    expect(await auditCount(fresh.id, 'client.created')).toBe(1);
  });

  it('follows a changed PUBLIC_URL: the client is rewritten, audited and the change published', async () => {
    const moved = await newTenant('moved');
    await request(t.app.callback()).get('/t/moved/account/login').expect(302);
    const changes: TenantChange[] = [];
    const unsubscribe = await onTenantChange(t.stores.kv, (change) => changes.push(change));
    try {
      const restarted = await anotherNode('http://localhost:4000');
      const response = await request(restarted.app.callback()).get('/t/moved/account/login').expect(302);
      const location = new URL(response.headers.location ?? '');
      expect(location.origin).toBe('http://localhost:4000');
      expect(location.searchParams.get('redirect_uri')).toBe('http://localhost:4000/t/moved/account');
      const [client] = await clientRows(moved.id);
      expect(client?.metadata).toMatchObject({
        redirect_uris: ['http://localhost:4000/t/moved/account'],
        post_logout_redirect_uris: ['http://localhost:4000/t/moved/account'],
      });
      expect(await auditCount(moved.id, 'client.updated')).toBe(1);
      await vi.waitFor(() => expect(changes).toContainEqual({ tenantId: moved.id, slug: 'moved', what: 'clients' }));
    } finally {
      await unsubscribe();
    }
  });

  it('escapes what users wrote about themselves', async () => {
    await createUser(userDeps(), tenant.id, { email: 'xss@example.com', name: '<script>alert("x")</script>', password: PASSWORD }, SYSTEM);
    const page = await signIn(new Browser(baseUrl), 'default', 'xss@example.com', PASSWORD);
    expect(page.text).toContain('Signed in as <strong>xss@example.com</strong>');
    expect(page.text).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(page.text).not.toMatch(/<script/i);
    expect(page.text).toContain('None');
  });

  it("is not signed in by another tenant's session, whether the browser or an attacker sends the cookie", async () => {
    await newTenant('elsewhere', [{ email: 'admin@example.com', name: 'Elsewhere Admin', roles: ['owner'] }]);
    const browser = new Browser(baseUrl);
    const there = await signIn(browser, 'elsewhere', 'admin@example.com', PASSWORD);
    expect(there.text).toContain('Elsewhere Admin');

    // The browser keeps the session cookie to /t/elsewhere.
    expect((await browser.request('/t/default/account')).text).toContain('You are not signed in');

    // Sent here on purpose, it does not verify: another tenant's keys signed it, and its session is another tenant's.
    const cookie = browser
      .cookiesFor('/t/elsewhere/account')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    expect(cookie).toContain('_session=');
    const valid = await fetch(`${baseUrl}/t/elsewhere/account`, { headers: { Cookie: cookie } });
    expect(await valid.text()).toContain('Elsewhere Admin');
    const replayed = await fetch(`${baseUrl}/t/default/account`, { headers: { Cookie: cookie } });
    expect(replayed.status).toBe(200);
    const text = await replayed.text();
    expect(text).toContain('You are not signed in');
    expect(text).not.toContain('Elsewhere Admin');
  });

  it('answers an unknown tenant with the JSON 404 and other methods with 405', async () => {
    for (const path of ['/t/nope/account', '/t/nope/account/login']) {
      const response = await request(t.app.callback()).get(path).expect(404);
      expect(response.body).toEqual({ error: 'tenant_not_found', error_description: 'no such tenant' });
    }
    const post = await request(t.app.callback()).post('/t/default/account').expect(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(post.headers['content-type']).toMatch(/^text\/html/);
  });
});
