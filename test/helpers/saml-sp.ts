import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as validator from '@authenio/samlify-xmllint-wasm';
import { SAML, type SamlConfig, ValidateInResponseTo } from '@node-saml/node-saml';
import * as x509 from '@peculiar/x509';
import * as samlify from 'samlify';
import { type Browser, type BrowserResponse, findForm } from './browser.js';

/**
 * The SAML service providers of the IdP suites, two independent
 * implementations: node-saml (what passport-saml apps run) and samlify. Each
 * gets its own key pair and self-signed certificate, is configured from our
 * published metadata only, and checks our signatures and decrypts our
 * assertions itself.
 */

// samlify refuses to parse anything without a schema validator; the wasm xmllint needs no Java.
samlify.setSchemaValidator(validator);

export const XMLDSIG_RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
export const POST_BINDING = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
export const REDIRECT_BINDING = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
export const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const PERSISTENT_FORMAT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

export interface KeyPair {
  privateKeyPem: string;
  certificatePem: string;
}

const pem = (label: string, der: ArrayBuffer) =>
  `-----BEGIN ${label}-----\n${
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g)
      ?.join('\n') ?? ''
  }\n-----END ${label}-----\n`;

/** An RSA key and a self-signed certificate for it, as an SP operator would make with openssl. */
export async function keyPair(commonName: string): Promise<KeyPair> {
  const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: `01${randomBytes(8).toString('hex')}`,
      name: `CN=${commonName}`,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 365 * 86400_000),
      signingAlgorithm: algorithm,
      keys,
    },
    webcrypto as unknown as Crypto,
  );
  return {
    privateKeyPem: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
    certificatePem: certificate.toString('pem'),
  };
}

/** The signing certificates our metadata publishes, as PEM (what an SP operator pastes into its config). */
export function certificatesOf(metadataXml: string): string[] {
  return [...metadataXml.matchAll(/<ds:X509Certificate>([^<]+)<\/ds:X509Certificate>/g)].map((match) =>
    pem('CERTIFICATE', Uint8Array.from(Buffer.from(match[1] ?? '', 'base64')).buffer),
  );
}

export interface SpUrls {
  entityId: string;
  acs: string;
  slo: string;
}

export const spUrls = (host: string): SpUrls => ({
  entityId: `https://${host}/saml/metadata`,
  acs: `https://${host}/saml/acs`,
  slo: `https://${host}/saml/slo`,
});

export interface IdpUrls {
  entityId: string;
  sso: string;
  slo: string;
}

export const idpUrls = (baseUrl: string, slug = 'default'): IdpUrls => ({
  entityId: `${baseUrl}/t/${slug}/saml/metadata`,
  sso: `${baseUrl}/t/${slug}/saml/sso`,
  slo: `${baseUrl}/t/${slug}/saml/slo`,
});

/** A node-saml SP that signs its requests with `keys` (unless told not to) and decrypts with them. */
export function nodeSamlSp(idp: IdpUrls, idpCertificates: string[], sp: SpUrls, keys: KeyPair, overrides: Partial<SamlConfig> = {}): SAML {
  return new SAML({
    entryPoint: idp.sso,
    logoutUrl: idp.slo,
    idpIssuer: idp.entityId,
    idpCert: idpCertificates,
    issuer: sp.entityId,
    audience: sp.entityId,
    callbackUrl: sp.acs,
    logoutCallbackUrl: sp.slo,
    privateKey: keys.privateKeyPem,
    publicCert: keys.certificatePem,
    decryptionPvk: keys.privateKeyPem,
    signatureAlgorithm: 'sha256',
    digestAlgorithm: 'sha256',
    identifierFormat: EMAIL_FORMAT,
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: true,
    validateInResponseTo: ValidateInResponseTo.always,
    disableRequestedAuthnContext: true,
    ...overrides,
  });
}

/** node-saml's metadata for the SP: what the admin registers it from. */
export function nodeSamlMetadata(saml: SAML, keys: KeyPair): string {
  return saml.generateServiceProviderMetadata(keys.certificatePem, keys.certificatePem);
}

export function samlifySp(sp: SpUrls, keys: KeyPair, options: { encrypted: boolean; nameIdFormat?: string }) {
  return samlify.ServiceProvider({
    entityID: sp.entityId,
    authnRequestsSigned: true,
    wantAssertionsSigned: true,
    wantMessageSigned: true,
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    requestSignatureAlgorithm: XMLDSIG_RSA_SHA256,
    // samlify's default places the signature after a Response's Issuer, which a request does not have.
    signatureConfig: { prefix: 'ds', location: { reference: "/*/*[local-name(.)='Issuer']", action: 'after' } },
    privateKey: keys.privateKeyPem,
    signingCert: keys.certificatePem,
    encPrivateKey: keys.privateKeyPem,
    encryptCert: keys.certificatePem,
    isAssertionEncrypted: options.encrypted,
    nameIDFormat: [options.nameIdFormat ?? PERSISTENT_FORMAT],
    assertionConsumerService: [{ Binding: POST_BINDING, Location: sp.acs }],
    singleLogoutService: [{ Binding: REDIRECT_BINDING, Location: sp.slo }],
  });
}

/**
 * Our metadata as an SP stack that trusts one IdP certificate at a time sees
 * it: the first KeyDescriptor (the active key, which we list first). samlify
 * checks XML signatures against every listed certificate, but a
 * Redirect-binding signature (our LogoutRequest) only against a single one.
 */
export function withFirstCertificateOnly(metadataXml: string): string {
  let seen = 0;
  return metadataXml.replace(/<md:KeyDescriptor[\s\S]*?<\/md:KeyDescriptor>/g, (descriptor) => (seen++ === 0 ? descriptor : ''));
}

/** samlify's view of our IdP, from the metadata we publish for that SP. */
export function samlifyIdp(metadataXml: string, options: { encrypted: boolean }) {
  return samlify.IdentityProvider({
    metadata: withFirstCertificateOnly(metadataXml),
    isAssertionEncrypted: options.encrypted,
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    requestSignatureAlgorithm: XMLDSIG_RSA_SHA256,
  });
}

/** What the browser was told to post: the auto-submitting form of a page, which must target `action`. */
export function postedForm(page: BrowserResponse, action: string): Record<string, string> {
  const form = findForm(page.text, action);
  if (form.action !== action) throw new Error(`form posts to ${form.action}, not ${action}`);
  return form.hidden;
}

/** A Redirect-binding URL's query: the parsed parameters and the exact string that was signed. */
export function redirectQuery(url: string): { query: Record<string, string>; raw: string; octetString: string } {
  const raw = new URL(url).search.slice(1);
  const query = Object.fromEntries(new URLSearchParams(raw));
  const part = (name: string) => raw.split('&').find((p) => p.startsWith(`${name}=`));
  const octetString = ['SAMLRequest', 'SAMLResponse', 'RelayState', 'SigAlg']
    .map(part)
    .filter((p): p is string => p !== undefined)
    .join('&');
  return { query, raw, octetString };
}

/** Signs in on the hosted login page the browser landed on, and follows the redirects to the page that posts to the SP. */
export async function signInOnHostedPage(
  browser: Browser,
  page: BrowserResponse,
  email: string,
  password: string,
): Promise<BrowserResponse> {
  if (!/\/interaction\//.test(page.url))
    throw new Error(`expected the hosted login page, got ${page.status} ${page.url}: ${page.text.slice(0, 500)}`);
  return browser.submit(page, '/login', { email, password });
}

/** samlify's Redirect-binding output: the URL to send the browser to. */
export function redirectUrlOf(result: { context: string }): string {
  return result.context;
}

/** samlify's POST-binding output: the base64 message, where it goes, and its RelayState. */
export function postMessageOf(result: { context: string }): { context: string; entityEndpoint: string; relayState?: string } {
  if (!('entityEndpoint' in result) || typeof result.entityEndpoint !== 'string') throw new Error('not a POST-binding message');
  const relayState = 'relayState' in result && typeof result.relayState === 'string' ? result.relayState : undefined;
  return { context: result.context, entityEndpoint: result.entityEndpoint, relayState };
}
