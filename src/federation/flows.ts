import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { KvStore } from '../store/index.js';

/**
 * The short-lived state of a federated sign-in, in the KvStore so any node
 * can take the upstream's answer: what we sent (keyed by the OIDC `state` or
 * the SAML RelayState, single use) and, once the upstream answered, who
 * signed in (keyed by the interaction, which only its own browser can finish).
 */

/** An interaction lives 10 minutes; nothing about it needs to outlive that. */
export const FLOW_TTL_SECONDS = 600;
/** From the upstream's answer to the browser arriving back at the interaction: a couple of redirects. */
const RESULT_TTL_SECONDS = 300;

const flowSchema = z.object({
  tenantId: z.string(),
  connectionId: z.string(),
  /** The oidc-provider interaction this sign-in finishes. */
  uid: z.string(),
  protocol: z.enum(['saml', 'oidc']),
  /** SAML: the AuthnRequest ID the response must answer. */
  requestId: z.string().optional(),
  /** OIDC: the nonce and PKCE verifier of the authorization request. */
  nonce: z.string().optional(),
  codeVerifier: z.string().optional(),
});
export type FederationFlow = z.infer<typeof flowSchema>;

const resultSchema = z.object({ userId: z.string(), connectionId: z.string(), amr: z.array(z.string()) });
export type FederationResult = z.infer<typeof resultSchema>;

const flowKey = (handle: string) => `fed:flow:${handle}`;
const resultKey = (tenantId: string, uid: string) => `fed:result:${tenantId}:${uid}`;
const HANDLE = /^[A-Za-z0-9_-]{32,128}$/;

/** An unguessable handle: the OIDC `state` or SAML RelayState. */
export function newFlowHandle(): string {
  return randomBytes(32).toString('base64url');
}

export async function saveFlow(kv: KvStore, handle: string, flow: FederationFlow): Promise<void> {
  await kv.set(flowKey(handle), JSON.stringify(flow), FLOW_TTL_SECONDS);
}

/** The flow behind `handle`, taken (a second answer with the same handle finds nothing); null when unknown or expired. */
export async function consumeFlow(kv: KvStore, handle: unknown): Promise<FederationFlow | null> {
  if (typeof handle !== 'string' || !HANDLE.test(handle)) return null;
  const raw = await kv.consume(flowKey(handle));
  if (raw === null) return null;
  const parsed = flowSchema.safeParse(JSON.parse(raw));
  return parsed.success ? parsed.data : null;
}

export async function saveResult(kv: KvStore, tenantId: string, uid: string, result: FederationResult): Promise<void> {
  await kv.set(resultKey(tenantId, uid), JSON.stringify(result), RESULT_TTL_SECONDS);
}

export async function consumeResult(kv: KvStore, tenantId: string, uid: string): Promise<FederationResult | null> {
  const raw = await kv.consume(resultKey(tenantId, uid));
  if (raw === null) return null;
  const parsed = resultSchema.safeParse(JSON.parse(raw));
  return parsed.success ? parsed.data : null;
}
