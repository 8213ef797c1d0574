import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type ChainedFields, canonicalJson, chainHash, GENESIS_HASH } from './chain.js';

const event: ChainedFields = {
  tenantId: '7f8a1c2e-0000-4000-8000-000000000001',
  seq: 1n,
  occurredAt: new Date('2026-01-02T03:04:05.678Z'),
  actorType: 'cli',
  actorId: 'root',
  action: 'tenant.created',
  resourceType: 'tenant',
  resourceId: '7f8a1c2e-0000-4000-8000-000000000001',
  ip: '192.0.2.1',
  userAgent: 'idp-cli',
  metadata: { slug: 'acme', roles: ['owner', 'admin'] },
};

describe('canonicalJson', () => {
  it('does not depend on the order keys were inserted in, at any depth', () => {
    const a = { b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } };
    const b = { a: { c: null, d: [1, { x: 1, y: 2 }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
  });

  it('keeps array order, which is meaningful', () => {
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });

  it('encodes scalars as JSON does, and undefined as a JSON database would keep it', () => {
    expect(canonicalJson('a"b')).toBe('"a\\"b"');
    expect(canonicalJson(1.5)).toBe('1.5');
    expect(canonicalJson(true)).toBe('true');
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson(undefined)).toBe('null');
    // A JSONB column drops undefined properties and stores undefined array items as null: the hash must agree.
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(canonicalJson([undefined])).toBe('[null]');
  });

  it('sorts keys by code unit, independent of locale', () => {
    expect(canonicalJson({ b: 1, B: 2, ä: 3, a: 4 })).toBe('{"B":2,"a":4,"b":1,"ä":3}');
  });

  it('escapes keys, so a crafted key cannot forge structure', () => {
    expect(canonicalJson({ 'a":1,"b': 2 })).toBe('{"a\\":1,\\"b":2}');
    expect(canonicalJson({ 'a":1,"b': 2 })).not.toBe(canonicalJson({ a: 1, b: 2 }));
  });
});

describe('chainHash', () => {
  it('is SHA-256 over the previous hash, a newline and the canonical event', () => {
    const canonical = canonicalJson({
      ...event,
      seq: '1',
      occurredAt: '2026-01-02T03:04:05.678Z',
    });
    const expected = createHash('sha256').update(`${GENESIS_HASH}\n${canonical}`).digest('hex');
    expect(chainHash(GENESIS_HASH, event)).toBe(expected);
    expect(chainHash(GENESIS_HASH, event)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('ignores columns that are not chained (a row read back carries id, prevHash, hash)', () => {
    const row = { ...event, id: 99n, prevHash: GENESIS_HASH, hash: 'x' };
    expect(chainHash(GENESIS_HASH, row)).toBe(chainHash(GENESIS_HASH, event));
  });

  it('does not depend on the key order of the metadata (JSONB reorders keys)', () => {
    const reordered = { ...event, metadata: { roles: ['owner', 'admin'], slug: 'acme' } };
    expect(chainHash(GENESIS_HASH, reordered)).toBe(chainHash(GENESIS_HASH, event));
  });

  it('changes when the previous hash changes', () => {
    expect(chainHash('f'.repeat(64), event)).not.toBe(chainHash(GENESIS_HASH, event));
  });

  const changes: [keyof ChainedFields, unknown][] = [
    ['tenantId', '7f8a1c2e-0000-4000-8000-000000000002'],
    ['seq', 2n],
    ['occurredAt', new Date('2026-01-02T03:04:05.679Z')],
    ['actorType', 'user'],
    ['actorId', null],
    ['action', 'tenant.deleted'],
    ['resourceType', 'user'],
    ['resourceId', null],
    ['ip', '192.0.2.2'],
    ['userAgent', null],
    ['metadata', { slug: 'acme', roles: ['admin', 'owner'] }],
    ['metadata', { slug: 'acme', roles: ['owner', 'admin'], extra: true }],
    ['metadata', {}],
  ];
  it.each(changes)('changes when %s changes', (field, value) => {
    expect(chainHash(GENESIS_HASH, { ...event, [field]: value })).not.toBe(chainHash(GENESIS_HASH, event));
  });

  it('tells null apart from the string "null" and from an empty string', () => {
    const hashes = new Set([null, 'null', ''].map((actorId) => chainHash(GENESIS_HASH, { ...event, actorId })));
    expect(hashes.size).toBe(3);
  });
});
