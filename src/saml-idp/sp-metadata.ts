import { BINDING, NAME_ID_FORMAT, type NameIdFormat, NS } from './constants.js';
import { normalizeCertificate } from './service-providers.js';
import { attributeOf, childElements, MAX_METADATA_BYTES, parseXml, refuse, rootElement, textOf } from './xml.js';

/**
 * Registering an SP from its metadata (an EntityDescriptor with an
 * SPSSODescriptor): what the registration needs is read out of it, the rest
 * of the document is ignored. Parsed with the same hardening as messages.
 */

export interface ImportedMetadata {
  entityId: string;
  /** HTTP-POST ACS endpoints, the default one first, then by index. */
  acsUrls: string[];
  sloUrl?: string;
  /** The signing certificate (or the one without a `use`), as PEM. */
  certificate?: string;
  /** An encryption certificate that differs from the signing one: we encrypt to the one certificate we keep, so it is reported. */
  separateEncryptionCertificate: boolean;
  requireSignedRequests: boolean;
  wantAssertionsSigned: boolean;
  nameIdFormat?: NameIdFormat;
}

const FORMAT_BY_URN = new Map<string, NameIdFormat>([
  [NAME_ID_FORMAT.email, 'email'],
  [NAME_ID_FORMAT.persistent, 'persistent'],
  [NAME_ID_FORMAT.transient, 'transient'],
]);

function acsUrlsOf(sp: Element): string[] {
  const endpoints = childElements(sp, NS.metadata, 'AssertionConsumerService')
    .filter((acs) => attributeOf(acs, 'Binding') === BINDING.post)
    .map((acs) => ({
      location: attributeOf(acs, 'Location') ?? '',
      isDefault: attributeOf(acs, 'isDefault') === 'true',
      index: Number(attributeOf(acs, 'index') ?? Number.MAX_SAFE_INTEGER),
    }))
    .filter((acs) => acs.location);
  endpoints.sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || a.index - b.index);
  return [...new Set(endpoints.map((acs) => acs.location))];
}

/** We send logout requests with the Redirect binding and answer in the binding we were asked with: Redirect first. */
function sloUrlOf(sp: Element): string | undefined {
  const services = childElements(sp, NS.metadata, 'SingleLogoutService');
  const byBinding = (binding: string) => services.find((s) => attributeOf(s, 'Binding') === binding);
  const service = byBinding(BINDING.redirect) ?? byBinding(BINDING.post);
  return service ? attributeOf(service, 'Location') : undefined;
}

function certificatesFor(sp: Element, use: 'signing' | 'encryption'): string[] {
  const certificates: string[] = [];
  for (const descriptor of childElements(sp, NS.metadata, 'KeyDescriptor')) {
    const declared = attributeOf(descriptor, 'use');
    if (declared && declared !== use) continue;
    for (const keyInfo of childElements(descriptor, NS.dsig, 'KeyInfo')) {
      for (const data of childElements(keyInfo, NS.dsig, 'X509Data')) {
        for (const certificate of childElements(data, NS.dsig, 'X509Certificate')) {
          const pem = normalizeCertificate(textOf(certificate) ?? '');
          if (!pem) throw refuse('invalid_metadata', 'A certificate in the metadata does not parse.');
          certificates.push(pem);
        }
      }
    }
  }
  return certificates;
}

export function readSpMetadata(xml: string): ImportedMetadata {
  const doc = parseXml(xml, MAX_METADATA_BYTES);
  const entity = rootElement(doc, NS.metadata, 'EntityDescriptor');
  const entityId = attributeOf(entity, 'entityID');
  if (!entityId) throw refuse('invalid_metadata', 'The metadata has no entityID.');
  const descriptors = childElements(entity, NS.metadata, 'SPSSODescriptor');
  const [sp] = descriptors;
  if (!sp || descriptors.length > 1) throw refuse('invalid_metadata', 'The metadata must describe exactly one SAML service provider.');
  const [signing] = certificatesFor(sp, 'signing');
  const [encryption] = certificatesFor(sp, 'encryption');
  const nameIdFormat = childElements(sp, NS.metadata, 'NameIDFormat')
    .map((format) => FORMAT_BY_URN.get(textOf(format) ?? ''))
    .find((format) => format !== undefined);
  return {
    entityId,
    acsUrls: acsUrlsOf(sp),
    sloUrl: sloUrlOf(sp),
    certificate: signing ?? encryption,
    separateEncryptionCertificate: Boolean(signing && encryption && signing !== encryption),
    requireSignedRequests: attributeOf(sp, 'AuthnRequestsSigned') === 'true',
    wantAssertionsSigned: attributeOf(sp, 'WantAssertionsSigned') === 'true',
    nameIdFormat,
  };
}
