import { createVerify } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/clock.js';
import { generateSpKeyPair } from '../../src/federation/certificates.js';
import { totpCodeAt } from '../../src/security/totp.js';
import { createUser } from '../../src/users/users.js';
import { apiKeyFor, api as managementApi } from '../helpers/admin.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { auditEvents, expectRefusedPage, lastRejection, postToAcs, samlSignIn, startSso, upstreamUrl } from '../helpers/federation.js';
import { hasStep, manualKeyOf, submitStep } from '../helpers/mfa.js';
import { announce, authorizationRequest, Browser, createTenantClient, parseForms, rpConfig, tenantIdOf, textOf } from '../helpers/oidc.js';
import { fixture, NAMEID_EMAIL, SamlIdp } from '../helpers/saml-idp.js';

/**
 * Upstream SAML end to end: an admin connects an Okta-like IdP (samlify,
 * signing with the test key) from its metadata, users sign in through it into
 * an app of ours (openid-client) and get our tokens; accounts are provisioned,
 * linked and given roles as the connection says.
 */

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const PASSWORD = 'correct horse battery staple';
const clock = manualClock(Date.now());
let t: TestApp;
let api: ReturnType<typeof managementApi>;
let config: oidc.Configuration;
let tenantId: string;
const idp = new SamlIdp();

async function createConnection(body: Record<string, unknown>): Promise<{ id: string; [key: string]: unknown }> {
  const response = await api.post('/tenants/default/connections', body);
  expect(response.status, JSON.stringify(response.body)).toBe(201);
  return response.body;
}

async function redeem(signIn: {
  outcome: Awaited<ReturnType<typeof samlSignIn>>['outcome'];
  request: { codeVerifier: string; state: string; nonce: string };
}) {
  if (signIn.outcome.kind !== 'redirect') {
    throw new Error(`expected the redirect to the client, got ${signIn.outcome.status}: ${textOf(signIn.outcome.html)}`);
  }
  return oidc.authorizationCodeGrant(config, signIn.outcome.url, {
    pkceCodeVerifier: signIn.request.codeVerifier,
    expectedState: signIn.request.state,
    expectedNonce: signIn.request.nonce,
  });
}

async function userByEmail(email: string) {
  return t.deps.db.prisma.user.findUnique({ where: { tenantId_email: { tenantId, email } } });
}

async function rolesOf(userId: string): Promise<string[]> {
  const rows = await t.deps.db.prisma.roleAssignment.findMany({
    where: { tenantId, userId },
    select: { role: { select: { name: true } } },
  });
  return rows.map((r) => r.role.name).sort();
}

let okta: { id: string; [key: string]: unknown };

beforeAll(async () => {
  t = await createTestApp({ seed: true, clock });
  await t.listen();
  tenantId = await tenantIdOf(t);
  api = managementApi(t, (await apiKeyFor(t)).key);
  const client = await createTenantClient(t, { name: 'App', redirectUris: [REDIRECT_URI], firstParty: true });
  config = await rpConfig(`${t.url}/t/default`, client);
  okta = await createConnection({
    name: 'Okta',
    type: 'saml',
    preset: 'okta',
    domains: ['corp.example'],
    role_mapping: { engineering: 'member', auditors: ['viewer'] },
    saml: { metadata_xml: idp.metadata() },
  });
  // A fresh database, an app, an RSA key for the SP and a client: more than the default hook time on a busy machine.
}, 180_000);

afterAll(async () => {
  await t?.close();
});

describe('connecting an IdP from its metadata', () => {
  it('imports the entity ID, SSO URL, binding and certificate, and shows what the IdP admin needs from us', async () => {
    const saml = okta.saml as Record<string, unknown>;
    expect(saml).toMatchObject({
      idp_entity_id: idp.entityId,
      sso_url: idp.ssoUrl,
      sso_binding: 'redirect',
      sp_entity_id: `${t.url}/t/default/federation/saml/${okta.id}/metadata`,
      acs_url: `${t.url}/t/default/federation/saml/${okta.id}/acs`,
    });
    expect(saml.certificates).toHaveLength(1);
    expect(JSON.stringify(okta)).not.toMatch(/PRIVATE KEY/);
    // The preset filled Okta's attribute names.
    expect((okta.attribute_mapping as { email: string[] }).email[0]).toBe('email');
  });

  it('serves our SP metadata with the ACS and the certificate IdPs encrypt assertions to', async () => {
    const response = await fetch(`${t.url}/t/default/federation/saml/${okta.id}/metadata`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/samlmetadata\+xml/);
    const xml = await response.text();
    expect(xml).toContain(`entityID="${t.url}/t/default/federation/saml/${okta.id}/metadata"`);
    expect(xml).toContain(`Location="${t.url}/t/default/federation/saml/${okta.id}/acs"`);
    expect(xml).toMatch(/use="encryption"/);
    expect(xml).toContain('WantAssertionsSigned="true"');
  });

  it('imports metadata from a URL, with every signing certificate of a rollover', async () => {
    const server: Server = createServer((_req, res) => {
      res.setHeader('Content-Type', 'application/samlmetadata+xml');
      res.end(idp.metadata([fixture('idp-next.crt')]));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/metadata`;
    try {
      const created = await createConnection({ name: 'Rollover', type: 'saml', saml: { metadata_url: url }, enabled: false });
      expect((created.saml as { certificates: unknown[]; metadata_url: string }).certificates).toHaveLength(2);
      const report = await api.post(`/tenants/default/connections/${created.id}/test`);
      expect(report.status).toBe(200);
      expect(report.body.ok, JSON.stringify(report.body)).toBe(true);
      expect(report.body.checks.map((c: { check: string }) => c.check)).toEqual(
        expect.arrayContaining(['metadata', 'configuration', 'idp_certificate_1', 'idp_certificate_2', 'sp_certificate']),
      );
    } finally {
      server.close();
    }
  });

  it('refuses metadata that is not metadata, with a readable error', async () => {
    const bad = await api.post('/tenants/default/connections', { name: 'Bad', type: 'saml', saml: { metadata_xml: '<nope/>' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_metadata');
    const doctype = await api.post('/tenants/default/connections', {
      name: 'Bad',
      type: 'saml',
      saml: { metadata_xml: `<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${idp.metadata()}` },
    });
    expect(doctype.status).toBe(400);
    expect(doctype.body.error_description).toMatch(/document type/);
  });

  it('reports a certificate that expires within 30 days', async () => {
    const soon = await generateSpKeyPair('expiring idp', clock.now(), 10);
    const created = await createConnection({
      name: 'Expiring',
      type: 'saml',
      enabled: false,
      saml: { entity_id: 'https://expiring.example/idp', sso_url: 'https://expiring.example/sso', certificates: [soon.certificatePem] },
    });
    const report = await api.post(`/tenants/default/connections/${created.id}/test`);
    expect(report.body.ok).toBe(false);
    const check = report.body.checks.find((c: { check: string }) => c.check === 'idp_certificate_1');
    expect(check.ok).toBe(false);
    expect(check.detail).toMatch(/expires on .* within 30 days/);
  });
});

describe('signing in through the SAML IdP', () => {
  it('provisions a new user just in time and issues our tokens', async () => {
    const signIn = await samlSignIn(t, config, idp, okta.id, {
      nameId: 'alice@corp.example',
      attributes: { email: ['alice@corp.example'], firstName: ['Alice'], lastName: ['Liddell'], groups: ['engineering'] },
    });
    const tokens = await redeem(signIn);
    const user = await userByEmail('alice@corp.example');
    expect(user).toMatchObject({ name: 'Alice Liddell', emailVerified: true });
    expect(tokens.claims()?.sub).toBe(user?.id);
    expect(tokens.claims()?.amr).toEqual(['fed']);
    expect(await rolesOf(user?.id ?? '')).toEqual(['member']);
    const [event] = (await auditEvents(t, 'federation.sign_in.succeeded')).slice(-1);
    expect(event?.metadata).toMatchObject({ connection_id: okta.id, user_id: user?.id, account: 'created', roles_added: ['member'] });
  });

  it('signs the same user in again, and takes back a mapped role whose group the IdP no longer sends', async () => {
    const user = await userByEmail('alice@corp.example');
    // An admin's own assignment is never taken back by the mapping.
    const viewer = await t.deps.db.prisma.role.findFirstOrThrow({ where: { tenantId, name: 'viewer' } });
    await t.deps.db.prisma.roleAssignment.create({ data: { tenantId, roleId: viewer.id, userId: user?.id } });
    const signIn = await samlSignIn(t, config, idp, okta.id, { nameId: 'alice@corp.example', attributes: { groups: ['sales'] } });
    expect((await redeem(signIn)).claims()?.sub).toBe(user?.id);
    expect(await rolesOf(user?.id ?? '')).toEqual(['viewer']);
    const [event] = (await auditEvents(t, 'federation.sign_in.succeeded')).slice(-1);
    expect(event?.metadata).toMatchObject({ account: 'returning', roles_removed: ['member'] });
  });

  it('accepts an assertion encrypted to our SP certificate', async () => {
    const signIn = await samlSignIn(t, config, idp, okta.id, { nameId: 'erin@corp.example' }, { encrypt: true });
    expect(signIn.xml).toContain('EncryptedAssertion');
    expect(signIn.xml).not.toContain('erin@corp.example');
    const tokens = await redeem(signIn);
    expect(tokens.claims()?.sub).toBe((await userByEmail('erin@corp.example'))?.id);
  });

  it('links an existing user of a domain the connection is trusted for', async () => {
    const bob = await createUser(
      { prisma: t.deps.db.prisma, audit: t.deps.audit, passwords: t.deps.passwords },
      tenantId,
      { email: 'bob@corp.example', password: PASSWORD },
      { type: 'system' },
    );
    const tokens = await redeem(await samlSignIn(t, config, idp, okta.id, { nameId: 'bob@corp.example' }));
    expect(tokens.claims()?.sub).toBe(bob.id);
    const [event] = (await auditEvents(t, 'federation.sign_in.succeeded')).slice(-1);
    expect(event?.metadata).toMatchObject({ account: 'linked', user_id: bob.id });
  });

  it('never maps the same NameID from another connection to that account', async () => {
    const other = new SamlIdp({ entityId: 'https://other-idp.example.test/metadata', ssoUrl: 'https://other-idp.example.test/sso' });
    // No domains: this connection is trusted for nobody's addresses, so it cannot take over bob's account.
    const second = await createConnection({ name: 'Other IdP', type: 'saml', saml: { metadata_xml: other.metadata() } });
    const signIn = await samlSignIn(t, config, other, second.id, { nameId: 'bob@corp.example' });
    expectRefusedPage(signIn.outcome);
    expect(await lastRejection(t)).toBe('account_conflict');
    const identities = await t.deps.db.prisma.federatedIdentity.findMany({ where: { subject: 'bob@corp.example' } });
    expect(identities.map((i) => i.connectionId)).toEqual([okta.id]);
    await api.delete(`/tenants/default/connections/${second.id}`);
  });

  it('refuses to provision an address outside the connection’s domains', async () => {
    const signIn = await samlSignIn(t, config, idp, okta.id, { nameId: 'mallory@elsewhere.example' });
    expectRefusedPage(signIn.outcome);
    expect(await lastRejection(t)).toBe('domain_not_allowed');
    expect(await userByEmail('mallory@elsewhere.example')).toBeNull();
  });

  it('finds the connection by the email domain (home-realm discovery)', async () => {
    const { upstream } = await startSso(config, t.url, { email: 'Dave@Corp.Example' });
    const url = new URL(upstreamUrl(upstream));
    expect(url.origin + url.pathname).toBe(idp.ssoUrl);
    expect(url.searchParams.get('SAMLRequest')).toBeTruthy();
    const none = await startSso(config, t.url, { email: 'dave@unknown.example' });
    expect(none.upstream.kind).toBe('page');
    if (none.upstream.kind === 'page') expect(textOf(none.upstream.html)).toMatch(/Single sign-on is not set up/);
  });
});

describe('AuthnRequests', () => {
  it('signs them when the connection says so, with our key in the SP metadata', async () => {
    const signing = await createConnection({
      name: 'Signed requests',
      type: 'saml',
      saml: {
        metadata_xml: new SamlIdp({ entityId: 'https://signed.example/idp', ssoUrl: 'https://signed.example/sso' }).metadata(),
        sign_requests: true,
      },
    });
    const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${signing.id}/metadata`)).text();
    expect(spMetadata).toContain('AuthnRequestsSigned="true"');
    const certificate = /use="signing"[\s\S]*?<ds:X509Certificate>([^<]+)</.exec(spMetadata)?.[1] ?? '';
    const { upstream } = await startSso(config, t.url, { connectionId: signing.id });
    const url = new URL(upstreamUrl(upstream));
    expect(url.searchParams.get('SigAlg')).toBe('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    // The Redirect binding signs the raw query parameters in this order (SAML bindings 3.4.4.1).
    const raw = Object.fromEntries(
      url.search
        .slice(1)
        .split('&')
        .map((pair) => pair.split('=') as [string, string]),
    );
    const signed = ['SAMLRequest', 'RelayState', 'SigAlg'].map((name) => `${name}=${raw[name]}`).join('&');
    const verifier = createVerify('RSA-SHA256').update(signed);
    const pem = `-----BEGIN CERTIFICATE-----\n${certificate.match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
    expect(verifier.verify(pem, url.searchParams.get('Signature') ?? '', 'base64')).toBe(true);
    await api.delete(`/tenants/default/connections/${signing.id}`);
  });

  it('sends them with the POST binding to an IdP that only takes POST, from a page whose CSP lets its form go there', async () => {
    const postIdp = new SamlIdp({ entityId: 'https://post-only.example/idp', ssoUrl: 'https://post-only.example/sso', binding: 'post' });
    const post = await createConnection({ name: 'POST only', type: 'saml', saml: { metadata_xml: postIdp.metadata() } });
    expect((post.saml as { sso_binding: string }).sso_binding).toBe('post');
    const browser = new Browser(t.url);
    const login = await browser.follow((await authorizationRequest(config)).url);
    if (login.kind !== 'page') throw new Error('no login page');
    const button = parseForms(login.html).find((f) => f.fields.connection === post.id);
    if (!button) throw new Error('no button for the connection');
    const response = await browser.request(new URL(button.action, login.url), { form: button.fields });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-security-policy')).toMatch(/form-action [^;]*https:\/\/post-only\.example/);
    const form = parseForms(await response.text()).find((f) => f.action === postIdp.ssoUrl);
    expect(form?.method).toBe('post');
    const request = Buffer.from(form?.fields.SAMLRequest ?? '', 'base64').toString('utf8');
    expect(request).toMatch(/^<\?xml[^>]*>\s*<samlp:AuthnRequest/);
    expect(request).toContain(`AssertionConsumerServiceURL="${t.url}/t/default/federation/saml/${post.id}/acs"`);
    expect(form?.fields.RelayState).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await api.delete(`/tenants/default/connections/${post.id}`);
  });
});

describe('policy', () => {
  async function passwordSignIn(email: string, password = PASSWORD): Promise<{ status: number; text: string }> {
    const browser = new Browser(t.url);
    const request = await authorizationRequest(config);
    const page = await browser.follow(request.url);
    if (page.kind !== 'page') throw new Error('no login page');
    const form = parseForms(page.html).find((f) => f.action.endsWith('/login'));
    if (!form) throw new Error('no login form');
    const outcome = await browser.submit(page.url, form, { email, password });
    return outcome.kind === 'page' ? { status: outcome.status, text: textOf(outcome.html) } : { status: 302, text: '' };
  }

  it('refuses password sign-in to users of a domain that requires SSO, and says to use SSO', async () => {
    expect((await api.patch(`/tenants/default/connections/${okta.id}`, { require_sso: true })).status).toBe(200);
    const refused = await passwordSignIn('bob@corp.example');
    expect(refused.status).toBe(403);
    expect(refused.text).toMatch(/single sign-on.*Sign in with Okta/);
    // The same answer for an address without an account: it reveals the domain's policy, not who has an account.
    const unknown = await passwordSignIn('nobody@corp.example');
    expect(unknown).toMatchObject({ status: 403, text: refused.text.replace('bob@corp.example', 'nobody@corp.example') });
    // Other domains sign in with passwords as before.
    expect((await passwordSignIn('admin@example.com', TEST_ADMIN_PASSWORD)).status).toBe(302);
    await api.patch(`/tenants/default/connections/${okta.id}`, { require_sso: false });
  });

  it('applies the MFA policy to federated users unless the connection enforces MFA upstream', async () => {
    await t.deps.db.prisma.tenant.update({ where: { id: tenantId }, data: { settings: { mfa: { requiredRoles: ['member'] } } } });
    await announce(t, { tenantId, slug: 'default', what: 'tenant' });
    const asked = await samlSignIn(t, config, idp, okta.id, { nameId: 'frank@corp.example', attributes: { groups: ['engineering'] } });
    expect(hasStep(asked.outcome, 'totp-enroll')).toBe(true);
    // Enrolling finishes the sign-in, and the ID token says the first factor was the upstream, not a password.
    const secret = manualKeyOf(asked.outcome);
    const codes = await submitStep(asked.browser, asked.outcome, 'totp-enroll', { code: totpCodeAt(secret, clock.now()) });
    const enrolled = await redeem({ outcome: await submitStep(asked.browser, codes, 'mfa-done'), request: asked.request });
    expect(enrolled.claims()?.amr).toEqual(['fed', 'otp']);

    await api.patch(`/tenants/default/connections/${okta.id}`, { enforces_mfa: true });
    const trusted = await samlSignIn(t, config, idp, okta.id, { nameId: 'frank@corp.example', attributes: { groups: ['engineering'] } });
    const tokens = await redeem(trusted);
    expect(tokens.claims()?.amr).toEqual(['fed', 'mfa']);
    expect(tokens.claims()?.acr).toBe('urn:idp:acr:mfa');
    await api.patch(`/tenants/default/connections/${okta.id}`, { enforces_mfa: false });
    await t.deps.db.prisma.tenant.update({ where: { id: tenantId }, data: { settings: {} } });
  });

  it('refuses sign-in through a disabled connection', async () => {
    const { upstream, browser } = await startSso(config, t.url, { connectionId: okta.id });
    const authnRequestUrl = upstreamUrl(upstream);
    await api.patch(`/tenants/default/connections/${okta.id}`, { enabled: false });
    try {
      const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${okta.id}/metadata`)).text();
      const { xml, request } = await idp.respond({
        authnRequestUrl,
        spMetadata,
        user: { nameId: 'alice@corp.example', nameIdFormat: NAMEID_EMAIL },
        now: clock.now(),
      });
      expectRefusedPage(await postToAcs(browser, request.acsUrl, xml, request.relayState));
      expect(await lastRejection(t)).toBe('connection_disabled');
    } finally {
      await api.patch(`/tenants/default/connections/${okta.id}`, { enabled: true });
    }
  });
});
