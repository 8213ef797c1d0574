import { generateSecret, generateSync, generateURI, verifySync } from 'otplib';

/**
 * RFC 6238 time-based one-time passwords as every authenticator app computes
 * them by default (Google Authenticator, Authy, 1Password): HMAC-SHA-1,
 * 6 digits, 30-second steps from the Unix epoch. Pure functions of the secret
 * and a time the caller passes in (its injected clock), so tests move time.
 */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one: phones drift and people type slowly. Two steps out is refused. */
export const TOTP_SKEW_STEPS = 1;
/** 20 random bytes (160 bits): RFC 4226's recommended secret length for HMAC-SHA-1. */
const SECRET_BYTES = 20;

const CODE = /^\d{6}$/;

/** A fresh shared secret, base32 as authenticator apps expect it. */
export function newTotpSecret(): string {
  return generateSecret({ length: SECRET_BYTES });
}

/** What someone types: digits, maybe grouped with spaces ("123 456"); null unless it is exactly six digits. */
export function normaliseTotpCode(input: string): string | null {
  const code = input.replace(/[\s-]/g, '');
  return CODE.test(code) ? code : null;
}

/** The time step a moment falls in (RFC 6238 T with T0 = 0). */
export function timeStepAt(nowMs: number): number {
  return Math.floor(nowMs / 1000 / TOTP_PERIOD_SECONDS);
}

/** The code for `nowMs`: what the user's app shows then (tests use it as the app). */
export function totpCodeAt(secret: string | Uint8Array, nowMs: number): string {
  return generateSync({ secret, epoch: Math.floor(nowMs / 1000), digits: TOTP_DIGITS, period: TOTP_PERIOD_SECONDS, algorithm: 'sha1' });
}

export type TotpCheck = { ok: true; step: number } | { ok: false };

/**
 * Whether `code` is right for a step within ±1 of `nowMs` and later than
 * `afterStep` (the last step this factor accepted): a code seen once is never
 * accepted again, nor is any older one. The caller must still record the
 * returned step atomically (see mfa.ts), or two concurrent submissions of one
 * code could both pass this check.
 */
export function checkTotp(secret: string | Uint8Array, input: string, nowMs: number, afterStep?: number | null): TotpCheck {
  const token = normaliseTotpCode(input);
  if (!token) return { ok: false };
  const result = verifySync({
    secret,
    token,
    epoch: Math.floor(nowMs / 1000),
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
    algorithm: 'sha1',
    // In seconds: ±30 s around now reaches exactly the neighbouring step on each side.
    epochTolerance: TOTP_SKEW_STEPS * TOTP_PERIOD_SECONDS,
    ...(afterStep === undefined || afterStep === null ? {} : { afterTimeStep: afterStep }),
  });
  // The result type covers HOTP too; a TOTP match always carries its time step.
  return result.valid && 'timeStep' in result ? { ok: true, step: result.timeStep } : { ok: false };
}

/** The otpauth:// URI a QR code carries. A colon would end the issuer part of the label, so it is dropped. */
export function totpUri(issuer: string, account: string, secret: string): string {
  const cleanIssuer = issuer.replace(/:/g, '').trim() || 'Identity';
  return generateURI({ issuer: cleanIssuer, label: account.replace(/:/g, ''), secret });
}

/** The secret as people copy it by hand: groups of four. */
export function groupedKey(secret: string): string {
  return secret.match(/.{1,4}/g)?.join(' ') ?? secret;
}

/**
 * The otpauth URI as a QR code in a `data:` PNG, made here so the secret never
 * goes to a third-party QR service and the page needs no script (its CSP
 * allows `img-src data:`). Medium error correction survives a phone camera.
 */
export async function totpQrDataUrl(uri: string): Promise<string> {
  // qrcode (with its PNG encoder, ~8 MB resident) serves only MFA enrolment: loaded then, not at start-up (issue 8).
  const { default: QRCode } = await import('qrcode');
  return QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 240 });
}
