import type { AttributeMapping } from './presets.js';
import { reject } from './rejection.js';

/**
 * An upstream identity in our terms, whatever the protocol: SAML attributes
 * and OIDC claims both arrive as a bag of named values, and the connection's
 * attribute mapping says which names fill which field.
 */
export interface UpstreamProfile {
  /** Stable per connection: the NameID or `sub` (or the mapped subject attribute). */
  subject: string;
  email?: string;
  /** The upstream says it verified the address (OIDC `email_verified`); SAML never says so. */
  emailVerified: boolean;
  name?: string;
  groups: string[];
}

/** What a protocol hands to `mapProfile`. */
export interface UpstreamClaims {
  /** NameID or `sub`: the subject unless the mapping names another attribute. */
  protocolSubject: string | undefined;
  /** Attribute values by name, already limited to what the upstream signed. */
  values: Record<string, unknown>;
  /** SAML: the NameID is an email address by its format; used when no email attribute is present. */
  subjectIsEmail?: boolean;
}

const MAX_VALUE_LENGTH = 1024;
const MAX_GROUPS = 500;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,253}$/;

/** Strings of a claim or attribute value (a string, a number, or a list of them); other shapes are ignored. */
export function stringsOf(value: unknown): string[] {
  const items = Array.isArray(value) ? value : [value];
  return items
    .map((item) => (typeof item === 'string' ? item : typeof item === 'number' ? String(item) : undefined))
    .filter((item): item is string => item !== undefined && item.length > 0 && item.length <= MAX_VALUE_LENGTH);
}

function first(values: Record<string, unknown>, names: readonly string[] | undefined): string | undefined {
  for (const name of names ?? []) {
    const [value] = stringsOf(Object.hasOwn(values, name) ? values[name] : undefined);
    if (value !== undefined) return value.trim();
  }
  return undefined;
}

function verified(values: Record<string, unknown>, names: readonly string[] | undefined): boolean {
  for (const name of names ?? []) {
    if (!Object.hasOwn(values, name)) continue;
    const value = values[name];
    // Only a real boolean true (or the string some providers send): "1", "yes" and friends are not a promise.
    return value === true || value === 'true';
  }
  return false;
}

function allOf(values: Record<string, unknown>, names: readonly string[]): string[] {
  const groups = new Set<string>();
  for (const name of names) for (const value of stringsOf(Object.hasOwn(values, name) ? values[name] : undefined)) groups.add(value);
  return [...groups].slice(0, MAX_GROUPS);
}

function joinedName(values: Record<string, unknown>, mapping: AttributeMapping): string | undefined {
  const full = first(values, mapping.name);
  if (full) return full.slice(0, 200);
  const parts = [first(values, mapping.givenName), first(values, mapping.familyName)].filter(Boolean);
  return parts.length ? parts.join(' ').slice(0, 200) : undefined;
}

export function mapProfile(mapping: AttributeMapping, claims: UpstreamClaims): UpstreamProfile {
  const subject = mapping.subject?.length ? first(claims.values, mapping.subject) : claims.protocolSubject;
  if (!subject || subject.length > MAX_VALUE_LENGTH) throw reject('missing_subject', 'the response names no usable subject');
  let email = first(claims.values, mapping.email);
  if (!email && claims.subjectIsEmail && claims.protocolSubject) email = claims.protocolSubject;
  const normalized = email?.toLowerCase();
  return {
    subject,
    email: normalized && EMAIL.test(normalized) ? normalized : undefined,
    emailVerified: verified(claims.values, mapping.emailVerified),
    name: joinedName(claims.values, mapping),
    groups: allOf(claims.values, mapping.groups),
  };
}
