import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FederationRejection } from './rejection.js';
import { checkedXml, decodePostMessage, decodeRedirectMessage, MAX_SAML_MESSAGE_BYTES } from './saml-message.js';

const reasonOf = (work: () => unknown) => {
  try {
    work();
  } catch (error) {
    if (error instanceof FederationRejection) return error.reason;
    throw error;
  }
  return 'accepted';
};

describe('decoding SAML messages', () => {
  it('decodes both bindings', () => {
    const xml = '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>';
    expect(decodePostMessage(Buffer.from(xml).toString('base64'))).toBe(xml);
    expect(decodeRedirectMessage(deflateRawSync(Buffer.from(xml)).toString('base64'))).toBe(xml);
  });

  it('refuses any document type declaration, in any case and spacing', () => {
    for (const dtd of ['<!DOCTYPE r>', '<!doctype r>', '<! DOCTYPE r>', '<!ENTITY x "y">']) {
      expect(reasonOf(() => checkedXml(`${dtd}<r/>`))).toBe('doctype');
    }
  });

  it('stops a deflate bomb at the cap', () => {
    const bomb = deflateRawSync(Buffer.alloc(MAX_SAML_MESSAGE_BYTES * 40, 0x20));
    expect(reasonOf(() => decodeRedirectMessage(bomb.toString('base64')))).toBe('message_too_large');
  });

  it('refuses oversized and non-base64 input before decoding', () => {
    expect(reasonOf(() => decodePostMessage('A'.repeat(MAX_SAML_MESSAGE_BYTES * 2)))).toBe('message_too_large');
    expect(reasonOf(() => decodePostMessage('<not base64>'))).toBe('malformed');
    expect(reasonOf(() => decodeRedirectMessage(Buffer.from('not deflate').toString('base64')))).toBe('malformed');
  });
});
