import { randomBytes } from 'node:crypto';
import { NS, STATUS } from './constants.js';
import { attributeOf, escapeXml, refuse, rootElement, singleChild, textOf } from './xml.js';

/**
 * The protocol messages SPs send us (AuthnRequest, LogoutRequest,
 * LogoutResponse), read from a parsed document into plain values, and the
 * logout messages we send. What is read here is only trusted once the
 * message's signature and issuer have been checked (see requests.ts).
 */

/** IDs are xs:ID (an NCName); ours are `_` and 40 hex digits. */
const NCNAME = /^[A-Za-z_][A-Za-z0-9._-]{0,255}$/;

export const newId = () => `_${randomBytes(20).toString('hex')}`;

/** SAML timestamps: UTC, to the second. */
export const samlInstant = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

interface Header {
  id: string;
  issuer: string;
  issueInstant: number;
  destination?: string;
}

function readHeader(root: Element): Header {
  const id = attributeOf(root, 'ID');
  if (!id || !NCNAME.test(id)) throw refuse('malformed_message', 'The SAML message has no valid ID.');
  if (attributeOf(root, 'Version') !== '2.0') throw refuse('malformed_message', 'Only SAML 2.0 messages are accepted.');
  const issueInstant = Date.parse(attributeOf(root, 'IssueInstant') ?? '');
  if (Number.isNaN(issueInstant)) throw refuse('malformed_message', 'The SAML message has no valid IssueInstant.');
  const issuer = textOf(singleChild(root, NS.assertion, 'Issuer'));
  if (!issuer) throw refuse('missing_issuer', 'The SAML message does not say which service provider sent it.');
  return { id, issuer, issueInstant, destination: attributeOf(root, 'Destination') };
}

/** Just the issuer, to find whose certificate verifies the message; everything else is read after verification. */
export function issuerOf(root: Element): string {
  const issuer = textOf(singleChild(root, NS.assertion, 'Issuer'));
  if (!issuer) throw refuse('missing_issuer', 'The SAML message does not say which service provider sent it.');
  return issuer;
}

// ---------------------------------------------------------------- AuthnRequest

export interface AuthnRequest extends Header {
  acsUrl?: string;
  acsIndex?: string;
  protocolBinding?: string;
  forceAuthn: boolean;
  isPassive: boolean;
  /** NameIDPolicy/@Format, when the SP asked for one. */
  nameIdFormat?: string;
}

const isTrue = (value: string | undefined) => value === 'true' || value === '1';

export function readAuthnRequest(doc: Document): AuthnRequest {
  const root = rootElement(doc, NS.protocol, 'AuthnRequest');
  const policy = singleChild(root, NS.protocol, 'NameIDPolicy');
  return {
    ...readHeader(root),
    acsUrl: attributeOf(root, 'AssertionConsumerServiceURL'),
    acsIndex: attributeOf(root, 'AssertionConsumerServiceIndex'),
    protocolBinding: attributeOf(root, 'ProtocolBinding'),
    forceAuthn: isTrue(attributeOf(root, 'ForceAuthn')),
    isPassive: isTrue(attributeOf(root, 'IsPassive')),
    nameIdFormat: policy ? attributeOf(policy, 'Format') : undefined,
  };
}

// ---------------------------------------------------------------- logout

export interface LogoutRequest extends Header {
  nameId: string;
  nameIdFormat?: string;
  sessionIndexes: string[];
}

export function readLogoutRequest(doc: Document): LogoutRequest {
  const root = rootElement(doc, NS.protocol, 'LogoutRequest');
  const nameIdElement = singleChild(root, NS.assertion, 'NameID');
  const nameId = textOf(nameIdElement);
  if (!nameIdElement || !nameId) throw refuse('malformed_message', 'The LogoutRequest does not name who signs out.');
  const sessionIndexes: string[] = [];
  for (let node = root.firstChild; node; node = node.nextSibling) {
    const element = node as Element;
    if (node.nodeType === 1 && element.namespaceURI === NS.protocol && element.localName === 'SessionIndex') {
      const value = textOf(element);
      if (value) sessionIndexes.push(value);
    }
  }
  return { ...readHeader(root), nameId, nameIdFormat: attributeOf(nameIdElement, 'Format'), sessionIndexes };
}

export interface LogoutResponse extends Header {
  inResponseTo?: string;
  statusCode: string;
}

export function readLogoutResponse(doc: Document): LogoutResponse {
  const root = rootElement(doc, NS.protocol, 'LogoutResponse');
  const status = singleChild(root, NS.protocol, 'Status');
  const code = status ? singleChild(status, NS.protocol, 'StatusCode') : undefined;
  return {
    ...readHeader(root),
    inResponseTo: attributeOf(root, 'InResponseTo'),
    statusCode: (code && attributeOf(code, 'Value')) ?? STATUS.responder,
  };
}

export interface StatusValue {
  code: string;
  /** A second-level code (AuthnFailed, NoPassive, …) under `code`. */
  subCode?: string;
  message?: string;
}

export function statusXml(status: StatusValue): string {
  const sub = status.subCode ? `<samlp:StatusCode Value="${escapeXml(status.subCode)}"/>` : '';
  const message = status.message ? `<samlp:StatusMessage>${escapeXml(status.message)}</samlp:StatusMessage>` : '';
  return `<samlp:Status><samlp:StatusCode Value="${escapeXml(status.code)}">${sub}</samlp:StatusCode>${message}</samlp:Status>`;
}

export interface LogoutRequestInput {
  issuer: string;
  destination: string;
  nameId: string;
  nameIdFormat: string;
  sessionIndex: string;
  now: number;
  /** NotOnOrAfter: how long the SP may act on it. */
  lifetimeSeconds: number;
}

export function buildLogoutRequest(input: LogoutRequestInput): { id: string; xml: string } {
  const id = newId();
  const xml =
    `<samlp:LogoutRequest xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}" ID="${id}" Version="2.0"` +
    ` IssueInstant="${samlInstant(input.now)}" Destination="${escapeXml(input.destination)}"` +
    ` NotOnOrAfter="${samlInstant(input.now + input.lifetimeSeconds * 1000)}">` +
    `<saml:Issuer>${escapeXml(input.issuer)}</saml:Issuer>` +
    `<saml:NameID Format="${escapeXml(input.nameIdFormat)}">${escapeXml(input.nameId)}</saml:NameID>` +
    `<samlp:SessionIndex>${escapeXml(input.sessionIndex)}</samlp:SessionIndex>` +
    '</samlp:LogoutRequest>';
  return { id, xml };
}

export interface LogoutResponseInput {
  issuer: string;
  destination: string;
  inResponseTo: string;
  status: StatusValue;
  now: number;
}

export function buildLogoutResponse(input: LogoutResponseInput): string {
  return (
    `<samlp:LogoutResponse xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}" ID="${newId()}" Version="2.0"` +
    ` IssueInstant="${samlInstant(input.now)}" Destination="${escapeXml(input.destination)}"` +
    ` InResponseTo="${escapeXml(input.inResponseTo)}">` +
    `<saml:Issuer>${escapeXml(input.issuer)}</saml:Issuer>${statusXml(input.status)}` +
    '</samlp:LogoutResponse>'
  );
}
