import { sha256 } from '../crypto/random.js';
import type { IncomingMessage } from './bindings.js';
import type { SamlRequest } from './context.js';
import { issuerOf } from './messages.js';
import { findServiceProviderByEntityId, type ServiceProviderConfig } from './service-providers.js';
import { hasXmlSignature, verifyRedirectSignature, verifyXmlSignature } from './signature.js';
import { parseXml, refuse } from './xml.js';

/**
 * The checks every message from an SP passes before anything acts on it, in
 * order: well-formed and DTD-free (xml.ts), sent by a registered, enabled SP
 * of this tenant, signed as that SP's settings demand, addressed to us,
 * recent, and never seen before.
 *
 * Signatures: when the SP requires signed requests, a valid signature by its
 * registered certificate is required. When it does not but has a certificate,
 * a signature that is present must still verify: a bad signature is never
 * ignored. When it has no certificate, nothing can be checked and a
 * signature is treated as absent (registration refuses "requests must be
 * signed" without a certificate).
 */

/** How old a message may be, and how far in the future a fast SP clock may put it. */
const MAX_AGE_MS = 5 * 60_000;
const MAX_FUTURE_MS = 2 * 60_000;
/** Longer than a message stays acceptable, so a replay is always caught; within the KvStore's ten minutes. */
const REPLAY_TTL_SECONDS = 600;

export interface ProtocolHeader {
  id: string;
  issuer: string;
  issueInstant: number;
  destination?: string;
}

export interface ReceivedMessage<T> {
  sp: ServiceProviderConfig;
  message: T;
  signed: boolean;
}

async function registeredSender(request: SamlRequest, entityId: string): Promise<ServiceProviderConfig> {
  request.trace.entityId = entityId.slice(0, 1024);
  const sp = await findServiceProviderByEntityId(request.deps.db.prisma, request.tenant.id, entityId);
  if (sp) request.trace.serviceProviderId = sp.id;
  if (!sp?.enabled) throw refuse('unknown_service_provider', 'This application is not registered with this sign-in service.');
  return sp;
}

/** The document to read the message from: the signed part when there is an XML signature. */
function checkedSignature(sp: ServiceProviderConfig, incoming: IncomingMessage, doc: Document): { doc: Document; signed: boolean } {
  const root = doc.documentElement;
  if (sp.certificate && incoming.redirectSignature) {
    verifyRedirectSignature(incoming.redirectSignature, sp.certificate);
    return { doc, signed: true };
  }
  if (sp.certificate && incoming.binding === 'post' && root && hasXmlSignature(root)) {
    return { doc: parseXml(verifyXmlSignature(incoming.xml, root, sp.certificate)), signed: true };
  }
  if (sp.requireSignedRequests) throw refuse('signature_required', 'This application must sign its requests, and this one is not signed.');
  return { doc, signed: false };
}

function checkAddressedToUs(header: ProtocolHeader, endpoint: string, signedPost: boolean): void {
  // The bindings spec requires Destination on signed POST messages, so a signature cannot be replayed at another endpoint.
  if (header.destination === undefined ? signedPost : header.destination !== endpoint) {
    throw refuse('wrong_destination', 'The SAML message is addressed to another endpoint.');
  }
}

function checkFresh(header: ProtocolHeader, now: number): void {
  if (header.issueInstant < now - MAX_AGE_MS || header.issueInstant > now + MAX_FUTURE_MS) {
    throw refuse('stale_message', 'The SAML message is too old, or dated in the future. Check the clocks and try again.');
  }
}

/** Reads, authenticates and checks a message from an SP; `read` turns the trusted document into the message. */
export async function receiveMessage<T extends ProtocolHeader>(
  request: SamlRequest,
  incoming: IncomingMessage,
  endpoint: string,
  read: (doc: Document) => T,
): Promise<ReceivedMessage<T>> {
  request.trace.binding = incoming.binding;
  const doc = parseXml(incoming.xml);
  if (!doc.documentElement) throw refuse('malformed_xml', 'The SAML message is empty.');
  const sp = await registeredSender(request, issuerOf(doc.documentElement));
  const trusted = checkedSignature(sp, incoming, doc);
  const message = read(trusted.doc);
  if (message.issuer !== sp.entityId) throw refuse('issuer_mismatch', 'The signed message names another issuer.');
  checkAddressedToUs(message, endpoint, trusted.signed && incoming.binding === 'post');
  checkFresh(message, request.deps.clock.now());
  return { sp, message, signed: trusted.signed };
}

/**
 * The replay cache, in the KvStore so every node shares it: a message ID is
 * accepted once per SP. Checked after the signature, so nobody can burn the
 * ID of a request they could not have signed.
 */
export async function acceptOnce(request: SamlRequest, kind: 'authn' | 'logout', sp: ServiceProviderConfig, id: string): Promise<void> {
  const key = `saml:seen:${request.tenant.id}:${kind}:${sha256(`${sp.id}|${id}`)}`;
  if (!(await request.deps.kv.setIfAbsent(key, '1', REPLAY_TTL_SECONDS))) {
    throw refuse('replayed_message', 'This SAML request was already used. Return to the application and start again.');
  }
}
