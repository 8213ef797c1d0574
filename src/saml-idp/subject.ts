import { sha256 } from '../crypto/random.js';
import { ACR } from '../interaction/routes.js';
import type { AccountInfo } from '../oidc/accounts.js';
import { AUTHN_CONTEXT, NAME_ID_FORMAT } from './constants.js';
import { ATTRIBUTE_SOURCES, type AttributeSource, type ServiceProviderConfig } from './service-providers.js';

/** Who the assertion is about, as the SP sees them: NameID, attributes, and how they signed in. */

export interface NameId {
  value: string;
  format: string;
}

/**
 * The NameID an SP receives for a user in one session:
 * - email: the address (what most SAML apps key accounts on);
 * - persistent: the user's id, the same value OIDC clients get as `sub`, so
 *   an account linked through either protocol is the same account;
 * - transient: derived from the session's id for this SP (`sid`), which the
 *   SP never sees otherwise: stable for the session, so logout can name it,
 *   and unlinkable across sessions.
 */
export function nameIdFor(
  sp: Pick<ServiceProviderConfig, 'nameIdFormat'>,
  account: Pick<AccountInfo, 'id' | 'email'>,
  sid: string,
): NameId {
  switch (sp.nameIdFormat) {
    case 'persistent':
      return { value: account.id, format: NAME_ID_FORMAT.persistent };
    case 'transient':
      return { value: `_${sha256(`saml transient nameid|${sid}`)}`, format: NAME_ID_FORMAT.transient };
    default:
      return { value: account.email, format: NAME_ID_FORMAT.email };
  }
}

export interface ReleasedAttribute {
  name: string;
  values: string[];
}

/** We have no separate groups: SAML apps that speak of groups get the user's tenant roles under that name. */
function valuesOf(source: AttributeSource, account: AccountInfo): string[] {
  switch (source) {
    case 'email':
      return [account.email];
    case 'name':
      return account.name ? [account.name] : [];
    case 'groups':
    case 'roles':
      return account.roles;
  }
}

/**
 * Only what the SP's mapping names is released, under the names it gives, in
 * a fixed order (stored JSON does not keep one); empty values are left out.
 */
export function releasedAttributes(sp: Pick<ServiceProviderConfig, 'attributeMapping'>, account: AccountInfo): ReleasedAttribute[] {
  return ATTRIBUTE_SOURCES.map((source) => ({ name: sp.attributeMapping[source] ?? '', values: valuesOf(source, account) })).filter(
    (attribute) => attribute.name && attribute.values.length > 0,
  );
}

/** How the user signed in, as an AuthnContextClassRef: the second factor counts when the hosted pages asked for one. */
export function authnContextFor(sign: { acr?: string; amr?: string[] }): string {
  if (sign.acr === ACR.multiFactor) return AUTHN_CONTEXT.multiFactor;
  if (sign.amr?.includes('pwd')) return AUTHN_CONTEXT.password;
  return AUTHN_CONTEXT.unspecified;
}
