import { describe, expect, it } from 'vitest';
import { mappedRoleNames } from './accounts.js';
import { defaultMapping, mergeMapping, PRESET_NAMES, PRESETS } from './presets.js';
import { mapProfile } from './profile.js';

describe('presets', () => {
  it('give every provider both protocols, with an email source', () => {
    for (const name of PRESET_NAMES) {
      expect(PRESETS[name].oidc.scopes).toContain('openid');
      expect(PRESETS[name].oidc.mapping.email.length).toBeGreaterThan(0);
      expect(PRESETS[name].saml.mapping.email.length).toBeGreaterThan(0);
    }
  });

  it('map Entra ID’s claims: oid as the subject, the WS-Federation claim URIs in SAML', () => {
    const oidc = mapProfile(defaultMapping('entra', 'oidc'), {
      protocolSubject: 'pairwise-sub',
      values: { oid: 'object-id', preferred_username: 'Ann@Contoso.example', xms_edov: true, name: 'Ann' },
    });
    expect(oidc).toMatchObject({ subject: 'object-id', email: 'ann@contoso.example', emailVerified: true, name: 'Ann' });
    const saml = mapProfile(defaultMapping('entra', 'saml'), {
      protocolSubject: 'nameid',
      values: {
        'http://schemas.microsoft.com/identity/claims/objectidentifier': 'object-id',
        'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress': 'ann@contoso.example',
        'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups': ['g1', 'g2'],
      },
    });
    expect(saml).toMatchObject({ subject: 'object-id', email: 'ann@contoso.example', emailVerified: false, groups: ['g1', 'g2'] });
  });

  it('treat only a real true as a verified address', () => {
    for (const value of ['1', 'yes', 1, 'TRUE']) {
      expect(
        mapProfile(defaultMapping('okta', 'oidc'), { protocolSubject: 's', values: { email: 'a@b.example', email_verified: value } })
          .emailVerified,
      ).toBe(false);
    }
  });

  it('let an admin override single fields', () => {
    const merged = mergeMapping(defaultMapping('custom', 'saml'), { groups: ['department'] });
    expect(merged.groups).toEqual(['department']);
    expect(merged.email).toEqual(defaultMapping('custom', 'saml').email);
  });

  it('map groups to roles without inherited object keys', () => {
    const connection = { roleMapping: { eng: ['member'], ops: ['member', 'admin'] } };
    expect(mappedRoleNames(connection, ['eng', 'ops', 'constructor', '__proto__'])).toEqual(['admin', 'member']);
  });
});
