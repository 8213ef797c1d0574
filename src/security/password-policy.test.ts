import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { tenantSettingsSchema } from '../tenants/tenants.js';
import {
  assertPasswordPolicy,
  checkPassword,
  commonPasswordCount,
  isCommonPassword,
  MAX_MIN_LENGTH,
  passwordPolicyFrom,
} from './password-policy.js';
import { DEFAULT_LOCKOUT, DEFAULT_RATE_LIMITS, securitySettings } from './settings.js';

describe('password policy', () => {
  it('ships at least 10,000 common passwords and matches them whatever the case', () => {
    expect(commonPasswordCount()).toBeGreaterThanOrEqual(10_000);
    expect(isCommonPassword('password1')).toBe(true);
    expect(isCommonPassword('PassWord1')).toBe(true);
    expect(isCommonPassword('ILOVEYOU')).toBe(true);
    expect(checkPassword('Qwertyuiop')).toBe('too_common');
    expect(isCommonPassword('correct horse battery staple')).toBe(false);
  });

  it('wants 8 characters by default, counted as characters rather than bytes', () => {
    expect(checkPassword('7chars!')).toBe('too_short');
    expect(checkPassword('unusual8')).toBeNull();
    // Four characters of four bytes each are still four characters.
    expect(checkPassword('🔑🔑🔑🔑')).toBe('too_short');
    expect(checkPassword('🔑🔒🔓🗝🔑🔒🔓🗝')).toBeNull();
  });

  it('has no composition rules and accepts long passphrases up to 1024 bytes', () => {
    expect(checkPassword('all lower case words here')).toBeNull();
    expect(checkPassword('x'.repeat(64))).toBeNull();
    expect(checkPassword('y'.repeat(1024))).toBeNull();
    expect(checkPassword('y'.repeat(1025))).toBe('too_long');
    expect(checkPassword('é'.repeat(513))).toBe('too_long');
  });

  it('applies the tenant minimum, clamped to 8..64', () => {
    expect(checkPassword('twelve-chars', passwordPolicyFrom({ passwordPolicy: { minLength: 13 } }))).toBe('too_short');
    expect(passwordPolicyFrom({ passwordPolicy: { minLength: 4 } }).minLength).toBe(8);
    expect(passwordPolicyFrom({ passwordPolicy: { minLength: 500 } }).minLength).toBe(MAX_MIN_LENGTH);
    expect(passwordPolicyFrom({ passwordPolicy: { minLength: '12' } }).minLength).toBe(8);
    expect(passwordPolicyFrom(null).minLength).toBe(8);
  });

  it('refuses through the API with 400 invalid_password', () => {
    expect(() => assertPasswordPolicy('short')).toThrow('password must be at least 8 characters');
    try {
      assertPasswordPolicy('password123');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      expect(error).toMatchObject({ status: 400, code: 'invalid_password' });
    }
  });
});

describe('account-protection settings', () => {
  it('default every field and keep what a tenant set', () => {
    const parsed = tenantSettingsSchema.parse({ lockout: { maxFailures: 3 }, rateLimits: { tokenPerMinute: 100, apiPerMinute: 7 } });
    const settings = securitySettings(parsed);
    expect(settings.lockout).toEqual({ ...DEFAULT_LOCKOUT, maxFailures: 3 });
    expect(settings.rateLimits).toMatchObject({ ...DEFAULT_RATE_LIMITS, tokenPerMinute: 100, apiPerMinute: 7 });
    expect(settings.signup.enabled).toBe(false);
    expect(securitySettings({}).lockout).toEqual({ maxFailures: 5, windowMinutes: 15, lockMinutes: 15 });
    expect(DEFAULT_RATE_LIMITS).toMatchObject({
      signInPerMinute: 10,
      tokenPerMinute: 10,
      stuffingDistinctAccounts: 20,
      stuffingBlockMinutes: 60,
    });
  });

  it('refuse out-of-range values', () => {
    expect(tenantSettingsSchema.safeParse({ passwordPolicy: { minLength: 65 } }).success).toBe(false);
    expect(tenantSettingsSchema.safeParse({ passwordPolicy: { minLength: 7 } }).success).toBe(false);
    expect(tenantSettingsSchema.safeParse({ lockout: { maxFailures: 0 } }).success).toBe(false);
  });
});
