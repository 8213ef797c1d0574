import type { Clock } from '../clock.js';
import type { Prisma, PrismaClient } from '../store/db.js';
import { type ChainedFields, chainHash, GENESIS_HASH } from './chain.js';

export type ActorType = 'user' | 'service_account' | 'api_key' | 'client' | 'cli' | 'system' | 'anonymous';

export interface AuditEventInput {
  actor: { type: ActorType; id?: string | null };
  action: string;
  resource?: { type: string; id?: string | null };
  ip?: string | null;
  userAgent?: string | null;
  metadata?: Record<string, unknown>;
}

export interface AuditRecord extends ChainedFields {
  prevHash: string;
  hash: string;
}

export interface AuditLog {
  /** Inside `tx` when given, so the event commits or rolls back with the change it records. */
  append(tenantId: string, event: AuditEventInput, tx?: Prisma.TransactionClient): Promise<AuditRecord>;
  verify(tenantId: string): Promise<VerifyResult>;
}

export type VerifyResult = { ok: true; count: number } | { ok: false; count: number; firstBadSeq: bigint; reason: string };

/** Keys whose values are never written to the trail, at any depth, whatever the caller passed. */
const SECRET_KEY = /pass(word)?|secret|token|^code$|private|otp|totp|recovery|credential|api_?key|authorization|cookie/i;

export function scrubMetadata(value: unknown): unknown {
  // Dates (and anything else with toJSON) as JSON would store them; Object.entries would turn a Date into {}.
  if (typeof (value as { toJSON?: unknown } | null)?.toJSON === 'function') return scrubMetadata((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) return value.map(scrubMetadata);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, v]) => [key, SECRET_KEY.test(key) ? '[redacted]' : scrubMetadata(v)]),
  );
}

const USER_AGENT_MAX = 512;

export function createAuditLog({ prisma, clock }: { prisma: PrismaClient; clock: Clock }): AuditLog {
  return {
    append: (tenantId, event, tx) =>
      tx ? appendInTransaction(tx, clock, tenantId, event) : prisma.$transaction((own) => appendInTransaction(own, clock, tenantId, event)),
    verify: (tenantId) => verify(prisma, tenantId),
  };
}

/**
 * Appends under the row lock of the tenant's chain head, so concurrent appends
 * (on any node) serialise into one gap-free chain.
 */
async function appendInTransaction(
  tx: Prisma.TransactionClient,
  clock: Clock,
  tenantId: string,
  event: AuditEventInput,
): Promise<AuditRecord> {
  await tx.$executeRaw`INSERT INTO "AuditHead" ("tenantId", seq, hash) VALUES (${tenantId}::uuid, 0, ${GENESIS_HASH}) ON CONFLICT DO NOTHING`;
  const [head] = await tx.$queryRaw<{ seq: bigint; hash: string }[]>`
      SELECT seq, hash FROM "AuditHead" WHERE "tenantId" = ${tenantId}::uuid FOR UPDATE`;
  if (!head) throw new Error('audit chain head missing');
  const fields: ChainedFields = {
    tenantId,
    seq: BigInt(head.seq) + 1n,
    // Millisecond precision: what the timestamptz(3) column keeps, so the hash verifies after a round trip.
    occurredAt: new Date(Math.floor(clock.now())),
    actorType: event.actor.type,
    actorId: event.actor.id ?? null,
    action: event.action,
    resourceType: event.resource?.type ?? null,
    resourceId: event.resource?.id ?? null,
    ip: event.ip ?? null,
    userAgent: event.userAgent?.slice(0, USER_AGENT_MAX) ?? null,
    metadata: scrubMetadata(event.metadata ?? {}),
  };
  const hash = chainHash(head.hash, fields);
  await tx.auditEvent.create({ data: { ...fields, metadata: fields.metadata as object, prevHash: head.hash, hash } });
  await tx.auditHead.update({ where: { tenantId }, data: { seq: fields.seq, hash } });
  return { ...fields, prevHash: head.hash, hash };
}

const VERIFY_BATCH = 1000;

/** Walks the chain in order; the first event whose sequence, link or hash is off is named. */
async function verify(prisma: PrismaClient, tenantId: string): Promise<VerifyResult> {
  let expectedSeq = 1n;
  let prevHash = GENESIS_HASH;
  let count = 0;
  for (;;) {
    const rows = await prisma.auditEvent.findMany({
      where: { tenantId, seq: { gte: expectedSeq } },
      orderBy: { seq: 'asc' },
      take: VERIFY_BATCH,
    });
    for (const row of rows) {
      const fail = (reason: string): VerifyResult => ({ ok: false, count, firstBadSeq: expectedSeq, reason });
      if (row.seq !== expectedSeq) return fail(`sequence gap: expected ${expectedSeq}, found ${row.seq}`);
      if (row.prevHash !== prevHash) return fail('link to the previous event is broken');
      if (chainHash(prevHash, row) !== row.hash) return fail('event content does not match its hash');
      prevHash = row.hash;
      expectedSeq += 1n;
      count += 1;
    }
    if (rows.length < VERIFY_BATCH) break;
  }
  const head = await prisma.auditHead.findUnique({ where: { tenantId } });
  if (head && (head.seq !== expectedSeq - 1n || head.hash !== prevHash)) {
    return { ok: false, count, firstBadSeq: expectedSeq, reason: 'events after this point are missing (truncated chain)' };
  }
  return { ok: true, count };
}
