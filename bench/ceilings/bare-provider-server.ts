/**
 * The peer baseline: oidc-provider itself (the same version as the server),
 * with its in-memory adapter and the least configuration that issues what our
 * client_credentials grant issues: an RS256 JWT access token for a resource,
 * to one static confidential client. No tenants, database, audit or logging.
 * (DESIGN.md keeps oidc-provider imports inside src/oidc/; this file is the
 * benchmark's deliberate exception, being the thing we compare with.)
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { type JWKS } from 'oidc-provider';

function main(): void {
  const port = Number(process.env.PORT);
  const clientId = process.env.BARE_CLIENT_ID ?? '';
  const clientSecret = process.env.BARE_CLIENT_SECRET ?? '';
  const issuer = `http://127.0.0.1:${port}`;
  const api = `${issuer}/api`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'bare-rs256', alg: 'RS256', use: 'sig' }] } as JWKS;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks,
    cookies: { keys: ['bare-provider-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => api,
        useGrantedResource: async () => true,
        getResourceServerInfo: async () => ({
          scope: '',
          audience: api,
          accessTokenTTL: 900,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  const server = createServer(provider.callback());
  server.keepAliveTimeout = 5_000;
  server.listen(port, '127.0.0.1');
  process.once('SIGTERM', () => server.close(() => process.exit(0)));
}

main();
