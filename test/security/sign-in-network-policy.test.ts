import * as oidc from 'openid-client';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/oidc/clients.js';
import { onTenantChange, type TenantContext } from '../../src/tenants/tenants.js';
import { apiKeyFor } from '../helpers/admin.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { Browser } from '../helpers/browser.js';

/** A tenant's network policy with applyToSignIn: block refuses the password post, warn lets it through but audits it. */

const REDIRECT_URI = 'http://127.0.0.1:1/callback';

describe('tenant network policy on the hosted sign-in', () => {
  let t: TestApp;
  let tenant: TenantContext;
  let config: oidc.Configuration;

  beforeAll(async () => {
    // The admin who sets the policies is behind the proxy, at an address inside them (the API refuses to lock its caller out).
    t = await createTestApp({ seed: true, env: { TRUST_PROXY: 'true' } });
    const url = await t.listen();
    const found = await t.deps.tenants.bySlug('default');
    if (!found) throw new Error('seeded tenant missing');
    tenant = found;
    const client = await createClient(
      { prisma: t.deps.db.prisma, audit: t.deps.audit },
      tenant.id,
      { name: 'web', redirectUris: [REDIRECT_URI], firstParty: true },
      { type: 'system' },
    );
    t.deps.oidc.evict(tenant.id);
    config = await oidc.discovery(new URL(`${url}/t/default`), client.clientId, client.clientSecret, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
  });
  afterAll(() => t.close());

  async function attemptSignIn() {
    const browser = new Browser(t.url);
    const authorize = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      state: oidc.randomState(),
    });
    const page = await browser.follow(authorize.toString(), REDIRECT_URI);
    return browser.submit(page, '/login', { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD }, REDIRECT_URI);
  }

  /**
   * Through the management API, as an admin would: every node caches the policy, and the
   * API's change notice is what drops it (each test here would otherwise see the last one's).
   * Resolves once the notice came back to this node, after the app's own handlers ran.
   */
  async function setPolicy(mode: 'warn' | 'block', applyToSignIn: boolean) {
    const { key } = await apiKeyFor(t, 'default', { scopes: ['network.write'] });
    let delivered: () => void = () => {};
    const arrived = new Promise<void>((resolve) => {
      delivered = resolve;
    });
    const unsubscribe = await onTenantChange(t.deps.kv, (change) => {
      if (change.tenantId === tenant.id && change.what === 'network') delivered();
    });
    try {
      // 10.0.0.0/8 leaves out the loopback address the test signs in from; the admin is inside it.
      const response = await request(t.app.callback())
        .put('/api/v1/tenants/default/network-policy')
        .set('Authorization', `Bearer ${key}`)
        .set('X-Forwarded-For', '10.1.1.1')
        .send({ cidrs: ['10.0.0.0/8'], mode, apply_to_sign_in: applyToSignIn });
      expect(response.status).toBe(200);
      await arrived;
    } finally {
      await unsubscribe();
    }
  }

  const auditCount = (action: string) => t.deps.db.prisma.auditEvent.count({ where: { tenantId: tenant.id, action } });

  it('refuses a sign-in from outside the allowlist in block mode, with a 403 page and an audit event', async () => {
    await setPolicy('block', true);
    const response = await attemptSignIn();
    expect(response.status).toBe(403);
    expect(response.text).toContain('not allowed from this network');
    expect(response.location).toBeUndefined();
    expect(await auditCount('auth.sign_in.network_blocked')).toBe(1);
    expect(await auditCount('auth.sign_in.succeeded')).toBe(0);
  });

  it('lets the sign-in through in warn mode and audits the warning', async () => {
    await setPolicy('warn', true);
    const response = await attemptSignIn();
    expect(response.location?.startsWith(REDIRECT_URI)).toBe(true);
    expect(await auditCount('auth.sign_in.network_warning')).toBe(1);
  });

  it('ignores the policy for sign-in unless applyToSignIn is set', async () => {
    await setPolicy('block', false);
    const response = await attemptSignIn();
    expect(response.location?.startsWith(REDIRECT_URI)).toBe(true);
  });
});
