import { z } from 'zod';
import { badRequest, conflict, notFound } from '../../errors.js';
import { emailFlowDeps, sendInvite } from '../../mail/flows.js';
import { revokeUserSessions } from '../../oidc/revoke.js';
import { unlockUser } from '../../security/lockout.js';
import type { Prisma, PrismaClient } from '../../store/db.js';
import { checkPasswordPolicy, emailSchema } from '../../users/users.js';
import { conflictOnDuplicate, displayName, iso, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { assertCanGrant } from '../rbac.js';
import { defineRoute, type RouteContext } from '../route.js';

const MAX_ROLES = 50;

export const User = z.object({
  id: z.uuid(),
  email: z.string(),
  email_verified: z.boolean(),
  name: z.string().nullable(),
  disabled: z.boolean(),
  roles: z.array(z.string()),
  has_password: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const UserPage = page(User);

const roleNames = z
  .array(z.string().min(1).max(100))
  .max(MAX_ROLES)
  .transform((names) => [...new Set(names)]);
const password = z.string().min(1).max(1024);

export const UserCreate = z.strictObject({
  email: emailSchema,
  password: password.optional(),
  name: displayName.optional(),
  email_verified: z.boolean().default(false),
  roles: roleNames.default([]),
});

export const UserInvite = z.strictObject({
  email: emailSchema,
  name: displayName.optional(),
  roles: roleNames.default([]),
});

export const Invitation = z.object({
  user: User,
  expires_at: timestamp.nullable(),
  /**
   * `sent`: handed to the SMTP transport; `outbox`: no SMTP_URL, so written to the
   * server log only (development); `failed`: the transport refused it (the user
   * exists; send the invitation again later).
   */
  delivery: z.enum(['sent', 'outbox', 'failed']),
});

export const UserUpdate = z.strictObject({
  email: emailSchema.optional(),
  name: displayName.nullable().optional(),
  email_verified: z.boolean().optional(),
  password: password.optional(),
});

export const MfaReset = z.object({ factors_removed: z.number().int(), recovery_codes_removed: z.number().int() });

const userParams = z.object({ userId: uuidParam });
const userInclude = { roleAssignments: { include: { role: { select: { name: true } } } } } as const;

type UserRow = Prisma.UserGetPayload<{ include: typeof userInclude }>;

function toUser(row: UserRow): z.input<typeof User> {
  return {
    id: row.id,
    email: row.email,
    email_verified: row.emailVerified,
    name: row.name,
    disabled: row.disabled,
    roles: row.roleAssignments.map((a) => a.role.name).sort(),
    has_password: row.passwordHash !== null,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

type Ctx = RouteContext<unknown, unknown, unknown>;

/**
 * Issues the single-use invitation token (7 days, stored hashed) and mails
 * its link (src/mail). A transport failure leaves the user in place and says
 * so, instead of failing a request whose main effect already happened.
 */
async function mailInvitation({ deps, tenant, actor, koa }: Ctx, userId: string) {
  try {
    const { expiresAt } = await sendInvite(emailFlowDeps(deps), tenant, userId, actor, {
      ip: koa.ip,
      userAgent: koa.get('user-agent') || null,
    });
    return { expires_at: iso(expiresAt), delivery: deps.mailer.kind === 'smtp' ? ('sent' as const) : ('outbox' as const) };
  } catch (error) {
    deps.logger.error({ err: error, tenantId: tenant.id, userId }, 'invitation mail failed');
    return { expires_at: null, delivery: 'failed' as const };
  }
}

async function findUser(prisma: PrismaClient | Prisma.TransactionClient, tenantId: string, userId: string): Promise<UserRow> {
  const user = await prisma.user.findFirst({ where: { id: userId, tenantId }, include: userInclude });
  if (!user) throw notFound('no such user');
  return user;
}

/** The tenant's roles named `names`, checked to exist and to grant nothing the caller lacks. */
async function grantableRoles({ deps, tenant, caller }: Ctx, names: string[]) {
  const roles = await deps.db.prisma.role.findMany({ where: { tenantId: tenant.id, name: { in: names } } });
  const missing = names.filter((name) => !roles.some((role) => role.name === name));
  if (missing.length) throw badRequest(`body.roles: unknown role ${missing.join(', ')}`, 'invalid_role');
  assertCanGrant(
    caller,
    roles.flatMap((role) => role.permissions),
  );
  return roles;
}

interface NewUser {
  email: string;
  name?: string;
  emailVerified: boolean;
  passwordHash: string | null;
  roleIds: string[];
}

function createUserRow(tx: Prisma.TransactionClient, tenantId: string, user: NewUser) {
  return tx.user.create({
    data: {
      tenantId,
      email: user.email,
      name: user.name ?? null,
      emailVerified: user.emailVerified,
      passwordHash: user.passwordHash,
      passwordChangedAt: user.passwordHash ? new Date() : null,
      roleAssignments: { create: user.roleIds.map((roleId) => ({ roleId })) },
    },
    include: userInclude,
  });
}

export const userRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/users',
    operationId: 'listUsers',
    summary: 'List users',
    tag: 'users',
    permission: 'users.read',
    query: z.object({
      ...paginationQuery,
      email: z.string().max(254).optional(),
      disabled: z.enum(['true', 'false']).optional(),
    }),
    response: UserPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.user.findMany({
        where: {
          tenantId: tenant.id,
          ...(after ? { id: { gt: after } } : {}),
          ...(query.email ? { email: query.email.trim().toLowerCase() } : {}),
          ...(query.disabled ? { disabled: query.disabled === 'true' } : {}),
        },
        include: userInclude,
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map(toUser), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users',
    operationId: 'createUser',
    summary: 'Create a user, optionally with a password and roles',
    tag: 'users',
    permission: 'users.write',
    body: UserCreate,
    response: User,
    status: 201,
    async handler(route) {
      const { deps, tenant, body, audit } = route;
      if (body.password !== undefined) checkPasswordPolicy(body.password);
      const roles = await grantableRoles(route as Ctx, body.roles);
      const passwordHash = body.password === undefined ? null : await deps.passwords.hash(body.password);
      const user = await deps.db.prisma
        .$transaction(async (tx) => {
          const created = await createUserRow(tx, tenant.id, {
            email: body.email,
            name: body.name,
            emailVerified: body.email_verified,
            passwordHash,
            roleIds: roles.map((r) => r.id),
          });
          await audit(
            { action: 'user.created', resource: { type: 'user', id: created.id }, metadata: { email: created.email, roles: body.roles } },
            tx,
          );
          return created;
        })
        .catch(conflictOnDuplicate('a user with this email already exists'));
      return toUser(user);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/invitations',
    operationId: 'inviteUser',
    summary: 'Invite a user by mail: creates the user without a password and a single-use invitation valid for 7 days',
    tag: 'users',
    permission: 'users.write',
    body: UserInvite,
    response: Invitation,
    status: 202,
    async handler(route) {
      const { deps, tenant, body, audit } = route;
      const roles = await grantableRoles(route as Ctx, body.roles);
      const user = await deps.db.prisma
        .$transaction(async (tx) => {
          const created = await createUserRow(tx, tenant.id, {
            email: body.email,
            name: body.name,
            emailVerified: false,
            passwordHash: null,
            roleIds: roles.map((r) => r.id),
          });
          await audit(
            { action: 'user.invited', resource: { type: 'user', id: created.id }, metadata: { email: created.email, roles: body.roles } },
            tx,
          );
          return created;
        })
        .catch(conflictOnDuplicate('a user with this email already exists'));
      return { user: toUser(user), ...(await mailInvitation(route as Ctx, user.id)) };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/{userId}/invitation',
    operationId: 'resendInvitation',
    summary: 'Mail a new invitation to a user who has not set a password yet (earlier links stop working)',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    response: Invitation,
    status: 202,
    async handler(route) {
      const { deps, tenant, params } = route;
      const user = await findUser(deps.db.prisma, tenant.id, params.userId);
      if (user.passwordHash) throw conflict('the user has already set a password');
      if (user.disabled) throw conflict('the user is disabled');
      return { user: toUser(user), ...(await mailInvitation(route as Ctx, user.id)) };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/users/{userId}',
    operationId: 'getUser',
    summary: 'Read a user',
    tag: 'users',
    permission: 'users.read',
    params: userParams,
    response: User,
    async handler({ deps, tenant, params }) {
      return toUser(await findUser(deps.db.prisma, tenant.id, params.userId));
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/users/{userId}',
    operationId: 'updateUser',
    summary: 'Change a user’s email, name, verification or password',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    body: UserUpdate,
    response: User,
    async handler({ deps, tenant, params, body, audit }) {
      if (body.password !== undefined) checkPasswordPolicy(body.password);
      const passwordHash = body.password === undefined ? undefined : await deps.passwords.hash(body.password);
      const user = await deps.db.prisma
        .$transaction(async (tx) => {
          const before = await findUser(tx, tenant.id, params.userId);
          const updated = await tx.user.update({
            where: { id: before.id },
            data: {
              ...(body.email !== undefined ? { email: body.email, emailVerified: body.email_verified ?? body.email === before.email } : {}),
              ...(body.name !== undefined ? { name: body.name } : {}),
              ...(body.email_verified !== undefined ? { emailVerified: body.email_verified } : {}),
              ...(passwordHash ? { passwordHash, passwordChangedAt: new Date(deps.clock.now()) } : {}),
            },
            include: userInclude,
          });
          await audit(
            {
              action: 'user.updated',
              resource: { type: 'user', id: before.id },
              metadata: {
                before: { email: before.email, name: before.name, email_verified: before.emailVerified },
                after: { email: updated.email, name: updated.name, email_verified: updated.emailVerified },
                password_changed: passwordHash !== undefined,
              },
            },
            tx,
          );
          return updated;
        })
        .catch(conflictOnDuplicate('a user with this email already exists'));
      return toUser(user);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/{userId}/disable',
    operationId: 'disableUser',
    summary: 'Disable a user: their sessions, grants and refresh tokens are revoked at once',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    response: User,
    async handler({ deps, tenant, params, audit }) {
      const user = await deps.db.prisma.$transaction(async (tx) => {
        const before = await findUser(tx, tenant.id, params.userId);
        const updated = await tx.user.update({ where: { id: before.id }, data: { disabled: true }, include: userInclude });
        const revoked = await revokeUserSessions(tx, tenant.id, before.id);
        await audit({ action: 'user.disabled', resource: { type: 'user', id: before.id }, metadata: { revoked_records: revoked } }, tx);
        return updated;
      });
      return toUser(user);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/{userId}/enable',
    operationId: 'enableUser',
    summary: 'Enable a disabled user',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    response: User,
    async handler({ deps, tenant, params, audit }) {
      const user = await deps.db.prisma.$transaction(async (tx) => {
        const before = await findUser(tx, tenant.id, params.userId);
        const updated = await tx.user.update({ where: { id: before.id }, data: { disabled: false }, include: userInclude });
        await audit({ action: 'user.enabled', resource: { type: 'user', id: before.id } }, tx);
        return updated;
      });
      return toUser(user);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/{userId}/unlock',
    operationId: 'unlockUser',
    summary: 'Clear a user’s failed sign-in counters and lockout',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    async handler({ deps, tenant, params, audit }) {
      const user = await findUser(deps.db.prisma, tenant.id, params.userId);
      await unlockUser(deps.kv, tenant.id, user.id);
      await audit({ action: 'user.unlocked', resource: { type: 'user', id: user.id } });
      return undefined;
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/users/{userId}/reset-mfa',
    operationId: 'resetUserMfa',
    summary: 'Remove a user’s second factors and recovery codes (they enroll again at next sign-in if required)',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    response: MfaReset,
    async handler({ deps, tenant, params, audit }) {
      return deps.db.prisma.$transaction(async (tx) => {
        const user = await findUser(tx, tenant.id, params.userId);
        const factors = await tx.mfaFactor.deleteMany({ where: { tenantId: tenant.id, userId: user.id } });
        const codes = await tx.recoveryCode.deleteMany({ where: { tenantId: tenant.id, userId: user.id } });
        const result = { factors_removed: factors.count, recovery_codes_removed: codes.count };
        await audit({ action: 'user.mfa_reset', resource: { type: 'user', id: user.id }, metadata: result }, tx);
        return result;
      });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/users/{userId}',
    operationId: 'deleteUser',
    summary: 'Delete a user, their sessions and tokens',
    tag: 'users',
    permission: 'users.write',
    params: userParams,
    async handler({ deps, tenant, params, audit }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const user = await findUser(tx, tenant.id, params.userId);
        const revoked = await revokeUserSessions(tx, tenant.id, user.id);
        await tx.user.delete({ where: { id: user.id } });
        await audit(
          { action: 'user.deleted', resource: { type: 'user', id: user.id }, metadata: { email: user.email, revoked_records: revoked } },
          tx,
        );
      });
      return undefined;
    },
  }),
];
