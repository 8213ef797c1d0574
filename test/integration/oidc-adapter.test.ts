import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessTokenVerifier } from '../../src/oidc/access-tokens.js';
import { createAdapterClass } from '../../src/oidc/adapter.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

const noJwts: AccessTokenVerifier = { payloadOf: async () => undefined };

describe('oidc-provider adapter', () => {
  let t: TestApp;
  let Adapter: ReturnType<typeof createAdapterClass>;
  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    const tenant = await t.deps.db.prisma.tenant.findUniqueOrThrow({ where: { slug: 'default' } });
    Adapter = createAdapterClass({
      prisma: t.deps.db.prisma,
      kv: t.deps.kv,
      clock: t.deps.clock,
      tenantId: tenant.id,
      accessTokens: noJwts,
      audit: t.deps.audit,
    });
  });
  afterAll(() => t.close());

  it.each(['RefreshToken', 'AuthorizationCode'])('lets exactly one of 20 concurrent consumes of a %s succeed', async (model) => {
    const adapter = new Adapter(model);
    await adapter.upsert('token-value-1', { kind: model, grantId: 'g1' }, 60);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => adapter.consume('token-value-1')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(19);
    expect(rejected.every((r) => (r.reason as { error?: string }).error === 'invalid_grant')).toBe(true);
    expect((await adapter.find('token-value-1'))?.consumed).toBeTypeOf('number');
  });

  it('stores durable token values only as SHA-256 and never keeps the value in the payload', async () => {
    const adapter = new Adapter('RefreshToken');
    const value = 'refresh-token-value-that-must-not-be-stored';
    await adapter.upsert(value, { kind: 'RefreshToken', jti: value, grantId: 'g2', accountId: 'a' }, 60);
    const rows = await t.deps.db.prisma.$queryRawUnsafe<{ row: string }[]>(`SELECT row_to_json(p)::text AS row FROM "OidcPayload" p`);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.some((r) => r.row.includes(value))).toBe(false);
    expect(await adapter.find(value)).toMatchObject({ jti: value, grantId: 'g2' });
  });

  it('revokes every durable token of a grant at once, leaving other grants alone', async () => {
    const refresh = new Adapter('RefreshToken');
    const session = new Adapter('Session');
    await refresh.upsert('rt-a', { kind: 'RefreshToken', grantId: 'g3' }, 60);
    await refresh.upsert('rt-b', { kind: 'RefreshToken', grantId: 'g3' }, 60);
    await refresh.upsert('rt-other', { kind: 'RefreshToken', grantId: 'g4' }, 60);
    await session.upsert('s1', { kind: 'Session', jti: 's1', uid: 'u1' }, 60);
    await new Adapter('AccessToken').revokeByGrantId('g3');
    expect(await refresh.find('rt-a')).toBeUndefined();
    expect(await refresh.find('rt-b')).toBeUndefined();
    expect(await refresh.find('rt-other')).toMatchObject({ grantId: 'g4' });
    expect(await session.findByUid('u1')).toMatchObject({ jti: 's1' });
  });

  it('keeps short-lived models in the KvStore, not in PostgreSQL', async () => {
    const adapter = new Adapter('Interaction');
    await adapter.upsert('uid-1', { kind: 'Interaction', uid: 'uid-1' }, 60);
    expect(await t.deps.db.prisma.oidcPayload.count({ where: { model: 'Interaction' } })).toBe(0);
    expect(await adapter.find('uid-1')).toMatchObject({ kind: 'Interaction', jti: 'uid-1' });
    await adapter.destroy('uid-1');
    expect(await adapter.find('uid-1')).toBeUndefined();
  });

  it('refuses writes to clients, which are managed elsewhere', async () => {
    await expect(new Adapter('Client').upsert('x', {}, 60)).rejects.toThrow(/managed/);
  });
});
