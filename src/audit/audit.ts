import type { Clock } from '../clock.js';
import { isDependencyUnavailable } from '../errors.js';
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
  if (typeof value === 'string') return withoutNul(value);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, v]) => [
      withoutNul(key),
      SECRET_KEY.test(key) ? '[redacted]' : scrubMetadata(v),
    ]),
  );
}

/** PostgreSQL text and JSON cannot hold NUL: a caller's stray NUL must not make the audited action fail. */
function withoutNul(value: string): string {
  return value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
}

const USER_AGENT_MAX = 512;

/** Events of one tenant written by one transaction, at most. */
const MAX_BATCH = 500;
const TRANSACTION_OPTIONS = { maxWait: 10_000, timeout: 20_000 };

interface Pending {
  event: AuditEventInput;
  resolve(record: AuditRecord): void;
  reject(error: unknown): void;
}

export function createAuditLog({ prisma, clock }: { prisma: PrismaClient; clock: Clock }): AuditLog {
  const queues = new Map<string, Pending[]>();

  /**
   * Appends that arrive while a tenant's previous batch is being written are
   * written together, under one lock of the chain head: the chain stays
   * strictly ordered while throughput no longer pays a transaction per event.
   */
  async function drain(tenantId: string, queue: Pending[]): Promise<void> {
    const writeBatch = (batch: Pending[]) =>
      prisma.$transaction(
        (tx) =>
          appendInTransaction(
            tx,
            clock,
            tenantId,
            batch.map((p) => p.event),
          ),
        TRANSACTION_OPTIONS,
      );
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      try {
        const records = await writeBatch(batch);
        for (const [i, pending] of batch.entries()) pending.resolve(records[i] as AuditRecord);
      } catch (error) {
        // One unstorable event must not fail the others batched with it: retry them one by one.
        // A database that is down fails them all alike, so there is nothing to retry.
        if (batch.length === 1 || isDependencyUnavailable(error)) {
          for (const pending of batch) pending.reject(error);
          continue;
        }
        for (const pending of batch) {
          await writeBatch([pending]).then(([record]) => pending.resolve(record as AuditRecord), pending.reject);
        }
      }
    }
    queues.delete(tenantId);
  }

  return {
    async append(tenantId, event, tx) {
      if (tx) return (await appendInTransaction(tx, clock, tenantId, [event]))[0] as AuditRecord;
      return new Promise<AuditRecord>((resolve, reject) => {
        const queue = queues.get(tenantId);
        if (queue) {
          queue.push({ event, resolve, reject });
          return;
        }
        const fresh: Pending[] = [{ event, resolve, reject }];
        queues.set(tenantId, fresh);
        void drain(tenantId, fresh);
      });
    },
    verify: (tenantId) => verify(prisma, tenantId),
  };
}

function chainedFields(clock: Clock, tenantId: string, seq: bigint, event: AuditEventInput): ChainedFields {
  return {
    tenantId,
    seq,
    // Millisecond precision: what the timestamptz(3) column keeps, so the hash verifies after a round trip.
    occurredAt: new Date(Math.floor(clock.now())),
    actorType: event.actor.type,
    actorId: event.actor.id ?? null,
    action: event.action,
    resourceType: event.resource?.type ?? null,
    resourceId: event.resource?.id ?? null,
    ip: event.ip == null ? null : withoutNul(event.ip),
    userAgent: event.userAgent == null ? null : withoutNul(event.userAgent.slice(0, USER_AGENT_MAX)),
    metadata: scrubMetadata(event.metadata ?? {}),
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
  events: AuditEventInput[],
): Promise<AuditRecord[]> {
  await tx.$executeRaw`INSERT INTO "AuditHead" ("tenantId", seq, hash) VALUES (${tenantId}::uuid, 0, ${GENESIS_HASH}) ON CONFLICT DO NOTHING`;
  const [head] = await tx.$queryRaw<{ seq: bigint; hash: string }[]>`
      SELECT seq, hash FROM "AuditHead" WHERE "tenantId" = ${tenantId}::uuid FOR UPDATE`;
  if (!head) throw new Error('audit chain head missing');
  const records: AuditRecord[] = [];
  let prev = { seq: BigInt(head.seq), hash: head.hash };
  for (const event of events) {
    const fields = chainedFields(clock, tenantId, prev.seq + 1n, event);
    const hash = chainHash(prev.hash, fields);
    records.push({ ...fields, prevHash: prev.hash, hash });
    prev = { seq: fields.seq, hash };
  }
  await tx.auditEvent.createMany({ data: records.map((r) => ({ ...r, metadata: r.metadata as object })) });
  await tx.auditHead.update({ where: { tenantId }, data: { seq: prev.seq, hash: prev.hash } });
  return records;
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
