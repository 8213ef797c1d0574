import { createHmac, createPublicKey } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTenantKeys } from '../../src/oidc/keys.js';
import { createTestApp, TEST_ADMIN_PASSWORD, type TestApp } from '../helpers/app.js';
import { createTenantClient, createTenantWithUser, relaxRateLimits, rpConfig, signIn, type TenantClient } from '../helpers/oidc.js';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/**
 * Forged and tampered access tokens presented where our JWTs are accepted:
 * introspection (RFC 7662) and userinfo. Every forgery must be inactive / 401,
 * and the positive controls prove the same request succeeds with a real token,
 * so a rejection means the forgery was caught, not that the request was broken.
 */
describe('JWT attacks at introspection and userinfo', () => {
  let t: TestApp;
  let issuer: string;
  let introspectionEndpoint: string;
  let userinfoEndpoint: string;
  /** A confidential resource server: may introspect any token of the tenant. */
  let api: TenantClient;
  /** A plain confidential client: may introspect only its own tokens. */
  let machine: TenantClient;
  let web: TenantClient;
  let foreign: TenantClient;
  /** An access token of the signed-in admin, and its claims. */
  let userToken: string;
  let idToken: string;
  let claims: JWTPayload;
  let header: Record<string, unknown>;
  let publicJwk: JWK;
  let privateJwk: JWK;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    issuer = `${await t.listen()}/t/default`;
    await relaxRateLimits(t);
    api = await createTenantClient(t, { name: 'api', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true });
    machine = await createTenantClient(t, { name: 'machine', grantTypes: ['client_credentials'], scope: 'reports:read' });
    web = await createTenantClient(t, { name: 'web', redirectUris: ['https://rp.example.com/cb'], firstParty: true });
    await createTenantWithUser(t, 'other', { email: 'someone@other.example', password: 'another long password' });
    foreign = await createTenantClient(
      t,
      { name: 'foreign', grantTypes: ['client_credentials'], scope: 'reports:read', resourceServer: true },
      'other',
    );
    const metadata = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<string, string>;
    introspectionEndpoint = metadata.introspection_endpoint ?? '';
    userinfoEndpoint = metadata.userinfo_endpoint ?? '';

    const { tokens } = await signIn(issuer, await rpConfig(issuer, web), {
      email: 'admin@example.com',
      password: TEST_ADMIN_PASSWORD,
      scope: 'openid email profile',
    });
    userToken = tokens.access_token;
    idToken = tokens.id_token ?? '';
    claims = decodeJwt(userToken);
    header = decodeProtectedHeader(userToken);
    const keys = await loadTenantKeys({ prisma: t.deps.db.prisma, vault: t.deps.vault, clock: t.deps.clock }, web.tenantId);
    const active = keys.signing.find((key) => key.kid === header.kid);
    const published = keys.public.find((key) => key.kid === header.kid);
    if (!active || !published) throw new Error('the active key did not sign the access token');
    privateJwk = active;
    publicJwk = published;
  });
  afterAll(() => t.close());

  const basic = (client: TenantClient) => `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret ?? ''}`).toString('base64')}`;

  async function introspect(token: string, client: TenantClient = api): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(introspectionEndpoint, {
      method: 'POST',
      headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function userinfo(token: string): Promise<{ status: number; body: string; challenge: string | null }> {
    const response = await fetch(userinfoEndpoint, { headers: { authorization: `Bearer ${token}` } });
    return { status: response.status, body: await response.text(), challenge: response.headers.get('www-authenticate') };
  }

  async function expectRejected(token: string, label: string): Promise<void> {
    expect(await introspect(token), label).toEqual({ status: 200, body: { active: false } });
    const info = await userinfo(token);
    expect(info.status, label).toBe(401);
    expect(info.challenge, label).toMatch(/error="invalid_token"/);
    expect(info.body, label).not.toContain('admin@example.com');
  }

  /** Signed with our real active key: what a correct token with these claims looks like. */
  function signWithOurKey(payload: JWTPayload, protectedHeader: Record<string, unknown> = header): Promise<string> {
    return importJWK(privateJwk, 'RS256').then((key) =>
      new SignJWT(payload).setProtectedHeader({ ...protectedHeader, alg: 'RS256' } as { alg: string }).sign(key),
    );
  }

  it('accepts the genuine token (positive control)', async () => {
    expect(await introspect(userToken)).toMatchObject({ status: 200, body: { active: true, sub: claims.sub, client_id: web.clientId } });
    const info = await userinfo(userToken);
    expect(info.status).toBe(200);
    expect(JSON.parse(info.body)).toMatchObject({ sub: claims.sub, email: 'admin@example.com' });
    // Re-signing the same claims with our key is accepted too: the forgeries below differ only in what they forge.
    const resigned = await signWithOurKey({ ...claims, jti: `${String(claims.jti)}-resigned` });
    expect((await introspect(resigned)).body).toMatchObject({ active: true });
  });

  it('rejects alg "none"', async () => {
    for (const alg of ['none', 'None', 'NONE']) {
      await expectRejected(`${b64({ ...header, alg })}.${b64(claims)}.`, `alg ${alg}`);
      // Some libraries accept "none" when a signature is present anyway.
      await expectRejected(`${b64({ ...header, alg })}.${b64(claims)}.${userToken.split('.')[2]}`, `alg ${alg} with signature`);
    }
  });

  it('rejects HS256 signed with our RSA public key (algorithm confusion)', async () => {
    const pem = createPublicKey({ key: publicJwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
    const der = createPublicKey({ key: publicJwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
    const secrets: [string, Buffer][] = [
      ['PEM', Buffer.from(pem)],
      ['PEM without trailing newline', Buffer.from(pem.trimEnd())],
      ['DER', der],
      ['JWK JSON', Buffer.from(JSON.stringify(publicJwk))],
      ['modulus', Buffer.from(String(publicJwk.n), 'base64url')],
    ];
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const hash = `sha${alg.slice(2)}`;
      for (const [label, secret] of secrets) {
        const signingInput = `${b64({ ...header, alg })}.${b64(claims)}`;
        const signature = createHmac(hash, secret).update(signingInput).digest('base64url');
        await expectRejected(`${signingInput}.${signature}`, `${alg} with ${label}`);
      }
    }
  });

  it('rejects hostile kids and keys the attacker brings along', async () => {
    const attacker = await generateKeyPair('RS256', { extractable: true });
    const attackerJwk = await exportJWK(attacker.publicKey);
    const forge = (protectedHeader: Record<string, unknown>) =>
      new SignJWT({ ...claims }).setProtectedHeader({ ...protectedHeader, alg: 'RS256' } as { alg: string }).sign(attacker.privateKey);
    const keysBefore = await t.deps.db.prisma.signingKey.count();
    const hostileKids = [
      '../../../../../../etc/passwd',
      '/dev/null',
      "' OR '1'='1",
      'x\'; DROP TABLE "SigningKey"; --',
      'k'.repeat(10_000),
      '',
      String(header.kid),
    ];
    for (const kid of hostileKids) await expectRejected(await forge({ typ: 'at+jwt', kid }), `kid ${kid.slice(0, 40)}`);
    // Header-embedded keys (CVE-2018-0114 style) and remote key URLs must never be trusted.
    await expectRejected(await forge({ typ: 'at+jwt', jwk: attackerJwk }), 'embedded jwk');
    await expectRejected(await forge({ typ: 'at+jwt', jku: 'https://attacker.example/jwks', kid: 'attacker' }), 'jku');
    await expectRejected(await forge({ typ: 'at+jwt', x5u: 'https://attacker.example/cert.pem' }), 'x5u');
    // The signing keys are untouched by the SQL-looking kid.
    expect(await t.deps.db.prisma.signingKey.count()).toBe(keysBefore);
    expect((await introspect(userToken)).body).toMatchObject({ active: true });
  });

  it('rejects an expired token signed with our own key', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await signWithOurKey({ ...claims, iat: now - 1000, exp: now - 100, jti: 'expired-1' });
    await expectRejected(expired, 'expired');
    const notYet = await signWithOurKey({ ...claims, iat: now, nbf: now + 3600, exp: now + 4000, jti: 'not-yet-1' });
    await expectRejected(notYet, 'not yet valid');
  });

  it('rejects tokens of the right key but the wrong kind or issuer', async () => {
    // An ID token is not an access token, even though our key signed it.
    await expectRejected(idToken, 'ID token as access token');
    await expectRejected(await signWithOurKey(claims, { ...header, typ: 'JWT' }), 'typ JWT');
    await expectRejected(await signWithOurKey({ ...claims, iss: `${t.url}/t/other`, jti: 'iss-1' }), 'foreign iss');
    const { jti: _jti, ...withoutJti } = claims;
    await expectRejected(await signWithOurKey(withoutJti), 'no jti');
  });

  it('rejects a genuine token with one payload byte flipped', async () => {
    const [head = '', payload = '', signature = ''] = userToken.split('.');
    const json = Buffer.from(payload, 'base64url');
    // Flip a byte inside the subject's value: the token stays parseable JSON.
    const at = json.indexOf(Buffer.from(String(claims.sub))) + 1;
    json[at] = (json[at] ?? 0) ^ 0x01;
    await expectRejected(`${head}.${json.toString('base64url')}.${signature}`, 'flipped payload byte');
    // A byte of the decoded signature: the last base64url characters of a signature partly encode padding bits.
    const signatureBytes = Buffer.from(signature, 'base64url');
    signatureBytes[0] = (signatureBytes[0] ?? 0) ^ 0x01;
    const flippedSignature = signatureBytes.toString('base64url');
    await expectRejected(`${head}.${payload}.${flippedSignature}`, 'flipped signature');
  });

  it('rejects a token of another tenant, signed by that tenant’s real key', async () => {
    const foreignConfig = await rpConfig(`${t.url}/t/other`, foreign);
    const foreignToken = (await oidc.clientCredentialsGrant(foreignConfig, { scope: 'reports:read' })).access_token;
    // It is genuine where it was issued…
    expect(await oidc.tokenIntrospection(foreignConfig, foreignToken)).toMatchObject({ active: true });
    // …and worthless here.
    await expectRejected(foreignToken, 'token of tenant other');
  });

  it('refuses introspection by a client of another tenant as an unknown client', async () => {
    const { status, body } = await introspect(userToken, foreign);
    expect(status).toBe(401);
    expect(body).toEqual({ error: 'invalid_client', error_description: expect.any(String) });
    expect(JSON.stringify(body)).not.toContain(String(claims.sub));
  });

  it('lets only resource servers introspect the tokens of other clients', async () => {
    expect(await introspect(userToken, machine)).toEqual({ status: 200, body: { active: false } });
    expect((await introspect(userToken, api)).body).toMatchObject({ active: true, sub: claims.sub });
    const machineToken = (await oidc.clientCredentialsGrant(await rpConfig(issuer, machine), { scope: 'reports:read' })).access_token;
    expect((await introspect(machineToken, machine)).body).toMatchObject({ active: true, client_id: machine.clientId });
    expect((await introspect(machineToken, api)).body).toMatchObject({ active: true, client_id: machine.clientId });
  });
});
