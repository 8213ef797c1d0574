import type { Context } from 'koa';
import { z } from 'zod';
import { randomToken, safeEqual, sha256 } from '../crypto/random.js';
import type { KvStore } from '../store/index.js';

/**
 * What the SAML endpoints remember between browser hops, in the KvStore (ten
 * minutes, single use: `consume` hands a record to exactly one request):
 * a sign-in on its way through the hosted pages, and a logout on its way
 * through oidc-provider's end_session and the other SPs.
 */

const TTL_SECONDS = 600;

const bindingSchema = z.enum(['redirect', 'post']);

const pendingSignInSchema = z.object({
  serviceProviderId: z.string(),
  acsUrl: z.string(),
  /** The AuthnRequest's ID; absent for IdP-initiated sign-in. */
  requestId: z.string().optional(),
  relayState: z.string().optional(),
  /** PKCE: the code that comes back is redeemable only with this. */
  codeVerifier: z.string(),
  isPassive: z.boolean(),
});
export type PendingSignIn = z.infer<typeof pendingSignInSchema>;

const participantSchema = z.object({
  serviceProviderId: z.string(),
  nameId: z.string(),
  nameIdFormat: z.string(),
  sessionIndex: z.string(),
});
export type LogoutParticipant = z.infer<typeof participantSchema>;

const pendingLogoutSchema = z.object({
  accountId: z.string(),
  /** The SP whose LogoutRequest started this, answered at the end. */
  initiator: z
    .object({
      serviceProviderId: z.string(),
      requestId: z.string(),
      binding: bindingSchema,
      relayState: z.string().optional(),
    })
    .optional(),
  /** A logout started at end_session: where oidc-provider would have sent the browser, validated by it. */
  destination: z.string().optional(),
  /** Other SPs of the session still to be told. */
  remaining: z.array(participantSchema),
  /** The LogoutRequest we sent and wait for an answer to. */
  awaiting: z.object({ serviceProviderId: z.string(), requestId: z.string() }).optional(),
  notified: z.array(z.string()),
  failed: z.array(z.string()),
});
export type PendingLogout = z.infer<typeof pendingLogoutSchema>;

const signInKey = (tenantId: string, handle: string) => `saml:signin:${tenantId}:${sha256(handle)}`;
const logoutKey = (tenantId: string, handle: string) => `saml:logout:${tenantId}:${sha256(handle)}`;

async function save(kv: KvStore, key: (handle: string) => string, value: unknown): Promise<string> {
  const handle = randomToken(24);
  await kv.set(key(handle), JSON.stringify(value), TTL_SECONDS);
  return handle;
}

async function take<T>(kv: KvStore, key: string, schema: z.ZodType<T>): Promise<T | undefined> {
  const stored = await kv.consume(key);
  if (!stored) return undefined;
  const parsed = schema.safeParse(JSON.parse(stored));
  return parsed.success ? parsed.data : undefined;
}

/** A handle that is the key to the record (only its hash is the stored key) and the OIDC `state`. */
export const saveSignIn = (kv: KvStore, tenantId: string, pending: PendingSignIn) =>
  save(kv, (handle) => signInKey(tenantId, handle), pending);

export const takeSignIn = (kv: KvStore, tenantId: string, handle: string) => take(kv, signInKey(tenantId, handle), pendingSignInSchema);

export const saveLogout = (kv: KvStore, tenantId: string, pending: PendingLogout) =>
  save(kv, (handle) => logoutKey(tenantId, handle), pending);

export const takeLogout = (kv: KvStore, tenantId: string, handle: string) => take(kv, logoutKey(tenantId, handle), pendingLogoutSchema);

// ---------------------------------------------------------------- the sign-in's browser binding

/**
 * The browser that started a sign-in holds a cookie naming it, and only that
 * browser may finish it: otherwise someone could start a sign-in, sign in as
 * themselves, and hand the continue link to a victim, whose browser would
 * then post the attacker's assertion to the SP (login CSRF). One cookie per
 * sign-in, named after the handle's hash, so two tabs do not collide.
 */
const cookieName = (handle: string) => `saml_signin_${sha256(handle).slice(0, 16)}`;

export interface CookieScope {
  path: string;
  https: boolean;
}

export function bindToBrowser(ctx: Context, handle: string, scope: CookieScope): void {
  // TLS ends at the reverse proxy (DESIGN.md): with an https public URL the cookie is Secure whatever koa sees.
  if (scope.https) ctx.cookies.secure = true;
  ctx.cookies.set(cookieName(handle), sha256(`binding|${handle}`), {
    httpOnly: true,
    sameSite: 'lax',
    secure: scope.https,
    path: scope.path,
    maxAge: TTL_SECONDS * 1000,
    overwrite: true,
  });
}

/** True when this browser started the sign-in; the cookie is cleared either way. */
export function isBoundToBrowser(ctx: Context, handle: string, scope: CookieScope): boolean {
  const name = cookieName(handle);
  const value = ctx.cookies.get(name);
  if (scope.https) ctx.cookies.secure = true;
  ctx.cookies.set(name, null, { path: scope.path, secure: scope.https, httpOnly: true, sameSite: 'lax', overwrite: true });
  return typeof value === 'string' && safeEqual(value, sha256(`binding|${handle}`));
}
