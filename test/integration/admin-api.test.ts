import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PERMISSIONS } from '../../src/admin/permissions.js';
import { readSecretValue } from '../../src/admin/resources/secrets.js';
import { parseCsv, verifyExportedEvents } from '../../src/audit/export.js';
import { sha256 } from '../../src/crypto/random.js';
import { lockoutKeys } from '../../src/security/lockout.js';
import { checkSignInNetworkPolicy } from '../../src/security/network-policy.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { api, apiKeyFor, tenantId } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let admin: ReturnType<typeof api>;
let adminKey: string;
let defaultId: string;

beforeAll(async () => {
  t = await createTestApp({ seed: true, env: { TRUST_PROXY: 'true' } });
  adminKey = (await apiKeyFor(t, 'default', { name: 'admin' })).key;
  admin = api(t, adminKey);
  defaultId = await tenantId(t);
});
afterAll(() => t.close());

const raw = () => request(t.app.callback());

describe('request bodies', () => {
  it('refuses malformed JSON with 400, other media types with 415, unknown fields with 400', async () => {
    const malformed = await raw()
      .post('/api/v1/tenants/default/secrets')
      .set('Authorization', `Bearer ${adminKey}`)
      .set('Content-Type', 'application/json')
      .send('{"name": "x", ');
    expect(malformed.status).toBe(400);
    expect(malformed.body).toEqual({ error: 'invalid_request', error_description: 'the request body is not valid JSON' });
    const text = await raw()
      .post('/api/v1/tenants/default/secrets')
      .set('Authorization', `Bearer ${adminKey}`)
      .set('Content-Type', 'text/plain')
      .send('name=x');
    expect(text.status).toBe(415);
    expect(text.body.error).toBe('unsupported_media_type');
    const unknown = await admin.post('/tenants/default/secrets', { name: 'x', value: 'y', plaintext: true });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error_description).toMatch(/^body: .*plaintext/);
  });

  it('refuses bodies over the limit, announced or streamed, with 413', async () => {
    const big = JSON.stringify({ name: 'big', value: 'x'.repeat(t.deps.config.bodyLimitBytes) });
    const announced = await admin.post('/tenants/default/secrets', JSON.parse(big) as object);
    expect(announced.body).toMatchObject({ error: 'payload_too_large' });
    expect(announced.status).toBe(413);
    // Chunked, without Content-Length: the limit is enforced while reading.
    const streaming = raw()
      .post('/api/v1/tenants/default/secrets')
      .set('Authorization', `Bearer ${adminKey}`)
      .set('Content-Type', 'application/json');
    for (let offset = 0; offset < big.length; offset += 64 * 1024) streaming.write(big.slice(offset, offset + 64 * 1024));
    const streamed = await streaming;
    expect(streamed.status).toBe(413);
    expect(streamed.body.error).toBe('payload_too_large');
  });

  it('names the offending field for invalid CIDRs, unknown permissions and oversized lists', async () => {
    const cidr = await admin.post('/tenants/default/service-accounts', {
      name: 'bad ips',
      scopes: ['users.read'],
      allowed_ips: ['10.0.0.0/8', '10.0.0.1/8'],
    });
    expect(cidr.status).toBe(400);
    expect(cidr.body.error_description).toContain(
      'body.allowed_ips.1: "10.0.0.1/8" is not a valid CIDR: host bits are set (did you mean 10.0.0.0/8?)',
    );
    const notIp = await admin.put('/tenants/default/network-policy', { cidrs: ['300.1.1.1/8'], mode: 'warn' });
    expect(notIp.status).toBe(400);
    expect(notIp.body.error_description).toMatch(/^body\.cidrs\.0: /);
    const permission = await admin.post('/tenants/default/roles', { name: 'typo', permissions: ['users.reed'] });
    expect(permission.status).toBe(400);
    expect(permission.body.error_description).toMatch(/^body\.permissions\.0: unknown permission "users\.reed"/);
    const appPermission = await admin.post('/tenants/default/api-keys', { name: 'app', scopes: ['read:reports'] });
    expect(appPermission.status).toBe(400);
    const many = Array.from({ length: 101 }, (_, i) => `app:perm${i}`);
    expect((await admin.post('/tenants/default/roles', { name: 'huge', permissions: many })).status).toBe(400);
    const ips = Array.from({ length: 101 }, (_, i) => `10.0.${i}.0/24`);
    expect((await admin.put('/tenants/default/network-policy', { cidrs: ips, mode: 'warn' })).status).toBe(400);
    expect((await admin.post('/tenants/default/api-keys', { name: 'none', scopes: [] })).status).toBe(400);
    // Nothing half-made was left behind.
    expect(await t.deps.db.prisma.serviceAccount.count({ where: { name: 'bad ips' } })).toBe(0);
    expect(await t.deps.db.prisma.role.count({ where: { name: { in: ['typo', 'huge'] } } })).toBe(0);
  });

  it('answers duplicates with 409', async () => {
    expect((await admin.post('/tenants/default/roles', { name: 'auditor', permissions: ['audit.read'] })).status).toBe(201);
    expect((await admin.post('/tenants/default/roles', { name: 'auditor', permissions: ['audit.read'] })).status).toBe(409);
    expect((await admin.post('/tenants/default/roles', { name: 'owner', permissions: [] })).status).toBe(409);
    expect((await admin.post('/tenants/default/secrets', { name: 'dup', value: 'a' })).status).toBe(201);
    expect((await admin.post('/tenants/default/secrets', { name: 'dup', value: 'b' })).status).toBe(409);
    expect((await admin.post('/tenants/default/users', { email: 'ADMIN@example.com' })).status).toBe(409);
    expect((await admin.post('/tenants/default/service-accounts', { name: 'twin', scopes: [] })).status).toBe(201);
    expect((await admin.post('/tenants/default/service-accounts', { name: 'twin', scopes: [] })).status).toBe(409);
    expect((await admin.post('/tenants/default/api-keys', { name: 'twin', scopes: ['users.read'] })).status).toBe(201);
    expect((await admin.post('/tenants/default/api-keys', { name: 'twin', scopes: ['users.read'] })).status).toBe(409);
  });
});

describe('pagination', () => {
  it('walks a listing with opaque cursors and refuses tampered or foreign ones', async () => {
    for (let i = 0; i < 5; i++) expect((await admin.post('/tenants/default/users', { email: `page${i}@example.com` })).status).toBe(201);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await admin.get(`/tenants/default/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(response.status).toBe(200);
      seen.push(...response.body.data.map((user: { id: string }) => user.id));
      cursor = response.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(await t.deps.db.prisma.user.count({ where: { tenantId: defaultId } }));

    const first = await admin.get('/tenants/default/users?limit=1');
    const valid = String(first.body.next_cursor);
    const [value, mac] = valid.split('.');
    const forged = `${Buffer.from('00000000-0000-0000-0000-000000000000').toString('base64url')}.${mac}`;
    for (const bad of ['garbage', `${value}.${'A'.repeat(22)}`, forged, `${valid}x`]) {
      const response = await admin.get(`/tenants/default/users?cursor=${encodeURIComponent(bad)}`);
      expect({ bad, status: response.status, error: response.body.error }).toEqual({ bad, status: 400, error: 'invalid_cursor' });
    }
    // A cursor is bound to its listing.
    expect((await admin.get(`/tenants/default/roles?cursor=${valid}`)).status).toBe(400);
    for (const limit of ['0', '101', 'abc', '1.5']) expect((await admin.get(`/tenants/default/users?limit=${limit}`)).status).toBe(400);
  });
});

describe('roles', () => {
  it('keeps built-in roles fixed', async () => {
    const roles = await admin.get('/tenants/default/roles');
    const owner = roles.body.data.find((r: { name: string }) => r.name === 'owner');
    expect(owner).toMatchObject({ builtin: true, permissions: [...PERMISSIONS].sort() });
    expect((await admin.patch(`/tenants/default/roles/${owner.id}`, { add_permissions: ['app:x'] })).status).toBe(409);
    expect((await admin.delete(`/tenants/default/roles/${owner.id}`)).status).toBe(409);
  });

  it('applies concurrent permission changes one after the other, losing none', async () => {
    const created = await admin.post('/tenants/default/roles', { name: 'busy', permissions: [] });
    const id = created.body.id as string;
    const additions = Array.from({ length: 12 }, (_, i) => `reports:action${i}`);
    const responses = await Promise.all(additions.map((p) => admin.patch(`/tenants/default/roles/${id}`, { add_permissions: [p] })));
    expect(responses.map((r) => r.status)).toEqual(additions.map(() => 200));
    const after = await admin.get(`/tenants/default/roles/${id}`);
    expect(after.body.permissions).toEqual([...additions].sort());
    const updates = await t.deps.db.prisma.auditEvent.count({ where: { action: 'role.updated', resourceId: id } });
    expect(updates).toBe(additions.length);
  });

  it('refuses a replace based on a stale read with 412', async () => {
    const created = await admin.post('/tenants/default/roles', { name: 'versioned', permissions: ['users.read'] });
    const etag = String(created.headers.etag);
    const first = await admin.patch(`/tenants/default/roles/${created.body.id}`, { permissions: ['roles.read'] }).set('If-Match', etag);
    expect(first.status).toBe(200);
    const stale = await admin.patch(`/tenants/default/roles/${created.body.id}`, { permissions: ['audit.read'] }).set('If-Match', etag);
    expect(stale.status).toBe(412);
    expect((await admin.get(`/tenants/default/roles/${created.body.id}`)).body.permissions).toEqual(['roles.read']);
  });

  it('refuses to let a caller grant what it does not hold', async () => {
    const limited = api(
      t,
      (
        await apiKeyFor(t, 'default', {
          scopes: ['roles.write', 'roles.read', 'service_accounts.write', 'api_keys.write'],
          name: 'limited',
        })
      ).key,
    );
    expect((await limited.post('/tenants/default/roles', { name: 'sneaky', permissions: ['secrets.read'] })).status).toBe(403);
    expect((await limited.post('/tenants/default/roles', { name: 'fine', permissions: ['roles.read', 'read:reports'] })).status).toBe(201);
    expect((await limited.post('/tenants/default/service-accounts', { name: 'sneaky', scopes: ['secrets.read'] })).status).toBe(403);
    expect((await limited.post('/tenants/default/api-keys', { name: 'sneaky', scopes: ['users.write'] })).status).toBe(403);
    const owner = (await admin.get('/tenants/default/roles')).body.data.find((r: { name: string }) => r.name === 'owner');
    const user = await admin.post('/tenants/default/users', { email: 'climber@example.com' });
    expect((await limited.post(`/tenants/default/roles/${owner.id}/assignments`, { user_id: user.body.id })).status).toBe(403);
  });

  it('assigns roles to users, once', async () => {
    const role = await admin.post('/tenants/default/roles', { name: 'report reader', permissions: ['read:reports'] });
    const user = await admin.post('/tenants/default/users', { email: 'reader@example.com' });
    const assigned = await admin.post(`/tenants/default/roles/${role.body.id}/assignments`, { user_id: user.body.id });
    expect(assigned.status).toBe(201);
    expect((await admin.post(`/tenants/default/roles/${role.body.id}/assignments`, { user_id: user.body.id })).status).toBe(409);
    expect((await admin.post(`/tenants/default/roles/${role.body.id}/assignments`, {})).status).toBe(400);
    expect((await admin.get(`/tenants/default/users/${user.body.id}`)).body.roles).toEqual(['report reader']);
    const holders = await admin.get(`/tenants/default/roles/${role.body.id}/assignments`);
    expect(holders.body.data).toEqual([expect.objectContaining({ user_id: user.body.id, service_account_id: null })]);
  });
});

describe('users', () => {
  it('invites by mail: a user without password and a hashed single-use token for 7 days, which can be sent again', async () => {
    const invited = await admin.post('/tenants/default/users/invitations', { email: 'New.Hire@Example.com', roles: ['viewer'] });
    expect(invited.status).toBe(202);
    // No SMTP_URL in the tests: the mail goes to the dev outbox (the log).
    expect(invited.body).toMatchObject({
      user: { email: 'new.hire@example.com', has_password: false, roles: ['viewer'] },
      delivery: 'outbox',
    });
    const userId = invited.body.user.id as string;
    const tokens = () => t.deps.db.prisma.emailToken.findMany({ where: { userId, purpose: 'invite', usedAt: null } });
    const [token] = await tokens();
    expect(token?.tokenHash).toHaveLength(43);
    expect(Math.abs((token?.expiresAt.getTime() ?? 0) - Date.parse(invited.body.expires_at))).toBeLessThan(1000);
    expect(Date.parse(invited.body.expires_at) - Date.now()).toBeGreaterThan(6.9 * 24 * 3600 * 1000);

    const again = await admin.post(`/tenants/default/users/${userId}/invitation`);
    expect(again.status).toBe(202);
    const current = await tokens();
    expect(current).toHaveLength(1);
    expect(current[0]?.id).not.toBe(token?.id);
    const actions = (await t.deps.db.prisma.auditEvent.findMany({ where: { resourceId: userId }, orderBy: { seq: 'asc' } })).map(
      (e) => e.action,
    );
    expect(actions).toEqual(['user.invited', 'user.invite.sent', 'user.invite.sent']);
    const admins = await admin.get('/tenants/default/users?email=admin@example.com');
    expect((await admin.post(`/tenants/default/users/${admins.body.data[0].id}/invitation`)).status).toBe(409);
  });

  it('updates, unlocks, resets MFA and deletes, each audited', async () => {
    const user = await admin.post('/tenants/default/users', { email: 'temp@example.com', password: 'long enough password', name: 'Temp' });
    const id = user.body.id as string;
    const updated = await admin.patch(`/tenants/default/users/${id}`, { name: 'Temporary', email_verified: true });
    expect(updated.body).toMatchObject({ name: 'Temporary', email_verified: true });
    expect((await admin.patch(`/tenants/default/users/${id}`, { password: 'short' })).status).toBe(400);

    const [lock] = lockoutKeys(defaultId, id);
    await t.deps.kv.set(lock ?? '', '1', 600);
    expect((await admin.post(`/tenants/default/users/${id}/unlock`)).status).toBe(204);
    expect(await t.deps.kv.get(lock ?? '')).toBeNull();

    const prisma = t.deps.db.prisma;
    await prisma.mfaFactor.create({ data: { tenantId: defaultId, userId: id, type: 'totp', secret: 'v1.x', confirmedAt: new Date() } });
    await prisma.recoveryCode.createMany({
      data: ['a', 'b'].map((c) => ({ tenantId: defaultId, userId: id, codeHash: sha256(`${id}${c}`) })),
    });
    const reset = await admin.post(`/tenants/default/users/${id}/reset-mfa`);
    expect(reset.body).toEqual({ factors_removed: 1, recovery_codes_removed: 2 });

    expect((await admin.delete(`/tenants/default/users/${id}`)).status).toBe(204);
    expect((await admin.get(`/tenants/default/users/${id}`)).status).toBe(404);
    const actions = (await prisma.auditEvent.findMany({ where: { resourceId: id }, orderBy: { seq: 'asc' } })).map((e) => e.action);
    expect(actions).toEqual(['user.created', 'user.updated', 'user.unlocked', 'user.mfa_reset', 'user.deleted']);
  });
});

describe('API keys', () => {
  it('are shown once, stored hashed, revocable with the record kept, and deletable', async () => {
    const created = await admin.post('/tenants/default/api-keys', {
      name: 'ci',
      scopes: ['users.read', 'users.read'],
      expires_in_seconds: 3600,
    });
    expect(created.status).toBe(201);
    const key = String(created.body.key);
    expect(key).toMatch(/^idp_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/);
    expect(created.body).toMatchObject({ scopes: ['users.read'], status: 'active', prefix: key.slice(4, 12) });
    const row = await t.deps.db.prisma.apiKey.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(row.keyHash).toBe(sha256(key));
    expect(JSON.stringify(await admin.get('/tenants/default/api-keys'))).not.toContain(key.slice(13));

    const ci = api(t, key);
    expect((await ci.get('/tenants/default/users')).status).toBe(200);
    expect((await ci.get('/tenants/default/roles')).status).toBe(403);
    const used = await t.deps.db.prisma.apiKey.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(used.lastUsedAt).not.toBeNull();
    await ci.get('/tenants/default/users');
    expect((await t.deps.db.prisma.apiKey.findUniqueOrThrow({ where: { id: created.body.id } })).lastUsedAt).toEqual(used.lastUsedAt);

    const revoked = await admin.post(`/tenants/default/api-keys/${created.body.id}/revoke`);
    expect(revoked.body.status).toBe('revoked');
    expect((await ci.get('/tenants/default/users')).status).toBe(401);
    expect((await admin.post(`/tenants/default/api-keys/${created.body.id}/revoke`)).status).toBe(409);
    expect((await admin.get(`/tenants/default/api-keys/${created.body.id}`)).body.status).toBe('revoked');
    // A revoked key's name is free again.
    expect((await admin.post('/tenants/default/api-keys', { name: 'ci', scopes: ['users.read'] })).status).toBe(201);
    expect((await admin.delete(`/tenants/default/api-keys/${created.body.id}`)).status).toBe(204);
    expect((await admin.get(`/tenants/default/api-keys/${created.body.id}`)).status).toBe(404);
    expect(
      (await admin.post('/tenants/default/api-keys', { name: 'old', scopes: ['users.read'], expires_at: '2001-01-01T00:00:00Z' })).status,
    ).toBe(400);
  });
});

describe('secrets', () => {
  it('are stored encrypted and never returned', async () => {
    const created = await admin.post('/tenants/default/secrets', {
      name: 'okta/client-secret',
      value: 'plain-value-123',
      description: 'upstream',
    });
    expect(created.status).toBe(201);
    expect(JSON.stringify(created.body)).not.toContain('plain-value-123');
    const row = await t.deps.db.prisma.secret.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(row.value).not.toContain('plain-value-123');
    const deps = { prisma: t.deps.db.prisma, vault: t.deps.vault };
    expect(await readSecretValue(deps, defaultId, 'okta/client-secret')).toBe('plain-value-123');
    expect((await admin.patch(`/tenants/default/secrets/${created.body.id}`, { value: 'rotated-value' })).status).toBe(200);
    expect(await readSecretValue(deps, defaultId, 'okta/client-secret')).toBe('rotated-value');
    const listed = await admin.get('/tenants/default/secrets?name=okta/client-secret');
    expect(listed.body.data).toEqual([expect.objectContaining({ name: 'okta/client-secret', description: 'upstream' })]);
    expect(JSON.stringify(listed.body)).not.toContain('value');
    const events = await t.deps.db.prisma.auditEvent.findMany({ where: { resourceId: created.body.id } });
    expect(JSON.stringify(events.map((e) => e.metadata))).not.toMatch(/plain-value|rotated-value/);
    expect((await admin.delete(`/tenants/default/secrets/${created.body.id}`)).status).toBe(204);
    expect(await readSecretValue(deps, defaultId, 'okta/client-secret')).toBeNull();
  });
});

describe('clients', () => {
  it('are created, changed, given a new secret and deleted', async () => {
    const created = await admin.post('/tenants/default/clients', { name: 'portal', redirect_uris: ['https://portal.example/cb'] });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const clientId = String(created.body.client_id);
    const row = await t.deps.db.prisma.client.findFirstOrThrow({ where: { clientId } });
    expect(row.secretHash).toBe(sha256(String(created.body.client_secret)));
    const changed = await admin.patch(`/tenants/default/clients/${clientId}`, {
      redirect_uris: ['https://portal.example/callback'],
      first_party: true,
    });
    expect(changed.body).toMatchObject({ redirect_uris: ['https://portal.example/callback'], first_party: true });
    expect((await admin.patch(`/tenants/default/clients/${clientId}`, { redirect_uris: ['http://evil.example/cb'] })).status).toBe(400);
    const rotated = await admin.post(`/tenants/default/clients/${clientId}/secret`);
    expect(rotated.status).toBe(201);
    expect((await t.deps.db.prisma.client.findFirstOrThrow({ where: { clientId } })).secretHash).toBe(
      sha256(String(rotated.body.client_secret)),
    );
    expect((await admin.delete(`/tenants/default/clients/${clientId}`)).status).toBe(204);
    expect((await admin.get(`/tenants/default/clients/${clientId}`)).status).toBe(404);
  });

  it('leave a service account’s client to the service account', async () => {
    const account = await admin.post('/tenants/default/service-accounts', { name: 'owned', scopes: ['users.read'] });
    const clientId = String(account.body.client_id);
    expect((await admin.get(`/tenants/default/clients/${clientId}`)).body.service_account_id).toBe(account.body.id);
    expect((await admin.delete(`/tenants/default/clients/${clientId}`)).status).toBe(409);
    expect((await admin.post(`/tenants/default/clients/${clientId}/secret`)).status).toBe(409);
  });
});

describe('signing keys', () => {
  it('list public parts and rotate', async () => {
    // The provider creates the tenant's keys on first use.
    await t.deps.oidc.get((await t.deps.tenants.bySlug('default')) ?? ({} as never));
    const before = await admin.get('/tenants/default/signing-keys');
    expect(before.body.data.map((k: { status: string }) => k.status).sort()).toEqual(['active', 'next']);
    expect(JSON.stringify(before.body)).not.toMatch(/"d":|privateJwk|v1\./);
    const next = before.body.data.find((k: { status: string }) => k.status === 'next');
    const rotated = await admin.post('/tenants/default/signing-keys/rotate');
    expect(rotated.status).toBe(200);
    expect(rotated.body.rotated[0]).toMatchObject({ alg: 'RS256', activated: next.kid });
    const after = await admin.get('/tenants/default/signing-keys?status=active');
    expect(after.body.data.map((k: { kid: string }) => k.kid)).toEqual([next.kid]);
  });
});

describe('network policy', () => {
  it('warns, blocks, and will not lock out the caller setting it', async () => {
    await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug: 'fenced' }, { type: 'system' });
    const fencedId = await tenantId(t, 'fenced');
    const key = (await apiKeyFor(t, 'fenced', { name: 'fenced admin' })).key;
    const from = (ip: string) => ({
      get: (path: string) => raw().get(`/api/v1${path}`).set('Authorization', `Bearer ${key}`).set('X-Forwarded-For', ip),
      put: (path: string, body: object) =>
        raw().put(`/api/v1${path}`).set('Authorization', `Bearer ${key}`).set('X-Forwarded-For', ip).send(body),
    });
    const lockout = await from('192.0.2.10').put('/tenants/fenced/network-policy', { cidrs: ['10.0.0.0/8'], mode: 'block' });
    expect(lockout.status).toBe(409);

    expect((await from('192.0.2.10').put('/tenants/fenced/network-policy', { cidrs: ['10.0.0.0/8'], mode: 'warn' })).status).toBe(200);
    const warned = await from('192.0.2.10').get('/tenants/fenced/network-policy');
    expect(warned.status).toBe(200);
    expect(warned.headers['x-network-policy']).toBe('outside-allowlist');
    expect(await t.deps.db.prisma.auditEvent.count({ where: { tenantId: fencedId, action: 'network_policy.warned' } })).toBe(1);

    const set = await from('10.1.1.1').put('/tenants/fenced/network-policy', {
      cidrs: ['10.0.0.0/8', '2001:DB8::/32'],
      mode: 'block',
      apply_to_sign_in: true,
    });
    expect(set.body).toMatchObject({ cidrs: ['10.0.0.0/8', '2001:db8::/32'], mode: 'block', apply_to_sign_in: true });
    const blocked = await from('192.0.2.10').get('/tenants/fenced/network-policy');
    expect(blocked.status).toBe(403);
    expect(blocked.body.error).toBe('network_policy');
    expect((await from('2001:db8::5').get('/tenants/fenced/network-policy')).status).toBe(200);
    expect(await checkSignInNetworkPolicy(t.deps, { id: fencedId }, '192.0.2.10')).toEqual({ outcome: 'block', ip: '192.0.2.10' });
    expect(await checkSignInNetworkPolicy(t.deps, { id: fencedId }, '10.9.9.9')).toEqual({ outcome: 'allow' });
    expect(await checkSignInNetworkPolicy(t.deps, { id: defaultId }, '192.0.2.10')).toEqual({ outcome: 'allow' });
  });
});

describe('quota', () => {
  it('answers 429 with Retry-After once a tenant used its management requests for the minute', async () => {
    await createTenant({ prisma: t.deps.db.prisma, audit: t.deps.audit }, { slug: 'busy' }, { type: 'system' });
    const key = api(t, (await apiKeyFor(t, 'busy', { name: 'busy admin' })).key);
    const settings = await key.patch('/tenants/busy', { settings: { limits: { managementPerMinute: 3 } } });
    expect(settings.status).toBe(200);
    expect(settings.body.settings).toEqual({ limits: { managementPerMinute: 3 } });
    // The PATCH was the first request of the minute.
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await key.get('/tenants/busy/users')).status);
    expect(statuses).toEqual([200, 200, 429]);
    const limited = await key.get('/tenants/busy/users');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.body.error).toBe('too_many_requests');
    // Other tenants are not affected.
    expect((await admin.get('/tenants/default/users?limit=1')).status).toBe(200);
  });

  it('refuses settings the server cannot use', async () => {
    expect((await admin.patch('/tenants/default', { settings: { limits: { managementPerMinute: 0 } } })).status).toBe(400);
    expect((await admin.patch('/tenants/default', { settings: { branding: { logoUrl: 'javascript:alert(1)' } } })).status).toBe(400);
  });
});

describe('audit events', () => {
  it('filter by action, actor and time, page newest first, and export as NDJSON and CSV that verify', async () => {
    // A user agent that a spreadsheet would run as a formula.
    const hostile = '=HYPERLINK("http://evil.example","x")';
    const created = await raw()
      .post('/api/v1/tenants/default/secrets')
      .set('Authorization', `Bearer ${adminKey}`)
      .set('User-Agent', hostile)
      .send({ name: 'formula-test', value: 'v' });
    expect(created.status).toBe(201);

    const secretEvents = await admin.get('/tenants/default/audit-events?action=secret.*&limit=100');
    expect(secretEvents.body.data.length).toBeGreaterThan(0);
    expect(secretEvents.body.data.every((e: { action: string }) => e.action.startsWith('secret.'))).toBe(true);
    const seqs = secretEvents.body.data.map((e: { seq: string }) => Number(e.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    const byActor = await admin.get(`/tenants/default/audit-events?actor_id=no-such-actor`);
    expect(byActor.body.data).toEqual([]);
    const future = await admin.get(`/tenants/default/audit-events?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
    expect(future.body.data).toEqual([]);
    expect((await admin.get('/tenants/default/audit-events?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z')).status).toBe(400);
    expect((await admin.get('/tenants/default/audit-events?action=a;b')).status).toBe(400);

    const total = await t.deps.db.prisma.auditEvent.count({ where: { tenantId: defaultId } });
    const ndjson = await admin.get('/tenants/default/audit-events/export?format=ndjson').buffer(true);
    expect(ndjson.status).toBe(200);
    expect(ndjson.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const events = ndjson.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(events.length).toBeGreaterThanOrEqual(total);
    expect(verifyExportedEvents(events)).toEqual({ ok: true, count: events.length });

    const csv = await admin.get('/tenants/default/audit-events/export?format=csv').buffer(true);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.headers['content-disposition']).toMatch(/attachment; filename="audit-default-/);
    expect(csv.text).toContain(`"'=HYPERLINK(""http://evil.example"",""x"")"`);
    const parsed = parseCsv(csv.text);
    expect(verifyExportedEvents(parsed)).toEqual({ ok: true, count: parsed.length });
    expect(parsed.slice(0, events.length)).toEqual(events.slice(0, parsed.length));
    expect(parsed.some((event) => event.user_agent === hostile)).toBe(true);

    // A tampered export no longer verifies.
    const tampered = events.map((e, i) => (i === 1 ? { ...e, action: 'nothing.happened' } : e));
    expect(verifyExportedEvents(tampered)).toMatchObject({ ok: false, firstBadSeq: '2' });

    const verify = await admin.get('/tenants/default/audit-events/verify');
    expect(verify.body).toMatchObject({ ok: true, first_bad_seq: null });
  });
});
