import argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppError } from '../errors.js';
import { createPasswordHasher, isBcryptHash, MAX_PASSWORD_BYTES, OWASP_ARGON2ID } from './passwords.js';

const hasher = createPasswordHasher();

/** The algorithm and parameters of a PHC string; the order of m, t, p differs between Argon2 libraries. */
function phc(hash: string): { id: string; version: string; m: number; t: number; p: number; salt: string; digest: string } {
  const match = /^\$(argon2(?:id|i|d))\$v=(\d+)\$([^$]+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(hash);
  if (!match) throw new Error(`not an Argon2 PHC string: ${hash}`);
  const params = Object.fromEntries((match[3] ?? '').split(',').map((pair) => pair.split('=') as [string, string]));
  return {
    id: match[1] ?? '',
    version: match[2] ?? '',
    m: Number(params.m),
    t: Number(params.t),
    p: Number(params.p),
    salt: match[4] ?? '',
    digest: match[5] ?? '',
  };
}
const OWASP = { id: 'argon2id', version: '19', m: 19_456, t: 2, p: 1 };

afterEach(() => {
  vi.restoreAllMocks();
});

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

describe('password hashing: parameters, limits and the unknown-user path', () => {
  it('hashes with Argon2id at OWASP’s parameters, salted', async () => {
    const [a, b] = await Promise.all([hasher.hash('correct horse battery staple'), hasher.hash('correct horse battery staple')]);
    expect(phc(a)).toMatchObject(OWASP);
    expect(phc(b)).toMatchObject(OWASP);
    expect(Buffer.from(phc(a).salt, 'base64').length).toBeGreaterThanOrEqual(16);
    // A fresh salt each time: equal passwords must not be recognisable from their hashes.
    expect(a).not.toBe(b);
    expect(a).not.toContain('correct horse');
  });

  it('verifies the right password and refuses a wrong one', async () => {
    const hash = await hasher.hash('correct horse battery staple');
    expect(await hasher.verify(hash, 'correct horse battery staple')).toBe(true);
    expect(await hasher.verify(hash, 'correct horse battery stapl')).toBe(false);
    expect(await hasher.verify(hash, 'Correct horse battery staple')).toBe(false);
    expect(await hasher.verify(hash, '')).toBe(false);
  });

  it('compares Unicode passwords byte for byte (no normalisation surprises)', async () => {
    const hash = await hasher.hash('pässwörd-🔐');
    expect(await hasher.verify(hash, 'pässwörd-🔐')).toBe(true);
    // The same text in decomposed form is a different byte string.
    expect(await hasher.verify(hash, 'pässwörd-🔐'.normalize('NFD'))).toBe(false);
  });

  it(`accepts exactly ${MAX_PASSWORD_BYTES} bytes and refuses one more, counting bytes, not characters`, async () => {
    const longest = 'a'.repeat(MAX_PASSWORD_BYTES);
    expect(await hasher.verify(await hasher.hash(longest), longest)).toBe(true);

    const tooLong = 'a'.repeat(MAX_PASSWORD_BYTES + 1);
    await expect(hasher.hash(tooLong)).rejects.toSatisfy(
      (error: unknown) => error instanceof AppError && error.status === 400 && error.code === 'invalid_password',
    );
    // 342 characters, 1,026 bytes in UTF-8.
    await expect(hasher.hash('€'.repeat(342))).rejects.toBeInstanceOf(AppError);
  });

  it('answers false for an over-long password without running Argon2 (no CPU burnt on it)', async () => {
    const hash = await hasher.hash('short and fine');
    const verify = vi.spyOn(argon2, 'verify');
    const hashing = vi.spyOn(argon2, 'hash');
    expect(await hasher.verify(hash, 'x'.repeat(MAX_PASSWORD_BYTES + 1))).toBe(false);
    expect(await hasher.verify(null, 'x'.repeat(100_000))).toBe(false);
    expect(verify).not.toHaveBeenCalled();
    expect(hashing).not.toHaveBeenCalled();
  });

  it('answers false for a user without a hash, after spending the same Argon2 work', async () => {
    const verify = vi.spyOn(argon2, 'verify');
    expect(await hasher.verify(null, 'any password')).toBe(false);
    expect(await hasher.verify(undefined, 'any password')).toBe(false);
    expect(await hasher.verify('', 'any password')).toBe(false);
    // One Argon2 verification per call, against a dummy hash of the same parameters as real ones.
    expect(verify).toHaveBeenCalledTimes(3);
    for (const [dummy] of verify.mock.calls) expect(phc(dummy)).toMatchObject(OWASP);
  });

  it('answers false, not an exception, for a corrupt stored hash', async () => {
    expect(await hasher.verify('$argon2id$v=19$m=19456,t=2,p=1$garbage', 'pw')).toBe(false);
    expect(await hasher.verify('$argon2id$', 'pw')).toBe(false);
    expect(await hasher.verify('plaintext-password', 'plaintext-password')).toBe(false);
  });

  it('refuses parameters below the OWASP minimum', () => {
    expect(() => createPasswordHasher({ ...OWASP_ARGON2ID, memoryKiB: 19_455 })).toThrow(/OWASP/);
    expect(() => createPasswordHasher({ ...OWASP_ARGON2ID, iterations: 1 })).toThrow(/OWASP/);
    expect(() => createPasswordHasher({ ...OWASP_ARGON2ID, parallelism: 0 })).toThrow(/OWASP/);
  });

  it('accepts stronger parameters and writes them into the hash', async () => {
    const stronger = createPasswordHasher({ memoryKiB: 32_768, iterations: 3, parallelism: 1 });
    const hash = await stronger.hash('correct horse battery staple');
    expect(phc(hash)).toMatchObject({ id: 'argon2id', m: 32_768, t: 3, p: 1 });
    // Verification reads the parameters from the hash, so any hasher verifies it.
    expect(await hasher.verify(hash, 'correct horse battery staple')).toBe(true);
    expect(stronger.needsRehash(hash)).toBe(false);
  });
});

describe('needsRehash', () => {
  it('is false for a hash made with the current parameters', async () => {
    expect(hasher.needsRehash(await hasher.hash('pw-current'))).toBe(false);
  });

  it('is true for Argon2id hashes with weaker parameters, which still verify', async () => {
    const weak = await argon2.hash('pw-weak', { type: argon2.argon2id, memoryCost: 4_096, timeCost: 1, parallelism: 1 });
    expect(await hasher.verify(weak, 'pw-weak')).toBe(true);
    expect(hasher.needsRehash(weak)).toBe(true);
  });

  it('is true for other Argon2 variants (bcrypt is covered above)', async () => {
    const argon2i = await argon2.hash('pw-2i', { type: argon2.argon2i, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
    expect(await hasher.verify(argon2i, 'pw-2i')).toBe(true);
    expect(hasher.needsRehash(argon2i)).toBe(true);
  });
});
