import type { Server } from 'node:http';
import { deflateRawSync } from 'node:zlib';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EncryptOptions, encrypt } from 'xml-encryption';
import { closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { manualClock } from '../../src/clock.js';
import { apiKeyFor, api as managementApi } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectRefusedPage, lastRejection, postToAcs, type SamlSignIn, samlSignIn, startSso, upstreamUrl } from '../helpers/federation.js';
import { Browser, createTenantClient, rpConfig, tenantIdOf } from '../helpers/oidc.js';
import { fixture, SamlIdp } from '../helpers/saml-idp.js';

/**
 * Hostile SAML responses, each built from one that samlify genuinely signed
 * for a user the IdP really has (attacker@example.com), trying to become the
 * tenant's admin (admin@example.com, linkable: the connection is trusted for
 * example.com). Every one is refused, or signs in only whoever the signed
 * content names; the audit trail says why it was refused.
 */

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const ADMIN = 'admin@example.com';
const ATTACKER = 'attacker@example.com';
const clock = manualClock(Date.now());
const idp = new SamlIdp();
let t: TestApp;
let config: oidc.Configuration;
let connectionId: string;
let tenantId: string;
let adminId: string;

const NS = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
};

beforeAll(async () => {
  t = await createTestApp({ seed: true, clock });
  await t.listen();
  tenantId = await tenantIdOf(t);
  adminId = (await t.deps.db.prisma.user.findUniqueOrThrow({ where: { tenantId_email: { tenantId, email: ADMIN } } })).id;
  const api = managementApi(t, (await apiKeyFor(t)).key);
  const created = await api.post('/tenants/default/connections', {
    name: 'Okta',
    type: 'saml',
    preset: 'okta',
    domains: ['example.com', 'example.com.evil.com'],
    saml: { metadata_xml: idp.metadata() },
  });
  expect(created.status).toBe(201);
  connectionId = created.body.id;
  const client = await createTenantClient(t, { name: 'App', redirectUris: [REDIRECT_URI], firstParty: true });
  config = await rpConfig(`${t.url}/t/default`, client);
  // A fresh database, an app, an RSA key for the SP and a client: more than the default hook time on a busy machine.
}, 180_000);

afterAll(async () => {
  await t?.close();
});

// ---------------------------------------------------------------- XML surgery

const parse = (xml: string) => new DOMParser().parseFromString(xml, 'text/xml');
const serialize = (node: Node) => new XMLSerializer().serializeToString(node);

function elementChildren(parent: Element, ns: string, name: string): Element[] {
  return Array.from(parent.childNodes).filter(
    (n): n is Element => n.nodeType === 1 && (n as Element).namespaceURI === ns && (n as Element).localName === name,
  );
}

function only<T>(items: T[], what: string): T {
  const [item] = items;
  if (items.length !== 1 || item === undefined) throw new Error(`expected one ${what}, found ${items.length}`);
  return item;
}

const responseOf = (doc: Document) => {
  const root = doc.documentElement;
  if (!root) throw new Error('no root');
  return root;
};
const assertionOf = (response: Element) => only(elementChildren(response, NS.assertion, 'Assertion'), 'Assertion');
const signatureOf = (element: Element) => only(elementChildren(element, NS.dsig, 'Signature'), 'Signature');

/** Makes `assertion` (a copy) say it is the admin. */
function forge(assertion: Element, id = '_forged'): Element {
  assertion.setAttribute('ID', id);
  for (const nameId of Array.from(assertion.getElementsByTagNameNS(NS.assertion, 'NameID'))) nameId.textContent = ADMIN;
  return assertion;
}

function withoutSignature(element: Element): Element {
  for (const signature of elementChildren(element, NS.dsig, 'Signature')) element.removeChild(signature);
  return element;
}

function tamper(work: (doc: Document, response: Element) => void): (xml: string) => string {
  return (xml) => {
    const doc = parse(xml);
    work(doc, responseOf(doc));
    return serialize(doc);
  };
}

/** XSW1–XSW8 as the SAML Raider tool defines them (after "On Breaking SAML", Somorovsky et al.). */
const XSW: Record<string, { signResponse: boolean; tamper: (xml: string) => string }> = {
  // Response signature: the evil Response is the root; the signed original, unchanged, hides inside its Signature.
  XSW1: {
    signResponse: true,
    tamper: tamper((_doc, response) => {
      const original = withoutSignature(response.cloneNode(true) as Element);
      response.setAttribute('ID', '_evil_response');
      forge(assertionOf(response), '_evil_assertion');
      signatureOf(response).appendChild(original);
    }),
  },
  // As XSW1, the original placed before the Signature (detached).
  XSW2: {
    signResponse: true,
    tamper: tamper((_doc, response) => {
      const original = withoutSignature(response.cloneNode(true) as Element);
      response.setAttribute('ID', '_evil_response');
      forge(assertionOf(response), '_evil_assertion');
      response.insertBefore(original, signatureOf(response));
    }),
  },
  // A forged, unsigned assertion before the signed original.
  XSW3: {
    signResponse: false,
    tamper: tamper((_doc, response) => {
      const assertion = assertionOf(response);
      response.insertBefore(forge(withoutSignature(assertion.cloneNode(true) as Element)), assertion);
    }),
  },
  // The forged assertion wraps the signed original.
  XSW4: {
    signResponse: false,
    tamper: tamper((_doc, response) => {
      const assertion = assertionOf(response);
      const evil = forge(withoutSignature(assertion.cloneNode(true) as Element));
      response.replaceChild(evil, assertion);
      evil.appendChild(assertion);
    }),
  },
  // The signed assertion is changed in place (keeping its Signature); an unsigned copy of the original goes to the end.
  XSW5: {
    signResponse: false,
    tamper: tamper((_doc, response) => {
      const assertion = assertionOf(response);
      const copy = withoutSignature(assertion.cloneNode(true) as Element);
      forge(assertion);
      response.appendChild(copy);
    }),
  },
  // As XSW5, the copy inside the changed assertion's Signature.
  XSW6: {
    signResponse: false,
    tamper: tamper((_doc, response) => {
      const assertion = assertionOf(response);
      const copy = withoutSignature(assertion.cloneNode(true) as Element);
      forge(assertion);
      signatureOf(assertion).appendChild(copy);
    }),
  },
  // The signed original inside an Extensions element; the forged assertion beside it.
  XSW7: {
    signResponse: false,
    tamper: tamper((doc, response) => {
      const assertion = assertionOf(response);
      const extensions = doc.createElementNS(NS.protocol, 'samlp:Extensions');
      response.insertBefore(extensions, assertion);
      extensions.appendChild(assertion.cloneNode(true));
      response.replaceChild(forge(withoutSignature(assertion.cloneNode(true) as Element)), assertion);
    }),
  },
  // The changed assertion keeps its Signature, which carries an Object with the unsigned original.
  XSW8: {
    signResponse: false,
    tamper: tamper((doc, response) => {
      const assertion = assertionOf(response);
      const copy = withoutSignature(assertion.cloneNode(true) as Element);
      forge(assertion);
      const object = doc.createElementNS(NS.dsig, 'ds:Object');
      object.appendChild(copy);
      signatureOf(assertion).appendChild(object);
    }),
  },
};

// ---------------------------------------------------------------- outcomes

async function signedInAs(signIn: SamlSignIn): Promise<string | null> {
  if (signIn.outcome.kind !== 'redirect') return null;
  const tokens = await oidc.authorizationCodeGrant(config, signIn.outcome.url, {
    pkceCodeVerifier: signIn.request.codeVerifier,
    expectedState: signIn.request.state,
    expectedNonce: signIn.request.nonce,
  });
  return tokens.claims()?.sub ?? null;
}

async function expectRejected(signIn: SamlSignIn, reason: string | RegExp): Promise<void> {
  expectRefusedPage(signIn.outcome);
  if (signIn.outcome.kind === 'page') expect(signIn.outcome.html).not.toMatch(/signature|xml-crypto|node_modules/i);
  const recorded = await lastRejection(t);
  if (typeof reason === 'string') expect(recorded).toBe(reason);
  else expect(recorded).toMatch(reason);
}

const attacker = { nameId: ATTACKER };

describe('a genuine response', () => {
  it('signs in the user it names (the baseline the attacks start from)', async () => {
    const sub = await signedInAs(await samlSignIn(t, config, idp, connectionId, attacker));
    const user = await t.deps.db.prisma.user.findUniqueOrThrow({ where: { tenantId_email: { tenantId, email: ATTACKER } } });
    expect(sub).toBe(user.id);
  });
});

describe('XML signature wrapping', () => {
  for (const [name, variant] of Object.entries(XSW)) {
    it(`${name} is refused and never yields the admin`, async () => {
      const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
        signResponse: variant.signResponse,
        tamper: variant.tamper,
      });
      expect(signIn.xml).toContain(ADMIN);
      const sub = await signedInAs(signIn);
      expect(sub).not.toBe(adminId);
      expect(sub).toBeNull();
      await expectRejected(signIn, /invalid_signature|multiple_assertions|malformed/);
    });
  }

  it('refuses a signed assertion hidden beside a forged one', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
      tamper: tamper((_doc, response) => {
        const assertion = assertionOf(response);
        response.appendChild(forge(withoutSignature(assertion.cloneNode(true) as Element), '_second'));
      }),
    });
    expect(await signedInAs(signIn)).toBeNull();
    await expectRejected(signIn, 'multiple_assertions');
  });
});

describe('tampering with what was signed', () => {
  it('takes a NameID with a comment inside from the signed text, comment and all (admin@example.com<!---->.evil.com)', async () => {
    const signIn = await samlSignIn(
      t,
      config,
      idp,
      connectionId,
      { nameId: `${ADMIN}.evil.com` },
      {
        // After signing: exclusive canonicalization drops comments, so the signature still verifies.
        tamper: (xml) => xml.replace(`>${ADMIN}.evil.com<`, `>${ADMIN}<!---->.evil.com<`),
      },
    );
    expect(signIn.xml).toContain(`${ADMIN}<!---->.evil.com`);
    const sub = await signedInAs(signIn);
    expect(sub).not.toBe(adminId);
    const evil = await t.deps.db.prisma.user.findUnique({ where: { tenantId_email: { tenantId, email: `${ADMIN}.evil.com` } } });
    expect(sub).toBe(evil?.id);
  });

  it('refuses a response whose signatures were all stripped', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
      signResponse: true,
      tamper: tamper((doc) => {
        for (const signature of Array.from(doc.getElementsByTagNameNS(NS.dsig, 'Signature'))) signature.parentNode?.removeChild(signature);
      }),
    });
    expect(signIn.xml).not.toContain('Signature');
    await expectRejected(signIn, 'invalid_signature');
  });

  it('refuses a signed Response around an unsigned assertion', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { assertionUnsigned: true });
    const doc = parse(signIn.xml);
    expect(elementChildren(responseOf(doc), NS.dsig, 'Signature')).toHaveLength(1);
    expect(elementChildren(assertionOf(responseOf(doc)), NS.dsig, 'Signature')).toHaveLength(0);
    await expectRejected(signIn, 'invalid_signature');
  });

  it('refuses an assertion signed by a stranger whose certificate is in KeyInfo', async () => {
    const signIn = await samlSignIn(
      t,
      config,
      idp,
      connectionId,
      { nameId: ADMIN },
      {
        signingKey: { key: fixture('stranger.key'), cert: fixture('stranger.crt') },
      },
    );
    expect(signIn.xml).toContain(
      fixture('stranger.crt')
        .replace(/-----[^-]+-----|\s/g, '')
        .slice(0, 40),
    );
    await expectRejected(signIn, 'invalid_signature');
  });

  it('refuses a changed attribute inside the signed assertion', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
      tamper: (xml) => xml.replace(`>${ATTACKER}<`, `>${ADMIN}<`),
    });
    await expectRejected(signIn, 'invalid_signature');
  });
});

describe('XML parser attacks', () => {
  it('refuses a DOCTYPE with an external entity (XXE) before parsing', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
      tamper: (xml) => `<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${xml.replace(`>${ATTACKER}<`, '>&xxe;<')}`,
    });
    await expectRejected(signIn, 'doctype');
  });

  it('refuses entity expansion ("billion laughs")', async () => {
    const laughs = Array.from({ length: 9 }, (_, i) => `<!ENTITY l${i + 1} "${`&l${i};`.repeat(10)}">`).join('');
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, {
      tamper: (xml) => `<!DOCTYPE r [<!ENTITY l0 "lol">${laughs}]>${xml.replace(`>${ATTACKER}<`, '>&l9;<')}`,
    });
    await expectRejected(signIn, 'doctype');
  });

  /** Encrypts `payload` to the certificate our SP metadata publishes, as anyone can. */
  async function encryptToUs(payload: string, keyEncryptionAlgorithm: EncryptOptions['keyEncryptionAlgorithm']): Promise<string> {
    const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${connectionId}/metadata`)).text();
    const spCert = /use="encryption"[\s\S]*?<ds:X509Certificate>([^<]+)</.exec(spMetadata)?.[1] ?? '';
    const pem = `-----BEGIN CERTIFICATE-----\n${spCert.match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
    return new Promise<string>((resolve, fail) => {
      const options: EncryptOptions = {
        rsa_pub: pem,
        pem,
        encryptionAlgorithm: 'http://www.w3.org/2009/xmlenc11#aes256-gcm',
        keyEncryptionAlgorithm,
        disallowEncryptionWithInsecureAlgorithm: false,
        warnInsecureAlgorithm: false,
      };
      encrypt(payload, options, (error, result) => (error ? fail(error) : resolve(result)));
    });
  }

  const replaceEncrypted = (encryptedData: string) => (xml: string) =>
    xml.replace(/(<[^>]*EncryptedAssertion[^>]*>)[\s\S]*(<\/[^>]*EncryptedAssertion>)/, `$1${encryptedData}$2`);

  it('refuses a DOCTYPE inside an encrypted assertion (anyone can encrypt to our published certificate)', async () => {
    const payload = `<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><saml:Assertion xmlns:saml="${NS.assertion}" ID="_x">&xxe;</saml:Assertion>`;
    const encryptedData = await encryptToUs(payload, 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p');
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { encrypt: true, tamper: replaceEncrypted(encryptedData) });
    expect(signIn.xml).toContain(encryptedData.slice(0, 60));
    await expectRejected(signIn, 'doctype');
  });

  it('refuses an assertion whose key is wrapped with RSA PKCS#1 v1.5 (a Bleichenbacher oracle)', async () => {
    const encryptedData = await encryptToUs(
      `<saml:Assertion xmlns:saml="${NS.assertion}" ID="_x"/>`,
      'http://www.w3.org/2001/04/xmlenc#rsa-1_5',
    );
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { encrypt: true, tamper: replaceEncrypted(encryptedData) });
    await expectRejected(signIn, 'malformed');
  });

  it('stops inflating a deflate bomb sent with the Redirect binding at the size cap', async () => {
    const { browser, upstream } = await startSso(config, t.url, { connectionId });
    const relayState = new URL(upstreamUrl(upstream)).searchParams.get('RelayState') ?? '';
    // 8 MB of XML-ish text deflates to a few kilobytes: small enough for a URL.
    const bomb = deflateRawSync(Buffer.from(`<samlp:Response>${' '.repeat(8 * 1024 * 1024)}</samlp:Response>`));
    expect(bomb.length).toBeLessThan(12 * 1024);
    const url = new URL(`${t.url}/t/default/federation/saml/${connectionId}/acs`);
    url.searchParams.set('SAMLResponse', bomb.toString('base64'));
    url.searchParams.set('RelayState', relayState);
    const started = performance.now();
    const response = await browser.request(url);
    expect(response.status).toBe(400);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await lastRejection(t)).toBe('message_too_large');
  });

  it('refuses an oversized POSTed response before decoding it', async () => {
    const { browser } = await startSso(config, t.url, { connectionId });
    const outcome = await postToAcs(
      browser,
      `${t.url}/t/default/federation/saml/${connectionId}/acs`,
      `<x>${'A'.repeat(600 * 1024)}</x>`,
      'x'.repeat(43),
    );
    expectRefusedPage(outcome);
    expect(await lastRejection(t)).toBe('message_too_large');
  });
});

describe('a response that is not for us, or not for now', () => {
  const cases: [string, Parameters<typeof samlSignIn>[5], string][] = [
    ['another SP’s Audience', { override: { Audience: 'https://other-sp.example/metadata' } }, 'audience'],
    ['another Recipient', { override: { SubjectRecipient: 'https://other-sp.example/acs' } }, 'recipient'],
    ['another Destination', { override: { Destination: 'https://other-sp.example/acs' } }, 'destination'],
    [
      'an unknown InResponseTo',
      { override: { InResponseTo: '_not_a_request_of_ours', SubjectInResponseTo: '_not_a_request_of_ours' } },
      'in_response_to',
    ],
    ['no InResponseTo (unsolicited)', { override: { InResponseTo: '', SubjectInResponseTo: '' } }, 'in_response_to'],
    ['a signed InResponseTo that answers another request', { override: { SubjectInResponseTo: '_another_request' } }, 'in_response_to'],
    ['another Issuer', { override: { Issuer: 'https://impostor.example/idp' } }, 'issuer'],
  ];
  for (const [what, options, reason] of cases) {
    it(`refuses ${what}`, async () => {
      const signIn = await samlSignIn(t, config, idp, connectionId, attacker, options);
      await expectRejected(signIn, reason);
    });
  }

  it('refuses an expired assertion (the clock moved past NotOnOrAfter and the 2-minute skew)', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { beforePost: () => clock.advance(8 * 60 * 1000) });
    await expectRejected(signIn, 'expired');
  });

  it('accepts an assertion within the 2-minute skew', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { beforePost: () => clock.advance(6 * 60 * 1000) });
    expect(await signedInAs(signIn)).not.toBeNull();
  });

  it('refuses an assertion that is not yet valid (the IdP’s clock 5 minutes ahead)', async () => {
    const signIn = await samlSignIn(t, config, idp, connectionId, attacker, { now: clock.now() + 5 * 60 * 1000 });
    await expectRejected(signIn, 'not_yet_valid');
  });
});

describe('replay across nodes', () => {
  let node2: Server;
  let node2Url: string;
  let closeNode2: () => Promise<void>;

  beforeAll(async () => {
    // A second node: its own app over the same PostgreSQL and KvStore, behind the same public URL.
    const deps = await createAppDeps({
      config: t.deps.config,
      db: t.stores.db,
      kv: t.stores.kv,
      logger: t.deps.logger,
      clock,
      masterKey: t.deps.masterKey,
    });
    const app = createApp(deps);
    node2 = await new Promise<Server>((resolve) => {
      const server = app.listen(0, '127.0.0.1', () => resolve(server));
    });
    const address = node2.address();
    node2Url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    closeNode2 = async () => {
      node2.closeAllConnections();
      await new Promise<void>((resolve) => node2.close(() => resolve()));
      await closeAppDeps(deps);
    };
  });

  afterAll(async () => {
    await closeNode2?.();
  });

  it('refuses on node 2 a response node 1 accepted', async () => {
    const first = await samlSignIn(t, config, idp, connectionId, attacker);
    expect(await signedInAs(first)).not.toBeNull();
    const replay = await postToAcs(
      new Browser(node2Url),
      `${node2Url}/t/default/federation/saml/${connectionId}/acs`,
      first.xml,
      first.relayState,
    );
    expectRefusedPage(replay);
    expect(await lastRejection(t)).toBe('unknown_state');
  });

  it('refuses on node 2 an assertion ID node 1 accepted, even inside a fresh, validly signed response', async () => {
    const first = await samlSignIn(t, config, idp, connectionId, attacker);
    expect(await signedInAs(first)).not.toBeNull();
    const assertionId = assertionOf(responseOf(parse(first.xml))).getAttribute('ID') ?? '';
    const { browser, upstream } = await startSso(config, t.url, { connectionId });
    const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${connectionId}/metadata`)).text();
    const { xml, request } = await idp.respond({
      authnRequestUrl: upstreamUrl(upstream),
      spMetadata,
      user: attacker,
      now: clock.now(),
      override: { AssertionID: assertionId },
    });
    const node2Acs = request.acsUrl.replace(t.url, node2Url);
    expectRefusedPage(await postToAcs(new Browser(node2Url), node2Acs, xml, request.relayState));
    expect(await lastRejection(t)).toBe('replayed_assertion');
    void browser;
  });

  it('lets only one of two nodes take the same response at the same time', async () => {
    const { upstream } = await startSso(config, t.url, { connectionId });
    const spMetadata = await (await fetch(`${t.url}/t/default/federation/saml/${connectionId}/metadata`)).text();
    const { xml, request } = await idp.respond({ authnRequestUrl: upstreamUrl(upstream), spMetadata, user: attacker, now: clock.now() });
    const count = (action: string) => t.deps.db.prisma.auditEvent.count({ where: { tenantId, action } });
    const [succeeded, rejected] = [await count('federation.sign_in.succeeded'), await count('federation.response.rejected')];
    const post = (origin: string) => postToAcs(new Browser(origin), request.acsUrl.replace(t.url, origin), xml, request.relayState);
    await Promise.all([post(t.url), post(node2Url)]);
    expect(await count('federation.sign_in.succeeded')).toBe(succeeded + 1);
    expect(await count('federation.response.rejected')).toBe(rejected + 1);
  });
});
