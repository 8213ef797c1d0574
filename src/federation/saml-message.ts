import { inflateRawSync } from 'node:zlib';
import { reject } from './rejection.js';

/**
 * Turning what the browser carried into XML text, before any XML parser sees
 * it. Sizes are capped at every stage (the base64 text, the bytes it decodes
 * to, what a deflated message inflates to), and a document type declaration
 * is refused outright: SAML never needs one, and it is how XXE and entity
 * expansion ("billion laughs") attacks start.
 */

/** A signed, encrypted response with a few hundred group names stays well below this. */
export const MAX_SAML_MESSAGE_BYTES = 256 * 1024;
/** base64 of MAX_SAML_MESSAGE_BYTES, plus room for the line breaks some IdPs insert. */
const MAX_BASE64_CHARS = Math.ceil(MAX_SAML_MESSAGE_BYTES / 3) * 4 + 8 * 1024;
const BASE64 = /^[A-Za-z0-9+/=\r\n]+$/;

function decodeBase64(value: string): Buffer {
  if (value.length > MAX_BASE64_CHARS) throw reject('message_too_large', `${value.length} base64 characters`);
  if (!BASE64.test(value)) throw reject('malformed', 'not base64');
  return Buffer.from(value, 'base64');
}

/**
 * The XML of a message sent with the HTTP-POST binding: plain base64.
 */
export function decodePostMessage(value: string): string {
  const bytes = decodeBase64(value);
  if (bytes.length > MAX_SAML_MESSAGE_BYTES) throw reject('message_too_large', `${bytes.length} bytes`);
  return checkedXml(bytes.toString('utf8'));
}

/**
 * The XML of a message sent with the HTTP-Redirect binding: raw DEFLATE, then
 * base64. Inflating stops at the cap (zlib's maxOutputLength), so a few
 * kilobytes that would inflate to gigabytes cost no more than the cap.
 */
export function decodeRedirectMessage(value: string): string {
  const compressed = decodeBase64(value);
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(compressed, { maxOutputLength: MAX_SAML_MESSAGE_BYTES });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw reject('message_too_large', `inflates past ${MAX_SAML_MESSAGE_BYTES} bytes`);
    }
    throw reject('malformed', 'not a deflated message');
  }
  return checkedXml(inflated.toString('utf8'));
}

/** Refused before parsing: a DTD (DOCTYPE, ENTITY) anywhere in the document. */
const DTD = /<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)/i;

export function checkedXml(xml: string): string {
  if (DTD.test(xml)) throw reject('doctype', 'the message declares a document type');
  if (!xml.trimStart().startsWith('<')) throw reject('malformed', 'not XML');
  return xml;
}
