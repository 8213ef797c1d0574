import type { Prisma, PrismaClient } from '../store/db.js';
import { type ChainedFields, canonicalJson, chainHash, GENESIS_HASH } from './chain.js';

/**
 * Audit trail exports, streamed: rows are read in batches by sequence and
 * written as they come, so a trail of any size never sits in memory. Each
 * exported event carries what its hash covers, so an export can be verified
 * on its own (`verifyExportedEvents`), without access to the database.
 */

export interface ExportedEvent {
  tenant_id: string;
  seq: string;
  occurred_at: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  ip: string | null;
  user_agent: string | null;
  metadata: unknown;
  prev_hash: string;
  hash: string;
}

export const EXPORT_COLUMNS = [
  'tenant_id',
  'seq',
  'occurred_at',
  'actor_type',
  'actor_id',
  'action',
  'resource_type',
  'resource_id',
  'ip',
  'user_agent',
  'metadata',
  'prev_hash',
  'hash',
] as const satisfies readonly (keyof ExportedEvent)[];

type AuditRow = Awaited<ReturnType<PrismaClient['auditEvent']['findFirstOrThrow']>>;

export function toExportedEvent(row: AuditRow): ExportedEvent {
  return {
    tenant_id: row.tenantId,
    seq: row.seq.toString(),
    occurred_at: row.occurredAt.toISOString(),
    actor_type: row.actorType,
    actor_id: row.actorId,
    action: row.action,
    resource_type: row.resourceType,
    resource_id: row.resourceId,
    ip: row.ip,
    user_agent: row.userAgent,
    metadata: row.metadata,
    prev_hash: row.prevHash,
    hash: row.hash,
  };
}

const EXPORT_BATCH = 500;

/** The events matching `where`, oldest first, fetched a batch at a time. */
export async function* auditEvents(
  prisma: PrismaClient,
  where: Prisma.AuditEventWhereInput & { tenantId: string },
  batchSize = EXPORT_BATCH,
): AsyncGenerator<ExportedEvent> {
  let after = 0n;
  for (;;) {
    const rows = await prisma.auditEvent.findMany({ where: { ...where, seq: { gt: after } }, orderBy: { seq: 'asc' }, take: batchSize });
    for (const row of rows) yield toExportedEvent(row);
    const last = rows[rows.length - 1];
    if (!last || rows.length < batchSize) return;
    after = last.seq;
  }
}

export async function* toNdjson(events: AsyncIterable<ExportedEvent>): AsyncGenerator<string> {
  for await (const event of events) yield `${JSON.stringify(event)}\n`;
}

/**
 * Spreadsheets run a cell that starts with = + - @ (or a tab or CR) as a
 * formula: such a cell gets a leading apostrophe. Cells that already start
 * with apostrophes before such a character get one more, so the reader can
 * always remove exactly one and the round trip is lossless.
 */
const FORMULA = /^'*[=+\-@\t\r]/;

export function neutralizeFormula(value: string): string {
  return FORMULA.test(value) ? `'${value}` : value;
}

export function restoreFormula(value: string): string {
  return value.startsWith("'") && FORMULA.test(value.slice(1)) ? value.slice(1) : value;
}

/** null is an empty unquoted field; every string (even empty) is quoted, so the two stay apart. */
function csvField(value: string | null): string {
  if (value === null) return '';
  return `"${neutralizeFormula(value).replace(/"/g, '""')}"`;
}

function csvValues(event: ExportedEvent): (string | null)[] {
  return EXPORT_COLUMNS.map((column) => {
    const value = event[column];
    if (column === 'metadata') return canonicalJson(value);
    return value === null ? null : String(value);
  });
}

export async function* toCsv(events: AsyncIterable<ExportedEvent>): AsyncGenerator<string> {
  yield `${EXPORT_COLUMNS.join(',')}\r\n`;
  for await (const event of events) yield `${csvValues(event).map(csvField).join(',')}\r\n`;
}

/** Reads what toCsv wrote (RFC 4180 with the null and formula conventions above). */
export function parseCsv(text: string): ExportedEvent[] {
  const records: (string | null)[][] = [];
  let record: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let value: string | null;
    if (text[i] === '"') {
      let out = '';
      i++;
      for (;;) {
        const quote = text.indexOf('"', i);
        if (quote < 0) throw new Error('unterminated quoted field');
        out += text.slice(i, quote);
        if (text[quote + 1] === '"') {
          out += '"';
          i = quote + 2;
          continue;
        }
        i = quote + 1;
        break;
      }
      value = restoreFormula(out);
    } else {
      const end = text.slice(i).search(/[,\r\n]/);
      const raw = end < 0 ? text.slice(i) : text.slice(i, i + end);
      i += raw.length;
      value = raw === '' ? null : raw;
    }
    record.push(value);
    if (text[i] === ',') {
      i++;
    } else {
      if (text[i] === '\r') i++;
      if (text[i] === '\n') i++;
      records.push(record);
      record = [];
    }
  }
  const [header, ...rows] = records;
  if (!header || header.join(',') !== EXPORT_COLUMNS.join(',')) throw new Error('not an audit export: unexpected header');
  return rows.map((row) => {
    const entry = Object.fromEntries(EXPORT_COLUMNS.map((column, index) => [column, row[index] ?? null])) as Record<string, string | null>;
    return { ...entry, metadata: JSON.parse(entry.metadata ?? 'null') as unknown } as ExportedEvent;
  });
}

export type ExportVerification = { ok: true; count: number } | { ok: false; count: number; firstBadSeq: string; reason: string };

function chainedFieldsOf(event: ExportedEvent): ChainedFields {
  return {
    tenantId: event.tenant_id,
    seq: BigInt(event.seq),
    occurredAt: new Date(event.occurred_at),
    actorType: event.actor_type,
    actorId: event.actor_id,
    action: event.action,
    resourceType: event.resource_type,
    resourceId: event.resource_id,
    ip: event.ip,
    userAgent: event.user_agent,
    metadata: event.metadata,
  };
}

/**
 * Checks an export on its own: every event's hash covers its content and its
 * predecessor's hash, consecutive events link up, and an export starting at
 * sequence 1 starts from the genesis hash. (A filtered export has gaps in its
 * sequence; each event still verifies against the prev_hash it carries.)
 */
export function verifyExportedEvents(
  events: readonly ExportedEvent[],
  { complete = true }: { complete?: boolean } = {},
): ExportVerification {
  let previous: ExportedEvent | undefined;
  let count = 0;
  for (const event of events) {
    const fail = (reason: string): ExportVerification => ({ ok: false, count, firstBadSeq: event.seq, reason });
    if (event.seq === '1' && event.prev_hash !== GENESIS_HASH) return fail('the first event does not start from the genesis hash');
    if (chainHash(event.prev_hash, chainedFieldsOf(event)) !== event.hash) return fail('event content does not match its hash');
    if (previous && BigInt(event.seq) === BigInt(previous.seq) + 1n && event.prev_hash !== previous.hash) {
      return fail('link to the previous event is broken');
    }
    if (complete && previous && BigInt(event.seq) !== BigInt(previous.seq) + 1n) return fail('sequence gap');
    if (complete && !previous && event.seq !== '1') return fail('the export does not start at the first event');
    previous = event;
    count += 1;
  }
  return { ok: true, count };
}
