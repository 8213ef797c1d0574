import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import { ACR } from '../../src/interaction/routes.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { ssoOnlyConnection } from '../helpers/federation.js';
import {
  asPage,
  hasStep,
  howSignedIn,
  type Page,
  recoveryCodesOf,
  redeem,
  type Started,
  signInWithPassword,
  submitStep,
} from '../helpers/mfa.js';
import {
  authorizationRequest,
  Browser,
  createTenantClient,
  createTenantWithUser,
  type Outcome,
  parseForms,
  rpConfig,
  textOf,
} from '../helpers/oidc.js';
import { passkeyOptionsOf, SoftwareAuthenticator } from '../helpers/webauthn.js';

/**
 * Passkeys through the hosted pages: registration while enrolling, as a
 * second factor and alone (passwordless), with a software authenticator
 * producing real attestation objects and ES256 signatures, so
 * @simplewebauthn/server verifies them as it would a phone's.
 */

const SLUG = 'keys';
const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const PASSWORD = 'correct horse battery staple';
/** These suites sign in many times a minute from one IP; the per-IP limits have suites of their own. */
const MANY_SIGN_INS = { signInPerMinute: 10_000, tokenPerMinute: 10_000 };

const clock = manualClock(Date.now());
let t: TestApp;
let issuer: string;
let config: oidc.Configuration;
let tenantId: string;
let authenticator: SoftwareAuthenticator;
let userId: string;
const EMAIL = 'passkey-admin@example.com';

const signIn = (email = EMAIL) => signInWithPassword(issuer, config, { email, password: PASSWORD });

/** The login page of a fresh authorization request, without typing anything. */
async function loginPage(): Promise<Started> {
  const browser = new Browser(new URL(issuer).origin);
  const request = await authorizationRequest(config);
  return { browser, request, outcome: await browser.follow(request.url) };
}

async function passkeyPage(started: Started, from: Outcome): Promise<Page> {
  const page = asPage(await submitStep(started.browser, from, 'passkey-begin'));
  expect(page.status).toBe(200);
  return page;
}

const requestOptions = (page: Page) => passkeyOptionsOf<PublicKeyCredentialRequestOptionsJSON>(page.html);

async function mfaEvents(action: string) {
  return t.deps.db.prisma.auditEvent.findMany({
    where: { tenantId, action },
    orderBy: { seq: 'asc' },
    select: { metadata: true, resourceId: true },
  });
}

beforeAll(async () => {
  t = await createTestApp({ clock });
  await t.listen();
  authenticator = new SoftwareAuthenticator(t.url);
  ({ tenantId } = await createTenantWithUser(
    t,
    SLUG,
    { email: 'first@example.com', password: PASSWORD },
    { mfa: { requiredRoles: ['admin'], passkeys: true }, rateLimits: MANY_SIGN_INS },
  ));
  await createTenantWithUser(t, 'no-keys', { email: 'first@example.com', password: PASSWORD }, { rateLimits: MANY_SIGN_INS });
  const client = await createTenantClient(
    t,
    { name: 'App', redirectUris: [REDIRECT_URI], scope: 'openid email profile', firstParty: true },
    SLUG,
  );
  issuer = `${t.url}/t/${SLUG}`;
  config = await rpConfig(issuer, client);
  userId = (
    await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenantId,
      { email: EMAIL, password: PASSWORD, roles: ['admin'] },
      { type: 'system' },
    )
  ).id;
});

afterAll(() => t.close());

describe('passkey registration', () => {
  it('registers a passkey instead of an authenticator app while enrolling, and signs in with pwd + hwk', async () => {
    const started = await signIn();
    expect(hasStep(started.outcome, 'passkey-register-begin')).toBe(true);
    // Only the passkey pages may run a script.
    const enrollPage = await started.browser.request(asPage(started.outcome).url);
    expect(enrollPage.headers.get('content-security-policy')).not.toContain('script-src');
    await enrollPage.body?.cancel();

    const beginForm = parseForms(asPage(started.outcome).html).find((f) => f.action.endsWith('/passkey-register-begin'));
    const begun = await started.browser.request(new URL(beginForm?.action ?? '', t.url), { form: beginForm?.fields ?? {} });
    expect(begun.headers.get('content-security-policy')).toMatch(/(^|; )script-src 'self'(;|$)/);
    const page: Page = { kind: 'page', url: new URL(beginForm?.action ?? '', t.url), status: begun.status, html: await begun.text() };
    expect(page.html).toMatch(/<script src="\/assets\/passkey\.js\?v=[\w-]+" defer>/);
    const script = await started.browser.request(new URL('/assets/passkey.js', t.url));
    expect(script.headers.get('content-type')).toContain('text/javascript');
    expect(await script.text()).toContain('navigator.credentials');
    const options = passkeyOptionsOf<PublicKeyCredentialCreationOptionsJSON>(page.html);
    expect(options.rp.id).toBe('127.0.0.1');
    expect(options.authenticatorSelection?.residentKey).toBe('required');
    expect(Buffer.from(options.user.id, 'base64url').toString()).toBe(userId);

    const codesPage = await submitStep(started.browser, page, 'passkey-register', {
      credential: JSON.stringify(authenticator.register(options)),
    });
    expect(recoveryCodesOf(codesPage)).toHaveLength(10);
    const tokens = await redeem(config, started, await submitStep(started.browser, codesPage, 'mfa-done'));
    expect(howSignedIn(tokens)).toEqual({ amr: ['pwd', 'hwk'], acr: ACR.multiFactor });

    const factors = await t.deps.db.prisma.mfaFactor.findMany({ where: { tenantId, userId } });
    expect(factors.map((f) => [f.type, f.confirmedAt !== null, f.counter])).toEqual([['webauthn', true, 0n]]);
    expect(factors[0]?.credentialId).toBe(Buffer.from(authenticator.credentials[0]?.id ?? []).toString('base64url'));
    expect((await mfaEvents('mfa.enrolled')).map((e) => e.metadata)).toEqual([expect.objectContaining({ type: 'webauthn' })]);
  });

  it('refuses a registration answered for another origin', async () => {
    const other = await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenantId,
      { email: 'evil-origin@example.com', password: PASSWORD, roles: ['admin'] },
      { type: 'system' },
    );
    const started = await signIn('evil-origin@example.com');
    const page = asPage(await submitStep(started.browser, started.outcome, 'passkey-register-begin'));
    const options = passkeyOptionsOf<PublicKeyCredentialCreationOptionsJSON>(page.html);
    const refused = asPage(
      await submitStep(started.browser, page, 'passkey-register', {
        credential: JSON.stringify(new SoftwareAuthenticator('https://evil.example').register(options)),
      }),
    );
    expect(refused.status).toBe(422);
    expect(hasStep(refused, 'totp-enroll')).toBe(true);
    expect(await t.deps.db.prisma.mfaFactor.count({ where: { tenantId, userId: other.id, type: 'webauthn' } })).toBe(0);
  });
});

describe('passkey as a second factor', () => {
  it('is offered after the password and moves the signature counter on', async () => {
    const started = await signIn();
    expect(hasStep(started.outcome, 'mfa')).toBe(true);
    const page = await passkeyPage(started, started.outcome);
    const options = requestOptions(page);
    expect(options.allowCredentials?.map((c) => c.id)).toEqual([Buffer.from(authenticator.credentials[0]?.id ?? []).toString('base64url')]);
    const tokens = await redeem(
      config,
      started,
      await submitStep(started.browser, page, 'passkey', { credential: JSON.stringify(authenticator.authenticate(options)) }),
    );
    expect(howSignedIn(tokens)).toEqual({ amr: ['pwd', 'hwk'], acr: ACR.multiFactor });
    const factor = await t.deps.db.prisma.mfaFactor.findFirstOrThrow({ where: { tenantId, userId, type: 'webauthn' } });
    expect(factor.counter).toBe(1n);
    expect(factor.lastUsedAt?.getTime()).toBe(clock.now());
  });

  it('refuses a tampered signature and a counter that went backwards (a cloned authenticator)', async () => {
    const started = await signIn();
    const page = await passkeyPage(started, started.outcome);
    const tampered = asPage(
      await submitStep(started.browser, page, 'passkey', {
        credential: JSON.stringify(authenticator.authenticate(requestOptions(page), { tamperSignature: true })),
      }),
    );
    expect(tampered.status).toBe(422);
    expect(hasStep(tampered, 'mfa')).toBe(true);

    const again = await passkeyPage(started, tampered);
    const cloned = asPage(
      await submitStep(started.browser, again, 'passkey', {
        credential: JSON.stringify(authenticator.authenticate(requestOptions(again), { counter: 1 })),
      }),
    );
    expect(cloned.status).toBe(422);
    const reasons = (await mfaEvents('mfa.failed')).map((e) => (e.metadata as { reason?: string }).reason);
    expect(reasons.slice(-2)).toEqual(['verification_failed', 'verification_failed']);
  });
});

describe('passwordless sign-in with a passkey', () => {
  it('signs in from the login page with a discoverable credential and user verification: amr hwk + user', async () => {
    const started = await loginPage();
    const page = await passkeyPage(started, started.outcome);
    const options = requestOptions(page);
    expect(options.allowCredentials ?? []).toEqual([]);
    expect(options.userVerification).toBe('required');
    const tokens = await redeem(
      config,
      started,
      await submitStep(started.browser, page, 'passkey', { credential: JSON.stringify(authenticator.authenticate(options)) }),
    );
    expect(howSignedIn(tokens)).toEqual({ amr: ['hwk', 'user'], acr: ACR.multiFactor });
    expect(tokens.claims()?.sub).toBe(userId);
    const succeeded = await t.deps.db.prisma.auditEvent.findMany({
      where: { tenantId, action: 'auth.sign_in.succeeded', resourceId: userId },
    });
    expect(succeeded.map((e) => (e.metadata as { method?: string }).method)).toContain('passkey');
  });

  it('refuses a wrong origin, a missing user verification and a tampered signature with the login page', async () => {
    for (const ceremony of [{ origin: 'https://evil.example' }, { userVerified: false }, { tamperSignature: true }]) {
      const started = await loginPage();
      const page = await passkeyPage(started, started.outcome);
      const refused = asPage(
        await submitStep(started.browser, page, 'passkey', {
          credential: JSON.stringify(authenticator.authenticate(requestOptions(page), ceremony)),
        }),
      );
      expect(refused.status).toBe(422);
      expect(textOf(refused.html)).toContain('That passkey could not be used to sign in');
      expect(hasStep(refused, 'login')).toBe(true);
    }
  });

  it('refuses a passkey whose user handle names someone else', async () => {
    const credential = authenticator.credentials[0];
    if (!credential) throw new Error('no credential registered');
    const own = credential.userHandle;
    credential.userHandle = Buffer.from('00000000-0000-4000-8000-000000000000');
    try {
      const started = await loginPage();
      const page = await passkeyPage(started, started.outcome);
      const refused = asPage(
        await submitStep(started.browser, page, 'passkey', {
          credential: JSON.stringify(authenticator.authenticate(requestOptions(page))),
        }),
      );
      expect(refused.status).toBe(422);
    } finally {
      credential.userHandle = own;
    }
    const failed = await t.deps.db.prisma.auditEvent.findMany({
      where: { tenantId, action: 'auth.sign_in.failed' },
      orderBy: { seq: 'desc' },
      take: 1,
    });
    expect(failed[0]?.metadata).toMatchObject({ method: 'passkey', reason: 'user_handle_mismatch' });
  });

  it('answers each challenge once: an old response and a retried challenge are refused', async () => {
    const first = await loginPage();
    const firstPage = await passkeyPage(first, first.outcome);
    const response = JSON.stringify(authenticator.authenticate(requestOptions(firstPage)));
    await redeem(config, first, await submitStep(first.browser, firstPage, 'passkey', { credential: response }));

    // The same response in another sign-in: its challenge is not this interaction's.
    const second = await loginPage();
    const secondPage = await passkeyPage(second, second.outcome);
    expect(asPage(await submitStep(second.browser, secondPage, 'passkey', { credential: response })).status).toBe(422);
    // That attempt used the challenge up: even a valid answer to it is refused now.
    const late = authenticator.authenticate(requestOptions(secondPage));
    expect(asPage(await submitStep(second.browser, secondPage, 'passkey', { credential: JSON.stringify(late) })).status).toBe(422);
  });

  it('refuses malformed credentials without a server error', async () => {
    const started = await loginPage();
    const page = await passkeyPage(started, started.outcome);
    for (const credential of ['', 'not json', '{"id":"x"}', JSON.stringify({ id: '!!', rawId: '!!', type: 'public-key', response: {} })]) {
      const refused = asPage(await submitStep(started.browser, page, 'passkey', { credential }));
      expect(refused.status).toBe(422);
    }
  });

  it('refuses a passkey of a domain that requires single sign-on, with the login page (regression: passkeys skipped require_sso)', async () => {
    const connection = await t.deps.db.prisma.connection.create({ data: ssoOnlyConnection(tenantId, 'example.com') });
    try {
      const started = await loginPage();
      const page = await passkeyPage(started, started.outcome);
      const refused = asPage(
        await submitStep(started.browser, page, 'passkey', {
          credential: JSON.stringify(authenticator.authenticate(requestOptions(page))),
        }),
      );
      expect(refused.status).toBe(403);
      expect(textOf(refused.html)).toContain('Your organization signs in with single sign-on');
      expect(hasStep(refused, 'login')).toBe(true);
      expect(hasStep(refused, 'sso')).toBe(true);
      const failed = await t.deps.db.prisma.auditEvent.findMany({
        where: { tenantId, action: 'auth.sign_in.failed' },
        orderBy: { seq: 'desc' },
        take: 1,
      });
      expect(failed[0]).toMatchObject({ resourceId: userId, metadata: { method: 'passkey', reason: 'sso_required' } });
    } finally {
      await t.deps.db.prisma.connection.delete({ where: { id: connection.id } });
    }
  });

  it('is not offered, and refused, when the tenant has passkeys off', async () => {
    const otherClient = await createTenantClient(
      t,
      { name: 'Other', redirectUris: [REDIRECT_URI], scope: 'openid', firstParty: true },
      'no-keys',
    );
    const otherIssuer = `${t.url}/t/no-keys`;
    const otherConfig = await rpConfig(otherIssuer, otherClient);
    const browser = new Browser(t.url);
    const request = await authorizationRequest(otherConfig, { scope: 'openid' });
    const page = asPage(await browser.follow(request.url));
    expect(hasStep(page, 'login')).toBe(true);
    expect(hasStep(page, 'passkey-begin')).toBe(false);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.html)?.[1] ?? '';
    const forced = await browser.request(new URL(`${page.url.pathname}/passkey-begin`, page.url), { form: { _csrf: csrf } });
    expect(forced.status).toBe(400);
  });
});
