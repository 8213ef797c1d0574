import { createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createVault, masterKeyVersion, type VaultBinding, VaultError } from './vault.js';

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const binding: VaultBinding = { tenantId: randomUUID(), table: 'Secret', column: 'value', recordId: randomUUID() };
const plaintext = 'correct horse battery staple';

function expectVaultError(work: () => unknown) {
  let thrown: unknown;
  try {
    work();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(VaultError);
  // One message for every failure, so an attacker cannot tell which check failed.
  expect((thrown as VaultError).message).toBe('cannot decrypt vault envelope');
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= ';

/** Every envelope that differs from `text` in one character, whatever the character. */
function* oneCharacterChanges(text: string) {
  for (let index = 0; index < text.length; index += 1) {
    for (const replacement of ALPHABET) {
      if (replacement !== text[index]) yield text.slice(0, index) + replacement + text.slice(index + 1);
    }
  }
}

function segments(envelope: string) {
  const [format = '', version = '', nonce = '', sealed = ''] = envelope.split('.');
  return { format, version, nonce: Buffer.from(nonce, 'base64url'), sealed: Buffer.from(sealed, 'base64url') };
}

function join(format: string, version: string, nonce: Buffer, sealed: Buffer) {
  return [format, version, nonce.toString('base64url'), sealed.toString('base64url')].join('.');
}

describe('vault', () => {
  const vault = createVault({ masterKey: keyA });

  it('round-trips strings and bytes, including empty ones', () => {
    expect(vault.decryptString(vault.encrypt(plaintext, binding), binding)).toBe(plaintext);
    const bytes = randomBytes(1000);
    expect(vault.decrypt(vault.encrypt(bytes, binding), binding).equals(bytes)).toBe(true);
    expect(vault.decryptString(vault.encrypt('', binding), binding)).toBe('');
    expect(vault.decryptString(vault.encrypt('pässwörd ✓', binding), binding)).toBe('pässwörd ✓');
  });

  it('uses a fresh random nonce, so equal plaintexts give different envelopes', () => {
    const first = vault.encrypt(plaintext, binding);
    const second = vault.encrypt(plaintext, binding);
    expect(first).not.toBe(second);
    expect(segments(first).nonce.equals(segments(second).nonce)).toBe(false);
    expect(segments(first).nonce).toHaveLength(12);
  });

  it('writes a self-describing envelope under the current key version', () => {
    const envelope = vault.encrypt(plaintext, binding);
    expect(envelope).toMatch(/^v1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(vault.keyVersion).toBe(masterKeyVersion(keyA));
    expect(vault.currentPrefix()).toBe(`v1.${vault.keyVersion}.`);
    expect(envelope.startsWith(vault.currentPrefix())).toBe(true);
    expect(vault.isCurrent(envelope)).toBe(true);
    expect(envelope).not.toContain(plaintext);
  });

  it('rejects a change to any character of the envelope', () => {
    const envelope = vault.encrypt(plaintext, binding);
    // Includes changes to the unused low bits of the last base64url character, which a lax decoder ignores.
    for (const altered of oneCharacterChanges(envelope)) expectVaultError(() => vault.decrypt(altered, binding));
  });

  it('rejects a flip of any bit of the nonce, ciphertext or tag', () => {
    const { format, version, nonce, sealed } = segments(vault.encrypt(plaintext, binding));
    for (const [name, bytes] of [
      ['nonce', nonce],
      ['sealed', sealed],
    ] as const) {
      for (let bit = 0; bit < bytes.length * 8; bit += 1) {
        const altered = Buffer.from(bytes);
        altered[bit >> 3] = (altered[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        const envelope = name === 'nonce' ? join(format, version, altered, sealed) : join(format, version, nonce, altered);
        expectVaultError(() => vault.decrypt(envelope, binding));
      }
    }
  });

  it('rejects a truncated or extended ciphertext and a dropped tag', () => {
    const { format, version, nonce, sealed } = segments(vault.encrypt(plaintext, binding));
    expectVaultError(() => vault.decrypt(join(format, version, nonce, sealed.subarray(0, sealed.length - 1)), binding));
    expectVaultError(() => vault.decrypt(join(format, version, nonce, Buffer.concat([sealed, Buffer.from([0])])), binding));
    expectVaultError(() => vault.decrypt(join(format, version, nonce, sealed.subarray(0, sealed.length - 16)), binding));
    expectVaultError(() => vault.decrypt(join(format, version, nonce, sealed.subarray(sealed.length - 16)), binding));
  });

  it('rejects another format version', () => {
    const envelope = vault.encrypt(plaintext, binding);
    expectVaultError(() => vault.decrypt(envelope.replace(/^v1\./, 'v2.'), binding));
    expectVaultError(() => vault.decrypt(envelope.replace(/^v1\./, 'V1.'), binding));
  });

  it.each([
    ['tenant', { tenantId: randomUUID() }],
    ['record', { recordId: randomUUID() }],
    ['column', { column: 'privateJwk' }],
    ['table', { table: 'SigningKey' }],
  ])('fails to decrypt under another %s', (_name, change) => {
    const envelope = vault.encrypt(plaintext, binding);
    expectVaultError(() => vault.decrypt(envelope, { ...binding, ...change }));
  });

  it('refuses a binding with a missing field', () => {
    const envelope = vault.encrypt(plaintext, binding);
    for (const field of ['tenantId', 'table', 'column', 'recordId'] as const) {
      for (const value of ['', undefined]) {
        const incomplete = { ...binding, [field]: value } as VaultBinding;
        expect(() => vault.encrypt(plaintext, incomplete)).toThrow(VaultError);
        expect(() => vault.decrypt(envelope, incomplete)).toThrow(VaultError);
      }
    }
  });

  it('binds the fields unambiguously (no shifting text between them)', () => {
    const left: VaultBinding = { tenantId: 't', table: 'Secret|value', column: 'x', recordId: 'r' };
    const right: VaultBinding = { tenantId: 't', table: 'Secret', column: 'value|x', recordId: 'r' };
    expectVaultError(() => vault.decrypt(vault.encrypt(plaintext, left), right));
  });

  it('encrypts with the per-tenant HKDF-SHA256 key and the JSON-array AAD it documents', () => {
    // Pins the on-disk format: a change here makes every stored secret unreadable.
    const envelope = vault.encrypt(plaintext, binding);
    const { version, nonce, sealed } = segments(envelope);
    const info = `idp-vault|${binding.tenantId}|${version}`;
    const tenantKey = Buffer.from(hkdfSync('sha256', keyA, Buffer.from('idp vault hkdf salt v1'), info, 32));
    const decipher = createDecipheriv('aes-256-gcm', tenantKey, nonce, { authTagLength: 16 });
    decipher.setAAD(Buffer.from(JSON.stringify(['v1', version, binding.tenantId, binding.table, binding.column, binding.recordId])));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const opened = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
    expect(opened.toString('utf8')).toBe(plaintext);
  });

  it('decrypts with a previous master key while encrypting under the current one', () => {
    const old = createVault({ masterKey: keyA });
    const rotated = createVault({ masterKey: keyB, previousMasterKeys: [keyA] });
    const envelope = old.encrypt(plaintext, binding);
    expect(rotated.keyVersion).not.toBe(old.keyVersion);
    expect(rotated.isCurrent(envelope)).toBe(false);
    expect(rotated.decryptString(envelope, binding)).toBe(plaintext);
    const fresh = rotated.encrypt(plaintext, binding);
    expect(rotated.isCurrent(fresh)).toBe(true);
    expect(fresh.startsWith(`v1.${masterKeyVersion(keyB)}.`)).toBe(true);
    expect(createVault({ masterKey: keyB }).decryptString(fresh, binding)).toBe(plaintext);
  });

  it('accepts previous keys in any order, and the current key among them', () => {
    const keyC = randomBytes(32);
    const envelope = createVault({ masterKey: keyA }).encrypt(plaintext, binding);
    const rotated = createVault({ masterKey: keyB, previousMasterKeys: [keyC, keyA, keyB] });
    expect(rotated.decryptString(envelope, binding)).toBe(plaintext);
  });

  it('rejects an envelope of an unknown key version', () => {
    const envelope = createVault({ masterKey: keyB }).encrypt(plaintext, binding);
    expectVaultError(() => vault.decrypt(envelope, binding));
  });

  it('rejects an envelope relabelled with another known key version', () => {
    const both = createVault({ masterKey: keyA, previousMasterKeys: [keyB] });
    const envelope = both.encrypt(plaintext, binding);
    const relabelled = envelope.replace(both.keyVersion, masterKeyVersion(keyB));
    expectVaultError(() => both.decrypt(relabelled, binding));
  });

  it.each([
    ['empty', ''],
    ['one segment', 'v1'],
    ['three segments', 'v1.0011223344556677.AAAAAAAAAAAAAAAA'],
    ['five segments', 'v1.0011223344556677.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AA'],
    ['empty segments', '...'],
    ['bad key version', 'v1.zz11223344556677.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA'],
    ['base64 alphabet', 'v1.0011223344556677.AAAAAAAAAAAAAA+/.AAAAAAAAAAAAAAAAAAAAAA'],
    ['padding', 'v1.0011223344556677.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA=='],
    ['whitespace', 'v1.0011223344556677.AAAAAAAAAAAAAAAA. AAAAAAAAAAAAAAAAAAAAAA'],
    ['short nonce', 'v1.0011223344556677.AAAA.AAAAAAAAAAAAAAAAAAAAAA'],
    ['short ciphertext', 'v1.0011223344556677.AAAAAAAAAAAAAAAA.AAAA'],
    ['unicode', 'v1.0011223344556677.ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ.AAAAAAAAAAAAAAAAAAAAAA'],
    ['json', '{"v":1}'],
    ['huge', `v1.0011223344556677.AAAAAAAAAAAAAAAA.${'A'.repeat(4 * 1024 * 1024)}`],
    ['huge junk', '.'.repeat(2 * 1024 * 1024)],
  ])('rejects a malformed envelope (%s) with VaultError', (_name, envelope) => {
    expectVaultError(() => vault.decrypt(envelope, binding));
    expect(vault.isCurrent(envelope)).toBe(false);
  });

  it('rejects values that are not strings without crashing', () => {
    for (const value of [undefined, null, 42, {}, Buffer.from('v1')]) {
      expectVaultError(() => vault.decrypt(value as unknown as string, binding));
    }
  });

  it('refuses master keys that are not 32 bytes', () => {
    for (const length of [0, 16, 31, 33, 64]) {
      expect(() => createVault({ masterKey: randomBytes(length) })).toThrow(VaultError);
      expect(() => createVault({ masterKey: keyA, previousMasterKeys: [randomBytes(length)] })).toThrow(VaultError);
    }
    expect(() => createVault({ masterKey: 'a'.repeat(32) as unknown as Buffer })).toThrow(VaultError);
  });

  it('keeps its own copy of the master key', () => {
    const key = Buffer.from(keyA);
    const own = createVault({ masterKey: key });
    const envelope = own.encrypt(plaintext, binding);
    key.fill(0);
    expect(own.decryptString(envelope, binding)).toBe(plaintext);
    expect(own.keyVersion).toBe(masterKeyVersion(keyA));
  });

  it('refuses to decode binary plaintext as a string', () => {
    const envelope = vault.encrypt(Buffer.from([0xff, 0xfe, 0x00]), binding);
    expect(() => vault.decryptString(envelope, binding)).toThrow(VaultError);
  });

  it('refuses oversized plaintexts', () => {
    expect(() => vault.encrypt(Buffer.alloc(1024 * 1024 + 1), binding)).toThrow(VaultError);
    expect(vault.decrypt(vault.encrypt(Buffer.alloc(1024 * 1024), binding), binding)).toHaveLength(1024 * 1024);
  });

  it('derives key versions that are stable and distinct', () => {
    expect(masterKeyVersion(keyA)).toBe(masterKeyVersion(Buffer.from(keyA)));
    expect(masterKeyVersion(keyA)).not.toBe(masterKeyVersion(keyB));
    expect(masterKeyVersion(keyA)).toMatch(/^[0-9a-f]{16}$/);
  });
});
