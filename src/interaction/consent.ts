import type { InteractionGrant, PromptDetails } from './provider.js';

/** Plain-language sentences for the scopes people are asked about; unknown scopes are shown by name. */
const SCOPE_SENTENCES: Record<string, string> = {
  profile: 'See your name and basic profile',
  email: 'See your email address',
  offline_access: 'Stay signed in to it when you are not using it',
  roles: 'See your roles in this organisation',
};

/** Asked-for claims that say nothing about the person, or that a listed scope already covers. */
const SILENT_CLAIMS = new Set(['sub', 'sid', 'auth_time', 'acr', 'amr', 'iss', 'nonce', 'at_hash', 'c_hash']);

function scopesOf(details: PromptDetails): string[] {
  return (details.missingOIDCScope ?? []).filter((scope) => scope !== 'openid');
}

function claimsOf(details: PromptDetails): string[] {
  return (details.missingOIDCClaims ?? []).filter((claim) => !SILENT_CLAIMS.has(claim));
}

function resourcesOf(details: PromptDetails): { indicator: string; scopes: string[] }[] {
  return Object.entries(details.missingResourceScopes ?? {}).map(([indicator, scopes]) => ({ indicator, scopes: [...scopes] }));
}

/** What the consent page lists: one sentence per scope or claim, and the API permissions per resource. */
export function describeConsent(details: PromptDetails): { permissions: string[]; resources: { indicator: string; scopes: string[] }[] } {
  const permissions = scopesOf(details).map((scope) => SCOPE_SENTENCES[scope] ?? `Use the permission “${scope}”`);
  const claims = claimsOf(details);
  if (claims.length) permissions.push(`Read these details about you: ${claims.join(', ')}`);
  const resources = resourcesOf(details);
  if (!permissions.length && !resources.length) permissions.push('Confirm the access you gave it before');
  return { permissions, resources };
}

/** Adds exactly what the prompt said is missing, so consent covers what was shown and nothing more. */
export function applyConsent(grant: InteractionGrant, details: PromptDetails): void {
  const scopes = details.missingOIDCScope ?? [];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = details.missingOIDCClaims ?? [];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const { indicator, scopes: resourceScopes } of resourcesOf(details)) {
    grant.addResourceScope(indicator, resourceScopes.join(' '));
  }
}

/** What the audit trail records about a consent decision. */
export function consentMetadata(details: PromptDetails): Record<string, unknown> {
  return {
    scopes: details.missingOIDCScope ?? [],
    claims: details.missingOIDCClaims ?? [],
    resources: details.missingResourceScopes ?? {},
  };
}
