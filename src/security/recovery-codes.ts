import { randomInt } from 'node:crypto';
import { sha256 } from '../crypto/random.js';
import type { Prisma, PrismaClient } from '../store/db.js';

/**
 * Recovery codes: ten single-use codes shown once when a factor is enrolled,
 * for the day the phone is lost. Each is 12 characters of Crockford base32
 * (60 random bits), shown as `xxxx-xxxx-xxxx`.
 *
 * Stored as SHA-256 of the user id and the normalised code. A slow password
 * hash is not needed here: with 60 bits of entropy per code, an attacker who
 * steals the table still faces 2^60 guesses per code, which a fast hash does
 * not make feasible; salting with the user id keeps identical codes (were they
 * ever drawn) from colliding across users.
 */
export const RECOVERY_CODE_COUNT = 10;
const CODE_LENGTH = 12;
const GROUP = 4;
/** Crockford's alphabet: no I, L, O or U, so codes survive being read aloud or copied by hand. */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

type Db = PrismaClient | Prisma.TransactionClient;

/** Fresh codes, formatted for display. */
export function generateRecoveryCodes(count = RECOVERY_CODE_COUNT): string[] {
  return Array.from({ length: count }, () => {
    const raw = Array.from({ length: CODE_LENGTH }, () => ALPHABET.charAt(randomInt(ALPHABET.length))).join('');
    return raw.match(new RegExp(`.{${GROUP}}`, 'g'))?.join('-') ?? raw;
  });
}

/**
 * What was typed, as stored: case, spaces and dashes do not matter, and the
 * letters Crockford reads as digits (o → 0, i/l → 1) are read that way. Null
 * for anything that cannot be a recovery code.
 */
export function normaliseRecoveryCode(input: string): string | null {
  const code = input.toLowerCase().replace(/[\s-]/g, '').replace(/o/g, '0').replace(/[il]/g, '1');
  if (code.length !== CODE_LENGTH) return null;
  return [...code].every((char) => ALPHABET.includes(char)) ? code : null;
}

export function hashRecoveryCode(userId: string, normalised: string): string {
  return sha256(`${userId}:${normalised}`);
}

/**
 * Replaces the user's codes with a fresh set and returns it (the only time the
 * codes exist in clear). Run inside a transaction so the old set is gone
 * exactly when the new one exists.
 */
export async function replaceRecoveryCodes(db: Db, tenantId: string, userId: string): Promise<string[]> {
  const codes = generateRecoveryCodes();
  await db.recoveryCode.deleteMany({ where: { tenantId, userId } });
  await db.recoveryCode.createMany({
    data: codes.map((code) => ({ tenantId, userId, codeHash: hashRecoveryCode(userId, normaliseRecoveryCode(code) ?? code) })),
  });
  return codes;
}

/**
 * Marks the code used if it is one of the user's unused codes. One
 * conditional update: of two concurrent submissions of a code, one wins.
 */
export async function consumeRecoveryCode(db: Db, tenantId: string, userId: string, input: string, now: Date): Promise<boolean> {
  const normalised = normaliseRecoveryCode(input);
  if (!normalised) return false;
  const { count } = await db.recoveryCode.updateMany({
    where: { tenantId, userId, codeHash: hashRecoveryCode(userId, normalised), usedAt: null },
    data: { usedAt: now },
  });
  return count === 1;
}

export function remainingRecoveryCodes(db: Db, tenantId: string, userId: string): Promise<number> {
  return db.recoveryCode.count({ where: { tenantId, userId, usedAt: null } });
}
