import { randomBytes } from 'node:crypto';
import type * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import { MFA_FACTOR_SECRET, reencryptAll } from '../../src/crypto/reencrypt.js';
import { createVault } from '../../src/crypto/vault.js';
import { ACR } from '../../src/interaction/routes.js';
import {
  beginTotpEnrollment,
  confirmTotpEnrollment,
  MFA_ATTEMPT_LIMIT,
  MFA_WINDOW_SECONDS,
  resetMfa,
  useTotpCode,
} from '../../src/security/mfa.js';
import { TOTP_PERIOD_SECONDS, totpCodeAt, totpQrDataUrl, totpUri } from '../../src/security/totp.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { asPage, hasStep, howSignedIn, manualKeyOf, recoveryCodesOf, redeem, signInWithPassword, submitStep } from '../helpers/mfa.js';
import { createTenantClient, createTenantWithUser, rpConfig, textOf } from '../helpers/oidc.js';

/**
 * TOTP and recovery codes through the hosted pages, with openid-client as the
 * relying party and otplib (via totp.ts) as the authenticator app, computing
 * codes at the injected clock's time.
 */

const SLUG = 'totp';
const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const PASSWORD = 'correct horse battery staple';
/** These suites sign in many times a minute from one IP; the per-IP limits have suites of their own. */
const MANY_SIGN_INS = { signInPerMinute: 10_000, tokenPerMinute: 10_000 };
const STEP_MS = TOTP_PERIOD_SECONDS * 1000;

const clock = manualClock(Date.now());
let t: TestApp;
let issuer: string;
let config: oidc.Configuration;
let tenantId: string;

/** Email → TOTP secret read off the enrollment page, like a phone scanning the QR code. */
const phones = new Map<string, string>();

async function newUser(email: string, roles: string[] = []): Promise<string> {
  const user = await createUser(
    { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
    tenantId,
    { email, password: PASSWORD, roles },
    { type: 'system' },
  );
  return user.id;
}

const signIn = (email: string, extraParams?: Record<string, string>) =>
  signInWithPassword(issuer, config, { email, password: PASSWORD }, { extraParams });

/** Through enrollment: the enroll page, the key read off it, a right code, the recovery codes, Continue. */
async function enroll(email: string) {
  const started = await signIn(email);
  expect(hasStep(started.outcome, 'totp-enroll')).toBe(true);
  const secret = manualKeyOf(started.outcome);
  phones.set(email, secret);
  const codesPage = await submitStep(started.browser, started.outcome, 'totp-enroll', { code: totpCodeAt(secret, clock.now()) });
  const recoveryCodes = recoveryCodesOf(codesPage);
  const tokens = await redeem(config, started, await submitStep(started.browser, codesPage, 'mfa-done'));
  return { started, codesPage, recoveryCodes, tokens };
}

function code(email: string, at = clock.now()): string {
  const secret = phones.get(email);
  if (!secret) throw new Error(`${email} has no phone`);
  return totpCodeAt(secret, at);
}

/** Moves to the start of a fresh time step, so no code of the step has been used yet. */
function nextStep(): void {
  clock.set((Math.floor(clock.now() / STEP_MS) + 1) * STEP_MS + 5_000);
}

async function auditActions(userId: string): Promise<{ action: string; metadata: unknown }[]> {
  return t.deps.db.prisma.auditEvent.findMany({
    where: { tenantId, resourceId: userId, action: { startsWith: 'mfa.' } },
    orderBy: { seq: 'asc' },
    select: { action: true, metadata: true },
  });
}

beforeAll(async () => {
  t = await createTestApp({ clock });
  await t.listen();
  ({ tenantId } = await createTenantWithUser(
    t,
    SLUG,
    { email: 'first@example.com', password: PASSWORD },
    { mfa: { requiredRoles: ['admin'] }, rateLimits: MANY_SIGN_INS },
  ));
  const client = await createTenantClient(
    t,
    { name: 'App', redirectUris: [REDIRECT_URI], scope: 'openid email profile', firstParty: true },
    SLUG,
  );
  issuer = `${t.url}/t/${SLUG}`;
  config = await rpConfig(issuer, client);
});

afterAll(() => t.close());

describe('TOTP enrollment required by role', () => {
  it('issues no code to a user with a required role until an authenticator is enrolled and verified', async () => {
    await newUser('admin@example.com', ['admin']);
    const started = await signIn('admin@example.com');
    const page = asPage(started.outcome);
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/<img[^>]+src="data:image\/png;base64,[A-Za-z0-9+/=]+"/);
    const secret = manualKeyOf(page);
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    // The QR code carries the otpauth URI of exactly this key (rendering is deterministic).
    expect(page.html).toContain(`src="${await totpQrDataUrl(totpUri(SLUG, 'admin@example.com', secret))}"`);
    expect(page.html).not.toMatch(/<script/i);

    // Reloading the interaction shows the same enrollment; skipping ahead is refused.
    const again = await started.browser.follow(page.url);
    expect(manualKeyOf(again)).toBe(secret);
    const forged = await started.browser.request(new URL(`${page.url.pathname}/mfa-done`, page.url), {
      form: { _csrf: /name="_csrf" value="([^"]+)"/.exec(asPage(again).html)?.[1] ?? '' },
    });
    expect(forged.status).toBe(400);

    // A wrong code does not activate the factor.
    const wrong = asPage(await submitStep(started.browser, again, 'totp-enroll', { code: totpCodeAt(secret, clock.now() - 5 * STEP_MS) }));
    expect(wrong.status).toBe(422);
    expect(textOf(wrong.html)).toContain('not valid');
    const unconfirmed = await t.deps.db.prisma.mfaFactor.findMany({ where: { tenantId, type: 'totp' } });
    expect(unconfirmed.every((f) => f.confirmedAt === null)).toBe(true);

    // The secret is stored encrypted, bound to its row.
    expect(unconfirmed[0]?.secret).toMatch(/^v1\./);
    expect(unconfirmed[0]?.secret).not.toContain(secret);

    const codesPage = await submitStep(started.browser, wrong, 'totp-enroll', { code: totpCodeAt(secret, clock.now()) });
    const codes = recoveryCodesOf(codesPage);
    expect(codes).toHaveLength(10);
    const tokens = await redeem(config, started, await submitStep(started.browser, codesPage, 'mfa-done'));
    expect(howSignedIn(tokens)).toEqual({ amr: ['pwd', 'otp'], acr: ACR.multiFactor });
    phones.set('admin@example.com', secret);
  });

  it('records enrollment in the audit trail without the secret or any code', async () => {
    const userId = (await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId, email: 'admin@example.com' } })).id;
    const events = await auditActions(userId);
    expect(events.map((e) => e.action)).toEqual(['mfa.failed', 'mfa.enrolled']);
    const trail = JSON.stringify(events);
    expect(trail).not.toContain(phones.get('admin@example.com') ?? 'x');
    expect(trail).not.toMatch(/"\d{6}"/);
  });

  it('lets an application ask for MFA (acr_values) and so a user without a required role enroll', async () => {
    await newUser('volunteer@example.com');
    const plain = await signIn('volunteer@example.com');
    expect(howSignedIn(await redeem(config, plain, plain.outcome))).toEqual({ amr: ['pwd'], acr: ACR.password });
    const asked = await signIn('volunteer@example.com', { acr_values: ACR.multiFactor });
    expect(hasStep(asked.outcome, 'totp-enroll')).toBe(true);
  });
});

describe('signing in with TOTP', () => {
  it('asks every user with a confirmed factor for a code, and puts otp and the MFA acr in the ID token', async () => {
    nextStep();
    const started = await signIn('admin@example.com');
    expect(hasStep(started.outcome, 'mfa')).toBe(true);
    const tokens = await redeem(
      config,
      started,
      await submitStep(started.browser, started.outcome, 'mfa', { code: code('admin@example.com') }),
    );
    expect(howSignedIn(tokens)).toEqual({ amr: ['pwd', 'otp'], acr: ACR.multiFactor });
  });

  it('accepts the code of the previous step (clock skew), then refuses it again', async () => {
    // Two steps on, so the previous step's code was never used.
    nextStep();
    nextStep();
    const previous = code('admin@example.com', clock.now() - STEP_MS);
    const started = await signIn('admin@example.com');
    await redeem(config, started, await submitStep(started.browser, started.outcome, 'mfa', { code: previous }));
    const replay = await signIn('admin@example.com');
    const refused = asPage(await submitStep(replay.browser, replay.outcome, 'mfa', { code: previous }));
    expect(refused.status).toBe(422);
  });

  it('refuses a replayed, an expired and a malformed code, and the page stays on the second step', async () => {
    nextStep();
    const first = await signIn('admin@example.com');
    const used = code('admin@example.com');
    await redeem(config, first, await submitStep(first.browser, first.outcome, 'mfa', { code: used }));

    const started = await signIn('admin@example.com');
    let page = started.outcome;
    for (const bad of [used, code('admin@example.com', clock.now() - 2 * STEP_MS), '12a456', '']) {
      page = asPage(await submitStep(started.browser, page, 'mfa', { code: bad }));
      expect(asPage(page).status).toBe(422);
      expect(hasStep(page, 'mfa')).toBe(true);
    }
    nextStep();
    await redeem(config, started, await submitStep(started.browser, page, 'mfa', { code: code('admin@example.com') }));
    const userId = (await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId, email: 'admin@example.com' } })).id;
    const failures = (await auditActions(userId))
      .filter((e) => e.action === 'mfa.failed')
      .map((e) => (e.metadata as { reason: string }).reason);
    expect(failures.slice(-5)).toEqual(['replayed', 'replayed', 'invalid', 'malformed', 'malformed']);
  });

  it('lets exactly one of concurrent submissions of one code through', async () => {
    const email = 'concurrent@example.com';
    const userId = await newUser(email);
    const deps = { prisma: t.deps.db.prisma, kv: t.deps.kv, clock, audit: t.deps.audit, vault: t.deps.vault };
    const enrollment = await beginTotpEnrollment(deps, { id: tenantId, displayName: 'TOTP' }, { id: userId, email });
    const confirmed = await confirmTotpEnrollment(
      deps,
      tenantId,
      userId,
      enrollment.factorId,
      totpCodeAt(enrollment.secret, clock.now()),
      {},
    );
    expect(confirmed.ok).toBe(true);
    nextStep();
    const now = totpCodeAt(enrollment.secret, clock.now());
    const results = await Promise.all([
      useTotpCode(deps, tenantId, userId, now),
      useTotpCode(deps, tenantId, userId, now),
      useTotpCode(deps, tenantId, userId, now),
    ]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok)).toEqual([
      { ok: false, reason: 'replayed' },
      { ok: false, reason: 'replayed' },
    ]);
  });

  it('throttles a user after five wrong codes, even for the right one, until the window ends', async () => {
    const email = 'throttled@example.com';
    const userId = await newUser(email);
    // Enroll directly at a window's start, so the rest of the window is long enough for the test.
    clock.set(Math.ceil(clock.now() / (MFA_WINDOW_SECONDS * 1000)) * MFA_WINDOW_SECONDS * 1000 + 5_000);
    await enrollVoluntarily(email);
    nextStep();
    const started = await signIn(email);
    let page = started.outcome;
    for (let i = 0; i < MFA_ATTEMPT_LIMIT; i += 1) {
      page = await submitStep(started.browser, page, 'mfa', { code: '000000' });
      expect(asPage(page).status).toBe(422);
    }
    const blocked = asPage(await submitStep(started.browser, page, 'mfa', { code: code(email) }));
    expect(blocked.status).toBe(429);
    expect(textOf(blocked.html)).toContain('Too many wrong codes');
    const events = await auditActions(userId);
    expect(events.filter((e) => e.action === 'mfa.throttled')).toHaveLength(1);

    // Across browsers too: the limit is the user's.
    const elsewhere = await signIn(email);
    expect(asPage(await submitStep(elsewhere.browser, elsewhere.outcome, 'mfa', { code: code(email) })).status).toBe(429);

    clock.advance(MFA_WINDOW_SECONDS * 1000);
    nextStep();
    const later = await signIn(email);
    const tokens = await redeem(config, later, await submitStep(later.browser, later.outcome, 'mfa', { code: code(email) }));
    expect(howSignedIn(tokens).amr).toEqual(['pwd', 'otp']);
  });
});

async function enrollVoluntarily(email: string) {
  const started = await signIn(email, { acr_values: ACR.multiFactor });
  const secret = manualKeyOf(started.outcome);
  phones.set(email, secret);
  const codesPage = await submitStep(started.browser, started.outcome, 'totp-enroll', { code: totpCodeAt(secret, clock.now()) });
  await redeem(config, started, await submitStep(started.browser, codesPage, 'mfa-done'));
  return recoveryCodesOf(codesPage);
}

describe('recovery codes', () => {
  it('sign a user in once each after the phone is lost, and can be replaced by a new set', async () => {
    const email = 'lost-phone@example.com';
    const userId = await newUser(email, ['admin']);
    nextStep();
    const { recoveryCodes } = await enroll(email);
    expect(recoveryCodes).toHaveLength(10);
    phones.delete(email);

    const [first = '', second = ''] = recoveryCodes;
    const started = await signIn(email);
    const used = await submitStep(started.browser, started.outcome, 'mfa', { code: first.toUpperCase() });
    expect(textOf(asPage(used).html)).toContain('9 recovery codes left');
    const tokens = await redeem(config, started, await submitStep(started.browser, used, 'mfa-done'));
    expect(howSignedIn(tokens)).toEqual({ amr: ['pwd', 'otp'], acr: ACR.multiFactor });

    const again = await signIn(email);
    expect(asPage(await submitStep(again.browser, again.outcome, 'mfa', { code: first })).status).toBe(422);

    // Using the second one, the user makes a new set: the old ones stop working.
    const renew = await signIn(email);
    const usedSecond = await submitStep(renew.browser, renew.outcome, 'mfa', { code: second });
    const fresh = await submitStep(renew.browser, usedSecond, 'recovery-codes');
    const newCodes = recoveryCodesOf(fresh);
    expect(newCodes).toHaveLength(10);
    expect(newCodes).not.toContain(recoveryCodes[2]);
    await redeem(config, renew, await submitStep(renew.browser, fresh, 'mfa-done'));

    const old = await signIn(email);
    expect(asPage(await submitStep(old.browser, old.outcome, 'mfa', { code: recoveryCodes[2] ?? '' })).status).toBe(422);
    const withNew = await signIn(email);
    await redeem(
      config,
      withNew,
      await submitStep(withNew.browser, await submitStep(withNew.browser, withNew.outcome, 'mfa', { code: newCodes[0] ?? '' }), 'mfa-done'),
    );

    const actions = (await auditActions(userId)).map((e) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(['mfa.enrolled', 'mfa.recovery_code.used', 'mfa.recovery_codes.regenerated', 'mfa.failed']),
    );
    const trail = JSON.stringify(await auditActions(userId));
    for (const c of [...recoveryCodes, ...newCodes]) expect(trail).not.toContain(c);
  });
});

describe('resetMfa', () => {
  it('removes every factor and recovery code, audited, and the user enrolls again at the next sign-in', async () => {
    const email = 'reset@example.com';
    const userId = await newUser(email, ['admin']);
    nextStep();
    await enroll(email);
    const result = await resetMfa({ prisma: t.deps.db.prisma, audit: t.deps.audit }, tenantId, userId, { type: 'user', id: 'an-admin' });
    expect(result).toEqual({ factors: 1, recoveryCodes: 10 });
    expect(await t.deps.db.prisma.mfaFactor.count({ where: { tenantId, userId } })).toBe(0);
    expect(await t.deps.db.prisma.recoveryCode.count({ where: { tenantId, userId } })).toBe(0);
    const [event] = (await auditActions(userId)).filter((e) => e.action === 'mfa.reset');
    expect(event?.metadata).toEqual({ factors_removed: 1, codes_removed: 10 });

    const next = await signIn(email);
    expect(hasStep(next.outcome, 'totp-enroll')).toBe(true);
  });

  it('refuses a user of another tenant', async () => {
    const other = await createTenantWithUser(t, 'other-tenant', { email: 'x@example.com', password: PASSWORD });
    await expect(
      resetMfa({ prisma: t.deps.db.prisma, audit: t.deps.audit }, tenantId, other.userId, { type: 'system' }),
    ).rejects.toMatchObject({
      status: 404,
    });
  });
});

describe('idp vault reencrypt', () => {
  it('moves TOTP secrets to a new master key, after which codes still verify', async () => {
    const userId = (await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId, email: 'admin@example.com' } })).id;
    const rotated = createVault({ masterKey: randomBytes(32), previousMasterKeys: [t.deps.masterKey] });
    const [result] = await reencryptAll(t.deps.db.prisma, rotated, { columns: [MFA_FACTOR_SECRET] });
    expect(result?.reencrypted).toBeGreaterThan(0);
    expect(result?.failed).toBe(0);
    const onlyNew = createVault({ masterKey: Buffer.from(randomBytes(32)), previousMasterKeys: [] });
    nextStep();
    const deps = { prisma: t.deps.db.prisma, clock };
    expect(await useTotpCode({ ...deps, vault: rotated }, tenantId, userId, code('admin@example.com'))).toMatchObject({ ok: true });
    // A vault without the new key cannot read them: they really moved.
    await expect(useTotpCode({ ...deps, vault: onlyNew }, tenantId, userId, code('admin@example.com'))).rejects.toThrow();
  });
});
