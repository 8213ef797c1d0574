import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import * as validator from '@authenio/samlify-xmllint-wasm';
import { DOMParser } from '@xmldom/xmldom';
import * as samlify from 'samlify';

/**
 * The upstream SAML IdP of the federation suites, played by samlify (an
 * implementation independent of node-saml, which our SP uses): it publishes
 * metadata, reads our AuthnRequest off the redirect URL, and issues genuinely
 * signed (optionally encrypted) responses with the test keys in
 * test/fixtures/saml/. Times come from the test's clock.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/saml');
export const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

// samlify refuses to parse anything without a schema validator; the wasm xmllint needs no Java.
samlify.setSchemaValidator(validator);

export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';

export interface SamlUser {
  nameId: string;
  nameIdFormat?: string;
  /** Attribute name → values, in the AttributeStatement. */
  attributes?: Record<string, string[]>;
}

export interface ResponseOptions {
  /** Our redirect to the IdP (SAMLRequest and RelayState in its query). */
  authnRequestUrl: string;
  spMetadata: string;
  user: SamlUser;
  /** The IdP's clock, in ms. */
  now: number;
  encrypt?: boolean;
  /** Sign the Response as well as the assertion. */
  signResponse?: boolean;
  /** Change template values before signing (Audience, Recipient, Destination, InResponseTo, times, IDs…). */
  override?: Partial<Record<TemplateTag, string>>;
  /** Sign with this key/certificate pair instead of the IdP's (a stranger). */
  signingKey?: { key: string; cert: string };
  /** Sign only the Response, as for an SP that does not want signed assertions. */
  assertionUnsigned?: boolean;
}

export interface AuthnRequestInfo {
  id: string;
  acsUrl: string;
  relayState: string;
  issuer: string;
}

export type TemplateTag =
  | 'ID'
  | 'AssertionID'
  | 'Destination'
  | 'Audience'
  | 'SubjectRecipient'
  | 'Issuer'
  | 'IssueInstant'
  | 'InResponseTo'
  | 'SubjectInResponseTo'
  | 'ConditionsNotBefore'
  | 'ConditionsNotOnOrAfter'
  | 'SubjectConfirmationDataNotOnOrAfter'
  | 'NameIDFormat'
  | 'NameID';

const escapeXml = (value: string) =>
  value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

/** samlify's login response template, with our own attribute statement and the subject's InResponseTo as its own tag. */
const RESPONSE_TEMPLATE =
  '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{ID}" Version="2.0" IssueInstant="{IssueInstant}" Destination="{Destination}" InResponseTo="{InResponseTo}"><saml:Issuer>{Issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{AssertionID}" Version="2.0" IssueInstant="{IssueInstant}"><saml:Issuer>{Issuer}</saml:Issuer><saml:Subject><saml:NameID Format="{NameIDFormat}">{NameID}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{SubjectConfirmationDataNotOnOrAfter}" Recipient="{SubjectRecipient}" InResponseTo="{SubjectInResponseTo}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{ConditionsNotBefore}" NotOnOrAfter="{ConditionsNotOnOrAfter}"><saml:AudienceRestriction><saml:Audience>{Audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{IssueInstant}" SessionIndex="{AssertionID}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>{AttributeStatement}</saml:Assertion></samlp:Response>';

function attributeStatement(attributes: Record<string, string[]> | undefined): string {
  const entries = Object.entries(attributes ?? {});
  if (entries.length === 0) return '';
  const body = entries
    .map(
      ([name, values]) =>
        `<saml:Attribute Name="${escapeXml(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${values
          .map((v) => `<saml:AttributeValue xsi:type="xs:string">${escapeXml(v)}</saml:AttributeValue>`)
          .join('')}</saml:Attribute>`,
    )
    .join('');
  return `<saml:AttributeStatement>${body}</saml:AttributeStatement>`;
}

const newId = () => `_samlify_test_${randomBytes(12).toString('hex')}`;

/** Reads our AuthnRequest (HTTP-Redirect binding) off the URL we redirected the browser to. */
export function readAuthnRequest(url: string): AuthnRequestInfo {
  const query = new URL(url).searchParams;
  const xml = inflateRawSync(Buffer.from(query.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
  const root = new DOMParser().parseFromString(xml, 'text/xml').documentElement;
  if (!root) throw new Error('no AuthnRequest');
  const issuer = root.getElementsByTagNameNS('urn:oasis:names:tc:SAML:2.0:assertion', 'Issuer')[0]?.textContent ?? '';
  return {
    id: root.getAttribute('ID') ?? '',
    acsUrl: root.getAttribute('AssertionConsumerServiceURL') ?? '',
    relayState: query.get('RelayState') ?? '',
    issuer,
  };
}

export class SamlIdp {
  readonly entityId: string;
  readonly ssoUrl: string;
  private readonly idp: ReturnType<typeof samlify.IdentityProvider>;
  private readonly encryptingIdp: ReturnType<typeof samlify.IdentityProvider>;

  constructor(
    options: {
      entityId?: string;
      ssoUrl?: string;
      certificates?: string[];
      key?: string;
      cert?: string;
      binding?: 'redirect' | 'post';
    } = {},
  ) {
    this.entityId = options.entityId ?? 'https://idp.example.test/saml/metadata';
    this.ssoUrl = options.ssoUrl ?? 'https://idp.example.test/saml/sso';
    const settings = {
      entityID: this.entityId,
      privateKey: options.key ?? fixture('idp.key'),
      signingCert: options.cert ?? fixture('idp.crt'),
      nameIDFormat: [NAMEID_EMAIL],
      singleSignOnService: [
        {
          Binding: options.binding === 'post' ? samlify.Constants.namespace.binding.post : samlify.Constants.namespace.binding.redirect,
          Location: this.ssoUrl,
        },
      ],
      requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    };
    this.idp = samlify.IdentityProvider({ ...settings, isAssertionEncrypted: false });
    this.encryptingIdp = samlify.IdentityProvider({ ...settings, isAssertionEncrypted: true });
  }

  /** The IdP's metadata; `extraCertificates` are listed too (a rollover). */
  metadata(extraCertificates: string[] = []): string {
    const xml = this.idp.getMetadata();
    if (extraCertificates.length === 0) return xml;
    const descriptors = extraCertificates
      .map(
        (cert) =>
          `<KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>${cert.replace(/-----[^-]+-----|\s/g, '')}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></KeyDescriptor>`,
      )
      .join('');
    return xml.replace(/(<IDPSSODescriptor[^>]*>)/, `$1${descriptors}`);
  }

  /** A genuinely signed SAML Response (XML text) answering the AuthnRequest in `authnRequestUrl`. */
  async respond(options: ResponseOptions): Promise<{ xml: string; request: AuthnRequestInfo }> {
    const request = readAuthnRequest(options.authnRequestUrl);
    const metadata = options.assertionUnsigned
      ? options.spMetadata.replace('WantAssertionsSigned="true"', 'WantAssertionsSigned="false"')
      : options.spMetadata;
    const sp = samlify.ServiceProvider({
      metadata,
      wantMessageSigned: options.signResponse === true || options.assertionUnsigned === true,
    });
    const idp = options.signingKey
      ? samlify.IdentityProvider({
          entityID: this.entityId,
          privateKey: options.signingKey.key,
          signingCert: options.signingKey.cert,
          nameIDFormat: [NAMEID_EMAIL],
          singleSignOnService: [{ Binding: samlify.Constants.namespace.binding.redirect, Location: this.ssoUrl }],
          isAssertionEncrypted: options.encrypt === true,
        })
      : options.encrypt
        ? this.encryptingIdp
        : this.idp;
    const now = new Date(options.now);
    const later = new Date(options.now + 5 * 60 * 1000);
    const values: Record<TemplateTag, string> = {
      ID: newId(),
      AssertionID: newId(),
      Destination: request.acsUrl,
      Audience: request.issuer,
      SubjectRecipient: request.acsUrl,
      Issuer: this.entityId,
      IssueInstant: now.toISOString(),
      InResponseTo: request.id,
      SubjectInResponseTo: request.id,
      ConditionsNotBefore: now.toISOString(),
      ConditionsNotOnOrAfter: later.toISOString(),
      SubjectConfirmationDataNotOnOrAfter: later.toISOString(),
      NameIDFormat: options.user.nameIdFormat ?? NAMEID_EMAIL,
      NameID: options.user.nameId,
      ...options.override,
    };
    let context = RESPONSE_TEMPLATE.replace('{AttributeStatement}', attributeStatement(options.user.attributes));
    for (const [tag, value] of Object.entries(values)) context = context.split(`{${tag}}`).join(escapeXml(value));
    const result = await idp.createLoginResponse(
      sp,
      { extract: { request: { id: request.id } } },
      'post',
      {},
      {
        customTagReplacement: () => ({ id: values.ID, context }),
        relayState: request.relayState,
      },
    );
    return { xml: Buffer.from(result.context, 'base64').toString('utf8'), request };
  }
}
