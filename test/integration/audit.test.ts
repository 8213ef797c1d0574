import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEventInput, type AuditLog, createAuditLog } from '../../src/audit/audit.js';
import { chainHash, GENESIS_HASH } from '../../src/audit/chain.js';
import { manualClock } from '../../src/clock.js';
import { type Database, migrate, openDatabase } from '../../src/store/index.js';
import { killSpawned, removeTempDirs, runCli, tempDir } from '../helpers/processes.js';
import { createTestStores, type TestStores } from '../helpers/stores.js';

const clock = manualClock(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
const event = (action: string, metadata: Record<string, unknown> = {}): AuditEventInput => ({
  actor: { type: 'system', id: 'audit-test' },
  action,
  resource: { type: 'thing', id: action },
  metadata,
});

/** A tenant with an empty chain (created without createTenant, which would append its own event). */
async function newTenant(db: Database, prefix = 't'): Promise<{ id: string; slug: string }> {
  const slug = `${prefix}-${randomBytes(4).toString('hex')}`;
  return db.prisma.tenant.create({ data: { slug, displayName: slug }, select: { id: true, slug: true } });
}

async function appendMany(audit: AuditLog, tenantId: string, count: number): Promise<void> {
  for (let i = 1; i <= count; i++) await audit.append(tenantId, event(`event.${i}`, { i }));
}

/**
 * Runs `sql` with the append-only trigger bypassed, as a superuser tampering
 * with the table would: session_replication_role=replica skips ordinary
 * triggers, and SET LOCAL confines that to this one transaction.
 */
async function tamper(db: Database, sql: string, ...params: unknown[]): Promise<number> {
  return db.prisma.$transaction(async (tx) => {
    await tx.$executeRawUnsafe('SET LOCAL session_replication_role = replica');
    return tx.$executeRawUnsafe(sql, ...params);
  });
}

describe('audit trail', () => {
  let stores: TestStores;
  let audit: AuditLog;

  beforeAll(async () => {
    stores = await createTestStores({ clock });
    audit = createAuditLog({ prisma: stores.db.prisma, clock });
  });
  afterAll(() => stores?.close());

  describe('append and verify', () => {
    it('chains each event to the previous one from the genesis hash', async () => {
      const tenant = await newTenant(stores.db);
      const first = await audit.append(tenant.id, event('first', { slug: 'acme' }));
      clock.advance(1_000);
      const second = await audit.append(tenant.id, { ...event('second'), ip: '192.0.2.7', userAgent: 'curl/8' });

      expect(first.seq).toBe(1n);
      expect(first.prevHash).toBe(GENESIS_HASH);
      expect(first.hash).toBe(chainHash(GENESIS_HASH, first));
      expect(second.seq).toBe(2n);
      expect(second.prevHash).toBe(first.hash);
      expect(second.hash).toBe(chainHash(first.hash, second));
      // The time comes from the injected clock, not the database's now().
      expect(second.occurredAt.getTime() - first.occurredAt.getTime()).toBe(1_000);

      const rows = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
      expect(rows.map((row) => [row.seq, row.action, row.prevHash, row.hash])).toEqual([
        [1n, 'first', GENESIS_HASH, first.hash],
        [2n, 'second', first.hash, second.hash],
      ]);
      expect(rows[1]).toMatchObject({ actorType: 'system', actorId: 'audit-test', ip: '192.0.2.7', userAgent: 'curl/8' });
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 2 });
    });

    it('verifies an empty chain as intact', async () => {
      const tenant = await newTenant(stores.db);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 0 });
    });

    it('writes nothing when the caller’s transaction rolls back, and the chain stays gap-free', async () => {
      const tenant = await newTenant(stores.db);
      await audit.append(tenant.id, event('kept'));
      await expect(
        stores.db.prisma.$transaction(async (tx) => {
          await audit.append(tenant.id, event('rolled.back'), tx);
          throw new Error('the change being audited failed');
        }),
      ).rejects.toThrow('the change being audited failed');
      const next = await audit.append(tenant.id, event('next'));
      expect(next.seq).toBe(2n);
      const actions = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
      expect(actions.map((row) => row.action)).toEqual(['kept', 'next']);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 2 });
    });

    it('keeps one gap-free chain under 200 concurrent appends across two connections', async () => {
      const tenant = await newTenant(stores.db);
      // On PostgreSQL a second client with its own pool, as a second node would have; PGlite has one connection only.
      const second = stores.databaseUrl ? await openDatabase({ url: stores.databaseUrl, poolSize: 5 }) : stores.db;
      try {
        const logs = [audit, createAuditLog({ prisma: second.prisma, clock })];
        const records = await Promise.all(
          Array.from({ length: 200 }, (_, i) => logs[i % 2]?.append(tenant.id, event(`concurrent.${i}`, { i }))),
        );
        expect(
          records
            .map((record) => Number(record?.seq))
            .sort((a, b) => a - b)
            .join(','),
        ).toBe(Array.from({ length: 200 }, (_, i) => i + 1).join(','));
        expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 200 });
        const head = await stores.db.prisma.auditHead.findUnique({ where: { tenantId: tenant.id } });
        expect(head?.seq).toBe(200n);
      } finally {
        if (second !== stores.db) await second.close();
      }
    });

    it('fails a bad event alone: other callers’ concurrent appends still land', async () => {
      const tenant = await newTenant(stores.db);
      // PostgreSQL text refuses \u0000 and actions come from code, unsanitised: this one event cannot be stored.
      const results = await Promise.allSettled([
        audit.append(tenant.id, event('ok.1')),
        audit.append(tenant.id, event('unstorable\u0000')),
        audit.append(tenant.id, event('ok.2')),
        audit.append(tenant.id, event('ok.3')),
      ]);
      expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      const rows = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
      expect(rows.map((row) => row.action).sort()).toEqual(['ok.1', 'ok.2', 'ok.3']);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 3 });
    });

    it('stores a caller’s stray NUL bytes (metadata, IP, user agent) replaced, instead of failing the audited action', async () => {
      const tenant = await newTenant(stores.db);
      const record = await audit.append(tenant.id, {
        actor: { type: 'anonymous' },
        action: 'auth.sign_in.failed',
        ip: '203.0.113.9\u0000',
        userAgent: 'agent\u0000x',
        metadata: { email: 'a\u0000b@example.com', 'k\u0000': 1 },
      });
      expect(record.userAgent).toBe('agent\uFFFDx');
      expect(record.metadata).toEqual({ email: 'a\uFFFDb@example.com', 'k\uFFFD': 1 });
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 1 });
    });

    it('keeps each tenant’s chain independent', async () => {
      const a = await newTenant(stores.db, 'a');
      const b = await newTenant(stores.db, 'b');
      await Promise.all([appendMany(audit, a.id, 3), appendMany(audit, b.id, 2)]);
      const seqs = async (tenantId: string) =>
        (await stores.db.prisma.auditEvent.findMany({ where: { tenantId }, orderBy: { seq: 'asc' } })).map((row) => row.seq);
      expect(await seqs(a.id)).toEqual([1n, 2n, 3n]);
      expect(await seqs(b.id)).toEqual([1n, 2n]);
      // Each chain starts from the genesis hash: one tenant's events are not linked to another's.
      const firstOfB = await stores.db.prisma.auditEvent.findFirst({ where: { tenantId: b.id, seq: 1n } });
      expect(firstOfB?.prevHash).toBe(GENESIS_HASH);

      await tamper(stores.db, `UPDATE "AuditEvent" SET action = 'forged' WHERE "tenantId" = $1::uuid AND seq = 2`, a.id);
      expect(await audit.verify(a.id)).toMatchObject({ ok: false, firstBadSeq: 2n });
      expect(await audit.verify(b.id)).toEqual({ ok: true, count: 2 });
    });
  });

  describe('batched across tenants', () => {
    /** Statements the database ran while `work` did (COMMIT is counted, BEGIN is not). */
    async function statementsOf(work: () => Promise<unknown>): Promise<number> {
      const before = stores.db.statements();
      await work();
      return stores.db.statements() - before;
    }

    it('writes appends made together, of many tenants, in one transaction of constant size', async () => {
      const tenants = await Promise.all(Array.from({ length: 12 }, () => newTenant(stores.db, 'batch')));
      const statements = await statementsOf(() =>
        Promise.all(tenants.flatMap((tenant) => [1, 2, 3].map((i) => audit.append(tenant.id, event(`batch.${i}`, { i }))))),
      );
      // Lock (and create) every head; insert the events and move the heads; COMMIT. Not a transaction per tenant.
      expect(statements).toBe(3);
      for (const tenant of tenants) {
        const rows = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
        // Each tenant's events in the order they were appended.
        expect(rows.map((row) => [row.seq, row.action])).toEqual([
          [1n, 'batch.1'],
          [2n, 'batch.2'],
          [3n, 'batch.3'],
        ]);
        expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 3 });
      }
    });

    it('writes at most 500 events per transaction', async () => {
      const tenants = await Promise.all(Array.from({ length: 3 }, () => newTenant(stores.db, 'max')));
      const statements = await statementsOf(() =>
        Promise.all(Array.from({ length: 1_200 }, (_, i) => audit.append(tenants[i % 3]?.id ?? '', event(`max.${i}`)))),
      );
      expect(statements).toBe(3 * 3);
      for (const tenant of tenants) expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 400 });
    });

    it('keeps every chain gap-free when many tenants append concurrently through two logs on one database', async () => {
      const tenants = await Promise.all(Array.from({ length: 20 }, () => newTenant(stores.db, 'multi')));
      const second = stores.databaseUrl ? await openDatabase({ url: stores.databaseUrl, poolSize: 5 }) : stores.db;
      try {
        const logs = [audit, createAuditLog({ prisma: second.prisma, clock })];
        // Waves of appends, so both logs write overlapping sets of heads in several batches each.
        const waves = Array.from({ length: 4 }, (_, wave) =>
          new Promise((resolve) => setTimeout(resolve, wave * 5)).then(() =>
            Promise.all(
              tenants.flatMap((tenant, t) =>
                Array.from({ length: 5 }, (_, i) => logs[(t + i + wave) % 2]?.append(tenant.id, event(`multi.${wave}.${i}`))),
              ),
            ),
          ),
        );
        await Promise.all(waves);
        for (const tenant of tenants) {
          expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 20 });
          const head = await stores.db.prisma.auditHead.findUnique({ where: { tenantId: tenant.id } });
          expect(head?.seq).toBe(20n);
        }
      } finally {
        if (second !== stores.db) await second.close();
      }
    });

    it('fails an unstorable event alone: the other tenants’ events of its batch are stored', async () => {
      const [a, b, c] = await Promise.all([newTenant(stores.db), newTenant(stores.db), newTenant(stores.db)]);
      if (!a || !b || !c) throw new Error('tenants missing');
      const results = await Promise.allSettled([
        audit.append(a.id, event('a.1')),
        audit.append(b.id, event('b.1')),
        audit.append(b.id, event('unstorable\u0000')),
        audit.append(c.id, event('c.1')),
        audit.append(b.id, event('b.2')),
        audit.append(a.id, event('a.2')),
      ]);
      expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      const actions = async (tenantId: string) =>
        (await stores.db.prisma.auditEvent.findMany({ where: { tenantId }, orderBy: { seq: 'asc' } })).map((row) => row.action);
      expect(await actions(a.id)).toEqual(['a.1', 'a.2']);
      expect(await actions(b.id)).toEqual(['b.1', 'b.2']);
      expect(await actions(c.id)).toEqual(['c.1']);
      for (const tenant of [a, b, c]) expect(await audit.verify(tenant.id)).toMatchObject({ ok: true });
    });

    it('serialises with an append inside a caller’s transaction', async () => {
      const [a, b] = await Promise.all([newTenant(stores.db), newTenant(stores.db)]);
      if (!a || !b) throw new Error('tenants missing');
      await audit.append(a.id, event('before'));
      let batched: Promise<unknown> = Promise.resolve();
      await stores.db.prisma.$transaction(async (tx) => {
        await audit.append(a.id, event('in.transaction'), tx);
        // On PostgreSQL this batch waits for the caller's lock of a's head; on PGlite, for its one connection.
        batched = Promise.all([audit.append(b.id, event('batched.b')), audit.append(a.id, event('batched.a'))]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      });
      await batched;
      const rows = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: a.id }, orderBy: { seq: 'asc' } });
      expect(rows.map((row) => row.action)).toEqual(['before', 'in.transaction', 'batched.a']);
      expect(await audit.verify(a.id)).toEqual({ ok: true, count: 3 });
      expect(await audit.verify(b.id)).toEqual({ ok: true, count: 1 });
    });

    it('rejects every event of a batch at once when the database is down, without retrying them one by one', async () => {
      const down = await openDatabase({ url: 'postgresql://postgres@127.0.0.1:1/none', poolSize: 1 });
      let transactions = 0;
      const prisma = new Proxy(down.prisma, {
        get: (target, key, receiver) =>
          key === '$transaction'
            ? (...args: Parameters<typeof target.$transaction>) => {
                transactions += 1;
                return target.$transaction(...args);
              }
            : Reflect.get(target, key, receiver),
      });
      try {
        const log = createAuditLog({ prisma, clock });
        const ids = ['00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b'];
        const results = await Promise.allSettled(ids.flatMap((id) => [log.append(id, event('x')), log.append(id, event('y'))]));
        expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
        expect(transactions).toBe(1);
      } finally {
        await down.close();
      }
    });
  });

  /**
   * Two nodes locking overlapping sets of heads must take them in one order,
   * or they deadlock. Proven with a third connection: while the head of the
   * later tenant is held elsewhere, a batch of both must already hold the
   * earlier one.
   */
  describe.runIf(Boolean(process.env.DATABASE_URL))('lock order of the heads (PostgreSQL)', () => {
    it('locks the heads of a batch in tenantId order, whatever order the events came in', async () => {
      const [first, last] = (await Promise.all([newTenant(stores.db), newTenant(stores.db)])).sort((x, y) => (x.id < y.id ? -1 : 1));
      if (!first || !last) throw new Error('tenants missing');
      await Promise.all([audit.append(first.id, event('seed')), audit.append(last.id, event('seed'))]);
      const other = await openDatabase({ url: stores.databaseUrl ?? '', poolSize: 2 });
      let release = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      try {
        let locked: () => void = () => {};
        const lastLocked = new Promise<void>((resolve) => {
          locked = resolve;
        });
        const holder = other.prisma.$transaction(async (tx) => {
          await tx.$queryRaw`SELECT 1 FROM "AuditHead" WHERE "tenantId" = ${last.id}::uuid FOR UPDATE`;
          locked();
          await held;
        });
        await lastLocked;
        const batch = Promise.all([audit.append(last.id, event('later')), audit.append(first.id, event('earlier'))]);
        await new Promise((resolve) => setTimeout(resolve, 300));
        const free = await other.prisma.$transaction(
          (tx) => tx.$queryRaw<unknown[]>`SELECT 1 FROM "AuditHead" WHERE "tenantId" = ${first.id}::uuid FOR UPDATE SKIP LOCKED`,
        );
        expect(free).toEqual([]);
        release();
        await Promise.all([holder, batch]);
        expect(await audit.verify(first.id)).toEqual({ ok: true, count: 2 });
        expect(await audit.verify(last.id)).toEqual({ ok: true, count: 2 });
      } finally {
        release();
        await other.close();
      }
    });
  });

  describe('metadata', () => {
    it('never stores values under secret-looking keys, at any depth', async () => {
      const tenant = await newTenant(stores.db);
      await audit.append(
        tenant.id,
        event('user.password_changed', {
          email: 'alice@example.com',
          password: 'pw-1-plain',
          newPassword: 'pw-2-plain',
          client_secret: 'cs-plain',
          nested: { refresh_token: 'rt-plain', otp: '123456', keep: 'visible' },
          list: [{ apiKey: 'ak-plain' }, { authorization: 'Bearer at-plain' }],
          code: 'authcode-plain',
        }),
      );
      const [row] = await stores.db.prisma.$queryRaw<{ metadata: string }[]>`
        SELECT metadata::text AS metadata FROM "AuditEvent" WHERE "tenantId" = ${tenant.id}::uuid`;
      expect(JSON.parse(row?.metadata ?? 'null')).toEqual({
        email: 'alice@example.com',
        password: '[redacted]',
        newPassword: '[redacted]',
        client_secret: '[redacted]',
        nested: { refresh_token: '[redacted]', otp: '[redacted]', keep: 'visible' },
        list: [{ apiKey: '[redacted]' }, { authorization: '[redacted]' }],
        code: '[redacted]',
      });
      expect(row?.metadata).not.toMatch(/plain|123456/);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 1 });
    });

    // Regression: scrubMetadata walked a Date's (empty) own keys, so it was stored as {}.
    it('stores dates as JSON would, and the event still verifies', async () => {
      const tenant = await newTenant(stores.db);
      await audit.append(tenant.id, event('key.rotated', { at: new Date(Date.UTC(2026, 0, 1)), window: { until: new Date(0) } }));
      const row = await stores.db.prisma.auditEvent.findFirst({ where: { tenantId: tenant.id } });
      expect(row?.metadata).toEqual({ at: '2026-01-01T00:00:00.000Z', window: { until: '1970-01-01T00:00:00.000Z' } });
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 1 });
    });

    it('caps the user agent so a caller cannot bloat the trail', async () => {
      const tenant = await newTenant(stores.db);
      const record = await audit.append(tenant.id, { ...event('long.ua'), userAgent: 'x'.repeat(10_000) });
      expect(record.userAgent).toHaveLength(512);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 1 });
    });
  });

  describe('append-only, enforced by the database', () => {
    let tenant: { id: string; slug: string };
    beforeAll(async () => {
      tenant = await newTenant(stores.db);
      await appendMany(audit, tenant.id, 2);
    });

    it('rejects UPDATE', async () => {
      await expect(
        stores.db.prisma.$executeRaw`UPDATE "AuditEvent" SET action = 'forged' WHERE "tenantId" = ${tenant.id}::uuid AND seq = 1`,
      ).rejects.toThrow(/append-only/);
      await expect(
        stores.db.prisma.auditEvent.updateMany({ where: { tenantId: tenant.id }, data: { metadata: { forged: true } } }),
      ).rejects.toThrow(/append-only/);
    });

    it('rejects DELETE', async () => {
      await expect(stores.db.prisma.$executeRaw`DELETE FROM "AuditEvent" WHERE "tenantId" = ${tenant.id}::uuid`).rejects.toThrow(
        /append-only/,
      );
      await expect(stores.db.prisma.auditEvent.deleteMany({ where: { tenantId: tenant.id, seq: 2n } })).rejects.toThrow(/append-only/);
    });

    it('rejects TRUNCATE', async () => {
      await expect(stores.db.prisma.$executeRawUnsafe('TRUNCATE "AuditEvent"')).rejects.toThrow(/append-only/);
    });

    it('left every row as it was', async () => {
      const rows = await stores.db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
      expect(rows.map((row) => row.action)).toEqual(['event.1', 'event.2']);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 2 });
    });
  });

  describe('verify detects tampering that bypasses the trigger', () => {
    const tamperedTenant = async () => {
      const tenant = await newTenant(stores.db);
      await appendMany(audit, tenant.id, 5);
      expect(await audit.verify(tenant.id)).toEqual({ ok: true, count: 5 });
      return tenant;
    };

    it('an altered metadata field, naming that exact sequence number', async () => {
      const tenant = await tamperedTenant();
      const changed = await tamper(
        stores.db,
        `UPDATE "AuditEvent" SET metadata = '{"i": 33}'::jsonb WHERE "tenantId" = $1::uuid AND seq = 3`,
        tenant.id,
      );
      expect(changed).toBe(1);
      expect(await audit.verify(tenant.id)).toEqual({
        ok: false,
        count: 2,
        firstBadSeq: 3n,
        reason: 'event content does not match its hash',
      });
    });

    it('an altered action', async () => {
      const tenant = await tamperedTenant();
      await tamper(stores.db, `UPDATE "AuditEvent" SET action = 'nothing.happened' WHERE "tenantId" = $1::uuid AND seq = 4`, tenant.id);
      expect(await audit.verify(tenant.id)).toMatchObject({ ok: false, firstBadSeq: 4n });
    });

    it('an altered row whose own hash was recomputed: the next link breaks', async () => {
      const tenant = await tamperedTenant();
      const row = await stores.db.prisma.auditEvent.findFirstOrThrow({ where: { tenantId: tenant.id, seq: 2n } });
      const forged = { ...row, action: 'forged' };
      await tamper(
        stores.db,
        `UPDATE "AuditEvent" SET action = 'forged', hash = $2 WHERE "tenantId" = $1::uuid AND seq = 2`,
        tenant.id,
        chainHash(row.prevHash, forged),
      );
      expect(await audit.verify(tenant.id)).toEqual({
        ok: false,
        count: 2,
        firstBadSeq: 3n,
        reason: 'link to the previous event is broken',
      });
    });

    it('a deleted middle row, as a gap at its sequence number', async () => {
      const tenant = await tamperedTenant();
      await tamper(stores.db, `DELETE FROM "AuditEvent" WHERE "tenantId" = $1::uuid AND seq = 3`, tenant.id);
      expect(await audit.verify(tenant.id)).toEqual({
        ok: false,
        count: 2,
        firstBadSeq: 3n,
        reason: 'sequence gap: expected 3, found 4',
      });
    });

    it('a deleted last row, as a truncated chain', async () => {
      const tenant = await tamperedTenant();
      await tamper(stores.db, `DELETE FROM "AuditEvent" WHERE "tenantId" = $1::uuid AND seq = 5`, tenant.id);
      expect(await audit.verify(tenant.id)).toMatchObject({
        ok: false,
        count: 4,
        firstBadSeq: 5n,
        reason: expect.stringMatching(/truncated/),
      });
    });

    it('a deleted first row', async () => {
      const tenant = await tamperedTenant();
      await tamper(stores.db, `DELETE FROM "AuditEvent" WHERE "tenantId" = $1::uuid AND seq = 1`, tenant.id);
      expect(await audit.verify(tenant.id)).toMatchObject({ ok: false, count: 0, firstBadSeq: 1n });
    });
  });
});

/**
 * `idp audit verify` as an operator runs it. Data is written in-process (fast),
 * then the real CLI reads it: through DATABASE_URL on PostgreSQL, through
 * DATA_DIR on the embedded database.
 */
describe('idp audit verify (real process)', () => {
  afterAll(async () => {
    await killSpawned();
    await removeTempDirs();
  });

  async function scenario(open: () => Promise<{ db: Database; env: Record<string, string>; close(): Promise<void> }>) {
    // Write, close, run the CLI: PGlite must never be open in two processes at once.
    let { db, env, close } = await open();
    const tenant = await newTenant(db, 'cli');
    await appendMany(createAuditLog({ prisma: db.prisma, clock }), tenant.id, 4);
    await close();

    const intact = await runCli(['audit', 'verify', '--tenant', tenant.slug], env);
    expect(intact.stderr).toBe('');
    expect(intact.code).toBe(0);
    expect(intact.stdout).toBe(`audit chain of ${tenant.slug} intact: 4 event(s)\n`);

    ({ db, close } = await open());
    await tamper(db, `UPDATE "AuditEvent" SET metadata = '{"i": 99}'::jsonb WHERE "tenantId" = $1::uuid AND seq = 2`, tenant.id);
    await close();

    const broken = await runCli(['audit', 'verify', '--tenant', tenant.slug, '--json'], env);
    expect(broken.code).not.toBe(0);
    expect(broken.code).not.toBeNull();
    expect(JSON.parse(broken.stdout)).toEqual({
      ok: false,
      events: 1,
      first_bad_seq: '2',
      reason: 'event content does not match its hash',
    });
  }

  describe.runIf(Boolean(process.env.DATABASE_URL))('on PostgreSQL', () => {
    let stores: TestStores;
    // beforeAll's returned function is its teardown (one afterAll per scope keeps Biome's noDuplicateTestHooks quiet).
    beforeAll(async () => {
      stores = await createTestStores({ clock });
      return () => stores.close();
    });

    it('exits 0 for an intact chain and non-zero naming the first bad sequence after tampering', async () => {
      const url = stores.databaseUrl ?? '';
      expect(url).not.toBe('');
      await scenario(async () => {
        const db = await openDatabase({ url, poolSize: 2 });
        return { db, env: { DATABASE_URL: url }, close: () => db.close() };
      });
    }, 120_000);

    it('fails cleanly for an unknown tenant', async () => {
      const result = await runCli(['audit', 'verify', '--tenant', 'no-such-tenant'], { DATABASE_URL: stores.databaseUrl });
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe('idp: no tenant "no-such-tenant"\n');
    });
  });

  describe('on the embedded database', () => {
    let dataDir: Awaited<ReturnType<typeof tempDir>>;
    beforeAll(async () => {
      dataDir = await tempDir('audit');
      return () => dataDir.remove();
    });

    it('exits 0 for an intact chain and non-zero naming the first bad sequence after tampering', async () => {
      await scenario(async () => {
        const db = await openDatabase({ dataDir: dataDir.path });
        await migrate(db);
        return { db, env: { DATA_DIR: dataDir.path }, close: () => db.close() };
      });
      // Several CLI processes, each opening PGlite from disk: slow on a busy 2-core machine.
    }, 120_000);
  });
});
