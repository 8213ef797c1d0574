/**
 * What each kind of upstream identity provider sends, as data: the protocol
 * defaults a connection starts with and where the profile fields come from.
 * A preset only fills defaults; an admin may override every field of a
 * connection's `attributeMapping` afterwards.
 */

export const CONNECTION_TYPES = ['saml', 'oidc'] as const;
export type ConnectionType = (typeof CONNECTION_TYPES)[number];

export const PRESET_NAMES = ['okta', 'entra', 'google', 'onelogin', 'ping', 'custom'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

/**
 * Where each profile field comes from: attribute (SAML) or claim (OIDC)
 * names, the first one present wins. `subject` absent means the protocol's
 * own subject: the NameID, or the `sub` claim.
 */
export interface AttributeMapping {
  subject?: string[];
  email: string[];
  /** OIDC only: a claim that is `true` when the upstream verified the address. SAML has no such flag. */
  emailVerified?: string[];
  name: string[];
  givenName: string[];
  familyName: string[];
  groups: string[];
}

export interface OidcPreset {
  scopes: string[];
  /** Shown to admins as an example issuer; `{tenant}`-style parts are theirs to fill in. */
  issuerExample: string;
  mapping: AttributeMapping;
  /**
   * A claim naming the upstream organisation's domain (Google Workspace `hd`):
   * when the connection lists domains, the claim must be one of them, so a
   * consumer account of the same provider cannot sign in.
   */
  domainClaim?: string;
}

export interface SamlPreset {
  nameIdFormat: string;
  mapping: AttributeMapping;
}

export interface Preset {
  label: string;
  oidc: OidcPreset;
  saml: SamlPreset;
}

export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const NAMEID_PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
export const NAMEID_UNSPECIFIED = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';

/** The WS-Federation claim URIs that Entra ID (and ADFS, and many others) use as SAML attribute names. */
const CLAIMS = {
  email: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
  name: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name',
  givenName: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname',
  surname: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname',
  displayName: 'http://schemas.microsoft.com/identity/claims/displayname',
  objectId: 'http://schemas.microsoft.com/identity/claims/objectidentifier',
  groups: 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups',
  roles: 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role',
} as const;

/** LDAP/eduPerson OIDs as SAML attribute names (Shibboleth, Ping, many custom IdPs). */
const OIDS = {
  mail: 'urn:oid:0.9.2342.19200300.100.1.3',
  displayName: 'urn:oid:2.16.840.1.113730.3.1.241',
  givenName: 'urn:oid:2.5.4.42',
  surname: 'urn:oid:2.5.4.4',
  isMemberOf: 'urn:oid:1.3.6.1.4.1.5923.1.5.1.1',
} as const;

/** OpenID Connect Core standard claims. */
const STANDARD_OIDC: AttributeMapping = {
  email: ['email'],
  emailVerified: ['email_verified'],
  name: ['name'],
  givenName: ['given_name'],
  familyName: ['family_name'],
  groups: ['groups'],
};

const GENERIC_SAML: AttributeMapping = {
  email: ['email', 'mail', OIDS.mail, CLAIMS.email],
  name: ['displayName', 'name', OIDS.displayName, CLAIMS.displayName],
  givenName: ['givenName', 'firstName', OIDS.givenName, CLAIMS.givenName],
  familyName: ['sn', 'surname', 'lastName', OIDS.surname, CLAIMS.surname],
  groups: ['groups', 'memberOf', OIDS.isMemberOf, CLAIMS.groups],
};

export const PRESETS: Readonly<Record<PresetName, Preset>> = Object.freeze({
  okta: {
    label: 'Okta',
    oidc: {
      scopes: ['openid', 'email', 'profile', 'groups'],
      issuerExample: 'https://{yourOktaDomain}/oauth2/default',
      mapping: STANDARD_OIDC,
    },
    saml: {
      nameIdFormat: NAMEID_EMAIL,
      // Okta sends the attribute statements the admin configures; these are the names its guides use.
      mapping: {
        ...GENERIC_SAML,
        email: ['email', ...GENERIC_SAML.email],
        givenName: ['firstName', 'givenName'],
        familyName: ['lastName', 'sn'],
      },
    },
  },
  entra: {
    label: 'Microsoft Entra ID (Azure AD)',
    oidc: {
      scopes: ['openid', 'email', 'profile'],
      issuerExample: 'https://login.microsoftonline.com/{tenantId}/v2.0',
      mapping: {
        // `sub` is pairwise per application; `oid` is the user's object id, stable across the directory's apps.
        subject: ['oid', 'sub'],
        email: ['email', 'preferred_username'],
        // Entra's `email` is not verified by default; the optional claim xms_edov says the domain owner verified it.
        emailVerified: ['xms_edov'],
        name: ['name'],
        givenName: ['given_name'],
        familyName: ['family_name'],
        groups: ['groups', 'roles'],
      },
    },
    saml: {
      nameIdFormat: NAMEID_EMAIL,
      mapping: {
        subject: [CLAIMS.objectId],
        email: [CLAIMS.email, CLAIMS.name],
        name: [CLAIMS.displayName],
        givenName: [CLAIMS.givenName],
        familyName: [CLAIMS.surname],
        groups: [CLAIMS.groups, CLAIMS.roles],
      },
    },
  },
  google: {
    label: 'Google Workspace',
    oidc: {
      scopes: ['openid', 'email', 'profile'],
      issuerExample: 'https://accounts.google.com',
      mapping: { ...STANDARD_OIDC, groups: [] },
      domainClaim: 'hd',
    },
    saml: {
      // Google sends the primary email as NameID and only the attributes the admin maps.
      nameIdFormat: NAMEID_EMAIL,
      mapping: GENERIC_SAML,
    },
  },
  onelogin: {
    label: 'OneLogin',
    oidc: {
      scopes: ['openid', 'email', 'profile', 'groups'],
      issuerExample: 'https://{subdomain}.onelogin.com/oidc/2',
      mapping: STANDARD_OIDC,
    },
    saml: {
      nameIdFormat: NAMEID_EMAIL,
      mapping: {
        email: ['User.email', ...GENERIC_SAML.email],
        name: ['User.Name', ...GENERIC_SAML.name],
        givenName: ['User.FirstName', ...GENERIC_SAML.givenName],
        familyName: ['User.LastName', ...GENERIC_SAML.familyName],
        groups: ['memberOf', 'Groups', ...GENERIC_SAML.groups],
      },
    },
  },
  ping: {
    label: 'Ping Identity',
    oidc: {
      scopes: ['openid', 'email', 'profile'],
      issuerExample: 'https://auth.pingone.com/{environmentId}/as',
      mapping: { ...STANDARD_OIDC, groups: ['groups', 'memberOf'] },
    },
    saml: {
      nameIdFormat: NAMEID_UNSPECIFIED,
      mapping: { ...GENERIC_SAML, email: ['mail', 'email', OIDS.mail], groups: ['memberOf', 'groups', OIDS.isMemberOf] },
    },
  },
  custom: {
    label: 'Any OpenID Connect or SAML 2.0 provider',
    oidc: { scopes: ['openid', 'email', 'profile'], issuerExample: 'https://idp.example.com', mapping: STANDARD_OIDC },
    saml: { nameIdFormat: NAMEID_UNSPECIFIED, mapping: GENERIC_SAML },
  },
});

/** The mapping a new connection of this preset and type starts with (a copy: callers may change it). */
export function defaultMapping(preset: PresetName, type: ConnectionType): AttributeMapping {
  return structuredClone(PRESETS[preset][type].mapping);
}

/** An admin's partial mapping laid over the preset's: fields they name replace the preset's lists. */
export function mergeMapping(base: AttributeMapping, override: Partial<AttributeMapping> | undefined): AttributeMapping {
  const merged: AttributeMapping = structuredClone(base);
  for (const [field, names] of Object.entries(override ?? {}) as [keyof AttributeMapping, string[] | undefined][]) {
    if (names !== undefined) merged[field] = [...names];
  }
  return merged;
}
