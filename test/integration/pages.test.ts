import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Koa from 'koa';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assetRoutes, STYLESHEET_HREF } from '../../src/interaction/assets.js';
import { formActionSource, widenCsp } from '../../src/interaction/csp.js';
import { createCsrfGuard } from '../../src/interaction/csrf.js';
import type {
  InteractionDetails,
  InteractionGrant,
  InteractionProvider,
  InteractionResult,
  PromptDetails,
} from '../../src/interaction/provider.js';
import { renderErrorPage, renderLogoutPage, renderLogoutSuccess } from '../../src/interaction/render.js';
import { ACR, interactionRoutes, SIGN_IN_FAILED } from '../../src/interaction/routes.js';
import { observeRequests } from '../../src/observability/http.js';
import { securityHeaders } from '../../src/security/headers.js';
import { tenantEdge } from '../../src/tenants/edge.js';
import type { TenantContext } from '../../src/tenants/tenants.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';

const XSS = '<script>alert("x")</script>';
const REDIRECT_URI = 'https://rp.example.com/callback';

// ---------------------------------------------------------------- a stand-in for oidc-provider

interface Finished {
  uid: string;
  result: InteractionResult;
  options?: { mergeWithLastSubmission?: boolean };
}

interface SavedGrant {
  accountId: string;
  clientId: string;
  scopes: string[];
  claims: string[];
  resources: Record<string, string>;
}

/**
 * Behaves like oidc-provider where the pages touch it: the interaction comes
 * from the `_interaction` cookie, finishing answers 303 to the resume URL.
 */
function createFakeProvider(clients: Record<string, string>) {
  const interactions = new Map<string, InteractionDetails>();
  const finished: Finished[] = [];
  const grants = new Map<string, SavedGrant>();
  let failWith: Error | undefined;

  const cookieUid = (req: IncomingMessage) => /(?:^|;\s*)_interaction=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];

  class FakeGrant implements InteractionGrant {
    readonly saved: SavedGrant;
    constructor({ accountId, clientId }: { accountId: string; clientId: string }) {
      this.saved = { accountId, clientId, scopes: [], claims: [], resources: {} };
    }
    static async find(id: string) {
      const saved = grants.get(id);
      if (!saved) return undefined;
      const grant = new FakeGrant(saved);
      Object.assign(grant.saved, structuredClone(saved));
      return grant;
    }
    addOIDCScope(scope: string) {
      this.saved.scopes.push(...scope.split(' '));
    }
    addOIDCClaims(claims: string[]) {
      this.saved.claims.push(...claims);
    }
    addResourceScope(resource: string, scope: string) {
      this.saved.resources[resource] = scope;
    }
    async save() {
      const id = `grant-${grants.size + 1}`;
      grants.set(id, structuredClone(this.saved));
      return id;
    }
  }

  const provider: InteractionProvider = {
    async interactionDetails(req) {
      if (failWith) throw failWith;
      const uid = cookieUid(req);
      const details = uid ? interactions.get(uid) : undefined;
      if (!details) throw Object.assign(new Error('interaction session not found'), { name: 'SessionNotFound', status: 400 });
      return details;
    },
    async interactionFinished(req, res: ServerResponse, result, options) {
      const uid = cookieUid(req) ?? '';
      finished.push({ uid, result, options });
      res.statusCode = 303;
      res.setHeader('Location', `/t/default/auth/${uid}`);
      res.setHeader('Content-Length', '0');
      res.end();
    },
    Grant: FakeGrant,
    Client: {
      async find(clientId) {
        return clients[clientId] === undefined ? undefined : { clientId, clientName: clients[clientId] };
      },
    },
  };

  return {
    provider,
    finished,
    grants,
    start(prompt: 'login' | 'consent', extra: Partial<InteractionDetails> & { details?: PromptDetails } = {}) {
      const uid = randomBytes(16).toString('base64url');
      const { details = {}, ...rest } = extra;
      interactions.set(uid, {
        uid,
        prompt: { name: prompt, details },
        params: { client_id: 'app', redirect_uri: REDIRECT_URI, scope: 'openid email' },
        ...rest,
      });
      return uid;
    },
    failNextWith(error: Error | undefined) {
      failWith = error;
    },
  };
}

// ---------------------------------------------------------------- the app under test

let test: TestApp;
let tenant: TenantContext;
let fake: ReturnType<typeof createFakeProvider>;
let server: ReturnType<Koa['callback']>;
let adminId: string;

/** The root middleware the lead's createApp uses, with the interaction routes where it will mount them. */
function buildApp(): Koa {
  const app = new Koa();
  app.use(securityHeaders({ https: false }));
  app.use(observeRequests(test.deps));
  app.use(assetRoutes());
  app.use(tenantEdge(test.deps.tenants, interactionRoutes({ ...test.deps, oidc: { providerFor: async () => fake.provider } })));
  return app;
}

const csrfFor = (uid: string, t: TenantContext = tenant) => createCsrfGuard(test.deps.masterKey).tokenFor(t.id, uid);
const pagePath = (uid: string, step = '', slug = 'default') => `/t/${slug}/interaction/${uid}${step ? `/${step}` : ''}`;

function postForm(uid: string, step: string, fields: Record<string, string>, cookieUid = uid) {
  return request(server)
    .post(pagePath(uid, step))
    .set('Cookie', `_interaction=${cookieUid}`)
    .type('form')
    .send(new URLSearchParams(fields).toString());
}

async function createTenant(slug: string, displayName: string, settings: object = {}): Promise<TenantContext> {
  await test.deps.db.prisma.tenant.create({ data: { slug, displayName, settings } });
  const found = await test.deps.tenants.bySlug(slug);
  if (!found) throw new Error('tenant not found');
  return found;
}

function cspOf(res: request.Response): Map<string, string[]> {
  const header = String(res.headers['content-security-policy'] ?? '');
  return new Map(
    header.split(';').map((part) => {
      const [name = '', ...sources] = part.trim().split(/\s+/);
      return [name, sources];
    }),
  );
}

beforeAll(async () => {
  test = await createTestApp({ seed: true });
  const found = await test.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
  adminId = (await test.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant.id, email: 'admin@example.com' } })).id;
  server = buildApp().callback();
});
afterAll(() => test?.close());
beforeEach(() => {
  fake = createFakeProvider({ app: 'Example App', evil: XSS });
});

// ---------------------------------------------------------------- tests

describe('sign-in page', () => {
  it('renders an accessible, script-free form with the client name and a CSRF token', async () => {
    const uid = fake.start('login');
    const res = await request(server).get(pagePath(uid)).set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['referrer-policy']).toBe('same-origin');
    const html = res.text;
    expect(html).toContain('<html lang="en">');
    expect(html).toMatch(/<main[^>]*id="main"/);
    expect(html).toContain('Example App');
    expect(html).toContain(`name="_csrf" value="${csrfFor(uid)}"`);
    expect(html).toMatch(/<label for="email">/);
    expect(html).toMatch(/<input id="email"[^>]*autocomplete="username"/);
    expect(html).toMatch(/<label for="password">/);
    expect(html).toMatch(/<input id="password"[^>]*type="password"[^>]*autocomplete="current-password"/);
    expect(html).toContain(`action="${pagePath(uid, 'login')}"`);
    expect(html).toContain(`href="${STYLESHEET_HREF}"`);
    expect(html).not.toMatch(/<script/i);
    // The browser follows redirects to the client after the post; Chromium checks form-action on each hop.
    expect(cspOf(res).get('form-action')).toEqual(["'self'", 'https://rp.example.com']);
    expect(cspOf(res).get('default-src')).toEqual(["'none'"]);
  });

  it('escapes a hostile client name and login_hint', async () => {
    const uid = fake.start('login', {
      params: { client_id: 'evil', redirect_uri: REDIRECT_URI, login_hint: `"><img src=x onerror=alert(1)>` },
    });
    const res = await request(server).get(pagePath(uid)).set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('<script>alert');
    expect(res.text).not.toContain('<img src=x');
    expect(res.text).toContain('&lt;script&gt;');
    expect(res.text).toContain('value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
  });

  it('escapes a hostile tenant display name, and applies a valid colour and https logo within the CSP', async () => {
    const evil = await createTenant(`evil-${randomBytes(3).toString('hex')}`, XSS, {
      branding: { primaryColor: '#FFCC00', logoUrl: 'https://cdn.example.com/logo.png' },
    });
    const uid = fake.start('login');
    const res = await request(server)
      .get(pagePath(uid, '', evil.slug))
      .set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('<script>alert');
    expect(res.text).toContain('alt="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"');
    expect(res.text).toContain('<img class="brand-logo" src="https://cdn.example.com/logo.png"');

    const css = /<style>([^<]*)<\/style>/.exec(res.text)?.[1] ?? '';
    expect(css).toBe(':root{--brand:#ffcc00;--brand-contrast:#000000}');
    const hash = `'sha256-${createHash('sha256').update(css).digest('base64')}'`;
    expect(cspOf(res).get('style-src')).toEqual(["'self'", hash]);
    expect(cspOf(res).get('img-src')).toEqual(["'self'", 'data:', 'https://cdn.example.com']);
  });

  it('shows the display name instead of a logo that is not https', async () => {
    // Settings written behind the schema's back, as a broken import might.
    const plain: TenantContext = {
      ...tenant,
      displayName: 'Plain Co',
      settings: { branding: { primaryColor: '#003366', logoUrl: 'http://insecure.example.com/x.png' } },
    };
    const res = await renderedErrorFor(plain);
    expect(res.text).not.toContain('insecure.example.com');
    expect(res.text).toContain('<span class="brand-name">Plain Co</span>');
    expect(res.text).toContain('--brand-contrast:#ffffff');
    expect(cspOf(res).get('img-src')).toEqual(["'self'", 'data:']);
  });

  it('signs in with the right password and finishes the interaction with amr and acr', async () => {
    const uid = fake.start('login');
    const res = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'Admin@Example.com', password: TEST_ADMIN_PASSWORD })
      .set('Origin', 'http://localhost:3000')
      .set('User-Agent', 'pages-test');
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe(`/t/default/auth/${uid}`);
    expect(fake.finished).toEqual([
      {
        uid,
        result: { login: { accountId: adminId, amr: ['pwd'], acr: ACR.password, remember: true } },
        options: { mergeWithLastSubmission: false },
      },
    ]);
    const event = await test.deps.db.prisma.auditEvent.findFirst({
      where: { tenantId: tenant.id, action: 'auth.sign_in.succeeded' },
      orderBy: { seq: 'desc' },
    });
    expect(event).toMatchObject({ actorId: adminId, userAgent: 'pages-test' });
    expect(event?.metadata).toMatchObject({ client_id: 'app' });
  });

  it('answers a wrong password and an unknown address with the same page and message', async () => {
    const uid = fake.start('login');
    const wrong = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'admin@example.com', password: 'nope-nope-nope' });
    const unknown = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'ghost@example.com', password: 'nope-nope-nope' });
    for (const res of [wrong, unknown]) {
      expect(res.status).toBe(422);
      expect(res.text).toContain(`<p class="alert" id="login-error" role="alert">${SIGN_IN_FAILED}</p>`);
      expect(res.text).toMatch(/<input id="email"[^>]*aria-describedby="login-error"/);
      expect(res.text).toMatch(/<input id="password"[^>]*aria-describedby="login-error"/);
      expect(res.text).toContain(`name="_csrf" value="${csrfFor(uid)}"`);
    }
    expect(wrong.text.replace('admin@example.com', 'X')).toBe(unknown.text.replace('ghost@example.com', 'X'));
    expect(fake.finished).toEqual([]);
  });

  it('re-shows the form with a 400 when a field is missing or oversized', async () => {
    const uid = fake.start('login');
    const missing = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'admin@example.com' });
    expect(missing.status).toBe(400);
    expect(missing.text).toContain('Enter your email address and password.');
    const oversized = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'a'.repeat(400), password: 'x' });
    expect(oversized.status).toBe(400);
    expect(fake.finished).toEqual([]);
  });
});

describe('form posts', () => {
  it('refuses a post without, or with a wrong, CSRF token with a 403 page', async () => {
    const uid = fake.start('login');
    const other = fake.start('login');
    const posts = [
      postForm(uid, 'login', { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }),
      postForm(uid, 'login', { _csrf: 'forged', email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }),
      postForm(uid, 'login', { _csrf: csrfFor(other), email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }),
      postForm(uid, 'abort', { _csrf: csrfFor(uid, { ...tenant, id: '00000000-0000-0000-0000-000000000000' }) }),
    ];
    for (const res of await Promise.all(posts)) {
      expect(res.status).toBe(403);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.text).toContain('This form has expired or was not sent from this site.');
    }
    expect(fake.finished).toEqual([]);
  });

  it('refuses a post from another origin even with a valid token', async () => {
    const uid = fake.start('login');
    for (const origin of ['https://attacker.example', 'null']) {
      const res = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }).set(
        'Origin',
        origin,
      );
      expect(res.status).toBe(403);
    }
    expect(fake.finished).toEqual([]);
    // The host the browser addressed counts as ours too (a second public name behind the proxy).
    const sameHost = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'admin@example.com', password: 'wrong-password' })
      .set('Host', 'idp.example.org')
      .set('Origin', 'http://idp.example.org');
    expect(sameHost.status).toBe(422);
  });

  it('answers malformed bodies with 4xx pages, never a stack', async () => {
    const uid = fake.start('login');
    const json = await request(server)
      .post(pagePath(uid, 'login'))
      .set('Cookie', `_interaction=${uid}`)
      .send({ email: 'a', password: 'b' });
    expect(json.status).toBe(415);
    const big = await postForm(uid, 'login', { _csrf: csrfFor(uid), email: 'x', password: 'p'.repeat(70 * 1024) });
    expect(big.status).toBe(413);
    const duplicated = await request(server)
      .post(pagePath(uid, 'login'))
      .set('Cookie', `_interaction=${uid}`)
      .type('form')
      .send(`_csrf=${csrfFor(uid)}&email=a%40b.c&email=admin%40example.com&password=x`);
    expect(duplicated.status).toBe(400);
    const brokenEncoding = await request(server)
      .post(pagePath(uid, 'login'))
      .set('Cookie', `_interaction=${uid}`)
      .type('form')
      .send(`_csrf=${csrfFor(uid)}&email=%E0%A4%A&password=%`);
    // URLSearchParams keeps undecodable escapes as they are: no crash, just a failed sign-in.
    expect(brokenEncoding.status).toBe(422);
    for (const res of [json, big, duplicated, brokenEncoding]) {
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).not.toMatch(/at .*\.ts:\d+/);
    }
  });

  it('answers GET on a form target with 405 and an Allow header', async () => {
    const uid = fake.start('login');
    const res = await request(server).get(pagePath(uid, 'login')).set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST');
  });
});

describe('interactions that are gone', () => {
  it('shows a friendly 400 page for an unknown or expired interaction', async () => {
    const res = await request(server).get(pagePath('does-not-exist'));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('This sign-in request has expired or is no longer valid.');
  });

  it('refuses an interaction whose cookie names another uid (a second tab, a stale link)', async () => {
    const mine = fake.start('login');
    const other = fake.start('login');
    const page = await request(server).get(pagePath(other)).set('Cookie', `_interaction=${mine}`);
    expect(page.status).toBe(400);
    const post = await postForm(other, 'login', { _csrf: csrfFor(other), email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }, mine);
    expect(post.status).toBe(400);
    expect(fake.finished).toEqual([]);
  });

  it('hides what went wrong when the provider fails unexpectedly', async () => {
    const uid = fake.start('login');
    fake.failNextWith(new Error('connection string postgres://secret@db leaked'));
    const res = await request(server).get(pagePath(uid)).set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(500);
    expect(res.text).toContain('Something unexpected happened on our side.');
    expect(res.text).not.toContain('secret@db');
  });

  it('leaves paths it does not own to the next middleware', async () => {
    const res = await request(server).get('/t/default/interaction/uid/unknown-step');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', error_description: 'no such route' });
  });
});

describe('consent page', () => {
  const details: PromptDetails = {
    missingOIDCScope: ['openid', 'email', 'offline_access', 'invoices.read'],
    missingOIDCClaims: ['email', 'sub'],
    missingResourceScopes: { 'https://api.example.com': ['orders.read', 'orders.write'] },
  };

  it('lists what the client asks for, with its name escaped', async () => {
    const uid = fake.start('consent', {
      details,
      session: { accountId: adminId },
      params: { client_id: 'evil', redirect_uri: REDIRECT_URI },
    });
    const res = await request(server).get(pagePath(uid)).set('Cookie', `_interaction=${uid}`);
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('<script>alert');
    expect(res.text).toContain('See your email address');
    expect(res.text).toContain('Stay signed in to it when you are not using it');
    expect(res.text).toContain('Use the permission “invoices.read”');
    expect(res.text).toContain('https://api.example.com');
    expect(res.text).toContain('orders.write');
    expect(res.text).toContain('admin@example.com');
    expect(res.text).toContain(`action="${pagePath(uid, 'confirm')}"`);
    expect(res.text).toContain(`action="${pagePath(uid, 'abort')}"`);
  });

  it('grants exactly what was missing, finishes with the grant and audits it', async () => {
    const uid = fake.start('consent', { details, session: { accountId: adminId } });
    const res = await postForm(uid, 'confirm', { _csrf: csrfFor(uid) });
    expect(res.status).toBe(303);
    const [done] = fake.finished;
    expect(done?.options).toEqual({ mergeWithLastSubmission: true });
    const grantId = done && 'consent' in done.result ? done.result.consent.grantId : '';
    expect(fake.grants.get(grantId)).toEqual({
      accountId: adminId,
      clientId: 'app',
      scopes: ['openid', 'email', 'offline_access', 'invoices.read'],
      claims: ['email', 'sub'],
      resources: { 'https://api.example.com': 'orders.read orders.write' },
    });
    const event = await test.deps.db.prisma.auditEvent.findFirst({
      where: { tenantId: tenant.id, action: 'auth.consent.granted' },
      orderBy: { seq: 'desc' },
    });
    expect(event).toMatchObject({ actorId: adminId, resourceType: 'client', resourceId: 'app' });
    expect(event?.metadata).toMatchObject({ client_id: 'app', scopes: details.missingOIDCScope });
  });

  it('adds to an existing grant instead of replacing it', async () => {
    const existing = new fake.provider.Grant({ accountId: adminId, clientId: 'app' });
    existing.addOIDCScope('openid profile');
    const grantId = await existing.save();
    const uid = fake.start('consent', { details: { missingOIDCScope: ['email'] }, session: { accountId: adminId }, grantId });
    expect((await postForm(uid, 'confirm', { _csrf: csrfFor(uid) })).status).toBe(303);
    const saved = [...fake.grants.values()].at(-1);
    expect(saved?.scopes).toEqual(['openid', 'profile', 'email']);
  });

  it('denies with access_denied and audits the refusal', async () => {
    const uid = fake.start('consent', { details, session: { accountId: adminId } });
    const res = await postForm(uid, 'abort', { _csrf: csrfFor(uid) });
    expect(res.status).toBe(303);
    expect(fake.finished[0]?.result).toEqual({ error: 'access_denied', error_description: 'End-User aborted interaction' });
    expect(fake.finished[0]?.options).toEqual({ mergeWithLastSubmission: false });
    const event = await test.deps.db.prisma.auditEvent.findFirst({
      where: { tenantId: tenant.id, action: 'auth.consent.denied' },
      orderBy: { seq: 'desc' },
    });
    expect(event).toMatchObject({ actorId: adminId, resourceId: 'app' });
  });

  it('refuses a consent post while the prompt is still login', async () => {
    const uid = fake.start('login');
    const res = await postForm(uid, 'confirm', { _csrf: csrfFor(uid) });
    expect(res.status).toBe(400);
    expect(fake.finished).toEqual([]);
  });
});

// ---------------------------------------------------------------- the pages oidc-provider renders through us

/** A bare koa app that renders one page the way the provider's callbacks will. */
function renderWith(render: (ctx: Koa.Context) => void) {
  const app = new Koa();
  app.use(securityHeaders({ https: false }));
  app.use(async (ctx) => {
    ctx.status = 400;
    render(ctx);
  });
  return request(app.callback()).get('/');
}

function renderedErrorFor(t: TenantContext) {
  return renderWith((ctx) => renderErrorPage(ctx, { error: 'invalid_request', error_description: 'bad' }, t));
}

describe('provider pages', () => {
  it('escapes error_description and keeps the status the provider set', async () => {
    const res = await renderWith((ctx) =>
      renderErrorPage(ctx, { error: 'invalid_request', error_description: `redirect_uri <img src=x onerror=alert(1)> "quoted"` }, tenant),
    );
    expect(res.status).toBe(400);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).toContain('Redirect_uri &lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot;.');
    expect(res.text).not.toContain('<img src=x');
    expect(res.text).toContain('<code>invalid_request</code>');
  });

  it('shows a generic message for server_error and an unknown-looking code as server_error', async () => {
    const res = await renderWith((ctx) => renderErrorPage(ctx, { error: 'server_error', error_description: 'stack: at db.ts:12' }, tenant));
    expect(res.text).toContain('Something unexpected happened on our side.');
    expect(res.text).not.toContain('db.ts');
    const odd = await renderWith((ctx) => renderErrorPage(ctx, { error: `<b>x</b>` }, tenant));
    expect(odd.text).toContain('<code>server_error</code>');
    expect(odd.text).not.toContain('<b>x</b>');
  });

  it('renders the logout page with the provider form and both buttons, without script', async () => {
    const form =
      '<form id="op.logoutForm" method="post" action="/t/default/session/end/confirm"><input type="hidden" name="xsrf" value="abc"/></form>';
    const res = await renderWith((ctx) => {
      Object.assign(ctx, {
        oidc: { client: { clientId: 'evil', clientName: XSS }, params: { post_logout_redirect_uri: 'https://rp.example.com/bye' } },
      });
      renderLogoutPage(ctx, form, tenant);
    });
    expect(res.text).toContain(form);
    expect(res.text).toMatch(
      /<button[^>]*type="submit"[^>]*form="op.logoutForm"[^>]*name="logout"[^>]*value="yes"[^>]*>Sign out<\/button>/,
    );
    expect(res.text).toMatch(/<button[^>]*form="op.logoutForm"[^>]*>Stay signed in<\/button>/);
    expect(res.text).not.toContain('<script>alert');
    expect(res.text).toContain('&lt;script&gt;');
    expect(cspOf(res).get('form-action')).toEqual(["'self'", 'https://rp.example.com']);
  });

  it('renders the logout success page', async () => {
    const res = await renderWith((ctx) => {
      Object.assign(ctx, { oidc: { client: { clientId: 'app', clientName: 'Example App' } } });
      renderLogoutSuccess(ctx, tenant);
    });
    expect(res.text).toContain('You are signed out');
    expect(res.text).toContain('Example App');
  });
});

describe('stylesheet', () => {
  it('serves the stylesheet with a long, immutable cache and revalidates by ETag', async () => {
    const res = await request(server).get(STYLESHEET_HREF);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.text).toContain('--brand');
    const again = await request(server).get('/assets/style.css').set('If-None-Match', String(res.headers.etag));
    expect(again.status).toBe(304);
    expect((await request(server).post('/assets/style.css')).status).toBe(405);
  });
});

describe('building blocks', () => {
  it('derives one CSRF token per tenant, interaction and master key', () => {
    const guard = createCsrfGuard(randomBytes(32));
    const token = guard.tokenFor('tenant-a', 'uid-1');
    expect(guard.tokenFor('tenant-a', 'uid-1')).toBe(token);
    expect(guard.verify('tenant-a', 'uid-1', token)).toBe(true);
    expect(guard.verify('tenant-b', 'uid-1', token)).toBe(false);
    expect(guard.verify('tenant-a', 'uid-2', token)).toBe(false);
    expect(guard.verify('tenant-a', 'uid-1', undefined)).toBe(false);
    expect(guard.verify('tenant-a', 'uid-1', [token])).toBe(false);
    expect(createCsrfGuard(randomBytes(32)).verify('tenant-a', 'uid-1', token)).toBe(false);
  });

  it('widens the CSP only with well-formed sources', () => {
    const csp = widenCsp({
      formAction: ['https://ok.example', "https://x.example; script-src 'unsafe-inline'", '*'],
      imgSrc: ['javascript:'],
    });
    expect(csp).toContain("form-action 'self' https://ok.example;");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain(' *');
    expect(formActionSource('com.example.app:/callback')).toBe('com.example.app:');
    expect(formActionSource('http://127.0.0.1:8080/cb?x=1')).toBe('http://127.0.0.1:8080');
    expect(formActionSource('not a url')).toBeNull();
  });
});
