/**
 * Permissions are `resource.action` strings; built-in roles are fixed sets of
 * them, ordered owner > admin > member > viewer. This file is the one list.
 */
export const PERMISSIONS = [
  'tenants.read',
  'tenants.write',
  'users.read',
  'users.write',
  'roles.read',
  'roles.write',
  'clients.read',
  'clients.write',
  'service_accounts.read',
  'service_accounts.write',
  'api_keys.read',
  'api_keys.write',
  'network.read',
  'network.write',
  'connections.read',
  'connections.write',
  'keys.read',
  'keys.write',
  'secrets.read',
  'secrets.write',
  'audit.read',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

const readOnly = PERMISSIONS.filter((p) => p.endsWith('.read') && p !== 'audit.read' && p !== 'secrets.read');

export const BUILTIN_ROLES: Readonly<Record<'owner' | 'admin' | 'member' | 'viewer', readonly Permission[]>> = Object.freeze({
  owner: PERMISSIONS,
  admin: PERMISSIONS.filter((p) => p !== 'tenants.write'),
  member: ['users.read', 'roles.read', 'clients.read'],
  viewer: readOnly,
});

export type BuiltinRole = keyof typeof BUILTIN_ROLES;
