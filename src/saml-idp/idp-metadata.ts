import { BINDING, NAME_ID_FORMAT, NS } from './constants.js';
import type { PublishedCertificate } from './keys.js';
import { escapeXml } from './xml.js';

/** Where the tenant's IdP lives: its entity ID is its metadata URL, which is where an SP learns everything else. */
export interface IdpEndpoints {
  entityId: string;
  metadata: string;
  sso: string;
  slo: string;
  /** Where the built-in OIDC clients of the SPs come back to after the hosted pages. */
  continue: string;
  /** Where logout goes on after our own session has ended. */
  sloContinue: string;
  idpInitiated: string;
}

export function idpEndpoints(publicUrl: string, slug: string): IdpEndpoints {
  const base = `${publicUrl}/t/${slug}/saml`;
  return {
    entityId: `${base}/metadata`,
    metadata: `${base}/metadata`,
    sso: `${base}/sso`,
    slo: `${base}/slo`,
    continue: `${base}/continue`,
    sloContinue: `${base}/slo/continue`,
    idpInitiated: `${base}/idp-initiated`,
  };
}

const base64Of = (pem: string) => pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');

function keyDescriptor(certificate: PublishedCertificate): string {
  return (
    '<md:KeyDescriptor use="signing"><ds:KeyInfo>' +
    `<ds:KeyName>${escapeXml(certificate.kid)}</ds:KeyName>` +
    `<ds:X509Data><ds:X509Certificate>${base64Of(certificate.certificatePem)}</ds:X509Certificate></ds:X509Data>` +
    '</ds:KeyInfo></md:KeyDescriptor>'
  );
}

/**
 * The IdP's metadata. Every published certificate is listed (active, next and
 * previous), so an SP that refreshes it trusts the next key before it signs
 * and the previous one while responses it signed may still be in flight.
 * Whether an SP must sign its requests is set per SP: the metadata fetched
 * for one SP (`?sp=<entity ID>`) says so in WantAuthnRequestsSigned, which
 * some SP stacks insist on matching their own AuthnRequestsSigned.
 */
export function idpMetadataXml(
  endpoints: IdpEndpoints,
  certificates: readonly PublishedCertificate[],
  options: { wantAuthnRequestsSigned?: boolean } = {},
): string {
  const services = (element: string, location: string) =>
    [BINDING.redirect, BINDING.post].map((binding) => `<md:${element} Binding="${binding}" Location="${escapeXml(location)}"/>`).join('');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<md:EntityDescriptor xmlns:md="${NS.metadata}" xmlns:ds="${NS.dsig}" entityID="${escapeXml(endpoints.entityId)}">` +
    `<md:IDPSSODescriptor protocolSupportEnumeration="${NS.protocol}" WantAuthnRequestsSigned="${options.wantAuthnRequestsSigned === true}">` +
    certificates.map(keyDescriptor).join('') +
    services('SingleLogoutService', endpoints.slo) +
    [NAME_ID_FORMAT.email, NAME_ID_FORMAT.persistent, NAME_ID_FORMAT.transient]
      .map((f) => `<md:NameIDFormat>${f}</md:NameIDFormat>`)
      .join('') +
    services('SingleSignOnService', endpoints.sso) +
    '</md:IDPSSODescriptor></md:EntityDescriptor>'
  );
}
