import { z } from 'zod';
import { forbidden } from '../errors.js';
import type { Caller } from './auth.js';
import { BUILTIN_ROLES, PERMISSIONS, type Permission } from './permissions.js';

/**
 * Who may do what. Management permissions are the fixed `resource.action`
 * strings of permissions.ts; apps define their own (`read:reports`,
 * `reports:export`) which appear in tokens but grant nothing here.
 */

const KNOWN = new Set<string>(PERMISSIONS);
/** `name:action` or `action:name`: two words around one colon. */
const APP_PERMISSION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const MAX_PERMISSIONS = 100;

export function isManagementPermission(value: string): value is Permission {
  return KNOWN.has(value);
}

export function isAppPermission(value: string): boolean {
  return APP_PERMISSION.test(value);
}

const unknownPermission = (value: string) => `unknown permission ${JSON.stringify(value.slice(0, 80))}`;

/** A management permission or an app permission. */
export const permissionSchema = z
  .string()
  .max(129)
  .refine((value) => isManagementPermission(value) || isAppPermission(value), {
    error: (issue) => `${unknownPermission(String(issue.input))}: use one of the management permissions or an app permission name:action`,
  });

/** Only management permissions: what an API key can use. */
export const managementPermissionSchema = z
  .string()
  .max(64)
  .refine(isManagementPermission, { error: (issue) => unknownPermission(String(issue.input)) });

/** A list of permissions, deduplicated and sorted so stored sets compare. */
export function permissionList(item: z.ZodType<string> = permissionSchema, { min = 0 }: { min?: number } = {}) {
  return z
    .array(item)
    .min(min, { message: min === 1 ? 'at least one permission is required' : `at least ${min} permissions are required` })
    .max(MAX_PERMISSIONS, { message: `at most ${MAX_PERMISSIONS} permissions` })
    .transform((values) => [...new Set(values)].sort());
}

/** Every route names the permission it needs; platform routes also need a platform admin. */
export function authorize(caller: Caller, permission: Permission | null, platformOnly = false): void {
  if (platformOnly && !caller.platformAdmin) throw forbidden('this operation is reserved to platform administrators');
  if (permission && !caller.permissions.has(permission)) throw forbidden(`this operation needs the permission ${permission}`);
}

/**
 * No escalation: a caller hands out (in a role, an assignment, a service
 * account's scopes, an API key) only management permissions it holds itself.
 * App permissions grant nothing here and are not restricted.
 */
export function assertCanGrant(caller: Caller, permissions: readonly string[]): void {
  if (caller.platformAdmin) return;
  const missing = permissions.filter((p) => isManagementPermission(p) && !caller.permissions.has(p));
  if (missing.length) throw forbidden(`you cannot grant permissions you do not hold: ${missing.join(', ')}`);
}

export function isBuiltinRoleName(name: string): boolean {
  return Object.hasOwn(BUILTIN_ROLES, name);
}

/** The union of the permissions of `roles`, plus `extra`. */
export function permissionsOf(roles: readonly { permissions: readonly string[] }[], extra: readonly string[] = []): Set<string> {
  return new Set([...extra, ...roles.flatMap((role) => role.permissions)]);
}
