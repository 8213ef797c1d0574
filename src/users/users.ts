import { z } from 'zod';
import type { AuditEventInput, AuditLog } from '../audit/audit.js';
import type { PasswordHasher } from '../crypto/passwords.js';
import { badRequest, conflict } from '../errors.js';
import { assertPasswordPolicy, DEFAULT_MIN_LENGTH, type PasswordPolicy, passwordPolicyFrom } from '../security/password-policy.js';
import type { PrismaClient } from '../store/db.js';

export const MIN_PASSWORD_LENGTH = DEFAULT_MIN_LENGTH;

export const emailSchema = z
  .string()
  .trim()
  .max(254)
  .pipe(z.email())
  .transform((email) => email.toLowerCase());

export interface CreateUserInput {
  email: string;
  password?: string;
  name?: string;
  emailVerified?: boolean;
  /** Names of roles that exist in the tenant. */
  roles?: string[];
}

export interface UserDeps {
  prisma: PrismaClient;
  audit: AuditLog;
  passwords: PasswordHasher;
}

export function parseEmail(email: string): string {
  const parsed = emailSchema.safeParse(email);
  if (!parsed.success) throw badRequest('email is not a valid address', 'invalid_email');
  return parsed.data;
}

/** The password rules of src/security/password-policy.ts; throws 400 `invalid_password`. */
export function checkPasswordPolicy(password: string, minLength = MIN_PASSWORD_LENGTH): void {
  assertPasswordPolicy(password, passwordPolicyFrom({ passwordPolicy: { minLength } }));
}

/** The tenant's own minimum length applies to every password set for its users. */
async function tenantPasswordPolicy(prisma: PrismaClient, tenantId: string): Promise<PasswordPolicy> {
  const tenant = await prisma.tenant.findUnique({ where: { id: tenantId }, select: { settings: true } });
  return passwordPolicyFrom(tenant?.settings);
}

/** Creates a user with its role assignments and the audit event, all or nothing. */
export async function createUser(
  { prisma, audit, passwords }: UserDeps,
  tenantId: string,
  input: CreateUserInput,
  actor: AuditEventInput['actor'],
) {
  const email = parseEmail(input.email);
  if (input.password !== undefined) assertPasswordPolicy(input.password, await tenantPasswordPolicy(prisma, tenantId));
  const passwordHash = input.password === undefined ? null : await passwords.hash(input.password);
  const roleNames = [...new Set(input.roles ?? [])];
  const roles = await prisma.role.findMany({ where: { tenantId, name: { in: roleNames } } });
  const missing = roleNames.filter((name) => !roles.some((role) => role.name === name));
  if (missing.length) throw badRequest(`unknown role: ${missing.join(', ')}`, 'invalid_role');

  return prisma
    .$transaction(async (tx) => {
      const user = await tx.user.create({
        data: {
          tenantId,
          email,
          name: input.name?.trim().slice(0, 200) || null,
          emailVerified: input.emailVerified ?? false,
          passwordHash,
          roleAssignments: { create: roles.map((role) => ({ roleId: role.id })) },
        },
      });
      await audit.append(
        tenantId,
        { actor, action: 'user.created', resource: { type: 'user', id: user.id }, metadata: { email, roles: roleNames } },
        tx,
      );
      return user;
    })
    .catch((error: unknown) => {
      if ((error as { code?: string }).code === 'P2002') throw conflict('a user with this email already exists');
      throw error;
    });
}
