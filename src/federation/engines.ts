/**
 * The protocol libraries of federation, loaded the first time a tenant's
 * upstream connection is used: most processes never federate, and
 * @node-saml/node-saml (with xml-crypto, xml2js, xmlbuilder, xml-encryption;
 * ~15 MB resident) and openid-client (~6 MB) would otherwise sit in every
 * idle server (issue 8). The modules are imported once and cached by Node.
 */

/** Our SAML SP (saml-sp.ts) and the node-saml stack it builds on. */
export const loadSamlSp = () => import('./saml-sp.js');

/** Our OIDC relying party (oidc-rp.ts) and openid-client. */
export const loadOidcRp = () => import('./oidc-rp.js');
