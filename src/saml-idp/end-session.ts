import { loadAccount } from '../oidc/accounts.js';
import type { EndSessionLogoutHook } from '../oidc/saml-bridge.js';
import type { SamlIdpDeps } from './context.js';
import { idpEndpoints } from './idp-metadata.js';
import { saveLogout } from './pending.js';

/**
 * Single logout in the other direction: an OIDC client (or the account page)
 * ends the session at end_session, and the session's SAML SPs must hear of it
 * too. oidc-provider ends the session as usual, then sends the browser to
 * `/saml/slo/continue` instead of the logout's destination; from there every
 * SP gets a LogoutRequest in turn (slo.ts), and the browser goes on to the
 * destination oidc-provider had validated.
 */
export function createEndSessionLogoutHook(deps: Pick<SamlIdpDeps, 'config' | 'db' | 'kv'>): EndSessionLogoutHook {
  return async ({ tenant, accountId, serviceProviders, destination }) => {
    const account = await loadAccount(deps.db.prisma, tenant.id, accountId);
    if (!account) return undefined;
    // slo.ts signs with xml-crypto: loaded when a session with SAML SPs first ends, not at start-up (issue 8).
    const { logoutParticipants } = await import('./slo.js');
    const remaining = await logoutParticipants(deps.db.prisma, tenant.id, serviceProviders, account);
    if (remaining.length === 0) return undefined;
    const state = await saveLogout(deps.kv, tenant.id, { accountId, destination, remaining, notified: [], failed: [] });
    return { postLogoutRedirectUri: idpEndpoints(deps.config.publicUrl, tenant.slug).sloContinue, state };
  };
}
