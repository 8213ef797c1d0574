import { createHmac, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import type { Clock } from '../clock.js';
import { safeEqual, sha256 } from '../crypto/random.js';
import type { PrismaClient } from '../store/db.js';

/**
 * The device cookie: a random id for this browser, signed so it cannot be
 * made up, that a browser earns by signing in. A browser that has signed in to
 * an account before is recognised by it (a KnownDevice row of that user), so
 * it is throttled on its own instead of being subject to the account-wide
 * lock, and a sign-in without it gets a "new device" notice.
 *
 * One cookie per tenant (its path is the tenant's), shared by every account
 * signed in from the browser; only its SHA-256 is stored.
 */
export const DEVICE_COOKIE = 'idp_device';

/** 400 days: the longest lifetime browsers grant a cookie. */
const MAX_AGE_MS = 400 * 24 * 60 * 60 * 1000;
const DEVICE_ID = /^[A-Za-z0-9_-]{22}$/;
const MAC = /^[A-Za-z0-9_-]{43}$/;

const HKDF_SALT = Buffer.from('idp device cookie salt v1');
const HKDF_INFO = Buffer.from('idp device cookie key');

export interface DeviceCookies {
  /** The verified device id this browser sent for `tenant`, or null (none, forged, another tenant's). */
  read(ctx: Context, tenant: { id: string; slug: string }): string | null;
  /** Sets (or refreshes) the cookie and returns its device id: the one sent, when valid, else a new one. */
  issue(ctx: Context, tenant: { id: string; slug: string }): string;
}

export function createDeviceCookies({ masterKey, publicUrl }: { masterKey: Buffer; publicUrl: string }): DeviceCookies {
  const key = Buffer.from(hkdfSync('sha256', masterKey, HKDF_SALT, HKDF_INFO, 32));
  const secure = publicUrl.startsWith('https:');
  // Bound to the tenant too, so one tenant's cookie means nothing to another.
  const mac = (tenantId: string, deviceId: string) => createHmac('sha256', key).update(`${tenantId}\0${deviceId}`).digest('base64url');

  function read(ctx: Context, tenant: { id: string }): string | null {
    const value = ctx.cookies.get(DEVICE_COOKIE);
    if (!value) return null;
    const [deviceId = '', signature = '', ...rest] = value.split('.');
    if (rest.length || !DEVICE_ID.test(deviceId) || !MAC.test(signature)) return null;
    return safeEqual(signature, mac(tenant.id, deviceId)) ? deviceId : null;
  }

  return {
    read,
    issue(ctx, tenant) {
      const deviceId = read(ctx, tenant) ?? randomBytes(16).toString('base64url');
      // TLS may end at the reverse proxy: the public URL says whether browsers reach us over https.
      if (secure) ctx.cookies.secure = true;
      ctx.cookies.set(DEVICE_COOKIE, `${deviceId}.${mac(tenant.id, deviceId)}`, {
        httpOnly: true,
        secure,
        sameSite: 'lax',
        path: `/t/${tenant.slug}`,
        maxAge: MAX_AGE_MS,
        overwrite: true,
      });
      return deviceId;
    },
  };
}

/** What is stored and compared: never the id itself, which is a bearer credential of sorts. */
export function deviceHash(deviceId: string): string {
  return sha256(`device\0${deviceId}`);
}

/** True when `deviceId` has signed in to this user before. */
export async function isKnownDevice(prisma: PrismaClient, tenantId: string, userId: string, deviceId: string): Promise<boolean> {
  const row = await prisma.knownDevice.findUnique({
    where: { tenantId_userId_deviceHash: { tenantId, userId, deviceHash: deviceHash(deviceId) } },
    select: { id: true },
  });
  return row !== null;
}

/**
 * Records a successful sign-in from `deviceId`; `isNew` when this user had
 * never signed in from it. One statement: an insert that updates the row when
 * it exists, and says which it did (`xmax` is 0 only in a row version that an
 * insert created), so concurrent sign-ins from one browser report it new once.
 */
export async function rememberDevice(
  { prisma, clock }: { prisma: PrismaClient; clock: Clock },
  tenantId: string,
  userId: string,
  deviceId: string,
  userAgent: string | null,
): Promise<{ isNew: boolean }> {
  const agent = userAgent ? userAgent.slice(0, 512) : null;
  const now = clock.now();
  // Timestamps as Prisma stores them: UTC wall-clock time in a column without a zone.
  const [row] = await prisma.$queryRaw<{ inserted: boolean }[]>`
    INSERT INTO "KnownDevice" ("id", "tenantId", "userId", "deviceHash", "userAgent", "firstSeen", "lastSeen")
    VALUES (${randomUUID()}::uuid, ${tenantId}::uuid, ${userId}::uuid, ${deviceHash(deviceId)}, ${agent},
            to_timestamp(${now}::float8 / 1000) AT TIME ZONE 'UTC', to_timestamp(${now}::float8 / 1000) AT TIME ZONE 'UTC')
    ON CONFLICT ("tenantId", "userId", "deviceHash")
    DO UPDATE SET "lastSeen" = EXCLUDED."lastSeen", "userAgent" = EXCLUDED."userAgent"
    RETURNING (xmax = 0) AS inserted`;
  return { isNew: row?.inserted === true };
}
