import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateKeys } from '../../src/oidc/keys.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import {
  announce,
  createTenantClient,
  createTenantWithUser,
  relaxRateLimits,
  rpConfig,
  signIn,
  type TenantClient,
} from '../helpers/oidc.js';

interface KeyRow {
  kid: string;
  alg: string;
  status: string;
}

describe('signing keys: publication and rotation', () => {
  let t: TestApp;
  let issuer: string;
  let machine: TenantClient;
  let config: oidc.Configuration;
  /** Signed by the original active key, before any rotation. */
  let firstToken = '';

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    issuer = `${await t.listen()}/t/default`;
    await relaxRateLimits(t);
    machine = await createTenantClient(t, { name: 'machine', grantTypes: ['client_credentials'], scope: 'reports:read' });
    config = await rpConfig(issuer, machine);
  });
  afterAll(() => t.close());

  async function jwks(url = `${issuer}/jwks`): Promise<JSONWebKeySet> {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    return (await response.json()) as JSONWebKeySet;
  }

  async function keyRows(tenantId = machine.tenantId): Promise<KeyRow[]> {
    return t.deps.db.prisma.signingKey.findMany({ where: { tenantId }, select: { kid: true, alg: true, status: true } });
  }

  const kidsWith = (rows: KeyRow[], status: string) => rows.filter((row) => row.status === status).map((row) => row.kid);

  async function machineToken(): Promise<string> {
    return (await oidc.clientCredentialsGrant(config, { scope: 'reports:read' })).access_token;
  }

  const kidOf = (jwt: string) => decodeProtectedHeader(jwt).kid;

  async function rotate() {
    const [result] = await rotateKeys(
      { prisma: t.deps.db.prisma, vault: t.deps.vault, clock: t.deps.clock, audit: t.deps.audit },
      machine.tenantId,
      { type: 'system' },
    );
    await announce(t, { tenantId: machine.tenantId, slug: 'default', what: 'keys' });
    if (!result) throw new Error('rotation returned nothing');
    return result;
  }

  it('publishes the active key and the next one, and signs with the active one', async () => {
    const rows = await keyRows();
    const [active] = kidsWith(rows, 'active');
    const [next] = kidsWith(rows, 'next');
    expect(active).toBeTypeOf('string');
    expect(next).toBeTypeOf('string');
    const published = (await jwks()).keys.map((key) => key.kid);
    expect(published).toEqual(expect.arrayContaining([active, next]));
    expect(published).toHaveLength(2);
    expect(kidOf(await machineToken())).toBe(active);
  });

  it('rotates without downtime: new tokens use the former next key, earlier tokens keep verifying', async () => {
    const before = await machineToken();
    firstToken = before;
    const oldKid = kidOf(before);
    const rotation = await rotate();
    expect(rotation.previous).toBe(oldKid);

    const after = await machineToken();
    expect(kidOf(after)).toBe(rotation.activated);
    expect(kidOf(after)).not.toBe(oldKid);

    const set = await jwks();
    expect(set.keys.map((key) => key.kid).sort()).toEqual([rotation.activated, rotation.next, oldKid].sort());
    const keys = createLocalJWKSet(set);
    for (const token of [before, after]) {
      await expect(jwtVerify(token, keys, { issuer, typ: 'at+jwt' })).resolves.toBeTruthy();
    }
    expect(await oidc.tokenIntrospection(config, before)).toMatchObject({ active: true, client_id: machine.clientId });
    expect(await oidc.tokenIntrospection(config, after)).toMatchObject({ active: true });
  });

  it('retires the original key at the second rotation: unpublished, and its tokens no longer accepted', async () => {
    const rows = await keyRows();
    const [original] = kidsWith(rows, 'previous');
    expect(original).toBeTypeOf('string');
    // A token signed by the current active key, which becomes `previous` now.
    const current = await machineToken();

    const rotation = await rotate();
    const retired = (await keyRows()).find((row) => row.kid === original);
    expect(retired?.status).toBe('retired');
    const set = await jwks();
    expect(set.keys.map((key) => key.kid)).not.toContain(original);
    expect(set.keys.map((key) => key.kid).sort()).toEqual([rotation.activated, rotation.next, kidOf(current)].sort());
    expect(await oidc.tokenIntrospection(config, current)).toMatchObject({ active: true });
    expect(kidOf(firstToken)).toBe(original);
    await expect(jwtVerify(firstToken, createLocalJWKSet(set), { issuer })).rejects.toThrow();
    expect(await oidc.tokenIntrospection(config, firstToken)).toEqual({ active: false });
  });

  it('keeps private keys only as vault envelopes', async () => {
    const rows = await t.deps.db.prisma.$queryRawUnsafe<{ row: string }[]>(`SELECT row_to_json(k)::text AS row FROM "SigningKey" k`);
    expect(rows.length).toBeGreaterThanOrEqual(4);
    for (const { row } of rows) {
      expect(row).not.toMatch(/"d"\s*:/);
      expect(row).not.toMatch(/"(p|q|dp|dq|qi)"\s*:/);
    }
    const stored = await t.deps.db.prisma.signingKey.findMany({ select: { privateJwk: true, publicJwk: true } });
    for (const key of stored) {
      expect(key.privateJwk.startsWith(t.deps.vault.currentPrefix())).toBe(true);
      expect(key.publicJwk).not.toHaveProperty('d');
    }
  });

  describe('a tenant that enables ES256', () => {
    const user = { email: 'ec@example.com', password: 'correct horse battery staple' };
    let ecIssuer: string;
    let tenantId: string;

    beforeAll(async () => {
      ({ tenantId } = await createTenantWithUser(t, 'ec-tenant', user, { signingAlgs: ['ES256'] }));
      ecIssuer = `${t.url}/t/ec-tenant`;
    });

    it('publishes an EC P-256 key beside the RSA ones', async () => {
      const { keys } = await jwks(`${ecIssuer}/jwks`);
      const ec = keys.filter((key) => key.kty === 'EC');
      expect(ec.length).toBeGreaterThanOrEqual(1);
      for (const key of ec) {
        expect(key).toMatchObject({ crv: 'P-256', alg: 'ES256', use: 'sig', kid: expect.any(String) });
        expect(key).not.toHaveProperty('d');
      }
      expect(keys.some((key) => key.kty === 'RSA' && key.alg === 'RS256')).toBe(true);
      const metadata = (await (await fetch(`${ecIssuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      expect(metadata.id_token_signing_alg_values_supported).toEqual(expect.arrayContaining(['RS256', 'ES256']));
    });

    it('signs ID tokens with ES256 for a client that asks for it, access tokens still with RS256', async () => {
      const client = await createTenantClient(
        t,
        { name: 'ec-app', redirectUris: ['https://ec.example.com/cb'], firstParty: true, idTokenSignedResponseAlg: 'ES256' },
        'ec-tenant',
      );
      const ecConfig = await rpConfig(ecIssuer, client);
      const { tokens } = await signIn(ecIssuer, ecConfig, { ...user, scope: 'openid email' });
      const idToken = tokens.id_token ?? '';
      expect(decodeProtectedHeader(idToken).alg).toBe('ES256');
      const keys = createLocalJWKSet(await jwks(`${ecIssuer}/jwks`));
      const { payload } = await jwtVerify(idToken, keys, { issuer: ecIssuer, audience: client.clientId, algorithms: ['ES256'] });
      expect(payload.email).toBe(user.email);
      expect(decodeProtectedHeader(tokens.access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
      await expect(jwtVerify(tokens.access_token, keys, { issuer: ecIssuer, typ: 'at+jwt', algorithms: ['RS256'] })).resolves.toBeTruthy();
      const ecKids = (await keyRows(tenantId)).filter((row) => row.alg === 'ES256' && row.status === 'active').map((row) => row.kid);
      expect(ecKids).toContain(decodeProtectedHeader(idToken).kid);
    });
  });
});
