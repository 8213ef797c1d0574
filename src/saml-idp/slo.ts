import { loadAccount } from '../oidc/accounts.js';
import { samlClientIdFor } from '../oidc/saml-bridge.js';
import { recordLogout } from './audit.js';
import { type IncomingMessage, readIncomingMessage } from './bindings.js';
import { type Binding, NAME_ID_FORMAT, STATUS } from './constants.js';
import { keyDeps, type SamlIdpDeps, type SamlRequest } from './context.js';
import { activeSigningKey, type SamlSigningKey } from './keys.js';
import {
  buildLogoutRequest,
  buildLogoutResponse,
  type LogoutRequest,
  readLogoutRequest,
  readLogoutResponse,
  type StatusValue,
} from './messages.js';
import { type LogoutParticipant, type PendingLogout, saveLogout, takeLogout } from './pending.js';
import { renderAutoPost } from './render.js';
import { acceptOnce, receiveMessage } from './requests.js';
import { findServiceProviderById, type ServiceProviderConfig } from './service-providers.js';
import { signedRedirectQuery, signRootElement } from './signature.js';
import { nameIdFor } from './subject.js';
import { deflateToBase64, refuse } from './xml.js';

/**
 * Single logout, front-channel, started by an SP's LogoutRequest at `/saml/slo`:
 * 1. the request is checked, and must name the person signed in to that SP
 *    in this browser's session;
 * 2. the browser posts oidc-provider's own logout form: the session ends,
 *    grants are revoked and OIDC clients with a back-channel logout URI are
 *    told, exactly as for RP-initiated logout; it lands on `/saml/slo/continue`;
 * 3. every other SAML SP of the session gets a signed LogoutRequest (Redirect
 *    binding) in turn and answers at `/saml/slo` with a LogoutResponse;
 * 4. the initiating SP gets a signed LogoutResponse, in the binding it used,
 *    saying Success, or PartialLogout when some SP did not confirm.
 */

/** How long an SP may act on a LogoutRequest we send. */
const LOGOUT_REQUEST_LIFETIME_SECONDS = 300;

export async function handleSlo(request: SamlRequest): Promise<void> {
  const incoming = await readIncomingMessage(request.ctx, ['SAMLRequest', 'SAMLResponse']);
  if (incoming.parameter === 'SAMLRequest') return handleLogoutRequest(request, incoming);
  return handleLogoutResponse(request, incoming);
}

function requireSloUrl(sp: ServiceProviderConfig): string {
  if (!sp.sloUrl) throw refuse('no_logout_url', 'This application has no registered logout URL.');
  return sp.sloUrl;
}

/** The request must be about the person this browser is signed in as, at that SP, in this session. */
function namesSessionSubject(message: LogoutRequest, expected: { value: string; format: string }, sid: string): boolean {
  const formatMatches =
    message.nameIdFormat === undefined || message.nameIdFormat === expected.format || message.nameIdFormat === NAME_ID_FORMAT.unspecified;
  const sessionMatches = message.sessionIndexes.length === 0 || message.sessionIndexes.includes(sid);
  return formatMatches && sessionMatches && message.nameId === expected.value;
}

async function handleLogoutRequest(request: SamlRequest, incoming: IncomingMessage): Promise<void> {
  const { ctx, tenant, deps, bridge, endpoints } = request;
  const { sp, message } = await receiveMessage(request, incoming, endpoints.slo, readLogoutRequest);
  const sloUrl = requireSloUrl(sp);
  await acceptOnce(request, 'logout', sp, message.id);
  const initiator = { serviceProviderId: sp.id, requestId: message.id, binding: incoming.binding, relayState: incoming.relayState };

  const session = await bridge.currentSession(tenant, ctx.req, ctx.res);
  const sid = session?.serviceProviders.get(sp.id);
  const account = session && sid ? await loadAccount(deps.db.prisma, tenant.id, session.accountId) : null;
  if (!session || !sid || !account) {
    // Nobody here is signed in to that SP any more: its own logout is all there is to do.
    return answerInitiator(request, sp, sloUrl, initiator, { code: STATUS.success });
  }
  if (!namesSessionSubject(message, nameIdFor(sp, account, sid), sid)) {
    return answerInitiator(request, sp, sloUrl, initiator, { code: STATUS.requester, subCode: STATUS.unknownPrincipal });
  }
  const pending: PendingLogout = {
    accountId: account.id,
    initiator,
    remaining: await logoutParticipants(deps.db.prisma, tenant.id, session.serviceProviders, account, sp.id),
    notified: [],
    failed: [],
  };
  const handle = await saveLogout(deps.kv, tenant.id, pending);
  const form = await bridge.prepareLogout(tenant, ctx.req, ctx.res, {
    clientId: samlClientIdFor(sp.id),
    postLogoutRedirectUri: endpoints.sloContinue,
    state: handle,
  });
  if (!form) {
    ctx.status = 303;
    ctx.redirect(`${endpoints.sloContinue}?state=${encodeURIComponent(handle)}`);
    return;
  }
  renderAutoPost(ctx, tenant, { action: form.action, fields: form.fields, heading: 'Signing out', message: 'Signing you out…' });
}

/** The session's SAML SPs, but `except`, that can be told, with the NameID and SessionIndex they know the person by. */
export async function logoutParticipants(
  prisma: SamlIdpDeps['db']['prisma'],
  tenantId: string,
  sessionSps: Map<string, string>,
  account: { id: string; email: string },
  except?: string,
): Promise<LogoutParticipant[]> {
  const participants: LogoutParticipant[] = [];
  for (const [serviceProviderId, sid] of sessionSps) {
    if (serviceProviderId === except) continue;
    const sp = await findServiceProviderById(prisma, tenantId, serviceProviderId);
    if (!sp?.enabled || !sp.sloUrl) continue;
    const nameId = nameIdFor(sp, account, sid);
    participants.push({ serviceProviderId, nameId: nameId.value, nameIdFormat: nameId.format, sessionIndex: sid });
  }
  return participants;
}

/** Back from oidc-provider's end_session, or from an SP's LogoutResponse: tell the next SP, or answer the initiator. */
export async function handleLogoutContinue(request: SamlRequest): Promise<void> {
  const state = typeof request.ctx.query.state === 'string' ? request.ctx.query.state : '';
  const pending = state ? await takeLogout(request.deps.kv, request.tenant.id, state) : undefined;
  if (!pending) throw refuse('logout_expired', 'This sign-out has expired or was already completed.');
  request.trace.serviceProviderId = pending.initiator?.serviceProviderId;
  if (!pending.initiator && (await stillSignedIn(request, pending.accountId))) {
    // "Stay signed in" on the logout page: nobody is signed out, so no SP is told.
    return goTo(request, pending.destination);
  }
  await proceed(request, pending);
}

async function stillSignedIn(request: SamlRequest, accountId: string): Promise<boolean> {
  const session = await request.bridge.currentSession(request.tenant, request.ctx.req, request.ctx.res);
  return session?.accountId === accountId;
}

/** The end of a logout that started at end_session: where oidc-provider would have gone (it validated the URI). */
function goTo(request: SamlRequest, destination: string | undefined): void {
  if (!destination) throw refuse('logout_expired', 'This sign-out has expired or was already completed.');
  request.ctx.status = 303;
  request.ctx.redirect(destination);
}

async function proceed(request: SamlRequest, pending: PendingLogout): Promise<void> {
  const { deps, tenant } = request;
  const next = pending.remaining.shift();
  if (next) {
    const sp = await findServiceProviderById(deps.db.prisma, tenant.id, next.serviceProviderId);
    if (!sp?.enabled || !sp.sloUrl) {
      pending.failed.push(next.serviceProviderId);
      return proceed(request, pending);
    }
    return askToLogOut(request, pending, sp, sp.sloUrl, next);
  }
  await recordLogout(request, {
    accountId: pending.accountId,
    initiator: pending.initiator?.serviceProviderId,
    notified: pending.notified,
    failed: pending.failed,
  });
  if (!pending.initiator) return goTo(request, pending.destination);
  const initiator = await findServiceProviderById(deps.db.prisma, tenant.id, pending.initiator.serviceProviderId);
  if (!initiator?.sloUrl) throw refuse('no_logout_url', 'You are signed out. The application has no logout URL to return to.');
  const status: StatusValue =
    pending.failed.length > 0 ? { code: STATUS.success, subCode: STATUS.partialLogout } : { code: STATUS.success };
  return answerInitiator(request, initiator, initiator.sloUrl, pending.initiator, status);
}

const withQuery = (url: string, query: string) => `${url}${url.includes('?') ? '&' : '?'}${query}`;

async function askToLogOut(
  request: SamlRequest,
  pending: PendingLogout,
  sp: ServiceProviderConfig,
  sloUrl: string,
  participant: LogoutParticipant,
): Promise<void> {
  const { deps, tenant, endpoints, ctx } = request;
  const key = await activeSigningKey(keyDeps(deps), tenant);
  const { id, xml } = buildLogoutRequest({
    issuer: endpoints.entityId,
    destination: sloUrl,
    nameId: participant.nameId,
    nameIdFormat: participant.nameIdFormat,
    sessionIndex: participant.sessionIndex,
    now: deps.clock.now(),
    lifetimeSeconds: LOGOUT_REQUEST_LIFETIME_SECONDS,
  });
  const handle = await saveLogout(deps.kv, tenant.id, { ...pending, awaiting: { serviceProviderId: sp.id, requestId: id } });
  ctx.status = 303;
  ctx.redirect(withQuery(sloUrl, signedRedirectQuery('SAMLRequest', deflateToBase64(xml), handle, key)));
}

async function handleLogoutResponse(request: SamlRequest, incoming: IncomingMessage): Promise<void> {
  const { deps, tenant, endpoints } = request;
  const { sp, message } = await receiveMessage(request, incoming, endpoints.slo, readLogoutResponse);
  const pending = incoming.relayState ? await takeLogout(deps.kv, tenant.id, incoming.relayState) : undefined;
  if (!pending?.awaiting || pending.awaiting.serviceProviderId !== sp.id || pending.awaiting.requestId !== message.inResponseTo) {
    throw refuse('unexpected_logout_response', 'This logout response does not answer a logout in progress.');
  }
  (message.statusCode === STATUS.success ? pending.notified : pending.failed).push(sp.id);
  await proceed(request, { ...pending, awaiting: undefined });
}

/** The LogoutResponse to the SP that asked, signed, in the binding it asked with. */
async function answerInitiator(
  request: SamlRequest,
  sp: ServiceProviderConfig,
  sloUrl: string,
  initiator: { requestId: string; binding: Binding; relayState?: string },
  status: StatusValue,
): Promise<void> {
  const { deps, tenant, endpoints, ctx } = request;
  const key = await activeSigningKey(keyDeps(deps), tenant);
  const xml = buildLogoutResponse({
    issuer: endpoints.entityId,
    destination: sloUrl,
    inResponseTo: initiator.requestId,
    status,
    now: deps.clock.now(),
  });
  if (initiator.binding === 'redirect') {
    ctx.status = 303;
    ctx.redirect(withQuery(sloUrl, signedRedirectQuery('SAMLResponse', deflateToBase64(xml), initiator.relayState, key)));
    return;
  }
  postSigned(request, sp, sloUrl, xml, initiator.relayState, key);
}

function postSigned(
  request: SamlRequest,
  sp: ServiceProviderConfig,
  url: string,
  xml: string,
  relayState: string | undefined,
  key: SamlSigningKey,
) {
  renderAutoPost(request.ctx, request.tenant, {
    action: url,
    fields: {
      SAMLResponse: Buffer.from(signRootElement(xml, key), 'utf8').toString('base64'),
      ...(relayState !== undefined ? { RelayState: relayState } : {}),
    },
    heading: sp.name,
    message: 'Signed out. Returning to the application…',
  });
}
