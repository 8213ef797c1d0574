import { createPublicKey, sign, verify } from 'node:crypto';
import { SignedXml } from 'xml-crypto';
import { ACCEPTED_SIGNATURE_ALGORITHMS, ALGORITHM, NS } from './constants.js';
import type { SamlSigningKey } from './keys.js';
import { childElements, refuse } from './xml.js';

/**
 * XML signatures (enveloped, RSA-SHA256, exclusive c14n) on what we send, and
 * checks of what SPs send: XML signatures for the POST binding, the query
 * string signature for the Redirect binding. Verification always uses the
 * SP's registered certificate, never a key carried in the message.
 */

/** Signs the document's root element; the signature goes right after its Issuer, where the SAML schema puts it. */
export function signRootElement(xml: string, key: SamlSigningKey): string {
  const signer = new SignedXml({
    privateKey: key.privateKeyPem,
    publicCert: key.certificatePem,
    signatureAlgorithm: ALGORITHM.rsaSha256,
    canonicalizationAlgorithm: ALGORITHM.exclusiveC14n,
  });
  signer.addReference({
    xpath: '/*',
    transforms: [ALGORITHM.envelopedSignature, ALGORITHM.exclusiveC14n],
    digestAlgorithm: ALGORITHM.sha256,
  });
  signer.computeSignature(xml, { prefix: 'ds', location: { reference: "/*/*[local-name(.)='Issuer']", action: 'after' } });
  return signer.getSignedXml();
}

function only<T>(table: Record<string, T>, allowed: readonly string[]): Record<string, T> {
  return Object.fromEntries(Object.entries(table).filter(([uri]) => allowed.includes(uri)));
}

/** A verifier that knows only the SP's certificate and only the algorithms we accept. */
function verifierFor(certificatePem: string): SignedXml {
  const verifier = new SignedXml({ publicCert: certificatePem, getCertFromKeyInfo: () => null });
  verifier.SignatureAlgorithms = only(verifier.SignatureAlgorithms, [...ACCEPTED_SIGNATURE_ALGORITHMS.keys()]);
  verifier.HashAlgorithms = only(verifier.HashAlgorithms, [ALGORITHM.sha256, ALGORITHM.sha512]);
  return verifier;
}

export function hasXmlSignature(root: Element): boolean {
  return childElements(root, NS.dsig, 'Signature').length > 0;
}

/**
 * Checks the enveloped signature of the message's root element and returns
 * the XML that the signature covers, canonicalised: the caller reads the
 * message from that and nothing else, so content outside the signed element
 * (the signature-wrapping family of attacks) can never be what is acted on.
 */
export function verifyXmlSignature(xml: string, root: Element, certificatePem: string): string {
  const signatures = childElements(root, NS.dsig, 'Signature');
  const [signature] = signatures;
  if (!signature || signatures.length > 1) throw refuse('bad_signature', 'The SAML message must carry exactly one signature.');
  const id = root.getAttribute('ID');
  if (!id || countElementsWithId(root.ownerDocument, id) !== 1) throw refuse('bad_signature', 'The signed element must have a unique ID.');
  const verifier = verifierFor(certificatePem);
  let valid = false;
  try {
    verifier.loadSignature(signature);
    valid = verifier.checkSignature(xml);
  } catch {
    valid = false;
  }
  const references = verifier.getReferences();
  if (!valid || references.length !== 1 || references[0]?.uri !== `#${id}`) {
    throw refuse('bad_signature', 'The signature of the SAML message does not verify with the registered certificate.');
  }
  const [signed] = verifier.getSignedReferences();
  if (!signed) throw refuse('bad_signature', 'The signature of the SAML message covers nothing.');
  return signed;
}

function countElementsWithId(doc: Document, id: string): number {
  let count = 0;
  const all = doc.getElementsByTagName('*');
  for (let i = 0; i < all.length; i += 1) {
    const element = all.item(i);
    if (element && ['ID', 'Id', 'id'].some((name) => element.getAttribute(name) === id)) count += 1;
  }
  return count;
}

// ---------------------------------------------------------------- HTTP-Redirect binding

export type RedirectParameter = 'SAMLRequest' | 'SAMLResponse';

/** The query of a Redirect-binding message we send: deflated, base64, and signed over the exact encoded string. */
export function signedRedirectQuery(
  parameter: RedirectParameter,
  deflatedBase64: string,
  relayState: string | undefined,
  key: SamlSigningKey,
): string {
  let query = `${parameter}=${encodeURIComponent(deflatedBase64)}`;
  if (relayState !== undefined) query += `&RelayState=${encodeURIComponent(relayState)}`;
  query += `&SigAlg=${encodeURIComponent(ALGORITHM.rsaSha256)}`;
  const signature = sign('sha256', Buffer.from(query, 'utf8'), key.privateKeyPem).toString('base64');
  return `${query}&Signature=${encodeURIComponent(signature)}`;
}

/** What a Redirect-binding signature covers, as the SP encoded it (section 3.4.4.1 of the bindings spec). */
export interface RedirectSignature {
  signedContent: string;
  sigAlg: string;
  signature: Buffer;
}

export function verifyRedirectSignature(signature: RedirectSignature, certificatePem: string): void {
  const hash = ACCEPTED_SIGNATURE_ALGORITHMS.get(signature.sigAlg);
  if (!hash) throw refuse('bad_signature', 'The signature algorithm of the SAML message is not accepted (use RSA-SHA256).');
  let valid = false;
  try {
    valid = verify(hash, Buffer.from(signature.signedContent, 'utf8'), createPublicKey(certificatePem), signature.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw refuse('bad_signature', 'The signature of the SAML message does not verify with the registered certificate.');
}
