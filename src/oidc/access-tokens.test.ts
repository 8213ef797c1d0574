import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createMemoryKv } from '../store/kv-memory.js';
import { createAccessTokenVerifier } from './access-tokens.js';

const ISSUER = 'https://idp.example/t/acme';
const ALGS = ['RS256', 'ES256', 'EdDSA'] as const;

async function keyPairOf(alg: (typeof ALGS)[number], kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function claims(overrides: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISSUER,
    sub: 'user-1',
    client_id: 'web',
    jti: `jti-${Math.random()}`,
    iat: now,
    exp: now + 900,
    gid: 'grant-1',
    ...overrides,
  };
}

/**
 * The verifier checks signatures with node:crypto itself, so what jose would
 * have enforced is pinned here for every algorithm a tenant can sign with;
 * test/security/jwt-attacks.test.ts attacks it through the endpoints.
 */
describe('access token verifier', async () => {
  const pairs = await Promise.all(ALGS.map((alg) => keyPairOf(alg, `kid-${alg}`)));
  const kv = createMemoryKv();
  const verifier = createAccessTokenVerifier({
    issuer: ISSUER,
    publicKeys: pairs.map((pair) => pair.publicJwk),
    algorithms: [...ALGS],
    kv,
    denylistKey: (jti) => `denied:${jti}`,
  });
  const sign = (index: number, payload: JWTPayload, header: Record<string, unknown> = {}) => {
    const pair = pairs[index] as (typeof pairs)[number];
    return new SignJWT(payload)
      .setProtectedHeader({ alg: ALGS[index] as string, kid: pair.publicJwk.kid, typ: 'at+jwt', ...header })
      .sign(pair.privateKey, { crit: { 'x-ext': true } });
  };

  it.each(ALGS.map((alg, index) => [alg, index] as const))('accepts a genuine %s token and refuses it tampered', async (_alg, index) => {
    const token = await sign(index, claims({ scope: 'openid' }));
    expect(await verifier.payloadOf(token)).toMatchObject({
      kind: 'AccessToken',
      accountId: 'user-1',
      grantId: 'grant-1',
      scope: 'openid',
    });
    const [head, payload, signature = ''] = token.split('.');
    const bytes = Buffer.from(signature, 'base64url');
    bytes[0] = (bytes[0] ?? 0) ^ 0x01;
    const flipped = bytes.toString('base64url');
    expect(await verifier.payloadOf(`${head}.${payload}.${flipped}`)).toBeUndefined();
    const otherPayload = Buffer.from(JSON.stringify(claims({ sub: 'admin' }))).toString('base64url');
    expect(await verifier.payloadOf(`${head}.${otherPayload}.${signature}`)).toBeUndefined();
  });

  it('accepts the full media type of RFC 9068 and refuses other types', async () => {
    expect(await verifier.payloadOf(await sign(0, claims(), { typ: 'application/AT+JWT' }))).toBeDefined();
    for (const typ of ['JWT', 'at+jwt2', undefined]) expect(await verifier.payloadOf(await sign(0, claims(), { typ }))).toBeUndefined();
  });

  it('refuses a token whose header names another key, another algorithm for the key, or an extension', async () => {
    expect(await verifier.payloadOf(await sign(0, claims(), { kid: 'unknown' }))).toBeUndefined();
    // Signed by the RSA key but claiming the EC key's kid: the kid's key does not verify it.
    expect(await verifier.payloadOf(await sign(0, claims(), { kid: 'kid-ES256' }))).toBeUndefined();
    expect(await verifier.payloadOf(await sign(0, claims(), { crit: ['x-ext'], 'x-ext': 1 }))).toBeUndefined();
  });

  it('refuses the wrong issuer, a missing jti or client_id, an expired or not yet valid token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const refused: JWTPayload[] = [
      claims({ iss: 'https://idp.example/t/other' }),
      claims({ jti: undefined }),
      claims({ client_id: undefined }),
      claims({ iat: undefined }),
      claims({ exp: now }),
      claims({ exp: String(now + 900) as never }),
      claims({ nbf: now + 60 }),
    ];
    for (const payload of refused) expect(await verifier.payloadOf(await sign(0, payload))).toBeUndefined();
    expect(await verifier.payloadOf(await sign(0, claims({ nbf: now })))).toBeDefined();
  });

  it('refuses a revoked token and malformed input', async () => {
    const payload = claims();
    const token = await sign(0, payload);
    await kv.set(`denied:${payload.jti}`, '1', 60);
    expect(await verifier.payloadOf(token)).toBeUndefined();
    for (const junk of ['', 'a.b', 'a.b.c', `${token}.x`, `${token.split('.').slice(0, 2).join('.')}.`, 'x'.repeat(20_000), `${token} `]) {
      expect(await verifier.payloadOf(junk)).toBeUndefined();
    }
  });
});
