import { deflateRawSync } from 'node:zlib';
import type { SAML } from '@node-saml/node-saml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, apiKeyFor, tenantId } from '../helpers/admin.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { Browser, type BrowserResponse } from '../helpers/browser.js';
import {
  certificatesOf,
  type IdpUrls,
  idpUrls,
  type KeyPair,
  keyPair,
  nodeSamlMetadata,
  nodeSamlSp,
  postedForm,
  redirectQuery,
  signInOnHostedPage,
  spUrls,
} from '../helpers/saml-sp.js';

/**
 * What our SAML IdP refuses, each with an error page (never a form posting
 * anywhere) and an audit event naming the reason: unregistered ACS URLs,
 * unsigned or stranger-signed requests where signatures are required, DTDs
 * (XXE, entity expansion), oversized and compressed-bomb messages, replays,
 * unknown SPs, tampering, and a continue link carried to another browser.
 */

/** Each step is a few browser hops, Argon2 and RSA work: on a loaded two-core machine that takes a while. */
const SLOW = { timeout: 120_000 };

let t: TestApp;
let baseUrl: string;
let idp: IdpUrls;
let tenant: string;
let idpCertificates: string[];
const strictUrls = spUrls('strict-sp.example');
const lenientUrls = spUrls('lenient-sp.example');
let strictKeys: KeyPair;
let strangerKeys: KeyPair;
let strict: SAML;

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  baseUrl = await t.listen();
  idp = idpUrls(baseUrl);
  tenant = await tenantId(t);
  const admin = api(t, (await apiKeyFor(t)).key);
  [strictKeys, strangerKeys] = await Promise.all([keyPair('strict-sp'), keyPair('stranger')]);
  idpCertificates = certificatesOf(await (await fetch(idp.entityId)).text());
  strict = nodeSamlSp(idp, idpCertificates, strictUrls, strictKeys);
  const registered = await admin.post('/tenants/default/service-providers', {
    name: 'Strict app',
    metadata_xml: nodeSamlMetadata(strict, strictKeys),
    require_signed_requests: true,
  });
  expect(registered.status, JSON.stringify(registered.body)).toBe(201);
  const lenient = await admin.post('/tenants/default/service-providers', {
    name: 'Lenient app',
    entity_id: lenientUrls.entityId,
    acs_urls: [lenientUrls.acs],
    slo_url: lenientUrls.slo,
    name_id_format: 'persistent',
  });
  expect(lenient.status, JSON.stringify(lenient.body)).toBe(201);
}, 180_000);

afterAll(async () => {
  await t?.close();
});

async function refusalReasons(): Promise<string[]> {
  const events = await t.deps.db.prisma.auditEvent.findMany({
    where: { tenantId: tenant, action: 'saml.request.refused' },
    orderBy: { seq: 'asc' },
  });
  return events.map((event) => String((event.metadata as { reason?: unknown }).reason));
}

/** A refusal: the tenant's error page with the reason's code, nothing posted anywhere, no sign-in started. */
async function expectRefused(response: BrowserResponse, reason: string): Promise<void> {
  expect(response.status, response.text.slice(0, 300)).toBe(400);
  expect(response.location).toBeUndefined();
  expect(response.headers.get('content-type')).toMatch(/^text\/html/);
  expect(response.text).toContain(`<code>${reason}</code>`);
  expect(response.text).not.toContain('SAMLResponse');
  expect(response.text).not.toMatch(/<script/);
  expect((await refusalReasons()).at(-1)).toBe(reason);
}

const signedRedirect = (sp: SAML) => sp.getAuthorizeUrlAsync('', undefined, {});

/** A POST-binding AuthnRequest from node-saml: signed XML, uncompressed. */
async function postBody(sp: SAML): Promise<Record<string, string>> {
  const form = await sp.getAuthorizeFormAsync('');
  return { SAMLRequest: /name="SAMLRequest" value="([^"]+)"/.exec(form)?.[1] ?? '' };
}

const posting = (keys: KeyPair, overrides: Parameters<typeof nodeSamlSp>[4] = {}) =>
  nodeSamlSp(idp, idpCertificates, strictUrls, keys, { authnRequestBinding: 'HTTP-POST', skipRequestCompression: true, ...overrides });

function authnRequestXml(issuer: string, extra = ''): string {
  return (
    `<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"` +
    ` ID="_${Math.random().toString(16).slice(2)}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${idp.sso}">` +
    `<saml:Issuer>${issuer}</saml:Issuer>${extra}</samlp:AuthnRequest>`
  );
}

const redirectUrl = (xml: string) => `${idp.sso}?SAMLRequest=${encodeURIComponent(deflateRawSync(Buffer.from(xml)).toString('base64'))}`;
const postXml = (browser: Browser, xml: string) => browser.request(idp.sso, { form: { SAMLRequest: Buffer.from(xml).toString('base64') } });

describe('requests the IdP refuses', SLOW, () => {
  it('an ACS URL the SP has not registered: an error page, and no Response is posted there', async () => {
    const rogue = nodeSamlSp(idp, idpCertificates, { ...strictUrls, acs: 'https://attacker.example/collect' }, strictKeys);
    const response = await new Browser(baseUrl).request(await signedRedirect(rogue));
    await expectRefused(response, 'acs_url_not_registered');
    expect(response.text).not.toContain('attacker.example');
  });

  it('an unsigned AuthnRequest from an SP that must sign, in either binding', async () => {
    const unsigned = nodeSamlSp(idp, idpCertificates, strictUrls, strictKeys, { privateKey: undefined });
    const redirect = await signedRedirect(unsigned);
    expect(new URL(redirect).searchParams.has('Signature')).toBe(false);
    await expectRefused(await new Browser(baseUrl).request(redirect), 'signature_required');
    await expectRefused(
      await new Browser(baseUrl).request(idp.sso, { form: await postBody(posting(strictKeys, { privateKey: undefined })) }),
      'signature_required',
    );
  });

  it('an AuthnRequest signed by a stranger’s key, in either binding', async () => {
    const stranger = nodeSamlSp(idp, idpCertificates, strictUrls, strangerKeys);
    await expectRefused(await new Browser(baseUrl).request(await signedRedirect(stranger)), 'bad_signature');
    await expectRefused(await new Browser(baseUrl).request(idp.sso, { form: await postBody(posting(strangerKeys)) }), 'bad_signature');
  });

  it('a signed request whose content was changed after signing (another ACS URL, signature kept)', async () => {
    const body = await postBody(posting(strictKeys));
    const xml = Buffer.from(body.SAMLRequest ?? '', 'base64').toString('utf8');
    const tampered = xml.replace(
      `AssertionConsumerServiceURL="${strictUrls.acs}"`,
      'AssertionConsumerServiceURL="https://attacker.example/acs"',
    );
    expect(tampered).not.toBe(xml);
    await expectRefused(await postXml(new Browser(baseUrl), tampered), 'bad_signature');
    const redirect = new URL(await signedRedirect(strict));
    redirect.searchParams.set('RelayState', 'changed-after-signing');
    await expectRefused(await new Browser(baseUrl).request(redirect.href), 'bad_signature');
  });

  it('XML with a DOCTYPE: external entities (XXE) and entity expansion, in either binding', async () => {
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${authnRequestXml('&xxe;')}`;
    const laughs = `<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>${authnRequestXml(lenientUrls.entityId, '&b;')}`;
    for (const xml of [xxe, laughs]) {
      await expectRefused(await postXml(new Browser(baseUrl), xml), 'dtd_forbidden');
      await expectRefused(await new Browser(baseUrl).request(redirectUrl(xml)), 'dtd_forbidden');
    }
  });

  it('a DEFLATE bomb and an oversized message, before they are parsed', async () => {
    const bomb = authnRequestXml(lenientUrls.entityId, `<!--${' '.repeat(2 * 1024 * 1024)}-->`);
    await expectRefused(await new Browser(baseUrl).request(redirectUrl(bomb)), 'message_too_large');
    const large = authnRequestXml(lenientUrls.entityId, `<!--${'x'.repeat(40 * 1024)}-->`).repeat(2);
    const response = await postXml(new Browser(baseUrl), large);
    expect([400, 413]).toContain(response.status);
  });

  it('a replayed AuthnRequest ID', async () => {
    const url = await signedRedirect(strict);
    const first = await new Browser(baseUrl).request(url);
    expect(first.status).toBe(303);
    expect(first.location).toMatch(/\/t\/default\/auth\?/);
    await expectRefused(await new Browser(baseUrl).request(url), 'replayed_message');
  });

  it('an unknown SP, signed or not', async () => {
    const unknown = nodeSamlSp(idp, idpCertificates, spUrls('unknown-sp.example'), strangerKeys);
    await expectRefused(await new Browser(baseUrl).request(await signedRedirect(unknown)), 'unknown_service_provider');
    await expectRefused(
      await new Browser(baseUrl).request(redirectUrl(authnRequestXml('https://unknown-sp.example/saml/metadata'))),
      'unknown_service_provider',
    );
  });

  it('a request addressed to another endpoint, or dated long ago', async () => {
    const elsewhere = authnRequestXml(lenientUrls.entityId).replace(
      `Destination="${idp.sso}"`,
      'Destination="https://other-idp.example/sso"',
    );
    await expectRefused(await new Browser(baseUrl).request(redirectUrl(elsewhere)), 'wrong_destination');
    const stale = authnRequestXml(lenientUrls.entityId).replace(
      /IssueInstant="[^"]+"/,
      `IssueInstant="${new Date(Date.now() - 3600_000).toISOString()}"`,
    );
    await expectRefused(await new Browser(baseUrl).request(redirectUrl(stale)), 'stale_message');
  });

  it('IdP-initiated sign-in for an SP that does not allow it', async () => {
    const response = await new Browser(baseUrl).request(`/t/default/saml/idp-initiated?sp=${encodeURIComponent(lenientUrls.entityId)}`);
    await expectRefused(response, 'idp_initiated_not_allowed');
  });

  it('a continue link taken to another browser (login CSRF): the sign-in is bound to the browser that started it', async () => {
    const attacker = new Browser(baseUrl);
    const login = await attacker.follow(await signedRedirect(strict));
    const toContinue = await attacker.submit(
      login,
      '/login',
      { email: 'admin@example.com', password: TEST_ADMIN_PASSWORD },
      `${baseUrl}/t/default/saml/continue`,
    );
    expect(toContinue.location).toMatch(/\/saml\/continue\?code=/);
    const victim = new Browser(baseUrl);
    await expectRefused(await victim.request(toContinue.location ?? ''), 'sign_in_not_bound');
  });
});

describe('problems answered to a registered ACS with a signed error Response', SLOW, () => {
  it('a NameIDPolicy the SP is not configured for: InvalidNameIDPolicy', async () => {
    const xml = authnRequestXml(
      lenientUrls.entityId,
      '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"/>',
    );
    const page = await new Browser(baseUrl).request(redirectUrl(xml));
    const posted = postedForm(page, lenientUrls.acs);
    const response = Buffer.from(posted.SAMLResponse ?? '', 'base64').toString('utf8');
    expect(response).toContain('urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy');
    expect(response).toContain('<ds:Signature');
    expect(response).not.toContain('Assertion');
  });

  it('a sign-in the person cancels: AuthnFailed, and IsPassive without a session: NoPassive', async () => {
    const browser = new Browser(baseUrl);
    const login = await browser.follow(redirectUrl(authnRequestXml(lenientUrls.entityId)));
    const cancelled = await browser.submit(login, '/abort');
    expect(Buffer.from(postedForm(cancelled, lenientUrls.acs).SAMLResponse ?? '', 'base64').toString('utf8')).toContain(
      'urn:oasis:names:tc:SAML:2.0:status:AuthnFailed',
    );
    const passive = await new Browser(baseUrl).follow(
      redirectUrl(authnRequestXml(lenientUrls.entityId).replace('Version="2.0"', 'Version="2.0" IsPassive="true"')),
    );
    expect(Buffer.from(postedForm(passive, lenientUrls.acs).SAMLResponse ?? '', 'base64').toString('utf8')).toContain(
      'urn:oasis:names:tc:SAML:2.0:status:NoPassive',
    );
  });
});

describe('logout requests', SLOW, () => {
  it('a LogoutRequest naming someone else than the signed-in person ends nothing', async () => {
    const browser = new Browser(baseUrl);
    const page = await signInOnHostedPage(
      browser,
      await browser.follow(await signedRedirect(strict)),
      'admin@example.com',
      TEST_ADMIN_PASSWORD,
    );
    const { profile } = await strict.validatePostResponseAsync({ SAMLResponse: postedForm(page, strictUrls.acs).SAMLResponse ?? '' });
    if (!profile) throw new Error('no profile');
    const answer = await browser.follow(
      await strict.getLogoutUrlAsync({ ...profile, nameID: 'someone-else@example.com' }, '', {}),
      strictUrls.slo,
    );
    const { query, raw } = redirectQuery(answer.location ?? '');
    expect(Buffer.from(query.SAMLResponse ?? '', 'base64').length).toBeGreaterThan(0);
    await expect(strict.validateRedirectAsync(query, raw)).rejects.toThrow(/UnknownPrincipal|Requester/);
    expect((await browser.follow('/t/default/account')).text).toContain('Signed in as');
  });
});
