import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/oidc/clients.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

describe('client_credentials with openid-client', () => {
  let t: TestApp;
  let issuer: string;
  let client: { clientId: string; clientSecret?: string };
  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    const url = await t.listen();
    issuer = `${url}/t/default`;
    const tenant = await t.deps.db.prisma.tenant.findUniqueOrThrow({ where: { slug: 'default' } });
    client = await createClient(
      { prisma: t.deps.db.prisma, audit: t.deps.audit },
      tenant.id,
      { name: 'machine', grantTypes: ['client_credentials'], scope: 'reports:read' },
      { type: 'system' },
    );
  });
  afterAll(() => t.close());

  it('issues an RS256 at+jwt that verifies against the JWKS', async () => {
    const config = await oidc.discovery(new URL(issuer), client.clientId, client.clientSecret, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'reports:read' });
    expect(decodeProtectedHeader(tokens.access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${issuer}/jwks`)), { issuer, typ: 'at+jwt' });
    expect(Number(payload.exp) - Number(payload.iat)).toBe(900);
    expect(payload).toMatchObject({ client_id: client.clientId, scope: 'reports:read', aud: `${issuer}/api`, sub: client.clientId });
    expect(payload.tid).toBeTypeOf('string');

    const introspection = await oidc.tokenIntrospection(config, tokens.access_token);
    expect(introspection).toMatchObject({ active: true, client_id: client.clientId, scope: 'reports:read' });
    await oidc.tokenRevocation(config, tokens.access_token);
    expect(await oidc.tokenIntrospection(config, tokens.access_token)).toEqual({ active: false });
  });
});
