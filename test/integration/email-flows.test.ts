import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import { sha256 } from '../../src/crypto/random.js';
import { type EmailFlowDeps, inviteUser, sendEmailVerification, sendInvite } from '../../src/mail/flows.js';
import { beginTotpEnrollment, confirmTotpEnrollment } from '../../src/security/mfa.js';
import { totpCodeAt } from '../../src/security/totp.js';
import type { TenantContext } from '../../src/tenants/tenants.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, RELAXED_RATE_LIMITS, type TestApp } from '../helpers/app.js';
import { type BrowserResponse, findForm, Browser as PageBrowser } from '../helpers/browser.js';
import { ssoOnlyConnection } from '../helpers/federation.js';
import { linkIn, startMailServer, type TestMailServer } from '../helpers/mail.js';
import { announce, authorize, Browser, createTenantClient, parseForms, rpConfig, signIn, textOf } from '../helpers/oidc.js';

/**
 * The mail flows end to end: a real SMTP server (smtp-server) receives what
 * nodemailer sends, mailparser reads it, and the links in the plain-text part
 * are followed through the hosted pages. Time moves on the injected clock.
 */

const REDIRECT_URI = 'https://rp.example.com/cb';
const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a brand new passphrase';

const clock = manualClock(Date.now());
let t: TestApp;
let mail: TestMailServer;
let baseUrl: string;
let issuer: string;
let tenant: TenantContext;
let config: oidc.Configuration;

function flows(): EmailFlowDeps {
  const { db, audit, passwords, kv, mailer } = t.deps;
  return { prisma: db.prisma, audit, passwords, kv, clock, mailer, config: t.deps.config };
}

async function newUser(email: string, password: string | undefined = PASSWORD) {
  return createUser(
    { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
    tenant.id,
    { email, password },
    { type: 'system' },
  );
}

async function auditOf(action: string, userId?: string) {
  return t.deps.db.prisma.auditEvent.findMany({
    where: { tenantId: tenant.id, action, ...(userId ? { resourceId: userId } : {}) },
    orderBy: { seq: 'asc' },
  });
}

async function setSettings(settings: Record<string, unknown>) {
  await t.deps.db.prisma.tenant.update({ where: { id: tenant.id }, data: { settings: { rateLimits: RELAXED_RATE_LIMITS, ...settings } } });
  await announce(t, { tenantId: tenant.id, slug: 'default', what: 'tenant' });
}

/** Posts the page's form at `suffix` and returns the answer (no redirects on these pages). */
function post(browser: PageBrowser, page: BrowserResponse, suffix: string, fields: Record<string, string>) {
  return browser.submit(page, suffix, fields);
}

async function requestReset(email: string): Promise<BrowserResponse> {
  const browser = new PageBrowser(baseUrl);
  const form = await browser.follow(`${issuer}/password/forgot`);
  expect(form.status).toBe(200);
  return post(browser, form, '/password/forgot', { email });
}

/** Whether `password` signs `email` in (through the hosted pages, a fresh browser). */
async function canSignIn(email: string, password: string): Promise<boolean> {
  try {
    await authorize(issuer, config, { email, password, scope: 'openid' });
    return true;
  } catch {
    return false;
  }
}

/** Runs `work` while `domain` requires single sign-on (a connection that is removed afterwards). */
async function whileSsoOnly(domain: string, work: () => Promise<void>): Promise<void> {
  const connection = await t.deps.db.prisma.connection.create({ data: ssoOnlyConnection(tenant.id, domain) });
  try {
    await work();
  } finally {
    await t.deps.db.prisma.connection.delete({ where: { id: connection.id } });
  }
}

beforeAll(async () => {
  mail = await startMailServer();
  t = await createTestApp({ seed: true, clock, env: { SMTP_URL: mail.url, MAIL_FROM: 'Example ID <id@example.com>' } });
  baseUrl = await t.listen();
  issuer = `${baseUrl}/t/default`;
  const found = await t.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
  const client = await createTenantClient(t, { name: 'Web', redirectUris: [REDIRECT_URI], firstParty: true });
  config = await rpConfig(issuer, client);
});
afterAll(async () => {
  await t?.close();
  await mail?.close();
});

describe('password reset', () => {
  it('mails a single-use link that sets a new password, through the hosted pages', async () => {
    const user = await newUser('alice@example.com');
    const answer = await requestReset('Alice@Example.com');
    expect(answer.status).toBe(200);
    expect(answer.text).toContain('Check your email');

    const message = await mail.waitFor('alice@example.com', /Reset your password/);
    expect(message.from).toBe('id@example.com');
    const link = linkIn(message, `${issuer}/password/reset?token=`);
    // A plain-text alternative and an HTML part carrying the same link.
    expect(message.html).toContain(link.replace(/&/g, '&amp;'));
    expect(message.text).toContain('30 minutes');
    // Only a hash of the token is stored.
    const token = new URL(link).searchParams.get('token') ?? '';
    const row = await t.deps.db.prisma.emailToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'reset_password' } });
    expect(row.tokenHash).toBe(sha256(token));
    expect(JSON.stringify(row)).not.toContain(token);

    const browser = new PageBrowser(baseUrl);
    const form = await browser.follow(link);
    expect(form.status).toBe(200);
    expect(form.text).toContain('Choose a new password');
    expect(form.text).toContain('alice@example.com');

    const common = await post(browser, form, '/password/reset', { password: 'password123' });
    expect(common.status).toBe(422);
    expect(common.text).toContain('too common');
    const short = await post(browser, common, '/password/reset', { password: 'short' });
    expect(short.status).toBe(422);
    expect(short.text).toContain('at least 8 characters');

    const done = await post(browser, short, '/password/reset', { password: NEW_PASSWORD });
    expect(done.status).toBe(200);
    expect(done.text).toContain('Your password has been changed');

    const updated = await t.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } });
    expect(updated.passwordChangedAt?.getTime()).toBe(clock.now());
    expect(await canSignIn('alice@example.com', NEW_PASSWORD)).toBe(true);
    expect(await canSignIn('alice@example.com', PASSWORD)).toBe(false);
    expect(await auditOf('auth.password_reset.requested', user.id)).toHaveLength(1);
    expect(await auditOf('auth.password_reset.completed', user.id)).toHaveLength(1);

    // The link is used up: opening it again or posting it again is refused.
    const again = await new PageBrowser(baseUrl).follow(link);
    expect(again.status).toBe(400);
    expect(again.text).toContain('already used');
    const replay = await post(browser, form, '/password/reset', { password: 'yet another passphrase' });
    expect(replay.status).toBe(400);
    expect(await canSignIn('alice@example.com', NEW_PASSWORD)).toBe(true);
  });

  it('revokes the sessions and refresh tokens of the user, and does not skip the second factor', async () => {
    const user = await newUser('bob@example.com');
    const { tokens, browser } = await signIn(issuer, config, {
      email: 'bob@example.com',
      password: PASSWORD,
      scope: 'openid offline_access',
      extraParams: { prompt: 'consent' },
    });
    const refreshToken = tokens.refresh_token ?? '';
    expect(refreshToken).not.toBe('');
    // Bob adds TOTP after that first sign-in.
    const mfaDeps = { prisma: t.deps.db.prisma, kv: t.deps.kv, clock, audit: t.deps.audit, vault: t.deps.vault };
    const enrollment = await beginTotpEnrollment(mfaDeps, tenant, { id: user.id, email: user.email });
    expect(
      (await confirmTotpEnrollment(mfaDeps, tenant.id, user.id, enrollment.factorId, totpCodeAt(enrollment.secret, clock.now()), {})).ok,
    ).toBe(true);

    await requestReset('bob@example.com');
    const link = linkIn(await mail.waitFor('bob@example.com', /Reset your password/), `${issuer}/password/reset?token=`);
    const pages = new PageBrowser(baseUrl);
    const done = await post(pages, await pages.follow(link), '/password/reset', { password: NEW_PASSWORD });
    expect(done.status).toBe(200);

    await expect(oidc.refreshTokenGrant(config, refreshToken)).rejects.toMatchObject({ error: 'invalid_grant' });
    // The old browser's session is gone: it is asked to sign in again.
    const resumed = await browser.follow((await authorizeUrl()).href);
    expect(resumed.kind).toBe('page');
    if (resumed.kind === 'page') expect(parseForms(resumed.html).some((f) => f.action.endsWith('/login'))).toBe(true);

    // The new password leads to the second factor, not to the client.
    const fresh = new Browser(baseUrl);
    const outcome = await fresh.follow((await authorizeUrl()).href, { credentials: { email: 'bob@example.com', password: NEW_PASSWORD } });
    expect(outcome.kind).toBe('page');
    if (outcome.kind === 'page') {
      expect(outcome.status).toBe(200);
      expect(parseForms(outcome.html).some((f) => f.action.endsWith('/mfa'))).toBe(true);
    }
  });

  it('answers the same for a registered and an unknown address, and mails only the first', async () => {
    await newUser('carol@example.com');
    const known = await requestReset('carol@example.com');
    const unknown = await requestReset('nobody-here@example.com');
    expect(unknown.status).toBe(known.status);
    expect(unknown.text.replaceAll('nobody-here@example.com', 'X')).toBe(known.text.replaceAll('carol@example.com', 'X'));
    expect(unknown.headers.getSetCookie()).toEqual([]);
    expect(known.headers.getSetCookie()).toEqual([]);
    await t.deps.mailer.idle();
    expect(mail.to('carol@example.com')).toHaveLength(1);
    expect(mail.to('nobody-here@example.com')).toHaveLength(0);
    // Both requests are handled in the background, so their events may be recorded in either order.
    const requested = await auditOf('auth.password_reset.requested');
    const unknownAudit = requested.find((event) => (event.metadata as { reason?: string }).reason === 'unknown_user');
    expect(unknownAudit?.metadata).toMatchObject({ delivered: false, reason: 'unknown_user' });
    expect(unknownAudit?.resourceId).toBeNull();
    expect(JSON.stringify(unknownAudit?.metadata)).not.toContain('nobody-here');
  });

  it('mails no link to a domain that requires single sign-on, answering as for any address (regression: reset skipped require_sso)', async () => {
    const user = await newUser('sso-reset@corp.example');
    await whileSsoOnly('corp.example', async () => {
      const sso = await requestReset('sso-reset@corp.example');
      const unknown = await requestReset('nobody-either@example.com');
      expect(sso.status).toBe(unknown.status);
      expect(sso.text.replaceAll('sso-reset@corp.example', 'X')).toBe(unknown.text.replaceAll('nobody-either@example.com', 'X'));
      expect(sso.headers.getSetCookie()).toEqual([]);
      await t.deps.mailer.idle();
      expect(mail.to('sso-reset@corp.example')).toHaveLength(0);
      expect(await t.deps.db.prisma.emailToken.count({ where: { userId: user.id } })).toBe(0);
      const requested = await auditOf('auth.password_reset.requested', user.id);
      expect(requested.map((event) => event.metadata)).toEqual([{ delivered: false, reason: 'sso_required' }]);
    });
  });

  it('refuses a link mailed before the domain required single sign-on, when opened and when posted', async () => {
    const user = await newUser('sso-late@corp.example');
    await requestReset('sso-late@corp.example');
    const link = linkIn(await mail.waitFor('sso-late@corp.example', /Reset your password/), `${issuer}/password/reset?token=`);
    const browser = new PageBrowser(baseUrl);
    const form = await browser.follow(link);
    expect(form.status).toBe(200);
    await whileSsoOnly('corp.example', async () => {
      const opened = await new PageBrowser(baseUrl).follow(link);
      expect(opened.status).toBe(403);
      expect(textOf(opened.text)).toContain('signs in with single sign-on');
      const posted = await post(browser, form, '/password/reset', { password: NEW_PASSWORD });
      expect(posted.status).toBe(403);
      expect(textOf(posted.text)).toContain('signs in with single sign-on');
    });
    const after = await t.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } });
    expect(after.passwordHash).toBe(user.passwordHash);
    expect(await auditOf('auth.password_reset.completed', user.id)).toHaveLength(0);
  });

  it('refuses a form without its CSRF nonce cookie or from another origin', async () => {
    const browser = new PageBrowser(baseUrl);
    const page = await browser.follow(`${issuer}/password/forgot`);
    const { action, hidden } = findForm(page.text, '/password/forgot');
    const stranger = await fetch(new URL(action, baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...hidden, email: 'carol@example.com' }).toString(),
      redirect: 'manual',
    });
    expect(stranger.status).toBe(403);
    const cookie = browser
      .cookiesFor('/t/default/password/forgot')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    const crossSite = await fetch(new URL(action, baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: 'https://evil.example' },
      body: new URLSearchParams({ ...hidden, email: 'carol@example.com' }).toString(),
      redirect: 'manual',
    });
    expect(crossSite.status).toBe(403);
    const invalid = await post(browser, page, '/password/forgot', { email: 'not an address' });
    expect(invalid.status).toBe(400);
    expect(invalid.text).toContain('Enter a valid email address');
  });
});

async function authorizeUrl(): Promise<URL> {
  return oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
}

describe('self-service sign-up', () => {
  it('is not offered unless the tenant turns it on', async () => {
    const page = await new PageBrowser(baseUrl).follow(`${issuer}/signup`);
    expect(page.status).toBe(404);
    const login = await new Browser(baseUrl).follow((await authorizeUrl()).href);
    expect(login.kind === 'page' && login.html).toContain('/t/default/password/forgot');
    expect(login.kind === 'page' && login.html).not.toContain('/t/default/signup');
  });

  it('answers the same for a new and a registered address; the link confirms it and chooses the password', async () => {
    await setSettings({ signup: { enabled: true } });
    await newUser('dave@example.com');
    const submit = async (email: string) => {
      const browser = new PageBrowser(baseUrl);
      return post(browser, await browser.follow(`${issuer}/signup`), '/signup', { email });
    };
    const known = await submit('dave@example.com');
    const fresh = await submit('erin@example.com');
    expect(fresh.status).toBe(200);
    expect(fresh.status).toBe(known.status);
    expect(fresh.text.replaceAll('erin@example.com', 'X')).toBe(known.text.replaceAll('dave@example.com', 'X'));
    expect(fresh.headers.getSetCookie()).toEqual(known.headers.getSetCookie());

    expect((await mail.waitFor('dave@example.com', /Your account/)).text).toContain('There already is one');
    const verification = await mail.waitFor('erin@example.com', /Confirm your email address/);
    // No password before the mailbox is proven: nobody can hold an account under someone else's address.
    const pending = await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant.id, email: 'erin@example.com' } });
    expect(pending).toMatchObject({ passwordHash: null, emailVerified: false });

    const browser = new PageBrowser(baseUrl);
    const form = await browser.follow(linkIn(verification, `${issuer}/email/verify?token=`));
    expect(form.text).toContain('Choose your password');
    const common = await post(browser, form, '/email/verify', { password: 'iloveyou' });
    expect(common.status).toBe(422);
    const done = await post(browser, common, '/email/verify', { password: PASSWORD });
    expect(done.status).toBe(200);
    expect(done.text).toContain('Your account is ready');
    expect(await t.deps.db.prisma.user.findFirstOrThrow({ where: { id: pending.id } })).toMatchObject({ emailVerified: true });
    expect(await canSignIn('erin@example.com', PASSWORD)).toBe(true);
    expect(await auditOf('auth.sign_up.started', pending.id)).toHaveLength(1);
    expect(await auditOf('auth.sign_up.completed', pending.id)).toHaveLength(1);
    expect(await auditOf('auth.sign_up.existing')).toHaveLength(1);

    const login = await new Browser(baseUrl).follow((await authorizeUrl()).href);
    expect(login.kind === 'page' && login.html).toContain('/t/default/signup');
  });

  it('creates no account and mails nothing for a domain that requires single sign-on (regression: sign-up skipped require_sso)', async () => {
    await setSettings({ signup: { enabled: true } });
    const submit = async (email: string) => {
      const browser = new PageBrowser(baseUrl);
      return post(browser, await browser.follow(`${issuer}/signup`), '/signup', { email });
    };
    // A link mailed before the policy: it no longer chooses a password.
    await submit('sso-early@corp.example');
    const verification = await mail.waitFor('sso-early@corp.example', /Confirm your email address/);
    const early = new PageBrowser(baseUrl);
    const form = await early.follow(linkIn(verification, `${issuer}/email/verify?token=`));
    expect(form.text).toContain('Choose your password');
    await whileSsoOnly('corp.example', async () => {
      const sso = await submit('sso-signup@corp.example');
      const other = await submit('open-signup@example.com');
      expect(sso.status).toBe(other.status);
      expect(sso.text.replaceAll('sso-signup@corp.example', 'X')).toBe(other.text.replaceAll('open-signup@example.com', 'X'));
      expect(sso.headers.getSetCookie()).toEqual(other.headers.getSetCookie());
      await mail.waitFor('open-signup@example.com', /Confirm your email address/);
      await t.deps.mailer.idle();
      expect(mail.to('sso-signup@corp.example')).toHaveLength(0);
      expect(await t.deps.db.prisma.user.count({ where: { tenantId: tenant.id, email: 'sso-signup@corp.example' } })).toBe(0);
      expect((await auditOf('auth.sign_up.refused')).map((event) => event.metadata)).toEqual([{ reason: 'sso_required' }]);

      const posted = await post(early, form, '/email/verify', { password: PASSWORD });
      expect(posted.status).toBe(403);
      expect(textOf(posted.text)).toContain('signs in with single sign-on');
    });
    const pending = await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant.id, email: 'sso-early@corp.example' } });
    expect(pending.passwordHash).toBeNull();
  });
});

describe('verification and invitations', () => {
  it('confirms the address of an existing account with a button, not by opening the link', async () => {
    const user = await newUser('frank@example.com');
    await sendEmailVerification(flows(), tenant, user, {});
    const link = linkIn(await mail.waitFor('frank@example.com', /Confirm your email address/), `${issuer}/email/verify?token=`);
    const browser = new PageBrowser(baseUrl);
    const page = await browser.follow(link);
    expect(page.status).toBe(200);
    expect(await t.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).toMatchObject({ emailVerified: false });
    const done = await post(browser, page, '/email/verify', {});
    expect(done.text).toContain('Your address is confirmed');
    expect(await t.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).toMatchObject({ emailVerified: true });
    expect(await auditOf('user.email_verified', user.id)).toHaveLength(1);
    expect((await post(browser, page, '/email/verify', {})).status).toBe(400);
  });

  it('lets an invited user choose a password with the link, once', async () => {
    const { user, expiresAt } = await inviteUser(
      flows(),
      tenant,
      { email: 'Grace@Example.com', roles: ['member'] },
      { type: 'user', id: 'an-admin' },
    );
    expect(user.passwordHash).toBeNull();
    expect(expiresAt.getTime()).toBe(clock.now() + 7 * 24 * 3600 * 1000);
    const message = await mail.waitFor('grace@example.com', /invited/);
    const link = linkIn(message, `${issuer}/invite?token=`);
    const browser = new PageBrowser(baseUrl);
    const form = await browser.follow(link);
    expect(form.text).toContain('Accept the invitation');
    const done = await post(browser, form, '/invite', { password: PASSWORD });
    expect(done.text).toContain('Your account is ready');
    expect(await t.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).toMatchObject({ emailVerified: true });
    expect(await canSignIn('grace@example.com', PASSWORD)).toBe(true);
    expect((await new PageBrowser(baseUrl).follow(link)).status).toBe(400);
    expect(await auditOf('user.invite.sent', user.id)).toHaveLength(1);
    expect(await auditOf('user.invite.accepted', user.id)).toHaveLength(1);
  });

  it('makes only the latest invitation link work', async () => {
    const user = await newUser('judy@example.com', undefined);
    await sendInvite(flows(), tenant, user.id, { type: 'system' });
    const first = linkIn(await mail.waitFor('judy@example.com', /invited/), `${issuer}/invite?token=`);
    await sendInvite(flows(), tenant, user.id, { type: 'system' });
    await t.deps.mailer.idle();
    const second = mail.to('judy@example.com').at(-1);
    if (!second) throw new Error('no second invitation');
    expect((await new PageBrowser(baseUrl).follow(first)).status).toBe(400);
    expect((await new PageBrowser(baseUrl).follow(linkIn(second, `${issuer}/invite?token=`))).status).toBe(200);
  });
});

describe('new-device notice', () => {
  it('mails the user when a browser signs in for the first time, not when it comes back', async () => {
    const user = await newUser('heidi@example.com');
    const browser = new Browser(baseUrl);
    await authorize(issuer, config, { email: 'heidi@example.com', password: PASSWORD, browser, scope: 'openid' });
    const notice = await mail.waitFor('heidi@example.com', /New sign-in/);
    expect(notice.text).toContain('Network address: 127.0.0.1');
    expect(notice.text).toMatch(/Browser: \S/);
    expect(notice.text).toContain(`${issuer}/password/forgot`);
    const cookie = browser.jar.names(new URL(issuer)).find((name) => name === 'idp_device');
    expect(cookie).toBe('idp_device');
    const firstSeenAt = clock.now();
    const seen = () => t.deps.db.prisma.knownDevice.findFirstOrThrow({ where: { userId: user.id } });
    expect(await seen()).toMatchObject({ firstSeen: new Date(firstSeenAt), lastSeen: new Date(firstSeenAt) });

    // The same browser a minute later: seen again, not new.
    clock.advance(60_000);
    await authorize(issuer, config, {
      email: 'heidi@example.com',
      password: PASSWORD,
      browser,
      scope: 'openid',
      extraParams: { prompt: 'login' },
    });
    expect(await seen()).toMatchObject({ firstSeen: new Date(firstSeenAt), lastSeen: new Date(firstSeenAt + 60_000) });
    await authorize(issuer, config, { email: 'heidi@example.com', password: PASSWORD, scope: 'openid' });
    await t.deps.mailer.idle();
    expect(mail.to('heidi@example.com').filter((m) => /New sign-in/.test(m.subject))).toHaveLength(2);
    expect(await t.deps.db.prisma.knownDevice.count({ where: { userId: user.id } })).toBe(2);
    expect(await auditOf('auth.new_device.notified', user.id)).toHaveLength(2);
  });
});

describe('expiry (the clock moves from here on)', () => {
  it('refuses a reset link after 30 minutes', async () => {
    await newUser('ivan@example.com');
    await requestReset('ivan@example.com');
    const link = linkIn(await mail.waitFor('ivan@example.com', /Reset your password/), `${issuer}/password/reset?token=`);
    const browser = new PageBrowser(baseUrl);
    const form = await browser.follow(link);
    expect(form.status).toBe(200);
    clock.advance(30 * 60 * 1000 + 1);
    const late = await post(browser, form, '/password/reset', { password: NEW_PASSWORD });
    expect(late.status).toBe(400);
    expect(textOf(late.text)).toContain('expired');
    expect((await new PageBrowser(baseUrl).follow(link)).status).toBe(400);
    expect(await canSignIn('ivan@example.com', PASSWORD)).toBe(true);
  });
});
