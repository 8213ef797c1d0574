import type { Middleware } from 'koa';
import { z } from 'zod';
import { PERMISSIONS } from './permissions.js';
import * as apiKeys from './resources/api-keys.js';
import * as audit from './resources/audit.js';
import * as clients from './resources/clients.js';
import * as connections from './resources/connections.js';
import * as keys from './resources/keys.js';
import * as network from './resources/network.js';
import * as roles from './resources/roles.js';
import * as secrets from './resources/secrets.js';
import * as serviceAccounts from './resources/service-accounts.js';
import * as serviceProviders from './resources/service-providers.js';
import * as tenants from './resources/tenants.js';
import * as users from './resources/users.js';
import { type AdminDeps, defineRoute, type Route } from './route.js';
import { managementApi } from './router.js';

export const Caller = z.object({
  tenant: z.string(),
  kind: z.enum(['service_account', 'api_key']),
  id: z.string(),
  permissions: z.array(z.string()),
  platform_admin: z.boolean(),
});

const meRoute = defineRoute({
  method: 'GET',
  path: '/me',
  operationId: 'getCaller',
  summary: 'Who the bearer token authenticates as, and what it may do',
  tag: 'meta',
  permission: null,
  response: Caller,
  async handler({ caller }) {
    return {
      tenant: caller.tenantSlug,
      kind: caller.kind,
      id: caller.id,
      permissions: PERMISSIONS.filter((p) => caller.permissions.has(p)),
      platform_admin: caller.platformAdmin,
    };
  },
});

/** The route table: every operation of the management API, in the order the OpenAPI document lists them. */
export const ADMIN_ROUTES: readonly Route[] = Object.freeze([
  meRoute,
  ...tenants.tenantRoutes,
  ...users.userRoutes,
  ...roles.roleRoutes,
  ...serviceAccounts.serviceAccountRoutes,
  ...apiKeys.apiKeyRoutes,
  ...clients.clientRoutes,
  ...network.networkRoutes,
  ...keys.keyRoutes,
  ...secrets.secretRoutes,
  ...connections.connectionRoutes,
  ...serviceProviders.serviceProviderRoutes,
  ...audit.auditRoutes,
]);

/** Schemas named in the OpenAPI document's components (everything else is named after its operation). */
export const ADMIN_COMPONENTS: Record<string, z.ZodType> = {
  Caller,
  Tenant: tenants.Tenant,
  TenantPage: tenants.TenantPage,
  TenantCreate: tenants.TenantCreate,
  TenantUpdate: tenants.TenantUpdate,
  User: users.User,
  UserPage: users.UserPage,
  UserCreate: users.UserCreate,
  UserInvite: users.UserInvite,
  UserUpdate: users.UserUpdate,
  Invitation: users.Invitation,
  MfaReset: users.MfaReset,
  Role: roles.Role,
  RolePage: roles.RolePage,
  RoleCreate: roles.RoleCreate,
  RoleUpdate: roles.RoleUpdate,
  RoleAssignment: roles.Assignment,
  RoleAssignmentPage: roles.AssignmentPage,
  RoleAssignmentCreate: roles.AssignmentCreate,
  ServiceAccount: serviceAccounts.ServiceAccount,
  ServiceAccountPage: serviceAccounts.ServiceAccountPage,
  ServiceAccountCreated: serviceAccounts.ServiceAccountCreated,
  ServiceAccountCreate: serviceAccounts.ServiceAccountCreate,
  ServiceAccountUpdate: serviceAccounts.ServiceAccountUpdate,
  Credentials: serviceAccounts.Credentials,
  ApiKey: apiKeys.ApiKey,
  ApiKeyPage: apiKeys.ApiKeyPage,
  ApiKeyCreated: apiKeys.ApiKeyCreated,
  ApiKeyCreate: apiKeys.ApiKeyCreate,
  Client: clients.Client,
  ClientPage: clients.ClientPage,
  ClientCreated: clients.ClientCreated,
  ClientCreate: clients.ClientCreate,
  ClientUpdate: clients.ClientUpdate,
  ClientSecret: clients.ClientSecret,
  NetworkPolicy: network.NetworkPolicy,
  NetworkPolicyUpdate: network.NetworkPolicyUpdate,
  SigningKey: keys.SigningKey,
  SigningKeyPage: keys.SigningKeyPage,
  KeyRotation: keys.Rotation,
  Secret: secrets.Secret,
  SecretPage: secrets.SecretPage,
  SecretCreate: secrets.SecretCreate,
  SecretUpdate: secrets.SecretUpdate,
  Connection: connections.Connection,
  ConnectionPage: connections.ConnectionPage,
  ConnectionCreate: connections.ConnectionCreate,
  ConnectionUpdate: connections.ConnectionUpdate,
  ConnectionTestReport: connections.ConnectionTestReport,
  ServiceProvider: serviceProviders.ServiceProvider,
  ServiceProviderPage: serviceProviders.ServiceProviderPage,
  ServiceProviderCreate: serviceProviders.ServiceProviderCreate,
  ServiceProviderUpdate: serviceProviders.ServiceProviderUpdate,
  SamlSigningKey: serviceProviders.SamlSigningKey,
  SamlSigningKeyPage: serviceProviders.SamlSigningKeyPage,
  SamlKeyRotation: serviceProviders.SamlKeyRotation,
  AuditEvent: audit.AuditEvent,
  AuditEventPage: audit.AuditEventPage,
  AuditVerification: audit.AuditVerification,
};

/** The management API, mounted by createApp. */
export function adminRoutes(deps: AdminDeps): Middleware {
  return managementApi(deps, ADMIN_ROUTES, ADMIN_COMPONENTS);
}
