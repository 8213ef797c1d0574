import { z } from 'zod';
import { rotateKeys } from '../../oidc/keys.js';
import { iso, nullableTimestamp, page, pageOf, paginationQuery, timestamp } from '../http.js';
import { defineRoute } from '../route.js';

export const SigningKey = z.object({
  kid: z.string(),
  alg: z.string(),
  /** next: published ahead of use; active: signs; previous: published for tokens signed before the rotation; retired: neither. */
  status: z.enum(['next', 'active', 'previous', 'retired']),
  public_jwk: z.record(z.string(), z.unknown()),
  created_at: timestamp,
  activated_at: nullableTimestamp,
  retired_at: nullableTimestamp,
});
export const SigningKeyPage = page(SigningKey);

export const Rotation = z.object({
  rotated: z.array(z.object({ alg: z.string(), activated: z.string(), previous: z.string().nullable(), next: z.string() })),
});

export const keyRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/signing-keys',
    operationId: 'listSigningKeys',
    summary: 'List signing keys (public parts only)',
    tag: 'signing keys',
    permission: 'keys.read',
    query: z.object({ ...paginationQuery, status: z.enum(['next', 'active', 'previous', 'retired']).optional() }),
    response: SigningKeyPage,
    async handler({ deps, tenant, query, cursor }) {
      const after = cursor.decode(query.cursor);
      const rows = await deps.db.prisma.signingKey.findMany({
        // The OIDC keys (the JWKS); the SAML IdP's keys and certificates are listed under /saml/signing-keys.
        where: {
          tenantId: tenant.id,
          purpose: 'oidc',
          ...(query.status ? { status: query.status } : {}),
          ...(after ? { id: { gt: after } } : {}),
        },
        // The private JWK (vault ciphertext) is never read here.
        select: { id: true, kid: true, alg: true, status: true, publicJwk: true, createdAt: true, activatedAt: true, retiredAt: true },
        orderBy: { id: 'asc' },
        take: query.limit + 1,
      });
      const result = pageOf(rows, query.limit, (row) => row.id, cursor.encode);
      return {
        data: result.data.map((row) => ({
          kid: row.kid,
          alg: row.alg,
          status: row.status as 'next' | 'active' | 'previous' | 'retired',
          public_jwk: row.publicJwk as Record<string, unknown>,
          created_at: iso(row.createdAt),
          activated_at: iso(row.activatedAt),
          retired_at: iso(row.retiredAt),
        })),
        next_cursor: result.next_cursor,
      };
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/tenants/{tenant}/signing-keys/rotate',
    operationId: 'rotateSigningKeys',
    summary: 'Rotate: the published next key becomes active, the active one stays published as previous',
    tag: 'signing keys',
    permission: 'keys.write',
    response: Rotation,
    async handler({ deps, tenant, actor, announce }) {
      // rotateKeys records keys.rotated with the caller as actor.
      const rotated = await rotateKeys(
        { prisma: deps.db.prisma, vault: deps.vault, clock: deps.clock, audit: deps.audit },
        tenant.id,
        actor,
      );
      await announce('keys');
      return { rotated };
    },
  }),
];
