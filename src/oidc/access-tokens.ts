import { createLocalJWKSet, decodeJwt, type JWK, type JWTPayload, jwtVerify } from 'jose';
import type { AdapterPayload } from 'oidc-provider';
import type { KvStore } from '../store/index.js';

/** The private claim that ties a user's access token to its grant, so revoking the grant kills the token. */
export const GRANT_CLAIM = 'gid';

export interface AccessTokenVerifier {
  /**
   * The oidc-provider payload of one of our JWT access tokens, or undefined
   * when its signature, issuer, type or lifetime is wrong or it was revoked.
   */
  payloadOf(jwt: string): Promise<AdapterPayload | undefined>;
}

export interface VerifierOptions {
  issuer: string;
  publicKeys: JWK[];
  algorithms: string[];
  kv: KvStore;
  /** Key of the denylist entry for a revoked jti. */
  denylistKey(jti: string): string;
}

const MAX_JWT_LENGTH = 16 * 1024;

export function createAccessTokenVerifier(options: VerifierOptions): AccessTokenVerifier {
  const keys = createLocalJWKSet({ keys: options.publicKeys });
  return {
    async payloadOf(jwt) {
      if (jwt.length > MAX_JWT_LENGTH) return undefined;
      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(jwt, keys, {
          issuer: options.issuer,
          typ: 'at+jwt',
          algorithms: options.algorithms,
          requiredClaims: ['jti', 'exp', 'iat', 'client_id'],
        }));
      } catch {
        return undefined;
      }
      const jti = claims.jti as string;
      if (await options.kv.get(options.denylistKey(jti))) return undefined;
      return toPayload(claims);
    },
  };
}

/** Tokens of a user carry their grant; client_credentials tokens have none. */
function kindOf(claims: JWTPayload): 'AccessToken' | 'ClientCredentials' {
  return typeof claims[GRANT_CLAIM] === 'string' ? 'AccessToken' : 'ClientCredentials';
}

/**
 * The model a JWT would be found as, read WITHOUT verifying it: only for
 * skipping the lookup of the other model (oidc-provider looks a token up as
 * both at once), never for trusting anything in it. Undefined when unreadable.
 */
export function unverifiedKindOf(jwt: string): 'AccessToken' | 'ClientCredentials' | undefined {
  if (jwt.length > MAX_JWT_LENGTH) return undefined;
  try {
    return kindOf(decodeJwt(jwt));
  } catch {
    return undefined;
  }
}

const STANDARD = new Set(['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'cnf', GRANT_CLAIM]);

function toPayload(claims: JWTPayload): AdapterPayload {
  const grantId = typeof claims[GRANT_CLAIM] === 'string' ? (claims[GRANT_CLAIM] as string) : undefined;
  const extra = Object.fromEntries(Object.entries(claims).filter(([name]) => !STANDARD.has(name)));
  return {
    kind: kindOf(claims),
    jti: claims.jti,
    iat: claims.iat,
    exp: claims.exp,
    clientId: claims.client_id as string,
    ...(grantId ? { accountId: claims.sub, grantId } : {}),
    scope: typeof claims.scope === 'string' ? claims.scope : undefined,
    aud: claims.aud,
    extra,
  } as AdapterPayload;
}
