import { existsSync } from 'node:fs';
import * as oidc from 'openid-client';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACR } from '../../src/interaction/routes.js';
import type { Prisma } from '../../src/store/db.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, RELAXED_RATE_LIMITS, type TestApp } from '../helpers/app.js';
import { announce, authorizationRequest, createTenantClient, rpConfig, tenantIdOf } from '../helpers/oidc.js';

/**
 * The passkey pages' script (/assets/passkey.js) in a real browser: Chromium
 * with a virtual authenticator (DevTools' WebAuthn domain) creates a passkey
 * while enrolling, then signs in with it and no password. PUBLIC_URL is
 * http://localhost:…, because browsers refuse an IP address as relying party ID.
 */

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
// CI installs Chromium: there a missing browser fails the suite; on a developer's machine it is skipped.
const runs = hasChromium || Boolean(process.env.CI);
if (!runs) process.stderr.write(`test/e2e/passkey.test.ts skipped: no ${CHROMIUM} (apt-get install chromium)\n`);

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const USER = { email: 'passkey-user@example.com', password: 'correct horse battery staple', roles: ['member'] };

describe.runIf(runs)('passkeys in Chromium', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let config: oidc.Configuration;
  let userId: string;

  beforeAll(async () => {
    if (!hasChromium) throw new Error(`${CHROMIUM} is missing: CI must install Chromium (apt-get install chromium)`);
    t = await createTestApp({ seed: true, publicHost: 'localhost' });
    const issuer = `${await t.listen()}/t/default`;
    const tenantId = await tenantIdOf(t);
    const settings: Prisma.InputJsonObject = { rateLimits: RELAXED_RATE_LIMITS, mfa: { requiredRoles: ['member'], passkeys: true } };
    await t.deps.db.prisma.tenant.update({ where: { id: tenantId }, data: { settings } });
    await announce(t, { tenantId, slug: 'default', what: 'tenant' });
    userId = (
      await createUser({ prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords }, tenantId, USER, { type: 'system' })
    ).id;
    const client = await createTenantClient(t, { name: 'Test app', firstParty: true, redirectUris: [REDIRECT_URI], scope: 'openid email' });
    config = await rpConfig(issuer, client);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-sync'],
    });
    const context = await browser.newContext();
    context.setDefaultTimeout(60_000);
    page = await context.newPage();
    // A platform authenticator that keeps discoverable credentials and verifies the user without asking.
    const devtools = await context.newCDPSession(page);
    await devtools.send('WebAuthn.enable');
    await devtools.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  }, 120_000);

  /** Starts a code + PKCE request in the page; `finish` clicks through and resolves to the ID token's amr and acr. */
  async function authorize(steps: () => Promise<void>): Promise<{ amr: unknown; acr: unknown; sub: unknown }> {
    const request = await authorizationRequest(config, { scope: 'openid email', extraParams: { prompt: 'login' } });
    await page.goto(request.url.href);
    const callback = page.waitForRequest((r) => r.url().startsWith(REDIRECT_URI));
    await steps();
    const tokens = await oidc.authorizationCodeGrant(config, new URL((await callback).url()), {
      pkceCodeVerifier: request.codeVerifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    const claims = tokens.claims();
    return { amr: claims?.amr, acr: claims?.acr, sub: claims?.sub };
  }

  it('creates a passkey while enrolling (the page runs its script), then signs in with it alone', async () => {
    const enrolled = await authorize(async () => {
      await page.locator('#email').fill(USER.email);
      await page.locator('#password').fill(USER.password);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.getByRole('button', { name: 'Use a passkey instead' }).click();
      await page.getByRole('button', { name: 'Create passkey' }).click();
      await page.locator('#recovery-codes').waitFor();
      await page.getByRole('button', { name: 'Continue' }).click();
    });
    expect(enrolled).toEqual({ amr: ['pwd', 'hwk'], acr: ACR.multiFactor, sub: userId });
    expect(await t.deps.db.prisma.mfaFactor.count({ where: { userId, type: 'webauthn', confirmedAt: { not: null } } })).toBe(1);

    const passwordless = await authorize(async () => {
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.getByRole('button', { name: 'Use passkey' }).click();
    });
    expect(passwordless).toEqual({ amr: ['hwk', 'user'], acr: ACR.multiFactor, sub: userId });
  });
});
