import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MAX_PASSWORD_BYTES } from '../crypto/passwords.js';
import { badRequest } from '../errors.js';

/**
 * NIST SP 800-63B's memorized-secret rules: a minimum length, room for long
 * passphrases, a blocklist of the most common passwords, and no composition
 * rules (they push people to predictable patterns such as `Password1!`).
 */

/** The floor every tenant gets; a tenant may require more, up to MAX_MIN_LENGTH. */
export const DEFAULT_MIN_LENGTH = 8;
export const MAX_MIN_LENGTH = 64;

export interface PasswordPolicy {
  /** In characters (code points), not bytes: a passphrase in any script counts what a person typed. */
  minLength: number;
}

export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = Object.freeze({ minLength: DEFAULT_MIN_LENGTH });

export type PasswordProblem = 'too_short' | 'too_long' | 'too_common';

/**
 * Shipped as a text file generated from zxcvbn-ts's ranked list (see
 * scripts/extract-common-passwords.mjs) rather than the package itself: the
 * server needs 18k strings, not 2 MB of compressed dictionaries, and a plain
 * file is reviewable. Read once per process; never mutated.
 */
const COMMON_PASSWORDS: ReadonlySet<string> = new Set(
  readFileSync(path.join(import.meta.dirname, 'common-passwords.txt'), 'utf8')
    .split('\n')
    .filter((line) => line && !line.startsWith('#')),
);

export function commonPasswordCount(): number {
  return COMMON_PASSWORDS.size;
}

export function isCommonPassword(password: string): boolean {
  return COMMON_PASSWORDS.has(password.toLowerCase());
}

/** A tenant's minimum from its settings (parsed or raw JSON), clamped into [8, 64] whatever is stored. */
export function passwordPolicyFrom(settings: unknown): PasswordPolicy {
  const section = settings && typeof settings === 'object' ? Reflect.get(settings, 'passwordPolicy') : undefined;
  const requested = section && typeof section === 'object' ? Reflect.get(section, 'minLength') : undefined;
  if (typeof requested !== 'number' || !Number.isInteger(requested)) return DEFAULT_PASSWORD_POLICY;
  return { minLength: Math.min(MAX_MIN_LENGTH, Math.max(DEFAULT_MIN_LENGTH, requested)) };
}

/** What is wrong with `password` under `policy`, or null when it is acceptable. */
export function checkPassword(password: string, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): PasswordProblem | null {
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return 'too_long';
  if ([...password].length < policy.minLength) return 'too_short';
  if (isCommonPassword(password)) return 'too_common';
  return null;
}

/** The sentence a person sees for a problem: what to do, not what rule fired. */
export function describePasswordProblem(problem: PasswordProblem, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): string {
  switch (problem) {
    case 'too_short':
      return `Choose a password of at least ${policy.minLength} characters.`;
    case 'too_long':
      return `Choose a password of at most ${MAX_PASSWORD_BYTES} bytes.`;
    case 'too_common':
      return 'This password is too common and easy to guess. Choose another one: a few unrelated words make a strong one.';
  }
}

const API_MESSAGES: Readonly<Record<PasswordProblem, (policy: PasswordPolicy) => string>> = Object.freeze({
  too_short: (policy: PasswordPolicy) => `password must be at least ${policy.minLength} characters`,
  too_long: () => `password must be at most ${MAX_PASSWORD_BYTES} bytes`,
  too_common: () => 'password is too common; choose another one',
});

/** For APIs and the CLI: throws a 400 `invalid_password` naming the rule. */
export function assertPasswordPolicy(password: string, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): void {
  const problem = checkPassword(password, policy);
  if (problem) throw badRequest(API_MESSAGES[problem](policy), 'invalid_password');
}
