import { randomBytes } from 'node:crypto';
import { randomToken, sha256 } from '../crypto/random.js';

/**
 * `idp_<prefix>_<secret>`: the prefix is 8 base62 characters (never `_`), so
 * the first `_` after it separates the secret unambiguously even though the
 * base64url secret may itself contain `_`.
 */
const API_KEY = /^idp_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$/;
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const PREFIX_LENGTH = 8;

function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 × 62: bytes above it are dropped so every character is equally likely.
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

export interface NewApiKey {
  key: string;
  prefix: string;
  /** SHA-256 of the whole key: all that is stored besides the prefix. */
  keyHash: string;
}

export function newApiKey(): NewApiKey {
  const prefix = randomBase62(PREFIX_LENGTH);
  const key = `idp_${prefix}_${randomToken(32)}`;
  return { key, prefix, keyHash: sha256(key) };
}

export function apiKeyPrefix(token: string): string | undefined {
  return API_KEY.exec(token)?.[1];
}
