import { DOMParser } from '@xmldom/xmldom';
import { reject } from './rejection.js';
import { checkedXml } from './saml-message.js';

/**
 * The little DOM reading the federation code does itself (metadata, the outer
 * Response): parse strictly, and find elements by namespace and local name,
 * never by prefix, which the sender chooses.
 */

export const NS = Object.freeze({
  metadata: 'urn:oasis:names:tc:SAML:2.0:metadata',
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
});

/** Parses `xml` (after the DTD check), throwing a `malformed` rejection on any parser error or warning. */
export function parseXml(xml: string): Document {
  checkedXml(xml);
  const problems: string[] = [];
  const note = (message: string) => {
    problems.push(message);
  };
  const document = new DOMParser({ errorHandler: { warning: note, error: note, fatalError: note } }).parseFromString(xml, 'text/xml');
  if (problems.length > 0 || !document?.documentElement) throw reject('malformed', problems[0] ?? 'no document element');
  return document;
}

const ELEMENT_NODE = 1;

/** Direct child elements of `parent` with this namespace and local name. */
export function childElements(parent: Element | Document, namespace: string, localName: string): Element[] {
  const found: Element[] = [];
  const nodes = parent.childNodes;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes.item(i);
    if (node?.nodeType !== ELEMENT_NODE) continue;
    const element = node as Element;
    if (element.namespaceURI === namespace && element.localName === localName) found.push(element);
  }
  return found;
}

/** Every descendant element with this namespace and local name, in document order. */
export function descendantElements(parent: Element | Document, namespace: string, localName: string): Element[] {
  return Array.from(parent.getElementsByTagNameNS(namespace, localName));
}

export function textOf(element: Element): string {
  return (element.textContent ?? '').trim();
}
