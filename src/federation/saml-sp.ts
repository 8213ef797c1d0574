import { randomBytes } from 'node:crypto';
import {
  type CacheProvider,
  generateServiceProviderMetadata,
  type Profile,
  SAML,
  type SamlConfig,
  SamlStatusError,
  ValidateInResponseTo,
} from '@node-saml/node-saml';
import { decrypt } from 'xml-encryption';
import type { Clock } from '../clock.js';
import type { Vault } from '../crypto/vault.js';
import type { KvStore } from '../store/index.js';
import { toPem } from './certificates.js';
import { type ConnectionEndpoints, isSamlReady, openSpPrivateKey, type ReadySamlConfig, type SamlConnection } from './connections.js';
import { NAMEID_EMAIL } from './presets.js';
import type { UpstreamClaims } from './profile.js';
import { FederationRejection, type RejectReason, reject } from './rejection.js';
import { CLOCK_SKEW_MS, createRequestCache, firstUseOfAssertion, REQUEST_TTL_SECONDS } from './saml-cache.js';
import { checkedXml, MAX_SAML_MESSAGE_BYTES } from './saml-message.js';
import { childElements, descendantElements, NS, parseXml, textOf } from './xml.js';

/**
 * Our SAML service provider towards one upstream IdP, on @node-saml/node-saml
 * (which verifies signatures with xml-crypto and reads the identity only from
 * what the signature covers). What node-saml leaves to its caller is done
 * here: the Destination, Issuer and Recipient checks, binding the response
 * to the AuthnRequest of this very flow, and the assertion replay cache.
 */

export interface SamlDeps {
  kv: KvStore;
  clock: Clock;
  vault: Vault;
}

/** node-saml with its timestamp checks on the injected clock instead of the wall clock. */
class ClockedSaml extends SAML {
  private readonly clock: Clock;

  constructor(options: SamlConfig, clock: Clock) {
    super(options);
    this.clock = clock;
  }

  protected override checkTimestampsValidityError(_wallClockMs: number, notBefore: string, notOnOrAfter: string, maxTimeLimitMs?: number) {
    return super.checkTimestampsValidityError(this.clock.now(), notBefore, notOnOrAfter, maxTimeLimitMs);
  }
}

function readyConfig(connection: SamlConnection): ReadySamlConfig {
  if (!isSamlReady(connection.saml)) throw reject('unknown_connection', 'the IdP side of this connection is not configured');
  return connection.saml;
}

function samlOptions(
  connection: SamlConnection,
  endpoints: ConnectionEndpoints,
  spKey: string | undefined,
  cache: CacheProvider,
  onRequestId: (id: string) => void,
): SamlConfig {
  const config = readyConfig(connection);
  return {
    entryPoint: config.ssoUrl,
    issuer: endpoints.spEntityId,
    callbackUrl: endpoints.acsUrl,
    idpCert: config.certificates.map((body) => toPem(body)),
    idpIssuer: config.idpEntityId,
    audience: endpoints.spEntityId,
    // Every assertion must carry its own valid signature; a signed Response around an unsigned assertion is not enough.
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: false,
    acceptedClockSkewMs: CLOCK_SKEW_MS,
    validateInResponseTo: ValidateInResponseTo.always,
    requestIdExpirationPeriodMs: REQUEST_TTL_SECONDS * 1000,
    cacheProvider: cache,
    decryptionPvk: spKey,
    privateKey: config.signRequests ? spKey : undefined,
    signatureAlgorithm: 'sha256',
    identifierFormat: config.nameIdFormat,
    authnRequestBinding: config.ssoBinding === 'post' ? 'HTTP-POST' : 'HTTP-Redirect',
    // The POST binding carries the request as plain base64; only the Redirect binding deflates it.
    skipRequestCompression: config.ssoBinding === 'post',
    // Asking for "password over TLS" would make IdPs refuse users who signed in with MFA or a passkey.
    disableRequestedAuthnContext: true,
    generateUniqueId: () => {
      const id = `_${randomBytes(20).toString('hex')}`;
      onRequestId(id);
      return id;
    },
  };
}

// ---------------------------------------------------------------- AuthnRequest

export type SamlStart =
  | { binding: 'redirect'; requestId: string; url: string }
  | { binding: 'post'; requestId: string; url: string; fields: Record<string, string> };

/** An AuthnRequest for this connection, its ID remembered (single use) in the KvStore. */
export async function startSamlSignIn(
  deps: SamlDeps,
  connection: SamlConnection,
  endpoints: ConnectionEndpoints,
  relayState: string,
): Promise<SamlStart> {
  let requestId = '';
  const cache = createRequestCache(deps.kv, deps.clock, { tenantId: connection.tenantId, connectionId: connection.id });
  const spKey = connection.saml.signRequests ? openSpPrivateKey(deps.vault, connection) : undefined;
  const saml = new ClockedSaml(
    samlOptions(connection, endpoints, spKey, cache, (id) => {
      requestId = id;
    }),
    deps.clock,
  );
  if (connection.saml.ssoBinding === 'post') {
    const message = await saml.getAuthorizeMessageAsync(relayState);
    const fields = Object.fromEntries(Object.entries(message).map(([name, value]) => [name, String(value ?? '')]));
    return { binding: 'post', requestId, url: readyConfig(connection).ssoUrl, fields };
  }
  const url = await saml.getAuthorizeUrlAsync(relayState, undefined, {});
  return { binding: 'redirect', requestId, url };
}

// ---------------------------------------------------------------- SP metadata

/** Our SP metadata for this connection: entity ID, ACS, and our certificate for encryption (and signing, when on). */
export function spMetadataXml(deps: Pick<SamlDeps, 'vault'>, connection: SamlConnection, endpoints: ConnectionEndpoints): string {
  const spKey = openSpPrivateKey(deps.vault, connection);
  const certificate = connection.spCertificate ?? null;
  return generateServiceProviderMetadata({
    issuer: endpoints.spEntityId,
    callbackUrl: endpoints.acsUrl,
    identifierFormat: connection.saml.nameIdFormat,
    wantAssertionsSigned: true,
    decryptionPvk: certificate ? spKey : undefined,
    decryptionCert: certificate,
    privateKey: certificate && connection.saml.signRequests ? spKey : undefined,
    publicCerts: certificate && connection.saml.signRequests ? [certificate] : null,
    signatureAlgorithm: 'sha256',
  });
}

// ---------------------------------------------------------------- Response

export interface SamlAssertionResult extends UpstreamClaims {
  assertionId: string;
  nameIdFormat?: string;
}

/** node-saml says what failed in words; the audit trail wants a reason code. */
function reasonFor(error: unknown): RejectReason {
  if (error instanceof SamlStatusError) return 'upstream_error';
  const message = error instanceof Error ? error.message : String(error);
  const rules: [RegExp, RejectReason][] = [
    [/multiple assertions/i, 'multiple_assertions'],
    [/signature/i, 'invalid_signature'],
    [/InResponseTo/i, 'in_response_to'],
    [/audience/i, 'audience'],
    [/not yet valid/i, 'not_yet_valid'],
    [/expired|subject confirmation/i, 'expired'],
    [/Missing SAML assertion|SAML provider returned/i, 'upstream_error'],
  ];
  return rules.find(([pattern]) => pattern.test(message))?.[1] ?? 'malformed';
}

/** Checks on the message around the assertion, which only a Response signature would cover. */
function checkEnvelope(xml: string, config: ReadySamlConfig, endpoints: ConnectionEndpoints): Element {
  const root = parseXml(xml).documentElement;
  if (!root || root.namespaceURI !== NS.protocol || root.localName !== 'Response') throw reject('malformed', 'not a SAML Response');
  const destination = root.getAttribute('Destination');
  if (destination && destination !== endpoints.acsUrl) throw reject('destination', `Destination ${destination}`);
  const issuer = childElements(root, NS.assertion, 'Issuer')[0];
  if (issuer && textOf(issuer) !== config.idpEntityId) throw reject('issuer', `Response Issuer ${textOf(issuer)}`);
  return root;
}

/**
 * An encrypted assertion is XML of its own, which node-saml parses after
 * decrypting it; anyone can encrypt to our published certificate, so its
 * plaintext gets the same DTD and size checks as the message, here, first.
 */
async function checkEncryptedAssertions(root: Element, spKey: string | undefined): Promise<void> {
  const encrypted = childElements(root, NS.assertion, 'EncryptedAssertion');
  if (encrypted.length === 0) return;
  if (encrypted.length > 1) throw reject('multiple_assertions', `${encrypted.length} encrypted assertions`);
  if (!spKey) throw reject('malformed', 'an encrypted assertion, and this connection has no SP key');
  checkEncryptionAlgorithms(encrypted[0]);
  const plaintext = await new Promise<string>((resolve, fail) => {
    // The algorithms were checked above: xml-encryption's own list would also refuse AES-CBC, which most IdPs still use.
    const options = { key: spKey, disallowDecryptionWithInsecureAlgorithm: false, warnInsecureAlgorithm: false };
    decrypt(String(encrypted[0]), options, (error, result) =>
      error ? fail(reject('malformed', `cannot decrypt the assertion: ${error.message}`)) : resolve(result),
    );
  });
  if (Buffer.byteLength(plaintext) > MAX_SAML_MESSAGE_BYTES) throw reject('message_too_large', 'the decrypted assertion');
  checkedXml(plaintext);
}

/**
 * Content and key transport algorithms we decrypt: AES (GCM, or CBC, which
 * Okta, Entra ID and ADFS still default to; the assertion inside must carry
 * its own valid signature, so a tampered ciphertext never becomes an identity)
 * and RSA-OAEP. RSA PKCS#1 v1.5 (Bleichenbacher) and 3DES are refused.
 */
const ENCRYPTION_ALGORITHMS = new Set([
  'http://www.w3.org/2009/xmlenc11#aes128-gcm',
  'http://www.w3.org/2009/xmlenc11#aes256-gcm',
  'http://www.w3.org/2001/04/xmlenc#aes128-cbc',
  'http://www.w3.org/2001/04/xmlenc#aes256-cbc',
  'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
  'http://www.w3.org/2009/xmlenc11#rsa-oaep',
]);
const XMLENC = 'http://www.w3.org/2001/04/xmlenc#';

function checkEncryptionAlgorithms(encryptedAssertion: Element | undefined): void {
  const methods = encryptedAssertion ? descendantElements(encryptedAssertion, XMLENC, 'EncryptionMethod') : [];
  if (methods.length === 0) throw reject('malformed', 'the encrypted assertion names no algorithm');
  for (const method of methods) {
    const algorithm = method.getAttribute('Algorithm') ?? '';
    if (!ENCRYPTION_ALGORITHMS.has(algorithm)) throw reject('malformed', `encryption algorithm ${algorithm} is not accepted`);
  }
}

// xml2js output of the signed assertion (node-saml parses it with explicitCharkey and prefixes stripped).
type XmlNode = { $?: Record<string, string>; _?: string; [child: string]: unknown };

function children(node: XmlNode | undefined, name: string): XmlNode[] {
  const value = node?.[name];
  return Array.isArray(value) ? value.filter((v): v is XmlNode => typeof v === 'object' && v !== null) : [];
}

function signedAssertionOf(profile: Profile): XmlNode {
  const parsed = profile.getAssertion?.() as { Assertion?: unknown } | undefined;
  const assertion = parsed?.Assertion;
  if (!assertion || typeof assertion !== 'object') throw reject('malformed', 'no signed assertion');
  return assertion as XmlNode;
}

function timestamp(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The signed assertion must be for us and for this flow: issued by the IdP,
 * with a bearer confirmation addressed to our ACS that answers our request.
 * Returns when the assertion stops being usable (for the replay cache).
 */
function checkSignedAssertion(assertion: XmlNode, config: ReadySamlConfig, endpoints: ConnectionEndpoints, requestId: string, now: number) {
  const issuer = children(assertion, 'Issuer')[0]?._?.trim();
  if (issuer !== config.idpEntityId) throw reject('issuer', `Assertion Issuer ${issuer ?? '(none)'}`);
  const confirmations = children(children(assertion, 'Subject')[0], 'SubjectConfirmation')
    .filter((c) => c.$?.Method === 'urn:oasis:names:tc:SAML:2.0:cm:bearer')
    .flatMap((c) => children(c, 'SubjectConfirmationData'))
    .map((data) => data.$ ?? {});
  const forUs = confirmations.filter((data) => data.Recipient === endpoints.acsUrl);
  if (forUs.length === 0) throw reject('recipient', `Recipient ${confirmations[0]?.Recipient ?? '(none)'}`);
  const answering = forUs.filter((data) => data.InResponseTo === requestId);
  if (answering.length === 0) throw reject('in_response_to', 'the signed assertion does not answer this request');
  const usableUntil = answering
    .map((data) => timestamp(data.NotOnOrAfter))
    .filter((ms): ms is number => ms !== undefined && now - CLOCK_SKEW_MS < ms);
  const conditionsEnd = timestamp(children(assertion, 'Conditions')[0]?.$?.NotOnOrAfter);
  const [confirmationEnd] = usableUntil.sort((a, b) => b - a);
  if (confirmationEnd === undefined) throw reject('expired', 'no bearer confirmation is still valid');
  return Math.min(confirmationEnd, conditionsEnd ?? confirmationEnd);
}

function attributesOf(profile: Profile): Record<string, unknown> {
  const attributes = profile.attributes;
  return attributes && typeof attributes === 'object' ? (attributes as Record<string, unknown>) : {};
}

/**
 * Validates a SAML Response (XML already size- and DTD-checked) for the flow
 * that sent AuthnRequest `requestId`, and returns what its signed assertion says.
 */
export async function validateSamlResponse(
  deps: SamlDeps,
  connection: SamlConnection,
  endpoints: ConnectionEndpoints,
  xml: string,
  requestId: string,
): Promise<SamlAssertionResult> {
  const config = readyConfig(connection);
  const spKey = openSpPrivateKey(deps.vault, connection);
  await checkEncryptedAssertions(checkEnvelope(xml, config, endpoints), spKey);
  const cache = createRequestCache(deps.kv, deps.clock, { tenantId: connection.tenantId, connectionId: connection.id });
  const saml = new ClockedSaml(
    samlOptions(connection, endpoints, spKey, cache, () => {}),
    deps.clock,
  );
  let profile: Profile | null;
  try {
    ({ profile } = await saml.validatePostResponseAsync({ SAMLResponse: Buffer.from(xml, 'utf8').toString('base64') }));
  } catch (error) {
    if (error instanceof FederationRejection) throw error;
    throw reject(reasonFor(error), error instanceof Error ? error.message : undefined);
  }
  if (!profile) throw reject('upstream_error', 'the IdP answered without an assertion (NoPassive)');
  const assertion = signedAssertionOf(profile);
  const usableUntil = checkSignedAssertion(assertion, config, endpoints, requestId, deps.clock.now());
  const assertionId = assertion.$?.ID;
  if (!assertionId) throw reject('malformed', 'the assertion has no ID');
  if (!(await firstUseOfAssertion(deps.kv, deps.clock, connection.id, assertionId, usableUntil))) {
    throw reject('replayed_assertion', `assertion ${assertionId} was already used`);
  }
  return {
    assertionId,
    protocolSubject: typeof profile.nameID === 'string' ? profile.nameID : undefined,
    nameIdFormat: profile.nameIDFormat,
    subjectIsEmail: profile.nameIDFormat === NAMEID_EMAIL,
    values: attributesOf(profile),
  };
}
