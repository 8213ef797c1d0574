import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { decodeJwt, type JWK, type JWTPayload } from 'jose';
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

/** How node:crypto verifies each algorithm we sign with (RFC 7518 §3.3 and §3.4, RFC 8037). */
const NODE_VERIFY: Record<string, { digest: string | null; dsaEncoding?: 'ieee-p1363' }> = {
  RS256: { digest: 'sha256' },
  ES256: { digest: 'sha256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { digest: null },
};

interface VerificationKey {
  alg: string;
  key: KeyObject;
}

export function createAccessTokenVerifier(options: VerifierOptions): AccessTokenVerifier {
  const keys = verificationKeys(options.publicKeys, options.algorithms);
  return {
    async payloadOf(jwt) {
      const claims = verifiedClaims(jwt, keys, options.issuer);
      if (!claims) return undefined;
      if (await options.kv.get(options.denylistKey(claims.jti as string))) return undefined;
      return toPayload(claims);
    },
  };
}

/** Our published keys by kid, only for algorithms the tenant signs with: a token names its key, never brings one. */
function verificationKeys(publicKeys: JWK[], algorithms: string[]): Map<string, VerificationKey> {
  const usable = publicKeys.filter(
    (jwk) => typeof jwk.kid === 'string' && typeof jwk.alg === 'string' && algorithms.includes(jwk.alg) && jwk.alg in NODE_VERIFY,
  );
  return new Map(
    usable.map((jwk) => [jwk.kid as string, { alg: jwk.alg as string, key: createPublicKey({ key: jwk as never, format: 'jwk' }) }]),
  );
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 9068 §4: "at+jwt", or its full media type, case-insensitively. */
const isAccessTokenType = (typ: unknown) => typeof typ === 'string' && ['at+jwt', 'application/at+jwt'].includes(typ.toLowerCase());

/**
 * The claims of a JWS compact token that one of our keys signed, with RFC 9068
 * and RFC 7519 checks (type, issuer, lifetime, required claims); undefined
 * otherwise. Verified with node:crypto on the calling thread: a WebCrypto
 * verification (jose) is a libuv thread hop per token, which cost introspection
 * about a fifth of its CPU.
 */
function verifiedClaims(jwt: string, keys: Map<string, VerificationKey>, issuer: string): JWTPayload | undefined {
  if (jwt.length > MAX_JWT_LENGTH) return undefined;
  const parts = jwt.split('.');
  if (parts.length !== 3 || !parts.every((part) => BASE64URL.test(part))) return undefined;
  const [encodedHeader = '', encodedPayload = '', encodedSignature = ''] = parts;
  const header = decodeJson(encodedHeader);
  // No extension we would have to understand (crit), and the algorithm the named key is for: nothing else.
  if (!header || 'crit' in header || !isAccessTokenType(header.typ) || typeof header.kid !== 'string') return undefined;
  const verification = keys.get(header.kid);
  if (!verification || header.alg !== verification.alg) return undefined;
  const { digest, dsaEncoding } = NODE_VERIFY[verification.alg] as (typeof NODE_VERIFY)[string];
  const signed = verify(
    digest,
    Buffer.from(`${encodedHeader}.${encodedPayload}`),
    dsaEncoding ? { key: verification.key, dsaEncoding } : verification.key,
    Buffer.from(encodedSignature, 'base64url'),
  );
  if (!signed) return undefined;
  const claims = decodeJson(encodedPayload) as JWTPayload | undefined;
  return claims && isCurrentAccessToken(claims, issuer, Math.floor(Date.now() / 1000)) ? claims : undefined;
}

function isCurrentAccessToken(claims: JWTPayload, issuer: string, now: number): boolean {
  const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
  return (
    claims.iss === issuer &&
    typeof claims.jti === 'string' &&
    typeof claims.client_id === 'string' &&
    isNumber(claims.iat) &&
    isNumber(claims.exp) &&
    claims.exp > now &&
    (claims.nbf === undefined || (isNumber(claims.nbf) && claims.nbf <= now))
  );
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
