import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSync } from 'otplib';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Prisma } from '../../src/store/db.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, RELAXED_RATE_LIMITS, type TestApp } from '../helpers/app.js';
import { startMailServer, type TestMailServer } from '../helpers/mail.js';
import { announce, createTenantClient, rpConfig, tenantIdOf } from '../helpers/oidc.js';
import { type RpApp, startRpApp } from './rp-app.js';

/**
 * The hosted pages in a real browser: Debian's Chromium driven by
 * playwright-core, against the app of test/helpers/app.ts (embedded stores,
 * or PostgreSQL and Redis when DATABASE_URL/REDIS_URL are set) and a tiny
 * relying party (rp-app.ts) using openid-client. A person's steps: typing into
 * fields, clicking buttons, reading the key off the enrollment page into an
 * authenticator (otplib), and once with the keyboard alone. Every hosted page
 * is saved as a screenshot under test/e2e/artifacts/ (not committed).
 */

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const hasChromium = existsSync(CHROMIUM);
// CI installs Chromium (.ci/run): there a missing browser fails the suite; on a developer's machine it is skipped.
const runs = hasChromium || Boolean(process.env.CI);
if (!runs) process.stderr.write(`test/e2e/browser.test.ts skipped: no ${CHROMIUM} (apt-get install chromium)\n`);

const PASSWORD = 'correct horse battery staple';
/** Must enroll an authenticator: the tenant requires a second factor of role `member`. */
const ALICE = { email: 'alice@example.com', password: PASSWORD, roles: ['member'] };
/** Password only. */
const BOB = { email: 'bob@example.com', password: PASSWORD };
const TOTP_STEP_SECONDS = 30;

/** What the authenticator app shows `stepsAhead` time steps from now (RFC 6238 defaults, as totp.ts). */
function totp(secret: string, stepsAhead = 0): string {
  return generateSync({
    secret,
    epoch: Math.floor(Date.now() / 1000) + stepsAhead * TOTP_STEP_SECONDS,
    digits: 6,
    period: TOTP_STEP_SECONDS,
    algorithm: 'sha1',
  });
}

describe.runIf(runs)('hosted pages in Chromium', () => {
  let t: TestApp;
  let rp: RpApp;
  let mail: TestMailServer;
  let browser: Browser;
  let issuer: string;
  const screenshots: string[] = [];

  beforeAll(async () => {
    if (!hasChromium) throw new Error(`${CHROMIUM} is missing: CI must install Chromium (apt-get install chromium)`);
    await mkdir(ARTIFACTS, { recursive: true });
    mail = await startMailServer();
    rp = await startRpApp();
    t = await createTestApp({ seed: true, env: { SMTP_URL: mail.url } });
    issuer = `${await t.listen()}/t/default`;
    const tenantId = await tenantIdOf(t);
    const settings: Prisma.InputJsonObject = {
      rateLimits: RELAXED_RATE_LIMITS,
      mfa: { requiredRoles: ['member'] },
      signup: { enabled: true },
    };
    await t.deps.db.prisma.tenant.update({ where: { id: tenantId }, data: { settings } });
    await announce(t, { tenantId, slug: 'default', what: 'tenant' });
    for (const user of [ALICE, BOB]) {
      await createUser({ prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords }, tenantId, user, { type: 'system' });
    }
    const uris = { redirectUris: [rp.redirectUri], postLogoutRedirectUris: [rp.postLogoutRedirectUri], scope: 'openid email profile' };
    rp.use('web', await rpConfig(issuer, await createTenantClient(t, { name: 'Test app', firstParty: true, ...uris })));
    rp.use('partner', await rpConfig(issuer, await createTenantClient(t, { name: 'Partner app', ...uris })));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // A fresh profile every launch (playwright makes a temporary one); nothing reaches out to the network.
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-quic',
        '--no-first-run',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 180_000);

  afterAll(async () => {
    const steps = [async () => browser?.close(), async () => t?.close(), async () => rp?.close(), async () => mail?.close()];
    const failed: unknown[] = [];
    for (const step of steps) await step().catch((error: unknown) => failed.push(error));
    if (failed.length) throw failed[0];
  }, 120_000);

  /** A new browser profile's worth of state: its own cookies. Generous timeouts: the machine is shared. */
  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
    context.setDefaultTimeout(60_000);
    context.setDefaultNavigationTimeout(60_000);
    return context;
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
    screenshots.push(name);
  }

  const heading = (page: Page) => page.locator('h1').first().textContent();

  /** Types the credentials into the sign-in page and clicks "Sign in". */
  async function typeCredentials(page: Page, user: { email: string; password: string }): Promise<void> {
    await page.locator('#email').fill(user.email);
    await page.locator('#password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }

  describe('Alice: code + PKCE sign-in from the test app, TOTP enrollment, sign-out, and TOTP sign-in', () => {
    let context: BrowserContext;
    let page: Page;
    let secret = '';

    beforeAll(async () => {
      context = await newContext();
      page = await context.newPage();
    });
    afterAll(() => context?.close());

    it('signs in through the hosted pages, enrolling an authenticator app read off the page', async () => {
      await page.goto(`${rp.url}/login?app=web`);
      expect(await heading(page)).toBe('Sign in');
      expect(page.url()).toContain('/t/default/interaction/');
      await screenshot(page, 'login');
      await typeCredentials(page, ALICE);

      expect(await heading(page)).toBe('Set up two-step verification');
      await screenshot(page, 'mfa-enroll');
      secret = ((await page.locator('#manual-key').textContent()) ?? '').replace(/\s+/g, '');
      expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
      await page.locator('#code').fill(totp(secret));
      await page.getByRole('button', { name: 'Turn on two-step verification' }).click();

      expect(await heading(page)).toBe('Save your recovery codes');
      expect(await page.locator('#recovery-codes li').count()).toBeGreaterThanOrEqual(8);
      await screenshot(page, 'recovery-codes');
      await page.getByRole('button', { name: 'Continue' }).click();

      await page.waitForURL(`${rp.url}/callback?**`);
      expect(await page.locator('#email').textContent()).toBe(ALICE.email);
      expect((await page.locator('#amr').textContent())?.split(' ')).toEqual(['pwd', 'otp']);
    });

    it('shows the signed-in account page', async () => {
      const account = await context.newPage();
      await account.goto(`${issuer}/account`);
      expect(await heading(account)).toBe('Your account');
      expect(await account.locator('main').textContent()).toContain(ALICE.email);
      await screenshot(account, 'account');
      await account.close();
    });

    it('signs out through the provider’s logout page (RP-initiated logout) back to the test app', async () => {
      await page.getByRole('link', { name: 'Sign out' }).click();
      await page.waitForURL(`${issuer}/session/end**`);
      expect(await heading(page)).toBe('Sign out?');
      await screenshot(page, 'logout');
      await page.getByRole('button', { name: 'Sign out', exact: true }).click();
      await page.waitForURL(`${rp.url}/signed-out`);
      expect(await page.locator('#signed-out').textContent()).toBe('You are signed out.');

      const account = await context.newPage();
      await account.goto(`${issuer}/account`);
      expect(await heading(account)).toBe('You are not signed in');
      await screenshot(account, 'account-signed-out');
      await account.close();
    });

    it('signs in again with a code from the authenticator app', async () => {
      await page.goto(`${rp.url}/login?app=web`);
      await typeCredentials(page, ALICE);
      expect(await heading(page)).toBe('Two-step verification');
      await screenshot(page, 'mfa-challenge');
      // The code of the next time step: the enrollment used this step's, and a used step is never accepted again.
      await page.locator('#code').fill(totp(secret, 1));
      await page.getByRole('button', { name: 'Verify' }).click();
      await page.waitForURL(`${rp.url}/callback?**`);
      expect(await page.locator('#email').textContent()).toBe(ALICE.email);
      expect((await page.locator('#amr').textContent())?.split(' ')).toEqual(['pwd', 'otp']);
    });
  });

  it('signs in with the keyboard alone, through the consent page of a third-party app', async () => {
    const context = await newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${rp.url}/login?app=partner`);
      expect(await heading(page)).toBe('Sign in');
      // The email field has autofocus; Tab reaches it otherwise (after the skip link).
      for (let i = 0; i < 5 && (await page.evaluate(() => document.activeElement?.id)) !== 'email'; i++) await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('email');
      await page.keyboard.type(BOB.email);
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('password');
      await page.keyboard.type(BOB.password);
      await page.keyboard.press('Enter');

      // The sign-in page already has an interaction URL: wait for the consent page itself, not a URL
      // that matches before the form post (Argon2) has even finished.
      await page.getByRole('heading', { name: 'Allow access?' }).waitFor();
      expect(await heading(page)).toBe('Allow access?');
      expect(await page.locator('main').textContent()).toContain('Partner app');
      await screenshot(page, 'consent');
      // "Allow" has autofocus: Enter presses it.
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Allow');
      await page.keyboard.press('Enter');

      await page.waitForURL(`${rp.url}/callback?**`);
      expect(await page.locator('#email').textContent()).toBe(BOB.email);

      // Signing out at the provider without an app to return to ends on its own page.
      await page.goto(`${issuer}/session/end`);
      expect(await heading(page)).toBe('Sign out?');
      await page.keyboard.press('Enter');
      await page.waitForURL('**/session/end/success**');
      expect(await heading(page)).toBe('You are signed out');
      await screenshot(page, 'logout-success');
    } finally {
      await context.close();
    }
  });

  it('shows the forgot-password, reset, sign-up and error pages', async () => {
    const context = await newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${rp.url}/login?app=web`);
      await page.getByRole('link', { name: 'Create an account' }).click();
      expect(await heading(page)).toBeTruthy();
      await screenshot(page, 'signup');

      await page.goto(`${rp.url}/login?app=web`);
      await page.getByRole('link', { name: 'Forgot your password?' }).click();
      expect(await heading(page)).toBe('Reset your password');
      await screenshot(page, 'forgot-password');
      await page.locator('#email').fill(BOB.email);
      await page.getByRole('button', { name: 'Send the link' }).click();
      await screenshot(page, 'forgot-password-sent');

      // Bob also has the new-device notice of his keyboard sign-in in his mailbox.
      const message = await mail.waitFor(BOB.email, /^Reset your password/, 60_000);
      const link = /https?:\/\/\S+[?&]token=[\w-]+/.exec(message.text)?.[0];
      if (!link) throw new Error(`no link in the mail: ${message.text}`);
      await page.goto(link);
      await page.locator('input[type="password"]').first().waitFor({ state: 'visible' });
      await screenshot(page, 'set-password');

      const response = await page.goto(`${issuer}/auth?client_id=no-such-client&response_type=code&scope=openid`);
      expect(response?.status()).toBe(400);
      expect(await heading(page)).toBeTruthy();
      await screenshot(page, 'error');
    } finally {
      await context.close();
    }
  });

  it('saved a screenshot of every hosted page', () => {
    expect(screenshots.sort()).toEqual(
      [
        'account',
        'account-signed-out',
        'consent',
        'error',
        'forgot-password',
        'forgot-password-sent',
        'login',
        'logout',
        'logout-success',
        'mfa-challenge',
        'mfa-enroll',
        'recovery-codes',
        'set-password',
        'signup',
      ].sort(),
    );
  });
});
