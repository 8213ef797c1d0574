import { z } from 'zod';
import { DEFAULT_MIN_LENGTH, MAX_MIN_LENGTH } from './password-policy.js';

/**
 * The account-protection sections of a tenant's settings (Tenant.settings
 * JSON), each optional with every field defaulted: a tenant that says nothing
 * gets the defaults below, one that sets a single field keeps the others.
 */

const count = (min: number, max: number, fallback: number) => z.number().int().min(min).max(max).default(fallback);

/** Failed sign-ins of one account within `windowMinutes` that lock it for `lockMinutes`. */
export const lockoutSettingsSchema = z.object({
  maxFailures: count(1, 100, 5),
  windowMinutes: count(1, 24 * 60, 15),
  lockMinutes: count(1, 24 * 60, 15),
});

/**
 * Per-IP limits of the hosted forms and the token endpoint, and the
 * credential-stuffing block: an IP whose failed sign-ins name
 * `stuffingDistinctAccounts` different addresses within
 * `stuffingWindowMinutes` is blocked for `stuffingBlockMinutes`. Loose, so
 * other limits (the management API quota) can live beside these.
 */
export const rateLimitSettingsSchema = z.looseObject({
  signInPerMinute: count(1, 10_000, 10),
  tokenPerMinute: count(1, 100_000, 10),
  stuffingDistinctAccounts: count(2, 10_000, 20),
  stuffingWindowMinutes: count(1, 24 * 60, 10),
  stuffingBlockMinutes: count(1, 7 * 24 * 60, 60),
});

export const passwordPolicySettingsSchema = z.object({
  minLength: count(DEFAULT_MIN_LENGTH, MAX_MIN_LENGTH, DEFAULT_MIN_LENGTH),
});

/** Self-service sign-up on the hosted pages; off unless a tenant turns it on. */
export const signupSettingsSchema = z.object({
  enabled: z.boolean().default(false),
});

export type LockoutSettings = z.infer<typeof lockoutSettingsSchema>;
export type RateLimitSettings = z.infer<typeof rateLimitSettingsSchema>;
export type SignupSettings = z.infer<typeof signupSettingsSchema>;

export const DEFAULT_LOCKOUT: LockoutSettings = Object.freeze(lockoutSettingsSchema.parse({}));
export const DEFAULT_RATE_LIMITS: RateLimitSettings = Object.freeze(rateLimitSettingsSchema.parse({}));
export const DEFAULT_SIGNUP: SignupSettings = Object.freeze(signupSettingsSchema.parse({}));

/** The fields tenantSettingsSchema spreads in. */
export const accountProtectionSettings = {
  lockout: lockoutSettingsSchema.optional(),
  rateLimits: rateLimitSettingsSchema.optional(),
  passwordPolicy: passwordPolicySettingsSchema.optional(),
  signup: signupSettingsSchema.optional(),
};

/** What the account-protection code reads from a tenant, defaults applied. */
export interface SecuritySettings {
  lockout: LockoutSettings;
  rateLimits: RateLimitSettings;
  signup: SignupSettings;
}

export function securitySettings(settings: {
  lockout?: LockoutSettings;
  rateLimits?: RateLimitSettings;
  signup?: SignupSettings;
}): SecuritySettings {
  return {
    lockout: settings.lockout ?? DEFAULT_LOCKOUT,
    rateLimits: settings.rateLimits ?? DEFAULT_RATE_LIMITS,
    signup: settings.signup ?? DEFAULT_SIGNUP,
  };
}
