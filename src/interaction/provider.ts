import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TenantContext } from '../tenants/tenants.js';

/**
 * The part of an oidc-provider `Provider` the hosted pages use. Only src/oidc/
 * imports oidc-provider; this structural view is what it hands over through
 * `deps.oidc.providerFor(tenant)`, and what tests fake.
 */
export interface InteractionProvider {
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  /** Stores the result and answers 303 to the authorization endpoint's resume URL. */
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: InteractionResult,
    options?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: GrantModel;
  Client: { find(clientId: string): Promise<InteractionClient | undefined> };
}

export interface InteractionDetails {
  uid: string;
  prompt: { name: string; reasons?: string[]; details: PromptDetails };
  params: Record<string, unknown>;
  session?: { accountId?: string; uid?: string } | undefined;
  grantId?: string | undefined;
}

/** What the consent prompt says is missing (oidc-provider's `prompt.details`). */
export interface PromptDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
  [key: string]: unknown;
}

export type InteractionResult =
  | { login: { accountId: string; amr?: string[]; acr?: string; remember?: boolean; ts?: number } }
  | { consent: { grantId: string } }
  | { error: string; error_description?: string };

export interface InteractionGrant {
  addOIDCScope(scope: string): unknown;
  addOIDCClaims(claims: string[]): unknown;
  addResourceScope(resource: string, scope: string): unknown;
  save(): Promise<string>;
}

export interface GrantModel {
  new (properties: { accountId: string; clientId: string }): InteractionGrant;
  find(id: string): Promise<InteractionGrant | undefined>;
}

export interface InteractionClient {
  clientId: string;
  clientName?: string;
}

export interface OidcProviders {
  providerFor(tenant: TenantContext): Promise<InteractionProvider>;
}
