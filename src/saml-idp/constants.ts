/** The SAML 2.0 and XML Security names this IdP speaks, in one place. */

export const NS = Object.freeze({
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  metadata: 'urn:oasis:names:tc:SAML:2.0:metadata',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
  xenc: 'http://www.w3.org/2001/04/xmlenc#',
  xs: 'http://www.w3.org/2001/XMLSchema',
  xsi: 'http://www.w3.org/2001/XMLSchema-instance',
});

export const BINDING = Object.freeze({
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
});
export type Binding = 'redirect' | 'post';

export const STATUS = Object.freeze({
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  requester: 'urn:oasis:names:tc:SAML:2.0:status:Requester',
  responder: 'urn:oasis:names:tc:SAML:2.0:status:Responder',
  authnFailed: 'urn:oasis:names:tc:SAML:2.0:status:AuthnFailed',
  noPassive: 'urn:oasis:names:tc:SAML:2.0:status:NoPassive',
  invalidNameIdPolicy: 'urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy',
  unknownPrincipal: 'urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal',
  partialLogout: 'urn:oasis:names:tc:SAML:2.0:status:PartialLogout',
});

export const NAME_ID_FORMAT = Object.freeze({
  email: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  transient: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
  unspecified: 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
});
export type NameIdFormat = 'email' | 'persistent' | 'transient';
export const NAME_ID_FORMATS: readonly NameIdFormat[] = ['email', 'persistent', 'transient'];

export const AUTHN_CONTEXT = Object.freeze({
  password: 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
  /** REFEDS MFA profile: what SPs that require a second factor ask for. */
  multiFactor: 'https://refeds.org/profile/mfa',
  unspecified: 'urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified',
});

export const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';

export const ATTRIBUTE_NAME_FORMAT = Object.freeze({
  basic: 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
  uri: 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
});

export const ALGORITHM = Object.freeze({
  rsaSha256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  rsaSha512: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
  sha256: 'http://www.w3.org/2001/04/xmlenc#sha256',
  sha512: 'http://www.w3.org/2001/04/xmlenc#sha512',
  exclusiveC14n: 'http://www.w3.org/2001/10/xml-exc-c14n#',
  envelopedSignature: 'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
  aes256Gcm: 'http://www.w3.org/2009/xmlenc11#aes256-gcm',
  rsaOaep: 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
});

/**
 * Signature algorithms accepted from SPs (XML signatures and the Redirect
 * binding's SigAlg), with the hash Node's crypto uses for each. SHA-1 is not
 * among them: collisions are practical, and every current SP stack signs with
 * SHA-256 when asked to.
 */
export const ACCEPTED_SIGNATURE_ALGORITHMS: ReadonlyMap<string, 'sha256' | 'sha512'> = new Map([
  [ALGORITHM.rsaSha256, 'sha256'],
  [ALGORITHM.rsaSha512, 'sha512'],
]);
