import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The SAML signature checks are only as good as the libraries doing them:
 * xml-crypto before 6.1.2 and @node-saml/node-saml before 5.1.0 have known
 * signature-bypass flaws (CVE-2025-29774, CVE-2025-29775 and relatives). This
 * reads the versions actually installed, nested copies included, so a lock
 * file that drifts to a vulnerable copy fails CI.
 */

const ROOT = path.resolve(import.meta.dirname, '../..');
const MINIMUM: Record<string, [number, number, number]> = {
  'xml-crypto': [6, 1, 2],
  '@node-saml/node-saml': [5, 1, 0],
};

function parseVersion(version: string): [number, number, number] {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!match) throw new Error(`unparsable version ${version}`);
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

function atLeast(version: string, minimum: [number, number, number]): boolean {
  const actual = parseVersion(version);
  for (let i = 0; i < 3; i++) {
    const a = actual[i] ?? 0;
    const m = minimum[i] ?? 0;
    if (a !== m) return a > m;
  }
  return true;
}

/** Every installed copy of `name` under node_modules, at any depth: [path, version]. */
function installedCopies(name: string): [string, string][] {
  const found: [string, string][] = [];
  const visit = (modules: string, depth: number) => {
    if (depth > 8) return;
    let entries: string[];
    try {
      entries = readdirSync(modules);
    } catch {
      return;
    }
    for (const entry of entries) {
      const scoped = entry.startsWith('@');
      const packages = scoped ? readdirSync(path.join(modules, entry)).map((inner) => `${entry}/${inner}`) : [entry];
      for (const pkg of packages) {
        const dir = path.join(modules, pkg);
        if (!statSync(dir).isDirectory()) continue;
        if (pkg === name) {
          const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string };
          found.push([path.relative(ROOT, dir), manifest.version]);
        }
        visit(path.join(dir, 'node_modules'), depth + 1);
      }
    }
  };
  visit(path.join(ROOT, 'node_modules'), 0);
  return found;
}

describe('installed SAML libraries', () => {
  for (const [name, minimum] of Object.entries(MINIMUM)) {
    it(`has no copy of ${name} older than ${minimum.join('.')}`, () => {
      const copies = installedCopies(name);
      expect(copies.length, `${name} is not installed`).toBeGreaterThan(0);
      const old = copies.filter(([, version]) => !atLeast(version, minimum));
      expect(old, `vulnerable copies: ${JSON.stringify(old)}`).toEqual([]);
    });
  }

  it('compares versions numerically, not as text', () => {
    expect(atLeast('6.1.2', [6, 1, 2])).toBe(true);
    expect(atLeast('6.10.0', [6, 1, 2])).toBe(true);
    expect(atLeast('6.1.1', [6, 1, 2])).toBe(false);
    expect(atLeast('5.9.9', [6, 1, 2])).toBe(false);
    expect(atLeast('4.99.0', [5, 1, 0])).toBe(false);
  });
});
