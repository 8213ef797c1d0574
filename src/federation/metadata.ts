import { badRequest } from '../errors.js';
import { certificateBody, parseCertificate } from './certificates.js';
import { FederationRejection } from './rejection.js';
import { childElements, descendantElements, NS, parseXml, textOf } from './xml.js';

/**
 * Importing an upstream IdP's SAML metadata, from its XML or its URL: the
 * entity ID, where to send AuthnRequests (and with which binding), and every
 * signing certificate it lists, so a certificate rollover (old and new listed
 * side by side) keeps working through the switch.
 */

export const BINDINGS = Object.freeze({
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
});

export type SsoBinding = keyof typeof BINDINGS;

export interface IdpMetadata {
  entityId: string;
  ssoUrl: string;
  ssoBinding: SsoBinding;
  /** Base64 DER bodies of the signing certificates, in document order. */
  certificates: string[];
}

/** Metadata of one IdP is a few kilobytes; aggregates of thousands of IdPs are not what we import. */
export const MAX_METADATA_BYTES = 1024 * 1024;
const METADATA_TIMEOUT_MS = 10_000;

const invalidMetadata = (why: string) => badRequest(`the IdP metadata is not usable: ${why}`, 'invalid_metadata');

function idpDescriptorOf(document: Document, entityId: string | undefined): { entity: Element; idp: Element } {
  const entities = descendantElements(document, NS.metadata, 'EntityDescriptor');
  for (const entity of entities) {
    const idp = childElements(entity, NS.metadata, 'IDPSSODescriptor')[0];
    if (!idp) continue;
    if (entityId !== undefined && entity.getAttribute('entityID') !== entityId) continue;
    return { entity, idp };
  }
  throw invalidMetadata(entityId ? `no IdP with entity ID ${entityId}` : 'no IDPSSODescriptor');
}

/** Redirect is preferred (no page in between); POST when it is all the IdP offers. */
function ssoServiceOf(idp: Element): { ssoUrl: string; ssoBinding: SsoBinding } {
  const services = childElements(idp, NS.metadata, 'SingleSignOnService');
  for (const binding of ['redirect', 'post'] as const) {
    const service = services.find((s) => s.getAttribute('Binding') === BINDINGS[binding]);
    const location = service?.getAttribute('Location');
    if (location && isHttpUrl(location)) return { ssoUrl: location, ssoBinding: binding };
  }
  throw invalidMetadata('no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding and an http(s) location');
}

/** Certificates of KeyDescriptors for signing (or for any use, when `use` is absent). */
function signingCertificatesOf(idp: Element): string[] {
  const certificates: string[] = [];
  for (const descriptor of childElements(idp, NS.metadata, 'KeyDescriptor')) {
    const use = descriptor.getAttribute('use');
    if (use && use !== 'signing') continue;
    for (const element of descendantElements(descriptor, NS.dsig, 'X509Certificate')) {
      const body = certificateBody(textOf(element));
      if (!parseCertificate(body)) throw invalidMetadata('a signing certificate is not a valid X.509 certificate');
      if (!certificates.includes(body)) certificates.push(body);
    }
  }
  if (certificates.length === 0) throw invalidMetadata('no signing certificate');
  return certificates;
}

export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password;
  } catch {
    return false;
  }
}

/** Parses IdP metadata XML; `entityId` picks one IdP out of an aggregate. Throws 400 `invalid_metadata`. */
export function parseIdpMetadata(xml: string, entityId?: string): IdpMetadata {
  if (Buffer.byteLength(xml) > MAX_METADATA_BYTES) throw invalidMetadata(`larger than ${MAX_METADATA_BYTES} bytes`);
  let document: Document;
  try {
    document = parseXml(xml);
  } catch (error) {
    if (error instanceof FederationRejection) {
      throw invalidMetadata(error.reason === 'doctype' ? 'it declares a document type' : 'it is not well-formed XML');
    }
    throw error;
  }
  const { entity, idp } = idpDescriptorOf(document, entityId);
  const id = entity.getAttribute('entityID');
  if (!id) throw invalidMetadata('the EntityDescriptor has no entityID');
  return { entityId: id, ...ssoServiceOf(idp), certificates: signingCertificatesOf(idp) };
}

/**
 * Fetches metadata from `url`: http(s) only, no redirects to elsewhere than
 * http(s), at most MAX_METADATA_BYTES, within METADATA_TIMEOUT_MS.
 */
export async function fetchMetadataXml(url: string, fetchImpl: typeof fetch = fetch): Promise<string> {
  if (!isHttpUrl(url)) throw invalidMetadata('the metadata URL must be an http(s) URL without credentials');
  let response: Response;
  try {
    response = await fetchImpl(url, {
      headers: { Accept: 'application/samlmetadata+xml, application/xml, text/xml' },
      redirect: 'follow',
      signal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
    });
  } catch {
    throw invalidMetadata(`it could not be fetched from ${url}`);
  }
  if (!isHttpUrl(response.url || url)) throw invalidMetadata('the metadata URL redirected to a non-http(s) URL');
  if (!response.ok) throw invalidMetadata(`fetching it answered HTTP ${response.status}`);
  return readCapped(response, MAX_METADATA_BYTES);
}

/** The body as text, abandoning the download as soon as it passes `limit` bytes. */
async function readCapped(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > limit) {
    await response.body?.cancel();
    throw invalidMetadata(`larger than ${limit} bytes`);
  }
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw invalidMetadata(`larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
