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

/** Events written by one transaction, at most, whatever their tenants. */
const MAX_BATCH = 500;
const TRANSACTION_OPTIONS = { maxWait: 10_000, timeout: 20_000 };

interface Entry {
  tenantId: string;
  event: AuditEventInput;
}

interface Pending extends Entry {
  resolve(record: AuditRecord): void;
  reject(error: unknown): void;
}

export function createAuditLog({ prisma, clock }: { prisma: PrismaClient; clock: Clock }): AuditLog {
  const writer = batchedWriter(prisma, clock);
  return {
    async append(tenantId, event, tx) {
      if (tx) return (await appendInTransaction(tx, clock, [{ tenantId, event }]))[0] as AuditRecord;
      return writer(tenantId, event);
    },
    verify: (tenantId) => verify(prisma, tenantId),
  };
}

/**
 * One writer for every tenant: appends that arrive while a batch is being
 * written go into the next one, whatever their tenant, so a transaction
 * carries many events at a constant number of statements instead of one
 * transaction per tenant.
 */
function batchedWriter(prisma: PrismaClient, clock: Clock): (tenantId: string, event: AuditEventInput) => Promise<AuditRecord> {
  const queue: Pending[] = [];
  let draining = false;

  const writeBatch = (batch: Pending[]) => prisma.$transaction((tx) => appendInTransaction(tx, clock, batch), TRANSACTION_OPTIONS);

  async function write(batch: Pending[]): Promise<void> {
    try {
      const records = await writeBatch(batch);
      for (const [i, pending] of batch.entries()) pending.resolve(records[i] as AuditRecord);
    } catch (error) {
      // One unstorable event must not fail the others batched with it: retry them one by one.
      // A database that is down fails them all alike, so there is nothing to retry.
      if (batch.length === 1 || isDependencyUnavailable(error)) {
        for (const pending of batch) pending.reject(error);
        return;
      }
      for (const pending of batch) {
        await writeBatch([pending]).then(([record]) => pending.resolve(record as AuditRecord), pending.reject);
      }
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) await write(queue.splice(0, MAX_BATCH));
    draining = false;
  }

  return (tenantId, event) =>
    new Promise<AuditRecord>((resolve, reject) => {
      queue.push({ tenantId, event, resolve, reject });
      if (draining) return;
      draining = true;
      // Started after the current tick, so appends made together share the first batch too.
      queueMicrotask(() => void drain());
    });
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

interface Head {
  seq: bigint;
  hash: string;
}

/**
 * Appends under the row locks of the chain heads of every tenant involved, so
 * concurrent appends (on any node, batched or inside a caller's transaction)
 * serialise into one gap-free chain per tenant. Two statements whatever the
 * number of events and tenants: lock the heads, then write events and heads.
 */
async function appendInTransaction(tx: Prisma.TransactionClient, clock: Clock, entries: readonly Entry[]): Promise<AuditRecord[]> {
  const heads = await lockHeads(tx, [...new Set(entries.map((entry) => entry.tenantId))]);
  const records = entries.map(({ tenantId, event }) => {
    const prev = heads.get(tenantId);
    if (!prev) throw new Error('audit chain head missing');
    const fields = chainedFields(clock, tenantId, prev.seq + 1n, event);
    const hash = chainHash(prev.hash, fields);
    heads.set(tenantId, { seq: fields.seq, hash });
    return { ...fields, prevHash: prev.hash, hash };
  });
  await writeEvents(tx, records, heads);
  return records;
}

/**
 * Creates missing heads and locks them all in one statement. The rows are
 * locked in the order the SELECT feeds them to the INSERT, so ORDER BY makes
 * every writer take them in tenantId order: two nodes locking overlapping sets
 * wait for each other instead of deadlocking. The no-op DO UPDATE is what
 * locks an existing row (DO NOTHING would not) and returns its latest values.
 */
async function lockHeads(tx: Prisma.TransactionClient, tenantIds: string[]): Promise<Map<string, Head>> {
  const rows = await tx.$queryRaw<{ tenantId: string; seq: bigint; hash: string }[]>`
    INSERT INTO "AuditHead" ("tenantId", seq, hash)
    SELECT id, 0, ${GENESIS_HASH} FROM unnest(${tenantIds}::uuid[]) AS id ORDER BY id
    ON CONFLICT ("tenantId") DO UPDATE SET seq = "AuditHead".seq
    RETURNING "tenantId", seq, hash`;
  return new Map(rows.map((row) => [row.tenantId, { seq: BigInt(row.seq), hash: row.hash }]));
}

/** Inserts the events and moves the heads in one statement; arrays keep its text and parameter count constant. */
async function writeEvents(tx: Prisma.TransactionClient, records: AuditRecord[], heads: Map<string, Head>): Promise<void> {
  const column = <T>(pick: (record: AuditRecord) => T) => records.map(pick);
  const moved = [...heads];
  await tx.$executeRaw`
    WITH moved AS (
      UPDATE "AuditHead" AS head SET seq = moved.seq, hash = moved.hash
      FROM unnest(
        ${moved.map(([tenantId]) => tenantId)}::uuid[],
        ${moved.map(([, head]) => String(head.seq))}::bigint[],
        ${moved.map(([, head]) => head.hash)}::text[]) AS moved ("tenantId", seq, hash)
      WHERE head."tenantId" = moved."tenantId"
    )
    INSERT INTO "AuditEvent" ("tenantId", seq, "occurredAt", "actorType", "actorId", action, "resourceType", "resourceId", ip, "userAgent", metadata, "prevHash", hash)
    SELECT * FROM unnest(
      ${column((r) => r.tenantId)}::uuid[],
      ${column((r) => String(r.seq))}::bigint[],
      ${column((r) => r.occurredAt.toISOString())}::timestamptz[],
      ${column((r) => r.actorType)}::text[],
      ${column((r) => r.actorId)}::text[],
      ${column((r) => r.action)}::text[],
      ${column((r) => r.resourceType)}::text[],
      ${column((r) => r.resourceId)}::text[],
      ${column((r) => r.ip)}::text[],
      ${column((r) => r.userAgent)}::text[],
      ${column((r) => JSON.stringify(r.metadata))}::jsonb[],
      ${column((r) => r.prevHash)}::text[],
      ${column((r) => r.hash)}::text[])`;
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
