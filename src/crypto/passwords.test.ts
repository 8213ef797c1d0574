import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { createPasswordHasher, isBcryptHash, MAX_PASSWORD_BYTES } from './passwords.js';

const hasher = createPasswordHasher();

describe('password hasher', () => {
  it('hashes with Argon2id and verifies', async () => {
    const hash = await hasher.hash('correct horse');
    expect(hash.startsWith('$argon2id$')).toBe(true);
    expect(await hasher.verify(hash, 'correct horse')).toBe(true);
    expect(await hasher.verify(hash, 'wrong horse')).toBe(false);
    expect(hasher.needsRehash(hash)).toBe(false);
  });

  it('verifies legacy bcrypt hashes and always asks for them to be replaced', async () => {
    const legacy = await bcrypt.hash('legacy', 4);
    expect(isBcryptHash(legacy)).toBe(true);
    expect(await hasher.verify(legacy, 'legacy')).toBe(true);
    expect(await hasher.verify(legacy, 'other')).toBe(false);
    expect(hasher.needsRehash(legacy)).toBe(true);
  });

  it('treats malformed and missing hashes as a failed verification, not an error', async () => {
    expect(isBcryptHash('$2b$04$tooshort')).toBe(false);
    expect(await hasher.verify('$2b$04$tooshort', 'x')).toBe(false);
    expect(await hasher.verify('$argon2id$garbage', 'x')).toBe(false);
    expect(await hasher.verify(null, 'x')).toBe(false);
  });

  it('refuses to hash, and fails to verify, passwords over the byte limit', async () => {
    const long = 'a'.repeat(MAX_PASSWORD_BYTES + 1);
    await expect(hasher.hash(long)).rejects.toMatchObject({ status: 400 });
    expect(await hasher.verify(await hasher.hash('a'), long)).toBe(false);
  });
});
