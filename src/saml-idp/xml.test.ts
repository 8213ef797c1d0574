import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readAuthnRequest } from './messages.js';
import { readSpMetadata } from './sp-metadata.js';
import { decodeBase64, escapeXml, inflate, MAX_MESSAGE_BYTES, parseXml, SamlRefusal } from './xml.js';

/** The parsing hardening every SAML message and metadata document goes through, without a server. */

function reasonOf(work: () => unknown): string | undefined {
  try {
    work();
  } catch (error) {
    if (error instanceof SamlRefusal) return error.reason;
    throw error;
  }
  return undefined;
}

const AUTHN_REQUEST =
  '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"' +
  ' ID="_abc" Version="2.0" IssueInstant="2026-01-01T00:00:00Z" AssertionConsumerServiceURL="https://sp.example/acs">' +
  '<saml:Issuer>https://sp.example</saml:Issuer></samlp:AuthnRequest>';

describe('parseXml', () => {
  it('refuses any DTD, whatever its case or place', () => {
    expect(reasonOf(() => parseXml(`<!DOCTYPE r SYSTEM "http://evil.example/x.dtd">${AUTHN_REQUEST}`))).toBe('dtd_forbidden');
    expect(reasonOf(() => parseXml(`<!doctype r [<!entity x "y">]>${AUTHN_REQUEST}`))).toBe('dtd_forbidden');
  });

  it('refuses documents the parser would have to repair, and oversized ones', () => {
    expect(reasonOf(() => parseXml('<a><b></a>'))).toBe('malformed_xml');
    expect(reasonOf(() => parseXml('not xml at all'))).toBe('malformed_xml');
    expect(reasonOf(() => parseXml(`<a>${'x'.repeat(MAX_MESSAGE_BYTES)}</a>`))).toBe('message_too_large');
  });

  it('reads a well-formed AuthnRequest, and refuses one with two Issuers', () => {
    const request = readAuthnRequest(parseXml(AUTHN_REQUEST));
    expect(request).toMatchObject({ id: '_abc', issuer: 'https://sp.example', acsUrl: 'https://sp.example/acs', forceAuthn: false });
    const twoIssuers = AUTHN_REQUEST.replace('</saml:Issuer>', '</saml:Issuer><saml:Issuer>https://other.example</saml:Issuer>');
    expect(reasonOf(() => readAuthnRequest(parseXml(twoIssuers)))).toBe('malformed_message');
  });
});

describe('decoding', () => {
  it('accepts wrapped base64 and refuses anything else', () => {
    const encoded = Buffer.from(AUTHN_REQUEST).toString('base64');
    expect(decodeBase64(`${encoded.slice(0, 40)}\r\n${encoded.slice(40)}`).toString('utf8')).toBe(AUTHN_REQUEST);
    expect(reasonOf(() => decodeBase64('%%%%'))).toBe('malformed_encoding');
  });

  it('inflates no further than the cap', () => {
    expect(inflate(deflateRawSync(Buffer.from(AUTHN_REQUEST)))).toBe(AUTHN_REQUEST);
    expect(reasonOf(() => inflate(deflateRawSync(Buffer.alloc(10 * MAX_MESSAGE_BYTES, 0x20))))).toBe('message_too_large');
    expect(reasonOf(() => inflate(Buffer.from('not deflate')))).toBe('malformed_encoding');
  });
});

describe('escapeXml', () => {
  it('escapes markup and drops what XML 1.0 cannot carry', () => {
    expect(escapeXml(`<a href="x">&'\u0000\u0008ok`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;ok');
  });
});

describe('readSpMetadata', () => {
  it('takes the POST ACS endpoints (default first), the Redirect SLO endpoint and the signing flags', () => {
    const metadata =
      '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example">' +
      '<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">' +
      '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/slo-post"/>' +
      '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://sp.example/slo"/>' +
      '<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>' +
      '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs2" index="2"/>' +
      '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://sp.example/artifact" index="0"/>' +
      '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs1" index="1" isDefault="true"/>' +
      '</md:SPSSODescriptor></md:EntityDescriptor>';
    expect(readSpMetadata(metadata)).toMatchObject({
      entityId: 'https://sp.example',
      acsUrls: ['https://sp.example/acs1', 'https://sp.example/acs2'],
      sloUrl: 'https://sp.example/slo',
      requireSignedRequests: true,
      wantAssertionsSigned: true,
      nameIdFormat: 'transient',
    });
  });
});
