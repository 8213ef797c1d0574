import { z } from 'zod';
import { AppError } from '../errors.js';
import { formActionSource } from '../interaction/csp.js';
import type { InteractionDetails, InteractionProvider } from '../interaction/provider.js';
import type { InteractionRequest } from '../interaction/routes.js';
import type { PrismaClient } from '../store/db.js';
import type { User } from '../store/generated/client.js';
import {
  connectionForEmail,
  enabledConnections,
  type FederationConnection,
  findConnection,
  isUsable,
  ssoRequiredFor,
} from './connections.js';
import { consumeResult } from './flows.js';
import { beginFederatedSignIn } from './sign-in.js';

/**
 * Federation on the hosted sign-in pages: the "single sign-on" part of the
 * login page, the `sso` form target that sends the browser upstream (a chosen
 * connection, or home-realm discovery by the email's domain), the `federated`
 * step the browser comes back to, which finishes the interaction, and the
 * rule that refuses passwords to users of a domain that requires SSO.
 */

/** What src/interaction/routes.ts lends these steps (the same kit it gives the MFA steps). */
export interface FederationKit {
  loadInteraction(request: InteractionRequest): Promise<{ provider: InteractionProvider; details: InteractionDetails }>;
  readCheckedForm(request: InteractionRequest): Promise<Record<string, string>>;
  finishLogin(request: InteractionRequest, provider: InteractionProvider, user: User, amr: string[]): Promise<void>;
  showLogin(
    request: InteractionRequest,
    provider: InteractionProvider,
    details: InteractionDetails,
    form: { email?: string; error?: string },
    status?: number,
  ): Promise<void>;
}

type Step = (request: InteractionRequest) => Promise<void>;

export function federationSteps(kit: FederationKit): { post: Record<string, Step>; get: Record<string, Step> } {
  return {
    post: { sso: (request) => startSso(request, kit) },
    get: { federated: (request) => finishFederated(request, kit) },
  };
}

const wrongStep = () =>
  new AppError(400, 'invalid_request', 'This step does not match the sign-in request. Return to the application and start again.');

const NO_SSO = 'Single sign-on is not set up for that email address. Sign in with your password instead.';

// ---------------------------------------------------------------- the login page

export interface LoginSso {
  action: string;
  connections: { id: string; name: string }[];
  /** Where the forms lead after our redirect: the page's CSP form-action must allow them (Chromium checks every hop). */
  formActions: string[];
}

/** The SSO part of the login page, or undefined when the tenant has no usable connection. */
export async function loginSsoView(request: InteractionRequest): Promise<LoginSso | undefined> {
  const connections = (await enabledConnections(request.deps.db.prisma, request.tenant.id)).filter(isUsable);
  if (connections.length === 0) return undefined;
  const upstream = connections.map((c) => (c.type === 'oidc' ? c.oidc.issuer : (c.saml.ssoUrl ?? '')));
  return {
    action: `/t/${encodeURIComponent(request.tenant.slug)}/interaction/${request.uid}/sso`,
    connections: connections.map((c) => ({ id: c.id, name: c.name })),
    formActions: upstream.map(formActionSource).filter((source): source is string => source !== null),
  };
}

/**
 * The sentence that refuses a password to a user whose email domain belongs
 * to a connection that requires SSO, or null. It says which sign-in to use,
 * which reveals the domain's policy (anyone can read it off the login page
 * by trying an address), never whether an account exists: it is the same
 * for every address of the domain, before any password is checked.
 */
export async function ssoRequiredMessage(prisma: PrismaClient, tenantId: string, email: string): Promise<string | null> {
  const connection = await ssoRequiredFor(prisma, tenantId, email);
  if (!connection) return null;
  return `Your organization signs in with single sign-on. Use “Sign in with ${connection.name}” below.`;
}

// ---------------------------------------------------------------- sso: off to the upstream

const ssoForm = z.object({
  connection: z.uuid().optional(),
  email: z.string().trim().max(320).optional(),
});

async function chooseConnection(request: InteractionRequest, form: z.infer<typeof ssoForm>): Promise<FederationConnection | null> {
  const { prisma } = request.deps.db;
  const chosen = form.connection
    ? await findConnection(prisma, request.tenant.id, form.connection)
    : form.email
      ? await connectionForEmail(prisma, request.tenant.id, form.email)
      : null;
  return isUsable(chosen) ? chosen : null;
}

async function startSso(request: InteractionRequest, kit: FederationKit): Promise<void> {
  const raw = await kit.readCheckedForm(request);
  const { provider, details } = await kit.loadInteraction(request);
  if (details.prompt.name !== 'login') throw wrongStep();
  const form = ssoForm.safeParse(raw);
  const email = form.success ? form.data.email : undefined;
  const connection = form.success ? await chooseConnection(request, form.data) : null;
  if (!connection) return kit.showLogin(request, provider, details, { email, error: NO_SSO }, 422);
  await beginFederatedSignIn(request.deps, request.ctx, request.tenant, connection, request.uid, email || undefined);
}

// ---------------------------------------------------------------- federated: back from the upstream

const resultGone = () =>
  new AppError(
    400,
    'interaction_expired',
    'This sign-in request has expired or is no longer valid. Return to the application and start again.',
  );

/**
 * The browser's stop after the upstream answered (src/federation/routes.ts
 * validated it): the interaction in the URL must be the one this browser's
 * cookie holds (loadInteraction checks), and its result is taken once.
 */
async function finishFederated(request: InteractionRequest, kit: FederationKit): Promise<void> {
  const { provider, details } = await kit.loadInteraction(request);
  if (details.prompt.name !== 'login') throw wrongStep();
  const result = await consumeResult(request.deps.kv, request.tenant.id, request.uid);
  if (!result) throw resultGone();
  const user = await request.deps.db.prisma.user.findFirst({ where: { id: result.userId, tenantId: request.tenant.id } });
  if (!user || user.disabled) throw resultGone();
  await kit.finishLogin(request, provider, user, result.amr);
}
