import { DEFAULT_CSP } from '../security/headers.js';

/** Sources a hosted page adds to the strict default policy, directive by directive. */
export interface CspAdditions {
  /** Only the passkey pages, with `'self'` for /assets/passkey.js. */
  scriptSrc?: readonly string[];
  styleSrc?: readonly string[];
  imgSrc?: readonly string[];
  formAction?: readonly string[];
}

const DIRECTIVE_FOR: Record<keyof CspAdditions, string> = {
  scriptSrc: 'script-src',
  styleSrc: 'style-src',
  imgSrc: 'img-src',
  formAction: 'form-action',
};

/** A CSP source we are willing to emit: `'self'`, an origin, a bare scheme or a quoted hash; nothing that could end a directive. */
const SAFE_SOURCE = /^(?:'self'|[a-z][a-z0-9+.-]*:(?:\/\/[A-Za-z0-9.-]+(?::\d{1,5})?)?|'sha256-[A-Za-z0-9+/]+=*')$/;
/** Schemes that would let content run or smuggle itself in; never allowed as a bare scheme source. */
const DANGEROUS_SCHEMES = new Set(['javascript:', 'data:', 'blob:', 'filesystem:', 'vbscript:']);

function isSafeSource(source: string): boolean {
  return SAFE_SOURCE.test(source) && !DANGEROUS_SCHEMES.has(source.toLowerCase());
}

function parse(policy: string): Map<string, string[]> {
  const directives = new Map<string, string[]>();
  for (const part of policy.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) directives.set(name.toLowerCase(), sources);
  }
  return directives;
}

/**
 * The default policy widened by exactly what one page needs (its theme's style
 * hash, the tenant's logo origin, where its forms may end up). Unsafe-looking
 * sources are dropped rather than emitted.
 */
export function widenCsp(additions: CspAdditions, base: string = DEFAULT_CSP): string {
  const directives = parse(base);
  for (const [key, directive] of Object.entries(DIRECTIVE_FOR) as [keyof CspAdditions, string][]) {
    const extra = (additions[key] ?? []).filter(isSafeSource);
    if (!extra.length) continue;
    const current = directives.get(directive) ?? [];
    const sources = current.filter((source) => source !== "'none'");
    directives.set(directive, [...new Set([...sources, ...extra])]);
  }
  return [...directives].map(([name, sources]) => [name, ...sources].join(' ')).join('; ');
}

/**
 * What a `form-action` must allow for a browser to follow the redirects after
 * a form post to `uri` (Chromium checks every hop): its origin for http(s), its
 * scheme for a native app's private-use URI. Null for anything unparsable.
 */
export function formActionSource(uri: unknown): string | null {
  if (typeof uri !== 'string' || !uri) return null;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return null;
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return url.origin;
  return /^[a-z][a-z0-9+.-]*:$/.test(url.protocol) && !DANGEROUS_SCHEMES.has(url.protocol) ? url.protocol : null;
}
