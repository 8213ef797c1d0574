import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStores, type TestStores } from '../../test/helpers/stores.js';
import { createAuditLog } from '../audit/audit.js';
import { systemClock } from '../clock.js';
import { createPasswordHasher } from '../crypto/passwords.js';
import { createTenant } from '../tenants/tenants.js';
import { createUser } from '../users/users.js';
import {
  consumeRecoveryCode,
  generateRecoveryCodes,
  hashRecoveryCode,
  normaliseRecoveryCode,
  RECOVERY_CODE_COUNT,
  remainingRecoveryCodes,
  replaceRecoveryCodes,
} from './recovery-codes.js';

const FORMAT = /^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$/;

describe('recovery code format', () => {
  it('makes ten distinct codes of 12 Crockford base32 characters (60 bits each)', () => {
    const codes = generateRecoveryCodes();
    expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
    for (const code of codes) expect(code).toMatch(FORMAT);
    expect(new Set(codes).size).toBe(codes.length);
    // 32 symbols = 5 bits each: the hashing argument in recovery-codes.ts needs at least 50.
    expect(12 * Math.log2(32)).toBeGreaterThanOrEqual(50);
  });

  it('reads what people type: case, spaces, dashes and look-alike letters do not matter', () => {
    expect(normaliseRecoveryCode('ABCD-EFGH-JK01')).toBe('abcdefghjk01');
    expect(normaliseRecoveryCode(' abcd efgh jkO1 ')).toBe('abcdefghjk01');
    expect(normaliseRecoveryCode('abcdefghjkl1')).toBe('abcdefghjk11');
    expect(normaliseRecoveryCode('abcd-efgh-jk0')).toBeNull();
    expect(normaliseRecoveryCode('abcd-efgh-jk0u')).toBeNull();
    expect(normaliseRecoveryCode('123456')).toBeNull();
  });

  it('hashes per user, so one code is a different row for another user', () => {
    expect(hashRecoveryCode('a', 'abcdefghjk01')).not.toBe(hashRecoveryCode('b', 'abcdefghjk01'));
    expect(hashRecoveryCode('a', 'abcdefghjk01')).not.toContain('abcdefghjk01');
  });
});

describe('recovery codes in the database', () => {
  let stores: TestStores;
  let tenantId: string;
  let userId: string;
  const now = new Date('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    stores = await createTestStores();
    const prisma = stores.db.prisma;
    const audit = createAuditLog({ prisma, clock: systemClock });
    tenantId = (await createTenant({ prisma, audit }, { slug: 'codes' }, { type: 'system' })).id;
    userId = (
      await createUser({ prisma, audit, passwords: createPasswordHasher() }, tenantId, { email: 'codes@example.com' }, { type: 'system' })
    ).id;
  });
  afterAll(() => stores.close());

  it('stores only hashes, and accepts each code once', async () => {
    const codes = await replaceRecoveryCodes(stores.db.prisma, tenantId, userId);
    const rows = await stores.db.prisma.recoveryCode.findMany({ where: { tenantId, userId } });
    expect(rows).toHaveLength(RECOVERY_CODE_COUNT);
    for (const row of rows) for (const code of codes) expect(row.codeHash).not.toContain(code.replace(/-/g, ''));
    const [first = ''] = codes;
    expect(await consumeRecoveryCode(stores.db.prisma, tenantId, userId, first.toUpperCase(), now)).toBe(true);
    expect(await consumeRecoveryCode(stores.db.prisma, tenantId, userId, first, now)).toBe(false);
    expect(await remainingRecoveryCodes(stores.db.prisma, tenantId, userId)).toBe(RECOVERY_CODE_COUNT - 1);
    expect(await consumeRecoveryCode(stores.db.prisma, tenantId, userId, 'not a code', now)).toBe(false);
  });

  it('lets only one of two concurrent uses of a code through', async () => {
    const [code = ''] = await replaceRecoveryCodes(stores.db.prisma, tenantId, userId);
    const results = await Promise.all([
      consumeRecoveryCode(stores.db.prisma, tenantId, userId, code, now),
      consumeRecoveryCode(stores.db.prisma, tenantId, userId, code, now),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('invalidates the whole old set when regenerated', async () => {
    const old = await replaceRecoveryCodes(stores.db.prisma, tenantId, userId);
    const fresh = await replaceRecoveryCodes(stores.db.prisma, tenantId, userId);
    for (const code of old) expect(await consumeRecoveryCode(stores.db.prisma, tenantId, userId, code, now)).toBe(false);
    expect(await consumeRecoveryCode(stores.db.prisma, tenantId, userId, fresh[3] ?? '', now)).toBe(true);
    expect(await remainingRecoveryCodes(stores.db.prisma, tenantId, userId)).toBe(RECOVERY_CODE_COUNT - 1);
  });
});
