import { randomToken, sha256 } from '../crypto/random.js';
import { type AccountInfo, loadAccount } from '../oidc/accounts.js';
import { samlClientIdFor } from '../oidc/saml-bridge.js';
import { recordAssertion, recordFailedSignIn } from './audit.js';
import { readIncomingMessage } from './bindings.js';
import { BINDING, NAME_ID_FORMAT, STATUS } from './constants.js';
import { keyDeps, type SamlRequest } from './context.js';
import { activeSigningKey } from './keys.js';
import { type AuthnRequest, readAuthnRequest, type StatusValue } from './messages.js';
import { bindToBrowser, type CookieScope, isBoundToBrowser, type PendingSignIn, saveSignIn, takeSignIn } from './pending.js';
import { renderAutoPost } from './render.js';
import { acceptOnce, receiveMessage } from './requests.js';
import { buildAssertionResponse, buildErrorResponse } from './response.js';
import { findServiceProviderByEntityId, findServiceProviderById, type ServiceProviderConfig } from './service-providers.js';
import { authnContextFor, nameIdFor, releasedAttributes } from './subject.js';
import { refuse } from './xml.js';

/**
 * Sign-in for SAML apps, in three hops:
 * 1. `/saml/sso` (SP-initiated, either binding) or `/saml/idp-initiated`
 *    checks the request and remembers it;
 * 2. the browser goes through the authorization endpoint as the SP's
 *    built-in client, i.e. through the hosted pages, MFA and upstream IdPs;
 * 3. `/saml/continue` redeems the code and POSTs a signed Response to the
 *    SP's registered ACS URL.
 * Until the ACS URL is known to be registered, every problem is an error page
 * here (nothing is ever posted to an unregistered URL); after that, problems
 * the SP should hear of are answered with a signed error Response.
 */

const cookieScope = (request: SamlRequest): CookieScope => ({
  path: `/t/${request.tenant.slug}/saml`,
  https: request.deps.config.publicUrl.startsWith('https:'),
});

/** The registered ACS URL the request names, exactly, or the first registered one when it names none. */
function chooseAcsUrl(sp: ServiceProviderConfig, request: AuthnRequest): string {
  if (request.acsUrl !== undefined) {
    if (!sp.acsUrls.includes(request.acsUrl)) {
      throw refuse('acs_url_not_registered', 'The application asked for its answer at an address it has not registered.');
    }
    return request.acsUrl;
  }
  // Indexes refer to the SP's own metadata, whose order we do not keep: better no sign-in than one posted to the wrong endpoint.
  if (request.acsIndex !== undefined) throw refuse('acs_index_unsupported', 'Name the Assertion Consumer Service by URL, not by index.');
  const [first] = sp.acsUrls;
  if (!first) throw refuse('acs_url_not_registered', 'The application has no registered Assertion Consumer Service URL.');
  return first;
}

/** A NameIDPolicy the SP's configured format satisfies: unspecified, or the very format. */
function acceptsNameIdFormat(sp: ServiceProviderConfig, requested: string | undefined): boolean {
  return requested === undefined || requested === NAME_ID_FORMAT.unspecified || requested === NAME_ID_FORMAT[sp.nameIdFormat];
}

export async function handleSso(request: SamlRequest): Promise<void> {
  const incoming = await readIncomingMessage(request.ctx, ['SAMLRequest']);
  const { sp, message } = await receiveMessage(request, incoming, request.endpoints.sso, readAuthnRequest);
  const acsUrl = chooseAcsUrl(sp, message);
  if (message.protocolBinding !== undefined && message.protocolBinding !== BINDING.post) {
    throw refuse('unsupported_binding', 'Responses are only sent with the HTTP-POST binding.');
  }
  await acceptOnce(request, 'authn', sp, message.id);
  const relayState = incoming.relayState;
  if (!acceptsNameIdFormat(sp, message.nameIdFormat)) {
    return postErrorResponse(
      request,
      sp,
      { acsUrl, requestId: message.id, relayState },
      {
        code: STATUS.requester,
        subCode: STATUS.invalidNameIdPolicy,
        message: 'The requested NameID format is not the one configured for this application.',
      },
    );
  }
  const prompt = message.forceAuthn ? 'login' : message.isPassive ? 'none' : undefined;
  await startSignIn(request, sp, { acsUrl, requestId: message.id, relayState, isPassive: message.isPassive }, prompt);
}

/** `/saml/idp-initiated?sp=<entity ID>[&RelayState=…]`: an unsolicited Response, for SPs that allow one. */
export async function handleIdpInitiated(request: SamlRequest): Promise<void> {
  const { ctx } = request;
  const entityId = typeof ctx.query.sp === 'string' ? ctx.query.sp : '';
  const relayState = typeof ctx.query.RelayState === 'string' && ctx.query.RelayState ? ctx.query.RelayState : undefined;
  request.trace.entityId = entityId.slice(0, 1024);
  const sp = entityId ? await findServiceProviderByEntityId(request.deps.db.prisma, request.tenant.id, entityId) : undefined;
  if (sp) request.trace.serviceProviderId = sp.id;
  if (!sp?.enabled) throw refuse('unknown_service_provider', 'This application is not registered with this sign-in service.');
  if (!sp.allowIdpInitiated) throw refuse('idp_initiated_not_allowed', 'This application only accepts sign-ins it starts itself.');
  if (relayState !== undefined && Buffer.byteLength(relayState) > 1024) throw refuse('relay_state_too_long', 'RelayState is too long.');
  const [acsUrl] = sp.acsUrls;
  if (!acsUrl) throw refuse('acs_url_not_registered', 'The application has no registered Assertion Consumer Service URL.');
  await startSignIn(request, sp, { acsUrl, relayState, isPassive: false });
}

/** Remembers the sign-in, binds it to this browser and sends the browser to the hosted pages. */
async function startSignIn(
  request: SamlRequest,
  sp: ServiceProviderConfig,
  start: Omit<PendingSignIn, 'serviceProviderId' | 'codeVerifier'>,
  prompt?: 'login' | 'none',
): Promise<void> {
  const { ctx, tenant, deps, bridge, endpoints } = request;
  const codeVerifier = randomToken(32);
  const handle = await saveSignIn(deps.kv, tenant.id, { ...start, serviceProviderId: sp.id, codeVerifier });
  bindToBrowser(ctx, handle, cookieScope(request));
  const clientId = await bridge.clientIdFor(tenant, sp, endpoints);
  const target = await bridge.authorizationUrl(tenant, {
    clientId,
    redirectUri: endpoints.continue,
    state: handle,
    codeChallenge: sha256(codeVerifier),
    prompt,
  });
  // 303: a POST-binding request must not be re-posted to the authorization endpoint.
  ctx.status = 303;
  ctx.redirect(target);
}

// ---------------------------------------------------------------- back from the hosted pages

/** What the authorization endpoint's error means for the SP. */
function failureStatus(error: string, pending: PendingSignIn): StatusValue {
  if (pending.isPassive && (error === 'login_required' || error === 'interaction_required' || error === 'consent_required')) {
    return { code: STATUS.responder, subCode: STATUS.noPassive, message: 'The user is not signed in.' };
  }
  return { code: STATUS.responder, subCode: STATUS.authnFailed, message: 'The user did not sign in.' };
}

export async function handleContinue(request: SamlRequest): Promise<void> {
  const { ctx, tenant, deps, bridge, endpoints } = request;
  const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
  const pending = state ? await takeSignIn(deps.kv, tenant.id, state) : undefined;
  // The binding cookie is checked (and cleared) even when the record is gone, so a stale tab does not keep it.
  const bound = state ? isBoundToBrowser(ctx, state, cookieScope(request)) : false;
  if (!pending)
    throw refuse('sign_in_expired', 'This sign-in has expired or was already completed. Return to the application and start again.');
  if (!bound) throw refuse('sign_in_not_bound', 'This sign-in was started in another browser. Return to the application and start again.');
  const sp = await findServiceProviderById(deps.db.prisma, tenant.id, pending.serviceProviderId);
  if (sp) {
    request.trace.serviceProviderId = sp.id;
    request.trace.entityId = sp.entityId;
  }
  // The registration may have changed while the person was signing in: the ACS URL must still be registered.
  if (!sp?.enabled || !sp.acsUrls.includes(pending.acsUrl))
    throw refuse('unknown_service_provider', 'This application is no longer registered.');
  const target = { acsUrl: pending.acsUrl, requestId: pending.requestId, relayState: pending.relayState };

  const error = typeof ctx.query.error === 'string' ? ctx.query.error : undefined;
  if (error !== undefined || typeof ctx.query.code !== 'string') {
    await recordFailedSignIn(request, sp, error ?? 'no_code');
    return postErrorResponse(request, sp, target, failureStatus(error ?? 'server_error', pending));
  }
  const signIn = await bridge.redeemCode(tenant, {
    code: ctx.query.code,
    clientId: samlClientIdFor(sp.id),
    redirectUri: endpoints.continue,
    codeVerifier: pending.codeVerifier,
  });
  if (!signIn) throw refuse('sign_in_failed', 'This sign-in could not be completed. Return to the application and start again.');
  const account = await loadAccount(deps.db.prisma, tenant.id, signIn.accountId);
  if (!account) {
    await recordFailedSignIn(request, sp, 'account_disabled', signIn.accountId);
    return postErrorResponse(request, sp, target, { code: STATUS.responder, subCode: STATUS.authnFailed });
  }
  await postAssertion(request, sp, target, account, signIn);
}

interface ResponseTarget {
  acsUrl: string;
  requestId?: string;
  relayState?: string;
}

async function postAssertion(
  request: SamlRequest,
  sp: ServiceProviderConfig,
  target: ResponseTarget,
  account: AccountInfo,
  signIn: { amr: string[]; acr?: string; authTime?: number; sid: string },
): Promise<void> {
  const { deps, tenant, endpoints } = request;
  const now = deps.clock.now();
  const nameId = nameIdFor(sp, account, signIn.sid);
  const attributes = releasedAttributes(sp, account);
  const authnContext = authnContextFor(signIn);
  const key = await activeSigningKey(keyDeps(deps), tenant);
  const built = await buildAssertionResponse(
    {
      idpEntityId: endpoints.entityId,
      sp,
      acsUrl: target.acsUrl,
      inResponseTo: target.requestId,
      nameId,
      attributes,
      authnContext,
      authnInstant: signIn.authTime ? signIn.authTime * 1000 : now,
      sessionIndex: signIn.sid,
      now,
    },
    key,
  );
  await recordAssertion(request, {
    sp,
    accountId: account.id,
    nameId,
    attributes,
    acsUrl: target.acsUrl,
    inResponseTo: target.requestId,
    responseId: built.responseId,
    assertionId: built.assertionId,
    authnContext,
  });
  renderResponsePost(request, sp, target, built.xml, 'Signing you in…');
}

async function postErrorResponse(
  request: SamlRequest,
  sp: ServiceProviderConfig,
  target: ResponseTarget,
  status: StatusValue,
): Promise<void> {
  const { deps, tenant, endpoints } = request;
  const key = await activeSigningKey(keyDeps(deps), tenant);
  const xml = buildErrorResponse(
    { idpEntityId: endpoints.entityId, destination: target.acsUrl, inResponseTo: target.requestId, status, now: deps.clock.now() },
    key,
  );
  renderResponsePost(request, sp, target, xml, 'Returning to the application…');
}

function renderResponsePost(request: SamlRequest, sp: ServiceProviderConfig, target: ResponseTarget, xml: string, message: string): void {
  renderAutoPost(request.ctx, request.tenant, {
    action: target.acsUrl,
    fields: {
      SAMLResponse: Buffer.from(xml, 'utf8').toString('base64'),
      ...(target.relayState !== undefined ? { RelayState: target.relayState } : {}),
    },
    heading: sp.name,
    message,
  });
}
