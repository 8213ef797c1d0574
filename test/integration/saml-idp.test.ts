import { deflateRawSync } from 'node:zlib';
import type { SAML } from '@node-saml/node-saml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginTotpEnrollment, confirmTotpEnrollment } from '../../src/security/mfa.js';
import { totpCodeAt } from '../../src/security/totp.js';
import { createUser } from '../../src/users/users.js';
import { api, apiKeyFor, tenantId } from '../helpers/admin.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { Browser, type BrowserResponse } from '../helpers/browser.js';
import {
  certificatesOf,
  EMAIL_FORMAT,
  type IdpUrls,
  idpUrls,
  type KeyPair,
  keyPair,
  nodeSamlMetadata,
  nodeSamlSp,
  postedForm,
  postMessageOf,
  redirectQuery,
  redirectUrlOf,
  type SpUrls,
  samlifyIdp,
  samlifySp,
  signInOnHostedPage,
  spUrls,
} from '../helpers/saml-sp.js';

/**
 * Our SAML IdP against two independent SPs, node-saml and samlify: each is
 * registered through the management API from its own metadata, configured
 * from our metadata only, signs in through the hosted pages with either
 * binding, checks our signatures and decrypts our assertions, and signs out
 * with single logout across both.
 */

const ADMIN = 'admin@example.com';

/** Each step is a few browser hops, Argon2 and RSA work: on a loaded two-core machine that takes a while. */
const SLOW = { timeout: 120_000 };

let t: TestApp;
let baseUrl: string;
let idp: IdpUrls;
let admin: ReturnType<typeof api>;
let tenant: string;

const nodeUrls: SpUrls = spUrls('node-sp.example');
const samlifyUrls: SpUrls = spUrls('samlify-sp.example');
let nodeKeys: KeyPair;
let samlifyKeys: KeyPair;
let nodeSp: SAML;
let nodeSpId: string;
let samlifyServiceProvider: ReturnType<typeof samlifySp>;
let samlifyIdentityProvider: ReturnType<typeof samlifyIdp>;

async function metadata(query = ''): Promise<string> {
  const response = await fetch(`${idp.entityId}${query}`);
  expect(response.status).toBe(200);
  return response.text();
}

async function registerFromMetadata(name: string, metadataXml: string, settings: Record<string, unknown>): Promise<string> {
  const created = await admin.post('/tenants/default/service-providers', { name, metadata_xml: metadataXml, ...settings });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body.id as string;
}

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  baseUrl = await t.listen();
  idp = idpUrls(baseUrl);
  admin = api(t, (await apiKeyFor(t)).key);
  tenant = await tenantId(t);
  [nodeKeys, samlifyKeys] = await Promise.all([keyPair('node-sp'), keyPair('samlify-sp')]);

  nodeSp = nodeSamlSp(idp, certificatesOf(await metadata()), nodeUrls, nodeKeys);
  nodeSpId = await registerFromMetadata('Node app', nodeSamlMetadata(nodeSp, nodeKeys), {
    require_signed_requests: true,
    encrypt_assertions: true,
    attribute_mapping: { email: 'email', name: 'displayName', roles: 'roles' },
  });

  samlifyServiceProvider = samlifySp(samlifyUrls, samlifyKeys, { encrypted: true });
  await registerFromMetadata('Samlify app', samlifyServiceProvider.getMetadata(), {
    encrypt_assertions: true,
    name_id_format: 'persistent',
    allow_idp_initiated: true,
    attribute_mapping: { email: 'urn:oid:0.9.2342.19200300.100.1.3', groups: 'groups' },
  });
  samlifyIdentityProvider = samlifyIdp(await metadata(`?sp=${encodeURIComponent(samlifyUrls.entityId)}`), { encrypted: true });
}, 180_000);

afterAll(async () => {
  await t?.close();
});

/** From the SP's redirect to the page that posts our Response, through the hosted login form. */
async function signInVia(browser: Browser, startUrl: string, init?: { form: Record<string, string> }): Promise<BrowserResponse> {
  const login = await browser.follow(startUrl, undefined, init);
  return signInOnHostedPage(browser, login, ADMIN, TEST_ADMIN_PASSWORD);
}

async function auditEvents(action: string) {
  return t.deps.db.prisma.auditEvent.findMany({ where: { tenantId: tenant, action }, orderBy: { seq: 'asc' } });
}

describe('metadata', SLOW, () => {
  it('publishes the entity ID, both bindings of SSO and SLO, and the active and next certificates', async () => {
    const response = await fetch(idp.entityId);
    expect(response.headers.get('content-type')).toMatch(/^application\/samlmetadata\+xml/);
    const xml = await response.text();
    expect(xml).toContain(`entityID="${idp.entityId}"`);
    for (const binding of ['HTTP-Redirect', 'HTTP-POST']) {
      expect(xml).toContain(`Binding="urn:oasis:names:tc:SAML:2.0:bindings:${binding}" Location="${idp.sso}"`);
      expect(xml).toContain(`Binding="urn:oasis:names:tc:SAML:2.0:bindings:${binding}" Location="${idp.slo}"`);
    }
    expect(certificatesOf(xml)).toHaveLength(2);
    expect(xml).toContain('WantAuthnRequestsSigned="false"');
    expect(await metadata(`?sp=${encodeURIComponent(nodeUrls.entityId)}`)).toContain('WantAuthnRequestsSigned="true"');
  });
});

describe('SP-initiated sign-in with node-saml', SLOW, () => {
  it('signs in with the Redirect binding: signed request, signed and encrypted assertion, the released attributes', async () => {
    const browser = new Browser(baseUrl);
    const start = await nodeSp.getAuthorizeUrlAsync('relay-1', undefined, {});
    expect(new URL(start).searchParams.get('Signature')).toBeTruthy();
    const page = await signInVia(browser, start);
    expect(page.status, page.text.slice(0, 500)).toBe(200);
    expect(page.url).toMatch(/\/t\/default\/saml\/continue\?/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain('form-action');
    expect(csp).toContain('https://node-sp.example');
    expect(csp).not.toContain('unsafe-inline');
    expect(page.text).toMatch(/<script src="\/assets\/saml-post\.js\?v=[A-Za-z0-9_-]+" defer>/);

    const posted = postedForm(page, nodeUrls.acs);
    expect(posted.RelayState).toBe('relay-1');
    const xml = Buffer.from(posted.SAMLResponse ?? '', 'base64').toString('utf8');
    expect(xml).toContain('EncryptedAssertion');
    expect(xml).toContain('http://www.w3.org/2009/xmlenc11#aes256-gcm');
    expect(xml).not.toContain(ADMIN);

    const { profile } = await nodeSp.validatePostResponseAsync({ SAMLResponse: posted.SAMLResponse ?? '' });
    expect(profile?.nameID).toBe(ADMIN);
    expect(profile?.nameIDFormat).toBe(EMAIL_FORMAT);
    expect(profile?.email).toBe(ADMIN);
    expect(profile?.roles).toBe('owner');
    expect(profile?.sessionIndex).toBeTruthy();
  });

  it('signs in with the POST binding (XML signature), without asking for the password again', async () => {
    const browser = new Browser(baseUrl);
    await signInVia(browser, await nodeSp.getAuthorizeUrlAsync('', undefined, {}));
    // node-saml signs the XML and leaves it uncompressed (as the POST binding requires) when told it posts.
    const postingSp = nodeSamlSp(idp, certificatesOf(await metadata()), nodeUrls, nodeKeys, {
      authnRequestBinding: 'HTTP-POST',
      skipRequestCompression: true,
    });
    const form = await postingSp.getAuthorizeFormAsync('relay-2');
    const samlRequest = /name="SAMLRequest" value="([^"]+)"/.exec(form)?.[1] ?? '';
    expect(Buffer.from(samlRequest, 'base64').toString('utf8')).toMatch(
      /<(ds:)?Signature xmlns(:ds)?="http:\/\/www.w3.org\/2000\/09\/xmldsig#"/,
    );
    const page = await browser.follow(idp.sso, undefined, { form: { SAMLRequest: samlRequest, RelayState: 'relay-2' } });
    const posted = postedForm(page, nodeUrls.acs);
    const { profile } = await postingSp.validatePostResponseAsync({ SAMLResponse: posted.SAMLResponse ?? '' });
    expect(profile?.nameID).toBe(ADMIN);
    expect(posted.RelayState).toBe('relay-2');
  });

  it('audits the assertion: SP, subject and the names of the attributes, not their values', async () => {
    const [issued] = (await auditEvents('saml.assertion.issued')).filter((e) => e.resourceId === nodeSpId);
    expect(issued?.actorType).toBe('user');
    expect(issued?.metadata).toMatchObject({
      entity_id: nodeUrls.entityId,
      name_id: ADMIN,
      name_id_format: EMAIL_FORMAT,
      attributes: ['email', 'displayName', 'roles'],
      encrypted: true,
      idp_initiated: false,
    });
    expect(JSON.stringify(issued?.metadata)).not.toContain('owner');
  });
});

describe('SP-initiated sign-in with samlify', SLOW, () => {
  async function samlifyResponse(page: BrowserResponse) {
    const posted = postedForm(page, samlifyUrls.acs);
    return samlifyServiceProvider.parseLoginResponse(samlifyIdentityProvider, 'post', { body: posted });
  }

  it('signs in with the Redirect binding and a persistent NameID', async () => {
    const start = redirectUrlOf(samlifyServiceProvider.createLoginRequest(samlifyIdentityProvider, 'redirect'));
    const page = await signInVia(new Browser(baseUrl), start);
    const { extract } = await samlifyResponse(page);
    const user = await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant, email: ADMIN } });
    expect(extract.nameID).toBe(user.id);
    expect(extract.attributes).toMatchObject({ 'urn:oid:0.9.2342.19200300.100.1.3': ADMIN, groups: 'owner' });
    expect(extract.response?.inResponseTo).toBeTruthy();
  });

  it('signs in with the POST binding', async () => {
    const request = postMessageOf(samlifyServiceProvider.createLoginRequest(samlifyIdentityProvider, 'post'));
    expect(request.entityEndpoint).toBe(idp.sso);
    const page = await signInVia(new Browser(baseUrl), idp.sso, { form: { SAMLRequest: request.context } });
    const { extract } = await samlifyResponse(page);
    expect(extract.attributes).toMatchObject({ groups: 'owner' });
  });

  it('signs in IdP-initiated when the SP allows it: an unsolicited Response', async () => {
    const page = await signInVia(
      new Browser(baseUrl),
      `${baseUrl}/t/default/saml/idp-initiated?sp=${encodeURIComponent(samlifyUrls.entityId)}`,
    );
    const { extract } = await samlifyResponse(page);
    expect(extract.response?.inResponseTo).toBeFalsy();
  });
});

describe('single logout', SLOW, () => {
  /** Signs the browser in to an OIDC client through the existing session; resolves to the client's id. */
  async function signInToOidcClient(browser: Browser): Promise<string> {
    const redirectUri = 'http://127.0.0.1:9/callback';
    const created = await admin.post('/tenants/default/clients', {
      name: `Back-channel app ${Math.random()}`,
      grant_types: ['authorization_code'],
      redirect_uris: [redirectUri],
      public: true,
      first_party: true,
      scope: 'openid',
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const authorize = new URL(`${baseUrl}/t/default/auth`);
    authorize.search = new URLSearchParams({
      client_id: created.body.client_id,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: redirectUri,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      state: 'oidc-state',
    }).toString();
    const back = await browser.follow(authorize.href, redirectUri);
    expect(new URL(back.location ?? '').searchParams.get('code')).toBeTruthy();
    return created.body.client_id as string;
  }

  const grantsOf = (clientId: string) =>
    t.deps.db.prisma.oidcPayload.count({ where: { tenantId: tenant, model: 'Grant', payload: { path: ['clientId'], equals: clientId } } });

  /** One browser signed in to both SPs (and whatever else the test adds). */
  async function signedInToBoth(browser: Browser) {
    const page = await signInVia(browser, await nodeSp.getAuthorizeUrlAsync('', undefined, {}));
    const { profile } = await nodeSp.validatePostResponseAsync({ SAMLResponse: postedForm(page, nodeUrls.acs).SAMLResponse ?? '' });
    if (!profile) throw new Error('node-saml saw no profile');
    const samlifyStart = redirectUrlOf(samlifyServiceProvider.createLoginRequest(samlifyIdentityProvider, 'redirect'));
    const samlifyPage = await browser.follow(samlifyStart);
    const samlifyLogin = await samlifyServiceProvider.parseLoginResponse(samlifyIdentityProvider, 'post', {
      body: postedForm(samlifyPage, samlifyUrls.acs),
    });
    return { profile, samlifyLogin };
  }

  async function isSignedIn(browser: Browser): Promise<boolean> {
    const page = await browser.follow('/t/default/account');
    return page.text.includes('Signed in as');
  }

  it('ends the session from node-saml (Redirect): samlify is told, the OIDC client’s grant is revoked, node-saml gets Success', async () => {
    const browser = new Browser(baseUrl);
    const { profile } = await signedInToBoth(browser);
    const oidcClient = await signInToOidcClient(browser);
    expect(await grantsOf(oidcClient)).toBe(1);
    expect(await isSignedIn(browser)).toBe(true);

    const logoutPage = await browser.follow(await nodeSp.getLogoutUrlAsync(profile, 'slo-relay', {}));
    expect(logoutPage.status, logoutPage.text.slice(0, 400)).toBe(200);
    // oidc-provider's own logout form: the session ends there, every client's grant with it (and back-channel
    // logout tokens go to OIDC clients that registered a URI).
    const toSamlify = await browser.submit(logoutPage, '/session/end/confirm', {}, samlifyUrls.slo);
    expect(toSamlify.location?.startsWith(`${samlifyUrls.slo}?`)).toBe(true);
    expect(await isSignedIn(browser)).toBe(false);
    expect(await grantsOf(oidcClient)).toBe(0);

    const { query, octetString } = redirectQuery(toSamlify.location ?? '');
    const logoutRequest = await samlifyServiceProvider.parseLogoutRequest(samlifyIdentityProvider, 'redirect', { query, octetString });
    const user = await t.deps.db.prisma.user.findFirstOrThrow({ where: { tenantId: tenant, email: ADMIN } });
    expect(logoutRequest.extract.nameID).toBe(user.id);
    const answer = redirectUrlOf(
      samlifyServiceProvider.createLogoutResponse(samlifyIdentityProvider, { ...logoutRequest }, 'redirect', query.RelayState),
    );
    expect(answer.startsWith(`${idp.slo}?`)).toBe(true);

    const toNode = await browser.follow(answer, nodeUrls.slo);
    expect(toNode.location?.startsWith(`${nodeUrls.slo}?`)).toBe(true);
    const back = redirectQuery(toNode.location ?? '');
    expect(back.query.RelayState).toBe('slo-relay');
    const result = await nodeSp.validateRedirectAsync(back.query, back.raw);
    expect(result.loggedOut).toBe(true);

    const [completed] = (await auditEvents('saml.logout.completed')).slice(-1);
    expect(completed?.metadata).toMatchObject({ initiator: nodeSpId, partial: false });
    expect((completed?.metadata as { notified: string[] }).notified).toHaveLength(1);
  });

  it('ends the session from samlify (POST): node-saml is told, samlify gets a signed LogoutResponse by POST', async () => {
    const browser = new Browser(baseUrl);
    const { samlifyLogin } = await signedInToBoth(browser);
    const request = postMessageOf(
      samlifyServiceProvider.createLogoutRequest(
        samlifyIdentityProvider,
        'post',
        { logoutNameID: String(samlifyLogin.extract.nameID), sessionIndex: String(samlifyLogin.extract.sessionIndex?.sessionIndex) },
        'samlify-relay',
      ),
    );
    expect(request.entityEndpoint).toBe(idp.slo);
    const logoutPage = await browser.follow(idp.slo, undefined, { form: { SAMLRequest: request.context, RelayState: 'samlify-relay' } });
    const toNode = await browser.submit(logoutPage, '/session/end/confirm', {}, nodeUrls.slo);
    expect(toNode.location?.startsWith(`${nodeUrls.slo}?`)).toBe(true);

    const fromUs = redirectQuery(toNode.location ?? '');
    const { profile } = await nodeSp.validateRedirectAsync(fromUs.query, fromUs.raw);
    expect(profile?.nameID).toBe(ADMIN);
    const nodeAnswer = await nodeSp.getLogoutResponseUrlAsync(
      profile ?? { issuer: '', nameID: '', nameIDFormat: '' },
      fromUs.query.RelayState ?? '',
      {},
      true,
    );

    const page = await browser.follow(nodeAnswer);
    const posted = postedForm(page, samlifyUrls.slo);
    expect(posted.RelayState).toBe('samlify-relay');
    const logoutResponse = await samlifyServiceProvider.parseLogoutResponse(samlifyIdentityProvider, 'post', { body: posted });
    expect(logoutResponse.extract.response?.inResponseTo).toBeTruthy();
    expect(await isSignedIn(browser)).toBe(false);
  });

  it('a logout started at end_session (the account page) tells the SAML SPs, then ends where it was going', async () => {
    const browser = new Browser(baseUrl);
    await signedInToBoth(browser);
    const account = await browser.follow('/t/default/account');
    const signOut = /<a class="button secondary" href="([^"]+)">Sign out<\/a>/.exec(account.text)?.[1]?.replace(/&amp;/g, '&');
    if (!signOut) throw new Error(`no sign-out link: ${account.text.slice(0, 500)}`);
    const confirm = await browser.follow(signOut);
    expect(confirm.text).toContain('Sign out?');
    const toFirst = await browser.submit(confirm, '/session/end/confirm', { logout: 'yes' }, 'https://');
    expect(await isSignedIn(browser)).toBe(false);

    // The SPs are told one after the other, in whichever order; each answers at our SLO endpoint.
    let hop = toFirst;
    const told: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      const location = hop.location ?? '';
      const { query, raw, octetString } = redirectQuery(location);
      let answer: string;
      if (location.startsWith(`${nodeUrls.slo}?`)) {
        const { profile } = await nodeSp.validateRedirectAsync(query, raw);
        expect(profile?.nameID).toBe(ADMIN);
        answer = await nodeSp.getLogoutResponseUrlAsync(
          profile ?? { issuer: '', nameID: '', nameIDFormat: '' },
          query.RelayState ?? '',
          {},
          true,
        );
        told.push('node');
      } else {
        expect(location.startsWith(`${samlifyUrls.slo}?`), location).toBe(true);
        const request = await samlifyServiceProvider.parseLogoutRequest(samlifyIdentityProvider, 'redirect', { query, octetString });
        answer = redirectUrlOf(
          samlifyServiceProvider.createLogoutResponse(samlifyIdentityProvider, { ...request }, 'redirect', query.RelayState),
        );
        told.push('samlify');
      }
      hop = await browser.request(answer);
    }
    expect(told.sort()).toEqual(['node', 'samlify']);
    expect(hop.status).toBe(303);
    expect(hop.location).toBe(`${baseUrl}/t/default/account`);
    const [completed] = (await auditEvents('saml.logout.completed')).slice(-1);
    expect(completed?.metadata).toMatchObject({ initiator: null, partial: false });
  });

  it('"Stay signed in" on that logout page tells no SP and keeps the session', async () => {
    const browser = new Browser(baseUrl);
    await signedInToBoth(browser);
    const account = await browser.follow('/t/default/account');
    const signOut = /<a class="button secondary" href="([^"]+)">Sign out<\/a>/.exec(account.text)?.[1]?.replace(/&amp;/g, '&') ?? '';
    const confirm = await browser.follow(signOut);
    const stayed = await browser.submit(confirm, '/session/end/confirm', {}, 'https://');
    expect(stayed.status).toBe(200);
    expect(stayed.url).toBe(`${baseUrl}/t/default/account`);
    expect(await isSignedIn(browser)).toBe(true);
  });
});

describe('sign-in with a second factor', SLOW, () => {
  it('asks a user with a TOTP factor for a code before any assertion, and says so in the AuthnContext', async () => {
    const email = 'totp-user@example.com';
    const password = 'a long enough password';
    const deps = { prisma: t.deps.db.prisma, kv: t.deps.kv, clock: t.deps.clock, audit: t.deps.audit, vault: t.deps.vault };
    const user = await createUser({ ...deps, passwords: t.deps.passwords }, tenant, { email, password }, { type: 'system' });
    const tenantContext = await t.deps.tenants.bySlug('default');
    if (!tenantContext) throw new Error('no tenant');
    const enrollment = await beginTotpEnrollment(deps, tenantContext, user);
    // Enrolled with the previous step's code, so the current step's code is still unused at sign-in.
    const now = t.deps.clock.now();
    const meta = { ip: null, userAgent: null };
    expect(
      (await confirmTotpEnrollment(deps, tenant, user.id, enrollment.factorId, totpCodeAt(enrollment.secret, now - 30_000), meta)).ok,
    ).toBe(true);

    const browser = new Browser(baseUrl);
    const login = await browser.follow(await nodeSp.getAuthorizeUrlAsync('', undefined, {}));
    const second = await signInOnHostedPage(browser, login, email, password);
    expect(second.text).not.toContain('SAMLResponse');
    const page = await browser.submit(second, '/mfa', { code: totpCodeAt(enrollment.secret, t.deps.clock.now()) });
    const { profile } = await nodeSp.validatePostResponseAsync({ SAMLResponse: postedForm(page, nodeUrls.acs).SAMLResponse ?? '' });
    expect(profile?.nameID).toBe(email);
    expect(profile?.getAssertionXml?.()).toContain('https://refeds.org/profile/mfa');
  });
});

describe('managing service providers', SLOW, () => {
  it('refuses metadata with a DTD, a signing requirement without a certificate, and a second SP with the same entity ID', async () => {
    const withDtd = await admin.post('/tenants/default/service-providers', {
      name: 'DTD app',
      metadata_xml: `<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${samlifyServiceProvider.getMetadata()}`,
    });
    expect(withDtd.status).toBe(400);
    expect(withDtd.body.error).toBe('invalid_metadata');
    const unsigned = await admin.post('/tenants/default/service-providers', {
      name: 'No certificate',
      entity_id: 'https://no-cert.example/metadata',
      acs_urls: ['https://no-cert.example/acs'],
      require_signed_requests: true,
    });
    expect(unsigned.status).toBe(400);
    expect(unsigned.body.error_description).toMatch(/certificate/);
    const insecureAcs = await admin.post('/tenants/default/service-providers', {
      name: 'Plain http',
      entity_id: 'https://plain.example/metadata',
      acs_urls: ['http://plain.example/acs'],
    });
    expect(insecureAcs.status).toBe(400);
    const duplicate = await admin.post('/tenants/default/service-providers', {
      name: 'Another node app',
      entity_id: nodeUrls.entityId,
      acs_urls: [nodeUrls.acs],
    });
    expect(duplicate.status).toBe(409);
  });

  it('a disabled SP is refused; a deleted one takes its built-in client and grants with it', async () => {
    const created = await admin.post('/tenants/default/service-providers', {
      name: 'Short-lived app',
      entity_id: 'https://short-lived.example/metadata',
      acs_urls: ['https://short-lived.example/acs'],
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const disabled = await admin.patch(`/tenants/default/service-providers/${id}`, { enabled: false });
    expect(disabled.body.enabled).toBe(false);
    const request =
      `<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"` +
      ` ID="_short1" Version="2.0" IssueInstant="${new Date().toISOString()}"><saml:Issuer>https://short-lived.example/metadata</saml:Issuer></samlp:AuthnRequest>`;
    const refused = await new Browser(baseUrl).request(
      `${idp.sso}?SAMLRequest=${encodeURIComponent(deflateRawSync(request).toString('base64'))}`,
    );
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('<code>unknown_service_provider</code>');
    await admin.patch(`/tenants/default/service-providers/${id}`, { enabled: true });
    const started = await new Browser(baseUrl).request(
      `/t/default/saml/idp-initiated?sp=${encodeURIComponent('https://short-lived.example/metadata')}`,
    );
    expect(started.status).toBe(400);
    await admin.patch(`/tenants/default/service-providers/${id}`, { allow_idp_initiated: true });
    expect(
      (await new Browser(baseUrl).request(`/t/default/saml/idp-initiated?sp=${encodeURIComponent('https://short-lived.example/metadata')}`))
        .status,
    ).toBe(303);
    expect(await t.deps.db.prisma.client.count({ where: { clientId: `saml.${id}` } })).toBe(1);
    expect((await admin.delete(`/tenants/default/service-providers/${id}`)).status).toBe(204);
    expect(await t.deps.db.prisma.client.count({ where: { clientId: `saml.${id}` } })).toBe(0);
    expect((await admin.get(`/tenants/default/service-providers/${id}`)).status).toBe(404);
  });

  it('rotates the signing key: metadata publishes three certificates, and an SP that trusted the next one accepts the new signatures', async () => {
    const before = await admin.get('/tenants/default/saml/signing-keys');
    expect(before.body.data.map((key: { status: string }) => key.status).sort()).toEqual(['active', 'next']);
    const rotated = await admin.post('/tenants/default/saml/signing-keys/rotate');
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    const next = before.body.data.find((key: { status: string }) => key.status === 'next');
    expect(rotated.body.activated).toBe(next.kid);
    const published = certificatesOf(await metadata());
    expect(published).toHaveLength(3);
    expect(published[0]?.replace(/\s/g, '')).toBe(next.certificate.replace(/\s/g, ''));
    const oidcKeys = await admin.get('/tenants/default/signing-keys');
    expect(oidcKeys.body.data.some((key: { kid: string }) => key.kid === next.kid)).toBe(false);

    // nodeSp was configured before the rotation, with the then active and next certificates.
    const page = await signInVia(new Browser(baseUrl), await nodeSp.getAuthorizeUrlAsync('', undefined, {}));
    const { profile } = await nodeSp.validatePostResponseAsync({ SAMLResponse: postedForm(page, nodeUrls.acs).SAMLResponse ?? '' });
    expect(profile?.nameID).toBe(ADMIN);
    const [event] = (await auditEvents('saml.keys.rotated')).slice(-1);
    expect(event?.metadata).toMatchObject({ activated: next.kid });
  });
});
