import { createPublicKey } from 'node:crypto';
import { type EncryptOptions, encrypt } from 'xml-encryption';
import { ALGORITHM, BEARER, NS, STATUS } from './constants.js';
import type { SamlSigningKey } from './keys.js';
import { newId, type StatusValue, samlInstant, statusXml } from './messages.js';
import type { ServiceProviderConfig } from './service-providers.js';
import { signRootElement } from './signature.js';
import type { NameId, ReleasedAttribute } from './subject.js';
import { escapeXml } from './xml.js';

/**
 * The Response we POST to an SP's ACS: an Assertion signed first (when the SP
 * wants it signed), then encrypted to the SP's certificate (AES-256-GCM, the
 * key wrapped with RSA-OAEP), then the Response around it signed (when the SP
 * wants that), which is the order SAML's processing rules expect.
 */

/** SP clocks a little behind ours must still accept a fresh assertion; NotBefore is backdated by this much. */
const CLOCK_SKEW_MS = 60_000;

export interface AssertionInput {
  idpEntityId: string;
  sp: ServiceProviderConfig;
  acsUrl: string;
  /** The AuthnRequest's ID; absent for IdP-initiated sign-in. */
  inResponseTo?: string;
  nameId: NameId;
  attributes: ReleasedAttribute[];
  authnContext: string;
  /** When the user signed in (ms). */
  authnInstant: number;
  sessionIndex: string;
  now: number;
}

const inResponseToAttribute = (id: string | undefined) => (id ? ` InResponseTo="${escapeXml(id)}"` : '');

function attributeStatement(attributes: readonly ReleasedAttribute[]): string {
  if (attributes.length === 0) return '';
  const attribute = ({ name, values }: ReleasedAttribute) => {
    // URI-shaped names (the claim URIs many apps expect) say so; short names are "basic".
    const nameFormat = name.includes(':')
      ? 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri'
      : 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic';
    const valuesXml = values.map((value) => `<saml:AttributeValue xsi:type="xs:string">${escapeXml(value)}</saml:AttributeValue>`).join('');
    return `<saml:Attribute Name="${escapeXml(name)}" NameFormat="${nameFormat}">${valuesXml}</saml:Attribute>`;
  };
  return `<saml:AttributeStatement>${attributes.map(attribute).join('')}</saml:AttributeStatement>`;
}

/** A self-contained Assertion (its namespaces declared on itself), so it can be signed and encrypted on its own. */
function assertionXml(input: AssertionInput, id: string): string {
  const { sp, now } = input;
  const issueInstant = samlInstant(now);
  const notOnOrAfter = samlInstant(now + sp.assertionLifetimeSeconds * 1000);
  return (
    `<saml:Assertion xmlns:saml="${NS.assertion}" xmlns:xs="${NS.xs}" xmlns:xsi="${NS.xsi}" ID="${id}" Version="2.0" IssueInstant="${issueInstant}">` +
    `<saml:Issuer>${escapeXml(input.idpEntityId)}</saml:Issuer>` +
    '<saml:Subject>' +
    `<saml:NameID Format="${escapeXml(input.nameId.format)}">${escapeXml(input.nameId.value)}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="${BEARER}">` +
    `<saml:SubjectConfirmationData${inResponseToAttribute(input.inResponseTo)} NotOnOrAfter="${notOnOrAfter}" Recipient="${escapeXml(input.acsUrl)}"/>` +
    '</saml:SubjectConfirmation></saml:Subject>' +
    `<saml:Conditions NotBefore="${samlInstant(now - CLOCK_SKEW_MS)}" NotOnOrAfter="${notOnOrAfter}">` +
    `<saml:AudienceRestriction><saml:Audience>${escapeXml(sp.entityId)}</saml:Audience></saml:AudienceRestriction>` +
    '</saml:Conditions>' +
    `<saml:AuthnStatement AuthnInstant="${samlInstant(input.authnInstant)}" SessionIndex="${escapeXml(input.sessionIndex)}">` +
    `<saml:AuthnContext><saml:AuthnContextClassRef>${escapeXml(input.authnContext)}</saml:AuthnContextClassRef></saml:AuthnContext>` +
    '</saml:AuthnStatement>' +
    attributeStatement(input.attributes) +
    '</saml:Assertion>'
  );
}

function encryptTo(certificatePem: string, xml: string): Promise<string> {
  const options: EncryptOptions = {
    rsa_pub: createPublicKey(certificatePem).export({ type: 'spki', format: 'pem' }).toString(),
    pem: certificatePem,
    encryptionAlgorithm: ALGORITHM.aes256Gcm,
    keyEncryptionAlgorithm: ALGORITHM.rsaOaep,
  };
  return new Promise((resolve, reject) => {
    encrypt(xml, options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

async function protectedAssertion(input: AssertionInput, key: SamlSigningKey, id: string): Promise<string> {
  const plain = assertionXml(input, id);
  const signed = input.sp.signAssertion ? signRootElement(plain, key) : plain;
  if (!input.sp.encryptAssertions) return signed;
  if (!input.sp.certificate) throw new Error('assertion encryption needs the SP certificate');
  return `<saml:EncryptedAssertion xmlns:saml="${NS.assertion}">${await encryptTo(input.sp.certificate, signed)}</saml:EncryptedAssertion>`;
}

interface ResponseEnvelope {
  idpEntityId: string;
  destination: string;
  inResponseTo?: string;
  status: StatusValue;
  now: number;
}

function responseXml(envelope: ResponseEnvelope, id: string, body: string): string {
  return (
    `<samlp:Response xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}" ID="${id}" Version="2.0"` +
    ` IssueInstant="${samlInstant(envelope.now)}" Destination="${escapeXml(envelope.destination)}"${inResponseToAttribute(envelope.inResponseTo)}>` +
    `<saml:Issuer>${escapeXml(envelope.idpEntityId)}</saml:Issuer>${statusXml(envelope.status)}${body}` +
    '</samlp:Response>'
  );
}

export interface BuiltResponse {
  xml: string;
  responseId: string;
  assertionId: string;
}

export async function buildAssertionResponse(input: AssertionInput, key: SamlSigningKey): Promise<BuiltResponse> {
  const assertionId = newId();
  const responseId = newId();
  const envelope = {
    idpEntityId: input.idpEntityId,
    destination: input.acsUrl,
    inResponseTo: input.inResponseTo,
    status: { code: STATUS.success },
    now: input.now,
  };
  const xml = responseXml(envelope, responseId, await protectedAssertion(input, key, assertionId));
  return { xml: input.sp.signResponse ? signRootElement(xml, key) : xml, responseId, assertionId };
}

/** A Response without an assertion (sign-in failed or was cancelled), always signed: an SP must be able to trust a refusal too. */
export function buildErrorResponse(envelope: ResponseEnvelope, key: SamlSigningKey): string {
  return signRootElement(responseXml(envelope, newId(), ''), key);
}
