import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { DOMParser } from '@xmldom/xmldom';
import { AppError } from '../errors.js';

/**
 * Reading and writing the XML of SAML messages. Everything that arrives is
 * untrusted: it is size-capped before and after decoding, refused outright
 * when it declares a DTD or entities (the XXE and entity-expansion family),
 * and parsed strictly, so a document the parser had to repair is no document.
 */

/** An AuthnRequest or logout message is a few KiB; SP metadata with a few certificates a few tens. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const MAX_METADATA_BYTES = 256 * 1024;

/** A refused SAML message: `reason` is what the audit trail and the error page's code say. */
export class SamlRefusal extends AppError {
  constructor(
    readonly reason: string,
    description: string,
    status = 400,
  ) {
    super(status, reason, description);
    this.name = 'SamlRefusal';
  }
}

export const refuse = (reason: string, description: string) => new SamlRefusal(reason, description);

/** DTDs are what XXE and "billion laughs" need; no SAML message or metadata ever carries one. */
const DTD_MARKUP = /<!DOCTYPE|<!ENTITY/i;

export function parseXml(text: string, maxBytes = MAX_MESSAGE_BYTES): Document {
  if (Buffer.byteLength(text, 'utf8') > maxBytes) throw refuse('message_too_large', 'The SAML message is too large.');
  if (DTD_MARKUP.test(text)) throw refuse('dtd_forbidden', 'The SAML message declares a DTD or entities, which are not accepted.');
  const problems: string[] = [];
  const collect = (message: string) => {
    problems.push(message);
  };
  const doc = new DOMParser({ errorHandler: { warning: collect, error: collect, fatalError: collect } }).parseFromString(
    text,
    'application/xml',
  );
  if (problems.length > 0 || !doc?.documentElement) throw refuse('malformed_xml', 'The SAML message is not well-formed XML.');
  return doc;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Strict base64 (line breaks tolerated, as some SPs wrap their POST bodies). */
export function decodeBase64(value: string, maxBytes = MAX_MESSAGE_BYTES): Buffer {
  const compact = value.replace(/[\r\n\t ]/g, '');
  if (compact.length > Math.ceil((maxBytes * 4) / 3) + 4) throw refuse('message_too_large', 'The SAML message is too large.');
  if (!BASE64.test(compact) || compact.length % 4 !== 0) throw refuse('malformed_encoding', 'The SAML message is not valid base64.');
  return Buffer.from(compact, 'base64');
}

/** The HTTP-Redirect binding's DEFLATE, inflated at most to `maxBytes`: a zip bomb stops there. */
export function inflate(data: Buffer, maxBytes = MAX_MESSAGE_BYTES): string {
  try {
    return inflateRawSync(data, { maxOutputLength: maxBytes }).toString('utf8');
  } catch (error) {
    if (error instanceof RangeError) throw refuse('message_too_large', 'The SAML message is too large.');
    throw refuse('malformed_encoding', 'The SAML message is not valid DEFLATE data.');
  }
}

export function deflateToBase64(xml: string): string {
  return deflateRawSync(Buffer.from(xml, 'utf8')).toString('base64');
}

export const toBase64 = (xml: string) => Buffer.from(xml, 'utf8').toString('base64');

/** Characters XML 1.0 cannot carry at all are dropped; the five special ones are escaped. */
const NOT_XML_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

export function escapeXml(value: string): string {
  return value.replace(NOT_XML_CHAR, '').replace(/[&<>"']/g, (ch) => ESCAPES[ch] ?? ch);
}

// ---------------------------------------------------------------- reading elements

export function childElements(parent: Element, namespace: string, localName: string): Element[] {
  const found: Element[] = [];
  for (let node = parent.firstChild; node; node = node.nextSibling) {
    const element = node as Element;
    if (node.nodeType === 1 && element.namespaceURI === namespace && element.localName === localName) found.push(element);
  }
  return found;
}

/** The one child of that name; a second one is refused rather than ignored, so nothing can hide behind the first. */
export function singleChild(parent: Element, namespace: string, localName: string): Element | undefined {
  const found = childElements(parent, namespace, localName);
  if (found.length > 1) throw refuse('malformed_message', `The SAML message has more than one ${localName}.`);
  return found[0];
}

export function textOf(element: Element | undefined): string | undefined {
  const text = element?.textContent?.trim();
  return text ? text : undefined;
}

export function attributeOf(element: Element, name: string): string | undefined {
  return element.hasAttribute(name) ? (element.getAttribute(name) ?? undefined) : undefined;
}

/** The root element, which must be `localName` in `namespace`. */
export function rootElement(doc: Document, namespace: string, localName: string): Element {
  const root = doc.documentElement;
  if (!root || root.namespaceURI !== namespace || root.localName !== localName) {
    throw refuse('unexpected_message', `Expected a SAML ${localName}.`);
  }
  return root;
}
