import { createPublicKey } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Vault } from '../crypto/vault.js';
import { summarizeCertificate } from './certificates.js';
import {
  type ConnectionEndpoints,
  type FederationConnection,
  isSamlReady,
  type OidcConnection,
  type SamlConnection,
} from './connections.js';
import { loadOidcRp } from './engines.js';
import { fetchMetadataXml, parseIdpMetadata } from './metadata.js';
import { FederationRejection } from './rejection.js';

/**
 * "Test connection": the checks an admin wants before turning a connection
 * on, each with a sentence saying what was found. Nothing here signs anyone
 * in or changes the connection.
 */

export interface CheckResult {
  check: string;
  ok: boolean;
  detail: string;
}

export interface ConnectionReport {
  ok: boolean;
  checks: CheckResult[];
}

export interface TestDeps {
  clock: Clock;
  vault: Vault;
  fetch?: typeof fetch;
}

const EXPIRY_WARNING_DAYS = 30;
const JWKS_TIMEOUT_MS = 10_000;
const MAX_JWKS_BYTES = 256 * 1024;

const pass = (check: string, detail: string): CheckResult => ({ check, ok: true, detail });
const fail = (check: string, detail: string): CheckResult => ({ check, ok: false, detail });

function report(checks: CheckResult[]): ConnectionReport {
  return { ok: checks.every((c) => c.ok), checks };
}

export async function testConnection(
  deps: TestDeps,
  connection: FederationConnection,
  endpoints: ConnectionEndpoints,
): Promise<ConnectionReport> {
  return connection.type === 'oidc' ? testOidc(deps, connection, endpoints) : testSaml(deps, connection);
}

// ---------------------------------------------------------------- OIDC

async function testOidc(deps: TestDeps, connection: OidcConnection, endpoints: ConnectionEndpoints): Promise<ConnectionReport> {
  const checks: CheckResult[] = [];
  let jwksUri: string | undefined;
  try {
    const { discoverProvider } = await loadOidcRp();
    const config = await discoverProvider(deps, connection, endpoints);
    const server = config.serverMetadata();
    checks.push(pass('discovery', `${connection.oidc.issuer}/.well-known/openid-configuration answered and names issuer ${server.issuer}`));
    const missing = (['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const).filter((field) => !server[field]);
    checks.push(
      missing.length
        ? fail('endpoints', `discovery does not name ${missing.join(', ')}`)
        : pass('endpoints', `authorization ${server.authorization_endpoint}, token ${server.token_endpoint}`),
    );
    const methods = server.code_challenge_methods_supported;
    checks.push(
      !methods || methods.includes('S256')
        ? pass('pkce', methods ? 'S256 PKCE is supported' : 'the provider does not list PKCE methods; S256 will be sent')
        : fail('pkce', `S256 PKCE is not among ${methods.join(', ')}`),
    );
    jwksUri = server.jwks_uri;
  } catch (error) {
    const detail = error instanceof FederationRejection ? (error.detail ?? error.reason) : String(error);
    checks.push(fail('discovery', detail));
  }
  if (jwksUri) checks.push(await checkJwks(deps, jwksUri));
  if (connection.oidc.tokenEndpointAuthMethod !== 'none' && !connection.clientSecret) {
    checks.push(
      fail(
        'client_secret',
        `token_endpoint_auth_method ${connection.oidc.tokenEndpointAuthMethod} needs a client secret, and none is stored`,
      ),
    );
  }
  return report(checks);
}

interface JwkLike {
  kty?: unknown;
  use?: unknown;
  kid?: unknown;
}

async function checkJwks(deps: TestDeps, jwksUri: string): Promise<CheckResult> {
  let body: unknown;
  try {
    const response = await (deps.fetch ?? fetch)(jwksUri, {
      signal: AbortSignal.timeout(JWKS_TIMEOUT_MS),
      headers: { Accept: 'application/json' },
    });
    if (!response.ok) return fail('jwks', `${jwksUri} answered HTTP ${response.status}`);
    const text = await response.text();
    if (text.length > MAX_JWKS_BYTES) return fail('jwks', `${jwksUri} is larger than ${MAX_JWKS_BYTES} bytes`);
    body = JSON.parse(text);
  } catch (error) {
    return fail('jwks', `${jwksUri} could not be read: ${error instanceof Error ? error.message : String(error)}`);
  }
  const keys = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) return fail('jwks', `${jwksUri} is not a JWK Set`);
  const signing = keys.filter((key: JwkLike) => key && typeof key === 'object' && key.use !== 'enc');
  const usable = signing.filter((key) => {
    try {
      createPublicKey({ key, format: 'jwk' });
      return true;
    } catch {
      return false;
    }
  });
  if (usable.length === 0) return fail('jwks', `${jwksUri} has no usable signing key`);
  return pass('jwks', `${jwksUri} has ${usable.length} signing key(s)`);
}

// ---------------------------------------------------------------- SAML

async function testSaml(deps: TestDeps, connection: SamlConnection): Promise<ConnectionReport> {
  const checks: CheckResult[] = [];
  let certificates = connection.saml.certificates;
  if (connection.saml.metadataUrl) {
    try {
      const metadata = parseIdpMetadata(await fetchMetadataXml(connection.saml.metadataUrl, deps.fetch));
      checks.push(
        pass(
          'metadata',
          `${connection.saml.metadataUrl} parses: entity ${metadata.entityId}, ${metadata.certificates.length} signing certificate(s)`,
        ),
      );
      if (metadata.entityId !== connection.saml.idpEntityId) {
        checks.push(
          fail(
            'entity_id',
            `the metadata now names ${metadata.entityId}, the connection has ${connection.saml.idpEntityId ?? '(none)'}: re-import it`,
          ),
        );
      }
      const stale = metadata.certificates.filter((c) => !connection.saml.certificates.includes(c));
      if (stale.length)
        checks.push(
          fail('certificates_current', `the metadata lists ${stale.length} certificate(s) the connection does not have: re-import it`),
        );
      certificates = metadata.certificates;
    } catch (error) {
      checks.push(fail('metadata', error instanceof Error ? error.message : String(error)));
    }
  }
  checks.push(
    isSamlReady(connection.saml)
      ? pass(
          'configuration',
          `IdP ${connection.saml.idpEntityId}, single sign-on at ${connection.saml.ssoUrl} (${connection.saml.ssoBinding} binding)`,
        )
      : fail('configuration', 'the IdP entity ID, single sign-on URL or signing certificate is missing: import the IdP metadata'),
  );
  certificates.forEach((certificate, index) => {
    checks.push(certificateCheck(`idp_certificate_${index + 1}`, certificate, deps.clock.now()));
  });
  if (connection.spCertificate) checks.push(certificateCheck('sp_certificate', connection.spCertificate, deps.clock.now()));
  return report(checks);
}

function certificateCheck(check: string, certificate: string, now: number): CheckResult {
  const summary = summarizeCertificate(certificate, now, EXPIRY_WARNING_DAYS);
  if (!summary) return fail(check, 'not a valid X.509 certificate');
  const who = `${summary.subject} (SHA-256 ${summary.fingerprintSha256})`;
  if (summary.expired) return fail(check, `${who} is not valid now: valid from ${summary.notBefore} to ${summary.notAfter}`);
  if (summary.expiresSoon) return fail(check, `${who} expires on ${summary.notAfter}, within ${EXPIRY_WARNING_DAYS} days`);
  return pass(check, `${who} is valid until ${summary.notAfter}`);
}
