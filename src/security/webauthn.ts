import { randomUUID } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { PrismaClient } from '../store/db.js';
import type { MfaFactor } from '../store/generated/client.js';
import type { KvStore } from '../store/index.js';

// Loaded on the first passkey ceremony: ~70 modules (and ASN.1 parsers) most processes never use.
const simpleWebAuthn = () => import('@simplewebauthn/server');

/**
 * Passkeys (WebAuthn) through @simplewebauthn/server: registration and
 * authentication ceremonies whose challenges live in the KvStore, single use
 * and 5 minutes long, bound to one sign-in interaction. The relying party is
 * the public URL: its host is the RP ID, its origin the only accepted origin.
 */

export interface WebauthnDeps {
  prisma: PrismaClient;
  kv: KvStore;
  clock: Clock;
  publicUrl: string;
}

export const CHALLENGE_TTL_SECONDS = 300;
const TIMEOUT_MS = CHALLENGE_TTL_SECONDS * 1000;

export type Ceremony = 'register' | 'authenticate';

interface StoredChallenge {
  challenge: string;
  ceremony: Ceremony;
  /** Whom a registration is for, or whose credential a second-factor assertion must be. */
  userId?: string;
}

export function relyingParty(publicUrl: string): { rpID: string; origin: string } {
  const url = new URL(publicUrl);
  return { rpID: url.hostname, origin: url.origin };
}

const challengeKey = (tenantId: string, uid: string) => `webauthn:challenge:${tenantId}:${uid}`;

/** The user handle we give authenticators: the user id's bytes, so a discoverable credential names its user. */
export const userHandleOf = (userId: string) => new TextEncoder().encode(userId);

async function storeChallenge(kv: KvStore, tenantId: string, uid: string, stored: StoredChallenge): Promise<void> {
  // A new ceremony replaces an unfinished one of the same interaction.
  await kv.set(challengeKey(tenantId, uid), JSON.stringify(stored), CHALLENGE_TTL_SECONDS);
}

/** Reads and deletes in one step: a challenge answers one ceremony, however many times the response is sent. */
async function consumeChallenge(kv: KvStore, tenantId: string, uid: string, ceremony: Ceremony): Promise<StoredChallenge | null> {
  const raw = await kv.consume(challengeKey(tenantId, uid));
  if (!raw) return null;
  const stored = JSON.parse(raw) as StoredChallenge;
  return stored.ceremony === ceremony ? stored : null;
}

export async function webauthnFactorsOf(prisma: PrismaClient, tenantId: string, userId: string): Promise<MfaFactor[]> {
  return prisma.mfaFactor.findMany({ where: { tenantId, userId, type: 'webauthn', confirmedAt: { not: null } } });
}

// ---------------------------------------------------------------- registration

export async function startRegistration(
  deps: WebauthnDeps,
  tenant: { id: string; displayName: string },
  user: { id: string; email: string; name?: string | null },
  uid: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await webauthnFactorsOf(deps.prisma, tenant.id, user.id);
  const options = await (await simpleWebAuthn()).generateRegistrationOptions({
    rpName: tenant.displayName,
    rpID: relyingParty(deps.publicUrl).rpID,
    userName: user.email,
    userDisplayName: user.name ?? user.email,
    userID: userHandleOf(user.id),
    timeout: TIMEOUT_MS,
    attestationType: 'none',
    excludeCredentials: existing.flatMap((f) => (f.credentialId ? [{ id: f.credentialId, transports: f.transports }] : [])),
    // Discoverable, so the same passkey also signs in without a password.
    authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
  });
  await storeChallenge(deps.kv, tenant.id, uid, { challenge: options.challenge, ceremony: 'register', userId: user.id });
  return options;
}

/** The JSON the page's script posts: the credential's own toJSON() shape; anything else is refused before verification. */
const base64url = z
  .string()
  .regex(/^[A-Za-z0-9_-]*$/)
  .max(16_384);
const registrationResponse = z.object({
  id: base64url.min(1).max(1024),
  rawId: base64url.min(1).max(1024),
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: base64url,
    attestationObject: base64url,
    transports: z.array(z.string().max(32)).max(10).optional(),
  }),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});
const authenticationResponse = z.object({
  id: base64url.min(1).max(1024),
  rawId: base64url.min(1).max(1024),
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: base64url,
    authenticatorData: base64url,
    signature: base64url,
    userHandle: base64url.optional(),
  }),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});

function parseJson<T>(schema: z.ZodType<T>, text: string): T | null {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export type RegistrationResult = { ok: true; factor: MfaFactor } | { ok: false; reason: string };

/** Verifies the authenticator's answer to this interaction's registration challenge and stores the credential, confirmed. */
export async function finishRegistration(
  deps: WebauthnDeps,
  tenantId: string,
  userId: string,
  uid: string,
  responseText: string,
  name?: string,
): Promise<RegistrationResult> {
  const stored = await consumeChallenge(deps.kv, tenantId, uid, 'register');
  if (!stored || stored.userId !== userId) return { ok: false, reason: 'no_challenge' };
  const response = parseJson(registrationResponse, responseText);
  if (!response) return { ok: false, reason: 'malformed' };
  const rp = relyingParty(deps.publicUrl);
  let verified: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
  try {
    verified = await (await simpleWebAuthn()).verifyRegistrationResponse({
      response: response as RegistrationResponseJSON,
      expectedChallenge: stored.challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.rpID,
      requireUserVerification: false,
    });
  } catch {
    return { ok: false, reason: 'verification_failed' };
  }
  if (!verified.verified) return { ok: false, reason: 'verification_failed' };
  const { credential } = verified.registrationInfo;
  const now = new Date(deps.clock.now());
  try {
    const factor = await deps.prisma.mfaFactor.create({
      data: {
        id: randomUUID(),
        tenantId,
        userId,
        type: 'webauthn',
        name: name?.slice(0, 100) || 'Passkey',
        credentialId: credential.id,
        publicKey: Buffer.from(credential.publicKey).toString('base64url'),
        counter: BigInt(credential.counter),
        transports: credential.transports ?? response.response.transports ?? [],
        confirmedAt: now,
      },
    });
    return { ok: true, factor };
  } catch (error) {
    // The credential id is unique: the same authenticator registered twice, or by someone else.
    if ((error as { code?: string }).code === 'P2002') return { ok: false, reason: 'already_registered' };
    throw error;
  }
}

// ---------------------------------------------------------------- authentication

/**
 * Options for an assertion. With `userId` (a second factor after the
 * password) only that user's credentials are allowed; without, any
 * discoverable credential of the tenant may answer (passwordless), and the
 * authenticator must verify the user (PIN or biometrics).
 */
export async function startAuthentication(
  deps: WebauthnDeps,
  tenantId: string,
  uid: string,
  userId?: string,
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const allow = userId ? await webauthnFactorsOf(deps.prisma, tenantId, userId) : [];
  const options = await (await simpleWebAuthn()).generateAuthenticationOptions({
    rpID: relyingParty(deps.publicUrl).rpID,
    timeout: TIMEOUT_MS,
    allowCredentials: allow.flatMap((f) => (f.credentialId ? [{ id: f.credentialId, transports: f.transports }] : [])),
    userVerification: userId ? 'preferred' : 'required',
  });
  await storeChallenge(deps.kv, tenantId, uid, { challenge: options.challenge, ceremony: 'authenticate', userId });
  return options;
}

export type AuthenticationResult =
  | { ok: true; factor: MfaFactor; userVerified: boolean }
  | { ok: false; reason: string; factor?: MfaFactor; userId?: string };

/** Verifies an assertion against this interaction's challenge and the stored credential, and moves its counter on. */
export async function finishAuthentication(
  deps: WebauthnDeps,
  tenantId: string,
  uid: string,
  responseText: string,
): Promise<AuthenticationResult> {
  const stored = await consumeChallenge(deps.kv, tenantId, uid, 'authenticate');
  if (!stored) return { ok: false, reason: 'no_challenge' };
  const response = parseJson(authenticationResponse, responseText);
  if (!response) return { ok: false, reason: 'malformed', userId: stored.userId };
  const factor = await deps.prisma.mfaFactor.findFirst({
    where: { tenantId, type: 'webauthn', credentialId: response.id, confirmedAt: { not: null } },
  });
  if (!factor?.publicKey || factor.counter === null) return { ok: false, reason: 'unknown_credential', userId: stored.userId };
  const fail = (reason: string): AuthenticationResult => ({ ok: false, reason, factor, userId: factor.userId });
  if (stored.userId && factor.userId !== stored.userId) return fail('other_user');
  // Passwordless: the credential names its user; it must be the one we registered it for.
  if (!stored.userId && !sameUserHandle(response.response.userHandle, factor.userId)) return fail('user_handle_mismatch');
  const rp = relyingParty(deps.publicUrl);
  let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    verified = await (await simpleWebAuthn()).verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: stored.challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.rpID,
      credential: {
        id: response.id,
        publicKey: new Uint8Array(Buffer.from(factor.publicKey, 'base64url')),
        counter: Number(factor.counter),
        transports: factor.transports,
      },
      requireUserVerification: !stored.userId,
    });
  } catch {
    return fail('verification_failed');
  }
  if (!verified.verified) return fail('verification_failed');
  const { newCounter, userVerified } = verified.authenticationInfo;
  // Conditional on the counter we verified against: a cloned authenticator racing the real one loses.
  const { count } = await deps.prisma.mfaFactor.updateMany({
    where: { id: factor.id, tenantId, counter: factor.counter },
    data: { counter: BigInt(newCounter), lastUsedAt: new Date(deps.clock.now()) },
  });
  if (count !== 1) return fail('counter_race');
  return { ok: true, factor, userVerified };
}

function sameUserHandle(handle: string | undefined, userId: string): boolean {
  if (!handle) return false;
  return Buffer.from(handle, 'base64url').equals(Buffer.from(userHandleOf(userId)));
}
