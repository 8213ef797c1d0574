import { Readable } from 'node:stream';
import { z } from 'zod';
import { auditEvents, toCsv, toExportedEvent, toNdjson } from '../../audit/export.js';
import { badRequest } from '../../errors.js';
import type { Prisma } from '../../store/db.js';
import { page, paginationQuery, timestamp } from '../http.js';
import { defineRoute } from '../route.js';

export const AuditEvent = z.object({
  seq: z.string(),
  occurred_at: timestamp,
  actor_type: z.string(),
  actor_id: z.string().nullable(),
  action: z.string(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  metadata: z.unknown(),
  prev_hash: z.string(),
  hash: z.string(),
});
export const AuditEventPage = page(AuditEvent);

export const AuditVerification = z.object({
  ok: z.boolean(),
  count: z.number().int(),
  first_bad_seq: z.string().nullable(),
  reason: z.string().nullable(),
});

const filters = {
  from: z.iso.datetime({ offset: true }).optional().meta({ description: 'events at or after this time' }),
  to: z.iso.datetime({ offset: true }).optional().meta({ description: 'events before this time' }),
  actor_type: z.string().max(32).optional(),
  actor_id: z.string().max(200).optional(),
  action: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,100}\*?$/, { message: 'must be an action name, or a prefix ending in *' })
    .optional()
    .meta({ description: 'an action (user.created) or a prefix ending in * (user.*)' }),
};

type Filters = { from?: string; to?: string; actor_type?: string; actor_id?: string; action?: string };

function whereOf(tenantId: string, query: Filters): Prisma.AuditEventWhereInput & { tenantId: string } {
  const from = query.from ? new Date(query.from) : undefined;
  const to = query.to ? new Date(query.to) : undefined;
  if (from && to && from >= to) throw badRequest('query.from: must be before query.to');
  const action = query.action?.endsWith('*') ? { startsWith: query.action.slice(0, -1) } : query.action;
  return {
    tenantId,
    ...(from || to ? { occurredAt: { ...(from ? { gte: from } : {}), ...(to ? { lt: to } : {}) } } : {}),
    ...(query.actor_type ? { actorType: query.actor_type } : {}),
    ...(query.actor_id ? { actorId: query.actor_id } : {}),
    ...(action ? { action } : {}),
  };
}

const SEQ = /^[1-9]\d{0,18}$/;

export const auditRoutes = [
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/audit-events',
    operationId: 'listAuditEvents',
    summary: 'List audit events, newest first, filtered by time, actor and action',
    tag: 'audit',
    permission: 'audit.read',
    query: z.object({ ...paginationQuery, ...filters }),
    response: AuditEventPage,
    async handler({ deps, tenant, query, cursor }) {
      const before = cursor.decode(query.cursor);
      if (before !== undefined && !SEQ.test(before)) throw badRequest('cursor is malformed', 'invalid_cursor');
      const where = whereOf(tenant.id, query);
      const rows = await deps.db.prisma.auditEvent.findMany({
        where: { ...where, ...(before ? { seq: { lt: BigInt(before) } } : {}) },
        orderBy: { seq: 'desc' },
        take: query.limit + 1,
      });
      const data = rows.slice(0, query.limit);
      const last = data[data.length - 1];
      return {
        // The export's shape, less the tenant the caller already named in the path.
        data: data.map((row) => {
          const { tenant_id: _tenant, ...event } = toExportedEvent(row);
          return event;
        }),
        next_cursor: rows.length > query.limit && last ? cursor.encode(last.seq.toString()) : null,
      };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/audit-events/export',
    operationId: 'exportAuditEvents',
    summary: 'Export audit events, oldest first, streamed as NDJSON or CSV; every event carries what its hash covers',
    tag: 'audit',
    permission: 'audit.read',
    query: z.object({ format: z.enum(['ndjson', 'csv']).default('ndjson'), ...filters }),
    produces: ['application/x-ndjson', 'text/csv'],
    async handler({ deps, tenant, query, koa }) {
      const events = auditEvents(deps.db.prisma, whereOf(tenant.id, query));
      const stamp = new Date(deps.clock.now()).toISOString().slice(0, 10);
      koa.status = 200;
      koa.type = query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8';
      koa.set('Content-Disposition', `attachment; filename="audit-${tenant.slug}-${stamp}.${query.format}"`);
      // Written as read, a batch at a time: a trail of any size never sits in memory.
      koa.body = Readable.from(query.format === 'csv' ? toCsv(events) : toNdjson(events));
      return undefined;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/tenants/{tenant}/audit-events/verify',
    operationId: 'verifyAuditEvents',
    summary: 'Verify the tenant’s audit hash chain from its first event to its head',
    tag: 'audit',
    permission: 'audit.read',
    response: AuditVerification,
    async handler({ deps, tenant }) {
      const result = await deps.audit.verify(tenant.id);
      return result.ok
        ? { ok: true, count: result.count, first_bad_seq: null, reason: null }
        : { ok: false, count: result.count, first_bad_seq: result.firstBadSeq.toString(), reason: result.reason };
    },
  }),
];
