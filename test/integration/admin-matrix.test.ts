import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PERMISSIONS } from '../../src/admin/permissions.js';
import type { Route } from '../../src/admin/route.js';
import { ADMIN_ROUTES } from '../../src/admin/routes.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { apiKeyFor, tenantId } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

/**
 * The access matrix, generated from the route table itself: a route added to
 * the table is covered here without anyone writing a test for it.
 */

const OTHER = 'other-tenant';

/** A concrete URL for a route: the tenant slug and made-up ids (they need not exist for access checks). */
function urlOf(route: Route, slug: string): string {
  return `/api/v1${route.path
    .replace('{tenant}', slug)
    .replace('{clientId}', 'no-such-client')
    .replace(/\{[A-Za-z]+Id\}/g, () => randomUUID())}`;
}

function send(t: TestApp, route: Route, url: string, token?: string) {
  const agent = request(t.app.callback());
  const method = route.method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
  const test = agent[method](url);
  return token ? test.set('Authorization', `Bearer ${token}`) : test;
}

let t: TestApp;
const keys = new Map<string, string>();
let full: string;
let otherFull: string;
let expired: string;
let revoked: string;

/** A key holding every management permission but `permission`. */
async function keyWithout(permission: string): Promise<string> {
  const name = `without ${permission}`;
  const cached = keys.get(name);
  if (cached) return cached;
  const { key } = await apiKeyFor(t, 'default', { scopes: PERMISSIONS.filter((p) => p !== permission), name });
  keys.set(name, key);
  return key;
}

/** A key holding only `permission` (a platform admin's, for platform routes). */
async function keyWithOnly(permission: string, platformAdmin: boolean): Promise<string> {
  const name = `only ${permission}${platformAdmin ? ' platform' : ''}`;
  const cached = keys.get(name);
  if (cached) return cached;
  const { key } = await apiKeyFor(t, 'default', { scopes: [permission], platformAdmin, name });
  keys.set(name, key);
  return key;
}

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug: OTHER }, { type: 'system' });
  // The matrix sends a few hundred authenticated requests: more than the default quota would let through in a minute.
  for (const slug of ['default', OTHER]) {
    await t.deps.db.prisma.tenant.update({ where: { slug }, data: { settings: { limits: { managementPerMinute: 100_000 } } } });
  }
  full = (await apiKeyFor(t, 'default', { name: 'full' })).key;
  otherFull = (await apiKeyFor(t, OTHER, { name: 'full of other' })).key;
  const expiring = await apiKeyFor(t, 'default', { name: 'expired', expiresAt: new Date(Date.now() + 60_000) });
  await t.deps.db.prisma.apiKey.update({ where: { id: expiring.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
  expired = expiring.key;
  const revoking = await apiKeyFor(t, 'default', { name: 'revoked' });
  await request(t.app.callback())
    .post(`/api/v1/tenants/default/api-keys/${revoking.id}/revoke`)
    .set('Authorization', `Bearer ${full}`)
    .expect(200);
  revoked = revoking.key;
});
afterAll(() => t.close());

describe.each(ADMIN_ROUTES.map((route) => [`${route.method} ${route.path}`, route] as const))('%s', (_name, route) => {
  const tenantRoute = route.path.includes('{tenant}');

  it('refuses a request without credentials with 401', async () => {
    const response = await send(t, route, urlOf(route, 'default'));
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('unauthorized');
    expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="idp"/);
  });

  it('refuses a malformed, an expired and a revoked token with 401', async () => {
    for (const token of ['not-a-token', 'idp_AAAAAAAA_bad', `${full.slice(0, -2)}xx`, expired, revoked]) {
      const response = await send(t, route, urlOf(route, 'default'), token);
      expect({ token: token.slice(0, 12), status: response.status }).toEqual({ token: token.slice(0, 12), status: 401 });
    }
  });

  // Tests are generated only where they apply (no skipped placeholders).
  const { permission } = route;
  if (permission) {
    it('refuses a caller without the route’s permission with 403', async () => {
      const response = await send(t, route, urlOf(route, 'default'), await keyWithout(permission));
      expect(response.status).toBe(403);
      expect(response.body.error).toBe('forbidden');
    });
  }

  if (route.platformOnly) {
    it('refuses a tenant’s full key on a platform route with 403', async () => {
      expect((await send(t, route, urlOf(route, 'default'), full)).status).toBe(403);
    });
  }

  if (tenantRoute) {
    it('answers a caller of another tenant with 404, as for a tenant that does not exist', async () => {
      const foreign = await send(t, route, urlOf(route, 'default'), otherFull);
      const missing = await send(t, route, urlOf(route, 'no-such-tenant'), otherFull);
      expect(foreign.status).toBe(404);
      expect(foreign.body).toEqual(missing.body);
    });
  }

  it('lets a caller holding just the route’s permission through', async () => {
    const token = route.permission ? await keyWithOnly(route.permission, route.platformOnly === true) : full;
    const response = await send(t, route, urlOf(route, 'default'), token);
    // Made-up ids and missing bodies may well fail further on; authentication and authorisation must not.
    expect([401, 403]).not.toContain(response.status);
    expect(response.status).toBeLessThan(500);
  });
});

describe('resources of another tenant', () => {
  it('answer 404 when addressed through one’s own tenant', async () => {
    const other = await tenantId(t, OTHER);
    const prisma = t.deps.db.prisma;
    const user = await prisma.user.create({ data: { tenantId: other, email: 'someone@other.example' } });
    const role = await prisma.role.findFirstOrThrow({ where: { tenantId: other, name: 'viewer' } });
    const account = await prisma.serviceAccount.create({ data: { tenantId: other, name: 'robot', scopes: ['users.read'] } });
    const secret = await prisma.secret.create({ data: { tenantId: other, name: 'token', value: 'v1.x' } });
    const otherKey = await apiKeyFor(t, OTHER, { name: 'victim' });
    const urls = [
      `/tenants/default/users/${user.id}`,
      `/tenants/default/roles/${role.id}`,
      `/tenants/default/service-accounts/${account.id}`,
      `/tenants/default/secrets/${secret.id}`,
      `/tenants/default/api-keys/${otherKey.id}`,
    ];
    for (const url of urls) {
      const response = await request(t.app.callback()).get(`/api/v1${url}`).set('Authorization', `Bearer ${full}`);
      expect({ url, status: response.status }).toEqual({ url, status: 404 });
    }
    const revoke = await request(t.app.callback())
      .post(`/api/v1/tenants/default/api-keys/${otherKey.id}/revoke`)
      .set('Authorization', `Bearer ${full}`);
    expect(revoke.status).toBe(404);
    const assign = await request(t.app.callback())
      .post(`/api/v1/tenants/default/roles/${role.id}/assignments`)
      .set('Authorization', `Bearer ${full}`)
      .send({ user_id: user.id });
    expect(assign.status).toBe(404);
  });
});

describe('platform administrators', () => {
  it('act on any tenant, and each act is in that tenant’s trail as cross-tenant', async () => {
    const { key, id } = await apiKeyFor(t, 'default', { platformAdmin: true, name: 'operator' });
    const agent = request(t.app.callback());
    const created = await agent
      .post(`/api/v1/tenants/${OTHER}/secrets`)
      .set('Authorization', `Bearer ${key}`)
      .send({ name: 'webhook', value: 's3cr3t' });
    expect(created.status).toBe(201);
    const read = await agent.get(`/api/v1/tenants/${OTHER}/users`).set('Authorization', `Bearer ${key}`);
    expect(read.status).toBe(200);
    const other = await tenantId(t, OTHER);
    const events = await t.deps.db.prisma.auditEvent.findMany({ where: { tenantId: other, actorId: id }, orderBy: { seq: 'asc' } });
    expect(events.map((e) => e.action)).toEqual(['secret.created', 'admin.cross_tenant_write', 'admin.cross_tenant_read']);
    for (const event of events) expect(event.metadata).toMatchObject({ cross_tenant: true, actor_tenant: 'default' });
    expect(JSON.stringify(events.map((e) => e.metadata))).not.toContain('s3cr3t');
  });

  it('alone list and create tenants', async () => {
    const { key } = await apiKeyFor(t, 'default', { platformAdmin: true, name: 'provisioner' });
    const agent = request(t.app.callback());
    const created = await agent.post('/api/v1/tenants').set('Authorization', `Bearer ${key}`).send({ slug: 'acme', display_name: 'Acme' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ slug: 'acme', display_name: 'Acme' });
    const duplicate = await agent.post('/api/v1/tenants').set('Authorization', `Bearer ${key}`).send({ slug: 'acme' });
    expect(duplicate.status).toBe(409);
    const listed = await agent.get('/api/v1/tenants?limit=2').set('Authorization', `Bearer ${key}`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toHaveLength(2);
    const next = await agent.get(`/api/v1/tenants?limit=2&cursor=${listed.body.next_cursor}`).set('Authorization', `Bearer ${key}`);
    expect(next.body.data.map((tenant: { slug: string }) => tenant.slug)).toEqual([OTHER]);
    expect(next.body.next_cursor).toBeNull();
    const roles = await agent.get('/api/v1/tenants/acme/roles').set('Authorization', `Bearer ${key}`);
    expect(roles.body.data.map((r: { name: string }) => r.name).sort()).toEqual(['admin', 'member', 'owner', 'viewer']);
  });
});
