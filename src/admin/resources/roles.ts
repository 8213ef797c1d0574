import { z } from 'zod';
import { AppError, badRequest, conflict, notFound } from '../../errors.js';
import type { Prisma } from '../../store/db.js';
import { conflictOnDuplicate, description, iso, page, pageOf, paginationQuery, timestamp, uuidParam } from '../http.js';
import { assertCanGrant, permissionList } from '../rbac.js';
import { defineRoute } from '../route.js';
import { syncServiceAccountClient } from './service-accounts.js';

export const Role = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  permissions: z.array(z.string()),
  builtin: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
});
export const RolePage = page(Role);

const roleName = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$/, {
    message: 'must be 1–64 letters, digits, spaces or _ . : -, starting with a letter or digit',
  });

export const RoleCreate = z.strictObject({
  name: roleName,
  description: description.optional(),
  permissions: permissionList(),
});

export const RoleUpdate = z
  .strictObject({
    name: roleName.optional(),
    description: description.nullable().optional(),
    /** Replaces the permission set. */
    permissions: permissionList().optional(),
    /** Added to the current set (atomic under concurrent updates, unlike a read-modify-write by the caller). */
    add_permissions: permissionList().optional(),
    remove_permissions: permissionList().optional(),
  })
  .refine((body) => !(body.permissions && (body.add_permissions || body.remove_permissions)), {
    message: 'give either permissions or add_permissions/remove_permissions, not both',
    path: ['permissions'],
  });

export const Assignment = z.object({
  id: z.uuid(),
  role_id: z.uuid(),
  user_id: z.uuid().nullable(),
  service_account_id: z.uuid().nullable(),
  created_at: timestamp,
});
export const AssignmentPage = page(Assignment);

export const AssignmentCreate = z
  .strictObject({ user_id: uuidParam.optional(), service_account_id: uuidParam.optional() })
  .refine((body) => (body.user_id === undefined) !== (body.service_account_id === undefined), {
    message: 'give exactly one of user_id and service_account_id',
  });

type RoleRow = {
  id: string;
  name: string;
  description: string | null;
  permissions: string[];
  builtin: boolean;
  createdAt: Date;
  updatedAt: Date;
};

function toRole(row: RoleRow): z.input<typeof Role> {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    permissions: [...row.permissions].sort(),
    builtin: row.builtin,
    created_at: iso(row.createdAt),
    updated_at: iso(row.updatedAt),
  };
}

/** A strong validator of the role's version, for If-Match. */
const etagOf = (row: { updatedAt: Date }) => `"${row.updatedAt.getTime().toString(36)}"`;

function toAssignment(row: { id: string; roleId: string; userId: string | null; serviceAccountId: string | null; createdAt: Date }) {
  return {
    id: row.id,
    role_id: row.roleId,
    user_id: row.userId,
    service_account_id: row.serviceAccountId,
    created_at: iso(row.createdAt),
  };
}

const MAX_PERMISSIONS_AFTER_UPDATE = 100;
const roleParams = z.object({ roleId: uuidParam });
const builtinIsFixed = () => conflict('built-in roles are fixed: they cannot be changed or deleted');

/** The role row, locked for the rest of the transaction so concurrent updates apply one after the other. */
async function lockRole(tx: Prisma.TransactionClient, tenantId: string, roleId: string): Promise<RoleRow> {
  const [row] = await tx.$queryRaw<RoleRow[]>`
    SELECT * FROM "Role" WHERE id = ${roleId}::uuid AND "tenantId" = ${tenantId}::uuid FOR UPDATE`;
  if (!row) throw notFound('no such role');
  return row;
}

async function findRole(db: Prisma.TransactionClient, tenantId: string, roleId: string) {
  const role = await db.role.findFirst({ where: { id: roleId, tenantId } });
  if (!role) throw notFound('no such role');
  return role;
}

/** Service accounts holding the role get their client's allowed scopes recomputed. */
async function syncHolders(tx: Prisma.TransactionClient, tenantId: string, roleId: string): Promise<number> {
  const holders = await tx.roleAssignment.findMany({
    where: { tenantId, roleId, serviceAccountId: { not: null } },
    select: { serviceAccountId: true },
  });
  for (const holder of holders) if (holder.serviceAccountId) await syncServiceAccountClient(tx, tenantId, holder.serviceAccountId);
  return holders.length;
}

function nextPermissions(before: string[], body: z.output<typeof RoleUpdate>): string[] {
  if (body.permissions) return body.permissions;
  const set = new Set(before);
  for (const p of body.add_permissions ?? []) set.add(p);
  for (const p of body.remove_permissions ?? []) set.delete(p);
  const next = [...set].sort();
  if (next.length > MAX_PERMISSIONS_AFTER_UPDATE)
    throw badRequest(`body.add_permissions: a role holds at most ${MAX_PERMISSIONS_AFTER_UPDATE} permissions`);
  return next;
}

export const roleRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/roles',
    operationId: 'listRoles',
    summary: 'List roles, built-in and custom',
    tag: 'roles',
    permission: 'roles.read',
    query: z.object(paginationQuery),
    response: RolePage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.role.findMany({
        where: { tenantId: tenant.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map(toRole), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/roles',
    operationId: 'createRole',
    summary: 'Create a custom role',
    tag: 'roles',
    permission: 'roles.write',
    body: RoleCreate,
    response: Role,
    status: 201,
    async handler({ deps, tenant, caller, body, audit, announce, koa }) {
      assertCanGrant(caller, body.permissions);
      const role = await deps.db.prisma
        .$transaction(async (tx) => {
          const created = await tx.role.create({
            data: { tenantId: tenant.id, name: body.name, description: body.description ?? null, permissions: body.permissions },
          });
          await audit(
            {
              action: 'role.created',
              resource: { type: 'role', id: created.id },
              metadata: { name: created.name, permissions: created.permissions },
            },
            tx,
          );
          return created;
        })
        .catch(conflictOnDuplicate(`a role named ${body.name} already exists`));
      // App permissions of roles are scopes the tenant's provider must know.
      await announce('roles');
      koa.set('ETag', etagOf(role));
      return toRole(role);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/roles/{roleId}',
    operationId: 'getRole',
    summary: 'Read a role (its ETag header is the version If-Match takes)',
    tag: 'roles',
    permission: 'roles.read',
    params: roleParams,
    response: Role,
    async handler({ deps, tenant, params, koa }) {
      const role = await findRole(deps.db.prisma, tenant.id, params.roleId);
      koa.set('ETag', etagOf(role));
      return toRole(role);
    },
  }),
  defineRoute({
    method: 'PATCH',
    path: '/tenants/{tenant}/roles/{roleId}',
    operationId: 'updateRole',
    summary: 'Change a custom role; add_permissions/remove_permissions apply atomically, If-Match makes a replace conditional',
    tag: 'roles',
    permission: 'roles.write',
    params: roleParams,
    body: RoleUpdate,
    response: Role,
    async handler({ deps, tenant, caller, params, body, audit, announce, koa }) {
      const ifMatch = koa.get('If-Match');
      const role = await deps.db.prisma
        .$transaction(async (tx) => {
          const before = await lockRole(tx, tenant.id, params.roleId);
          if (before.builtin) throw builtinIsFixed();
          if (ifMatch && ifMatch !== '*' && ifMatch !== etagOf(before)) {
            throw new AppError(412, 'precondition_failed', 'the role changed since you read it: read it again and retry');
          }
          const permissions = nextPermissions(before.permissions, body);
          assertCanGrant(
            caller,
            permissions.filter((p) => !before.permissions.includes(p)),
          );
          const updated = await tx.role.update({
            where: { id: before.id },
            data: {
              ...(body.name !== undefined ? { name: body.name } : {}),
              ...(body.description !== undefined ? { description: body.description } : {}),
              permissions,
            },
          });
          const holders = await syncHolders(tx, tenant.id, before.id);
          await audit(
            {
              action: 'role.updated',
              resource: { type: 'role', id: before.id },
              metadata: {
                before: { name: before.name, description: before.description, permissions: before.permissions },
                after: { name: updated.name, description: updated.description, permissions: updated.permissions },
                service_accounts_synced: holders,
              },
            },
            tx,
          );
          return updated;
        })
        .catch(conflictOnDuplicate('a role with this name already exists'));
      await announce('roles');
      koa.set('ETag', etagOf(role));
      return toRole(role);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/roles/{roleId}',
    operationId: 'deleteRole',
    summary: 'Delete a custom role and its assignments',
    tag: 'roles',
    permission: 'roles.write',
    params: roleParams,
    async handler({ deps, tenant, caller, params, audit, announce }) {
      await deps.db.prisma.$transaction(async (tx) => {
        const role = await lockRole(tx, tenant.id, params.roleId);
        if (role.builtin) throw builtinIsFixed();
        // Taking a role away from its holders is as strong as giving it: only who could grant it may.
        assertCanGrant(caller, role.permissions);
        const holders = await tx.roleAssignment.findMany({
          where: { tenantId: tenant.id, roleId: role.id },
          select: { serviceAccountId: true },
        });
        await tx.role.delete({ where: { id: role.id } });
        for (const holder of holders) if (holder.serviceAccountId) await syncServiceAccountClient(tx, tenant.id, holder.serviceAccountId);
        await audit(
          {
            action: 'role.deleted',
            resource: { type: 'role', id: role.id },
            metadata: { name: role.name, permissions: role.permissions, assignments_removed: holders.length },
          },
          tx,
        );
      });
      await announce('roles');
      return undefined;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/roles/{roleId}/assignments',
    operationId: 'listRoleAssignments',
    summary: 'List who holds a role',
    tag: 'roles',
    permission: 'roles.read',
    params: roleParams,
    query: z.object(paginationQuery),
    response: AssignmentPage,
    async handler({ deps, tenant, params, query, cursor }) {
      const role = await findRole(deps.db.prisma, tenant.id, params.roleId);
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.roleAssignment.findMany({
        where: { tenantId: tenant.id, roleId: role.id, ...(after ? { id: { gt: after } } : {}) },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return { data: result.data.map(toAssignment), next_cursor: result.next_cursor };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/roles/{roleId}/assignments',
    operationId: 'assignRole',
    summary: 'Assign a role to a user or a service account',
    tag: 'roles',
    permission: 'roles.write',
    params: roleParams,
    body: AssignmentCreate,
    response: Assignment,
    status: 201,
    async handler({ deps, tenant, caller, params, body, audit, announce }) {
      const assignment = await deps.db.prisma
        .$transaction(async (tx) => {
          const role = await findRole(tx, tenant.id, params.roleId);
          assertCanGrant(caller, role.permissions);
          if (body.user_id && !(await tx.user.findFirst({ where: { id: body.user_id, tenantId: tenant.id }, select: { id: true } }))) {
            throw notFound('no such user');
          }
          const accountId = body.service_account_id;
          if (accountId && !(await tx.serviceAccount.findFirst({ where: { id: accountId, tenantId: tenant.id }, select: { id: true } }))) {
            throw notFound('no such service account');
          }
          const created = await tx.roleAssignment.create({
            data: { tenantId: tenant.id, roleId: role.id, userId: body.user_id ?? null, serviceAccountId: accountId ?? null },
          });
          if (accountId) await syncServiceAccountClient(tx, tenant.id, accountId);
          await audit(
            {
              action: 'role.assigned',
              resource: { type: 'role', id: role.id },
              metadata: { role: role.name, user_id: body.user_id ?? null, service_account_id: accountId ?? null },
            },
            tx,
          );
          return created;
        })
        .catch(conflictOnDuplicate('the role is already assigned to them'));
      if (assignment.serviceAccountId) await announce('clients');
      return toAssignment(assignment);
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/tenants/{tenant}/roles/{roleId}/assignments/{assignmentId}',
    operationId: 'unassignRole',
    summary: 'Remove a role assignment',
    tag: 'roles',
    permission: 'roles.write',
    params: z.object({ roleId: uuidParam, assignmentId: uuidParam }),
    async handler({ deps, tenant, caller, params, audit, announce }) {
      const removed = await deps.db.prisma.$transaction(async (tx) => {
        const role = await findRole(tx, tenant.id, params.roleId);
        const assignment = await tx.roleAssignment.findFirst({ where: { id: params.assignmentId, tenantId: tenant.id, roleId: role.id } });
        if (!assignment) throw notFound('no such assignment');
        assertCanGrant(caller, role.permissions);
        await tx.roleAssignment.delete({ where: { id: assignment.id } });
        if (assignment.serviceAccountId) await syncServiceAccountClient(tx, tenant.id, assignment.serviceAccountId);
        await audit(
          {
            action: 'role.unassigned',
            resource: { type: 'role', id: role.id },
            metadata: { role: role.name, user_id: assignment.userId, service_account_id: assignment.serviceAccountId },
          },
          tx,
        );
        return assignment;
      });
      if (removed.serviceAccountId) await announce('clients');
      return undefined;
    },
  }),
];
