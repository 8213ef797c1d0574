import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PasswordHasher } from '../../src/crypto/passwords.js';
import type { TenantContext } from '../../src/tenants/tenants.js';
import { type AuthenticateDeps, authenticatePassword } from '../../src/users/authenticate.js';
import { createUser } from '../../src/users/users.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';

const META = { ip: '203.0.113.7', userAgent: 'vitest-agent/1.0', clientId: 'client-abc' };
const ACTOR = { type: 'system' as const, id: 'test' };

let test: TestApp;
let tenant: TenantContext;

/** The real hasher, with every call counted, so tests can tell whether a password was hashed at all. */
function spiedHasher(real: PasswordHasher) {
  return {
    hash: vi.fn((password: string) => real.hash(password)),
    verify: vi.fn((hash: string | null | undefined, password: string) => real.verify(hash, password)),
    needsRehash: vi.fn((hash: string) => real.needsRehash(hash)),
  };
}

function authDeps(passwords: PasswordHasher = test.deps.passwords): AuthenticateDeps {
  return { prisma: test.deps.db.prisma, passwords, audit: test.deps.audit };
}

async function lastAuditEvent(action: string) {
  return test.deps.db.prisma.auditEvent.findFirst({ where: { tenantId: tenant.id, action }, orderBy: { seq: 'desc' } });
}

async function makeUser(email: string, data: { password?: string; passwordHash?: string; disabled?: boolean } = {}) {
  const user = await createUser(
    { prisma: test.deps.db.prisma, audit: test.deps.audit, passwords: test.deps.passwords },
    tenant.id,
    { email, password: data.password },
    ACTOR,
  );
  if (data.passwordHash !== undefined || data.disabled !== undefined) {
    return test.deps.db.prisma.user.update({
      where: { id: user.id },
      data: { passwordHash: data.passwordHash, disabled: data.disabled },
    });
  }
  return user;
}

beforeAll(async () => {
  test = await createTestApp({ seed: true });
  const found = await test.deps.tenants.bySlug('default');
  if (!found) throw new Error('seeded tenant missing');
  tenant = found;
});
afterAll(() => test?.close());

describe('authenticatePassword', () => {
  it('accepts the right password, whatever the case and spacing of the address, and audits the success', async () => {
    const result = await authenticatePassword(authDeps(), tenant, '  Admin@Example.COM ', TEST_ADMIN_PASSWORD, META);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.user.email).toBe('admin@example.com');

    const event = await lastAuditEvent('auth.sign_in.succeeded');
    expect(event).toMatchObject({
      actorType: 'user',
      actorId: result.user.id,
      resourceType: 'user',
      resourceId: result.user.id,
      ip: META.ip,
      userAgent: META.userAgent,
    });
    expect(event?.metadata).toMatchObject({ method: 'password', client_id: META.clientId });
  });

  it('refuses a wrong password and records bad_password only in the audit trail', async () => {
    const result = await authenticatePassword(authDeps(), tenant, 'admin@example.com', 'not-the-password', META);
    expect(result).toEqual({ ok: false });
    const event = await lastAuditEvent('auth.sign_in.failed');
    expect(event).toMatchObject({ actorType: 'anonymous', resourceType: 'user', ip: META.ip, userAgent: META.userAgent });
    expect(event?.metadata).toMatchObject({ reason: 'bad_password', client_id: META.clientId });
  });

  it('refuses an unknown address with the same answer, after a password verification of the same cost', async () => {
    const passwords = spiedHasher(test.deps.passwords);
    const result = await authenticatePassword(authDeps(passwords), tenant, 'nobody@example.com', 'whatever-password', META);
    expect(result).toEqual({ ok: false });
    // Verified against the dummy hash (null), exactly as often as for a known user.
    expect(passwords.verify).toHaveBeenCalledTimes(1);
    expect(passwords.verify).toHaveBeenCalledWith(null, 'whatever-password');
    const event = await lastAuditEvent('auth.sign_in.failed');
    expect(event?.resourceId).toBeNull();
    expect(event?.metadata).toMatchObject({ reason: 'unknown_user' });
    expect(JSON.stringify(event?.metadata)).not.toContain('nobody@example.com');
  });

  it('refuses a disabled user even with the right password, after verifying it', async () => {
    const user = await makeUser('disabled@example.com', { password: 'correct-horse-1', disabled: true });
    const passwords = spiedHasher(test.deps.passwords);
    const result = await authenticatePassword(authDeps(passwords), tenant, 'disabled@example.com', 'correct-horse-1', META);
    expect(result).toEqual({ ok: false });
    expect(passwords.verify).toHaveBeenCalledTimes(1);
    const event = await lastAuditEvent('auth.sign_in.failed');
    expect(event?.resourceId).toBe(user.id);
    expect(event?.metadata).toMatchObject({ reason: 'user_disabled' });
  });

  it('refuses a user without a password (federated only) at the cost of a dummy verification', async () => {
    await makeUser('sso-only@example.com');
    const passwords = spiedHasher(test.deps.passwords);
    const result = await authenticatePassword(authDeps(passwords), tenant, 'sso-only@example.com', '', META);
    expect(result).toEqual({ ok: false });
    expect(passwords.verify).toHaveBeenCalledWith(null, '');
    expect((await lastAuditEvent('auth.sign_in.failed'))?.metadata).toMatchObject({ reason: 'no_password' });
  });

  it.each(['$2a$', '$2b$', '$2y$'])('accepts a legacy bcrypt %s hash once and replaces it with Argon2id', async (prefix) => {
    const email = `legacy-${prefix.slice(2, 3)}@example.com`;
    const legacy = `${prefix}${(await bcrypt.hash('legacy-password', 4)).slice(4)}`;
    const user = await makeUser(email, { passwordHash: legacy });

    expect((await authenticatePassword(authDeps(), tenant, email, 'wrong-password', META)).ok).toBe(false);
    expect((await test.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).passwordHash).toBe(legacy);

    expect((await authenticatePassword(authDeps(), tenant, email, 'legacy-password', META)).ok).toBe(true);
    const stored = (await test.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).passwordHash ?? '';
    expect(stored.startsWith('$argon2id$')).toBe(true);
    expect((await lastAuditEvent('auth.sign_in.succeeded'))?.metadata).toMatchObject({ hash_upgraded: true });

    // The new hash works, and needs no further upgrade.
    expect((await authenticatePassword(authDeps(), tenant, email, 'legacy-password', META)).ok).toBe(true);
    expect((await test.deps.db.prisma.user.findUniqueOrThrow({ where: { id: user.id } })).passwordHash).toBe(stored);
  });

  it('refuses a password over 1024 bytes without hashing or verifying it', async () => {
    const passwords = spiedHasher(test.deps.passwords);
    const long = 'é'.repeat(513); // 1026 bytes, 513 characters
    const result = await authenticatePassword(authDeps(passwords), tenant, 'admin@example.com', long, META);
    expect(result).toEqual({ ok: false });
    expect(passwords.verify).not.toHaveBeenCalled();
    expect(passwords.hash).not.toHaveBeenCalled();
    expect((await lastAuditEvent('auth.sign_in.failed'))?.metadata).toMatchObject({ reason: 'password_too_long' });
  });

  it('never writes the password to the audit trail', async () => {
    await authenticatePassword(authDeps(), tenant, 'admin@example.com', 'secret-typed-password', META);
    const events = await test.deps.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id } });
    expect(JSON.stringify(events, (_key, value) => (typeof value === 'bigint' ? String(value) : value))).not.toContain(
      'secret-typed-password',
    );
  });
});
