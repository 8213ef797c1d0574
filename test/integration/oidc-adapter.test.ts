import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessTokenVerifier } from '../../src/oidc/access-tokens.js';
import { createAdapterClass } from '../../src/oidc/adapter.js';
import { newOidcRequestContext, oidcRequestContext } from '../../src/oidc/request-context.js';
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

  describe('within one provider request', () => {
    /** Runs `work` as the adapter's calls during one request that oidc-provider serves. */
    const inRequest = <T>(work: () => Promise<T>) => oidcRequestContext.run(newOidcRequestContext(), work);
    const statementsOf = async (work: () => Promise<unknown>) => {
      const before = t.deps.db.statements();
      await work();
      return t.deps.db.statements() - before;
    };
    const grantPayload = (scope: string) => ({ kind: 'Grant', accountId: 'a', clientId: 'c', openid: { scope } });

    it('reads a Grant once, and afresh after this request writes or deletes it', async () => {
      const grants = new Adapter('Grant');
      await grants.upsert('g-memo', grantPayload('openid'), 60);
      await inRequest(async () => {
        expect(await statementsOf(() => grants.find('g-memo'))).toBe(1);
        const first = await grants.find('g-memo');
        // What oidc-provider does to a Grant it was given (Grant#clean) must not reach the next read.
        (first as { openid: { scope: string } }).openid.scope = 'changed by the caller';
        expect(await statementsOf(() => grants.find('g-memo'))).toBe(0);
        expect(await grants.find('g-memo')).toMatchObject({ openid: { scope: 'openid' } });
        await grants.upsert('g-memo', grantPayload('openid email'), 60);
        expect(await grants.find('g-memo')).toMatchObject({ openid: { scope: 'openid email' } });
        await grants.destroy('g-memo');
        expect(await grants.find('g-memo')).toBeUndefined();
      });
    });

    it('reads a refresh token and its Grant in one statement, and sees the token consumed once it is', async () => {
      const tokens = new Adapter('RefreshToken');
      const grants = new Adapter('Grant');
      await grants.upsert('g-with-token', grantPayload('openid offline_access'), 60);
      await tokens.upsert('rt-with-grant', { kind: 'RefreshToken', grantId: 'g-with-token' }, 60);
      await inRequest(async () => {
        expect(await statementsOf(() => tokens.find('rt-with-grant'))).toBe(1);
        expect(await statementsOf(() => grants.find('g-with-token'))).toBe(0);
        expect(await grants.find('g-with-token')).toMatchObject({ jti: 'g-with-token', openid: { scope: 'openid offline_access' } });
        await tokens.consume('rt-with-grant');
        expect((await tokens.find('rt-with-grant'))?.consumed).toBeTypeOf('number');
        await expect(tokens.consume('rt-with-grant')).rejects.toMatchObject({ error: 'invalid_grant' });
      });
    });

    it('forgets what it read when a grant is revoked', async () => {
      const tokens = new Adapter('RefreshToken');
      await new Adapter('Grant').upsert('g-revoked', grantPayload('openid'), 60);
      await tokens.upsert('rt-revoked', { kind: 'RefreshToken', grantId: 'g-revoked' }, 60);
      await inRequest(async () => {
        expect(await tokens.find('rt-revoked')).toBeDefined();
        await tokens.revokeByGrantId('g-revoked');
        expect(await tokens.find('rt-revoked')).toBeUndefined();
      });
    });

    it('carries nothing over to the next request', async () => {
      const grants = new Adapter('Grant');
      await grants.upsert('g-next', grantPayload('openid'), 60);
      await inRequest(() => grants.find('g-next'));
      // Changed meanwhile by another request or node.
      await grants.upsert('g-next', grantPayload('openid profile'), 60);
      expect(await inRequest(() => grants.find('g-next'))).toMatchObject({ openid: { scope: 'openid profile' } });
    });
  });
});
