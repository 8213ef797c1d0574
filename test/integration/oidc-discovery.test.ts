import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

/** Members of a private JWK (RFC 7518 §6.3.2, §6.2.2, §6.4.1): none may ever be published. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

describe('OIDC discovery and JWKS', () => {
  let t: TestApp;
  let issuer: string;
  let metadata: Record<string, unknown>;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
    const url = await t.listen();
    issuer = `${url}/t/default`;
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    metadata = (await response.json()) as Record<string, unknown>;
  });
  afterAll(() => t.close());

  it('names the tenant issuer exactly, derived from PUBLIC_URL', () => {
    expect(metadata.issuer).toBe(issuer);
  });

  it('puts every endpoint under the issuer', () => {
    const endpoints = [
      'authorization_endpoint',
      'token_endpoint',
      'userinfo_endpoint',
      'jwks_uri',
      'introspection_endpoint',
      'revocation_endpoint',
      'end_session_endpoint',
    ];
    for (const name of endpoints) {
      expect(metadata[name], name).toBeTypeOf('string');
      expect(String(metadata[name]).startsWith(`${issuer}/`), `${name} = ${String(metadata[name])}`).toBe(true);
    }
    expect(metadata).toMatchObject({
      authorization_endpoint: `${issuer}/auth`,
      token_endpoint: `${issuer}/token`,
      userinfo_endpoint: `${issuer}/me`,
      jwks_uri: `${issuer}/jwks`,
      introspection_endpoint: `${issuer}/token/introspection`,
      revocation_endpoint: `${issuer}/token/revocation`,
      end_session_endpoint: `${issuer}/session/end`,
    });
  });

  it('offers the code flow only, with PKCE S256', () => {
    expect(metadata.response_types_supported).toEqual(['code']);
    expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
    const grants = metadata.grant_types_supported as string[];
    expect(grants).toEqual(expect.arrayContaining(['authorization_code', 'client_credentials', 'refresh_token']));
    expect(grants).not.toContain('implicit');
    expect(grants).not.toContain('password');
  });

  it('lists the configured client authentication methods and signing algorithms', () => {
    const methods = metadata.token_endpoint_auth_methods_supported as string[];
    expect(methods).toEqual(expect.arrayContaining(['client_secret_basic', 'client_secret_post', 'private_key_jwt']));
    // A shared-secret JWT would need the plaintext secret, which is never stored.
    expect(methods).not.toContain('client_secret_jwt');
    expect(metadata.token_endpoint_auth_signing_alg_values_supported as string[]).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/^HS/)]),
    );
    expect(metadata.id_token_signing_alg_values_supported).toContain('RS256');
    expect(metadata.id_token_signing_alg_values_supported).not.toContain('none');
    expect(metadata.authorization_response_iss_parameter_supported).toBe(true);
    expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'offline_access', 'roles']));
    expect(metadata.subject_types_supported).toEqual(['public']);
  });

  it('is accepted by openid-client as the issuer’s metadata', async () => {
    const config = await oidc.discovery(new URL(issuer), 'any-client', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    expect(config.serverMetadata().issuer).toBe(issuer);
    expect(config.serverMetadata().supportsPKCE()).toBe(true);
  });

  it('publishes RSA signing keys with kid, use and alg and no private members', async () => {
    const response = await fetch(String(metadata.jwks_uri));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/(jwk-set\+)?json/);
    const { keys } = (await response.json()) as { keys: Record<string, unknown>[] };
    const rsa = keys.filter((key) => key.kty === 'RSA');
    expect(rsa.length).toBeGreaterThanOrEqual(1);
    for (const key of keys) {
      expect(key).toMatchObject({ kid: expect.any(String), use: 'sig', alg: expect.any(String) });
      for (const member of PRIVATE_MEMBERS) expect(key, `${String(key.kid)} has ${member}`).not.toHaveProperty(member);
    }
    expect(rsa.every((key) => key.alg === 'RS256' && typeof key.n === 'string' && key.e === 'AQAB')).toBe(true);
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    expect(rsa.every((key) => Buffer.from(String(key.n), 'base64url').length === 256)).toBe(true);
    expect(new Set(keys.map((key) => key.kid)).size).toBe(keys.length);
  });

  it('answers an unknown tenant with a JSON 404, at discovery and at its endpoints', async () => {
    for (const path of [
      '/t/nope/.well-known/openid-configuration',
      '/t/nope/jwks',
      '/t/NOPE%2F..%2Fdefault/.well-known/openid-configuration',
    ]) {
      const response = await fetch(`${t.url}${path}`);
      expect(response.status, path).toBe(404);
      expect(response.headers.get('content-type'), path).toMatch(/^application\/json/);
      expect(await response.json(), path).toEqual({ error: 'tenant_not_found', error_description: expect.any(String) });
    }
  });

  it('answers with the issuer of the tenant in the path, not a Host header the caller chose', async () => {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`, { headers: { 'X-Forwarded-Host': 'evil.example' } });
    const forged = (await response.json()) as Record<string, unknown>;
    expect(forged.issuer).toBe(issuer);
    expect(forged.token_endpoint).toBe(`${issuer}/token`);
  });
});
