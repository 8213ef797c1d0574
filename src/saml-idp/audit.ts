import type { SamlRequest } from './context.js';
import { requestMeta } from './context.js';
import type { ServiceProviderConfig } from './service-providers.js';
import type { NameId, ReleasedAttribute } from './subject.js';
import type { SamlRefusal } from './xml.js';

/**
 * The SAML IdP's audit events. An issued assertion records the SP, the
 * subject (user and NameID) and the names of the attributes released, not
 * their values: the trail says what left, without copying personal data into
 * every entry. Every refused request records why.
 */

const serviceProviderResource = (request: SamlRequest) => ({ type: 'service_provider', id: request.trace.serviceProviderId ?? null });

export function recordRefusal(request: SamlRequest, refusal: SamlRefusal): Promise<unknown> {
  return request.deps.audit.append(request.tenant.id, {
    actor: { type: 'anonymous' },
    action: 'saml.request.refused',
    resource: serviceProviderResource(request),
    ...requestMeta(request.ctx),
    metadata: {
      reason: refusal.reason,
      description: refusal.description,
      endpoint: request.trace.endpoint,
      binding: request.trace.binding ?? null,
      entity_id: request.trace.entityId ?? null,
    },
  });
}

export interface IssuedAssertion {
  sp: ServiceProviderConfig;
  accountId: string;
  nameId: NameId;
  attributes: ReleasedAttribute[];
  acsUrl: string;
  inResponseTo?: string;
  responseId: string;
  assertionId: string;
  authnContext: string;
}

export function recordAssertion(request: SamlRequest, issued: IssuedAssertion): Promise<unknown> {
  const { sp } = issued;
  return request.deps.audit.append(request.tenant.id, {
    actor: { type: 'user', id: issued.accountId },
    action: 'saml.assertion.issued',
    resource: { type: 'service_provider', id: sp.id },
    ...requestMeta(request.ctx),
    metadata: {
      entity_id: sp.entityId,
      name_id: issued.nameId.value,
      name_id_format: issued.nameId.format,
      attributes: issued.attributes.map((attribute) => attribute.name),
      acs_url: issued.acsUrl,
      in_response_to: issued.inResponseTo ?? null,
      idp_initiated: !issued.inResponseTo,
      response_id: issued.responseId,
      assertion_id: issued.assertionId,
      authn_context: issued.authnContext,
      encrypted: sp.encryptAssertions,
      signed_response: sp.signResponse,
      signed_assertion: sp.signAssertion,
    },
  });
}

/** A sign-in that came back without a user (cancelled, passive without a session, disabled account): the SP got an error Response. */
export function recordFailedSignIn(request: SamlRequest, sp: ServiceProviderConfig, reason: string, accountId?: string): Promise<unknown> {
  return request.deps.audit.append(request.tenant.id, {
    actor: accountId ? { type: 'user', id: accountId } : { type: 'anonymous' },
    action: 'saml.sign_in.failed',
    resource: { type: 'service_provider', id: sp.id },
    ...requestMeta(request.ctx),
    metadata: { entity_id: sp.entityId, reason },
  });
}

export interface CompletedLogout {
  accountId: string;
  initiator?: string;
  notified: string[];
  failed: string[];
}

export function recordLogout(request: SamlRequest, logout: CompletedLogout): Promise<unknown> {
  return request.deps.audit.append(request.tenant.id, {
    actor: { type: 'user', id: logout.accountId },
    action: 'saml.logout.completed',
    resource: { type: 'service_provider', id: request.trace.serviceProviderId ?? null },
    ...requestMeta(request.ctx),
    metadata: { initiator: logout.initiator ?? null, notified: logout.notified, failed: logout.failed, partial: logout.failed.length > 0 },
  });
}
