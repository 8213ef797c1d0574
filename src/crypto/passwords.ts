import argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { badRequest } from '../errors.js';

/** OWASP's minimum for Argon2id: 19 MiB, two passes, one lane. Configurable upward only. */
export interface PasswordParams {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

export const OWASP_ARGON2ID: PasswordParams = Object.freeze({ memoryKiB: 19_456, iterations: 2, parallelism: 1 });

/** Longer inputs are refused before hashing so they cannot be used to burn CPU. */
export const MAX_PASSWORD_BYTES = 1024;

/** Hashes imported from systems that used bcrypt; accepted until the user's next sign-in replaces them. */
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export function isBcryptHash(hash: string): boolean {
  return BCRYPT_HASH.test(hash);
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Verifies against `hash`, or against a dummy hash when there is none, so both cost the same. */
  verify(hash: string | null | undefined, password: string): Promise<boolean>;
  /** True when the hash was made with weaker or other parameters and should be replaced. */
  needsRehash(hash: string): boolean;
}

export function createPasswordHasher(params: PasswordParams = OWASP_ARGON2ID): PasswordHasher {
  if (params.memoryKiB < OWASP_ARGON2ID.memoryKiB || params.iterations < OWASP_ARGON2ID.iterations || params.parallelism < 1) {
    throw new Error('Argon2id parameters below the OWASP minimum (19 MiB, t=2, p=1)');
  }
  const options: argon2.HashOptions & { raw: false } = {
    type: argon2.argon2id,
    memoryCost: params.memoryKiB,
    timeCost: params.iterations,
    parallelism: params.parallelism,
    raw: false,
  };
  let dummy: Promise<string> | undefined;

  return {
    async hash(password) {
      assertAcceptableLength(password);
      return argon2.hash(password, options);
    },
    async verify(hash, password) {
      if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return false;
      // A legacy hash costs bcrypt's time, not Argon2's: that only tells apart
      // accounts not yet upgraded, and each is upgraded at its next sign-in.
      if (hash && isBcryptHash(hash)) return verifyBcrypt(hash, password);
      if (!hash?.startsWith('$argon2')) {
        dummy ??= argon2.hash('dummy password for timing equalisation', options);
        await argon2.verify(await dummy, password);
        return false;
      }
      try {
        return await argon2.verify(hash, password);
      } catch {
        return false;
      }
    },
    needsRehash(hash) {
      return !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, options);
    },
  };
}

async function verifyBcrypt(hash: string, password: string): Promise<boolean> {
  try {
    return await bcrypt.compare(password, hash);
  } catch {
    return false;
  }
}

export function assertAcceptableLength(password: string): void {
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) {
    throw badRequest(`password must be at most ${MAX_PASSWORD_BYTES} bytes`, 'invalid_password');
  }
}
