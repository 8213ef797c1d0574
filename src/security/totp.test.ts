import { describe, expect, it } from 'vitest';
import { checkTotp, groupedKey, newTotpSecret, normaliseTotpCode, TOTP_PERIOD_SECONDS, timeStepAt, totpCodeAt, totpUri } from './totp.js';

/** RFC 6238 appendix B: the SHA-1 seed and the 8-digit codes at the listed times (seconds). */
const RFC_SECRET = new TextEncoder().encode('12345678901234567890');
const RFC_VECTORS: [number, string][] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

const STEP_MS = TOTP_PERIOD_SECONDS * 1000;

describe('TOTP (RFC 6238, SHA-1, 6 digits, 30 s)', () => {
  it.each(RFC_VECTORS)('at T=%i gives the last six digits of %s', (seconds, eightDigits) => {
    // Dynamic truncation takes the code modulo 10^digits: a 6-digit code is the 8-digit one's tail.
    const expected = eightDigits.slice(-6);
    expect(totpCodeAt(RFC_SECRET, seconds * 1000)).toBe(expected);
    expect(checkTotp(RFC_SECRET, expected, seconds * 1000)).toEqual({ ok: true, step: Math.floor(seconds / 30) });
  });

  it('accepts the neighbouring step either side and refuses two steps out', () => {
    const secret = newTotpSecret();
    const now = 1_750_000_000_000;
    const step = timeStepAt(now);
    const code = totpCodeAt(secret, now);
    expect(checkTotp(secret, code, now - STEP_MS)).toEqual({ ok: true, step });
    expect(checkTotp(secret, code, now + STEP_MS)).toEqual({ ok: true, step });
    expect(checkTotp(secret, code, now + 2 * STEP_MS)).toEqual({ ok: false });
    expect(checkTotp(secret, code, now - 2 * STEP_MS)).toEqual({ ok: false });
  });

  it('refuses a code of a step already used, and of any earlier step, but not the next one', () => {
    const secret = newTotpSecret();
    const now = 1_750_000_000_000;
    const step = timeStepAt(now);
    const code = totpCodeAt(secret, now);
    expect(checkTotp(secret, code, now, step)).toEqual({ ok: false });
    expect(checkTotp(secret, code, now, step + 1)).toEqual({ ok: false });
    expect(checkTotp(secret, code, now, step - 1)).toEqual({ ok: true, step });
    const next = totpCodeAt(secret, now + STEP_MS);
    expect(checkTotp(secret, next, now + STEP_MS, step)).toEqual({ ok: true, step: step + 1 });
  });

  it('refuses malformed input without throwing', () => {
    const secret = newTotpSecret();
    const now = 1_750_000_000_000;
    for (const input of ['', '12345', '1234567', 'abcdef', '12345a', '１２３４５６', '123 45', ' '.repeat(6)]) {
      expect(checkTotp(secret, input, now)).toEqual({ ok: false });
    }
  });

  it('reads codes typed with spaces or a dash', () => {
    expect(normaliseTotpCode(' 123 456 ')).toBe('123456');
    expect(normaliseTotpCode('123-456')).toBe('123456');
    expect(normaliseTotpCode('12345')).toBeNull();
  });

  it('makes 160-bit base32 secrets, grouped by four for typing', () => {
    const secret = newTotpSecret();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(groupedKey(secret).replace(/ /g, '')).toBe(secret);
    expect(groupedKey('ABCDEFGHIJ')).toBe('ABCD EFGH IJ');
    expect(newTotpSecret()).not.toBe(secret);
  });

  it('puts issuer and account in the otpauth URI, without a colon that would split the label', () => {
    const uri = new URL(totpUri('Acme: Corp', 'ada@example.com', 'JBSWY3DPEHPK3PXP'));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/Acme Corp:ada@example.com');
    expect(uri.searchParams.get('secret')).toBe('JBSWY3DPEHPK3PXP');
    expect(uri.searchParams.get('issuer')).toBe('Acme Corp');
  });
});
