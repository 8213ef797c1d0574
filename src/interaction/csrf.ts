import { createHmac, hkdfSync } from 'node:crypto';
import type { Context } from 'koa';
import { safeEqual } from '../crypto/random.js';

/** The hidden form field every POST of the hosted pages carries. */
export const CSRF_FIELD = '_csrf';

export interface CsrfGuard {
  /** The token for the forms of one interaction of one tenant. */
  tokenFor(tenantId: string, uid: string): string;
  /** Constant-time check of a submitted token; anything but a string fails. */
  verify(tenantId: string, uid: string, submitted: unknown): boolean;
}

const HKDF_SALT = Buffer.from('idp interaction csrf salt v1');
const HKDF_INFO = Buffer.from('idp interaction csrf key');

/**
 * Tokens are HMAC-SHA256 over tenant and interaction uid with a key derived
 * from the master key, so nothing is stored: a token is valid for exactly one
 * interaction, which expires within minutes, and cannot be computed without the
 * key. A form posted from another site lacks it even when cookies ride along.
 */
export function createCsrfGuard(masterKey: Buffer): CsrfGuard {
  const key = Buffer.from(hkdfSync('sha256', masterKey, HKDF_SALT, HKDF_INFO, 32));
  const tokenFor = (tenantId: string, uid: string) => createHmac('sha256', key).update(`${tenantId}\0${uid}`).digest('base64url');
  return {
    tokenFor,
    verify(tenantId, uid, submitted) {
      return typeof submitted === 'string' && safeEqual(submitted, tokenFor(tenantId, uid));
    },
  };
}

/**
 * A browser names the page that sent a POST in `Origin`; when it does, it must
 * be us (the public URL, or the host the request was addressed to). Our pages
 * send `Referrer-Policy: same-origin`, so their own posts never say `null`.
 * Without the header (older clients) the token alone decides.
 */
export function isSameOrigin(ctx: Pick<Context, 'get' | 'protocol' | 'host'>, publicUrl: string): boolean {
  const origin = ctx.get('Origin');
  if (!origin) return true;
  // Not ctx.origin: since koa 3 that is the Origin header itself.
  return origin === new URL(publicUrl).origin || origin === `${ctx.protocol}://${ctx.host}`;
}
