import { afterEach, describe, expect, it } from 'vitest';
import type { AuditLog } from '../audit/audit.js';
import type { PrismaClient } from '../store/db.js';
import { type KvStore, openKv } from '../store/index.js';
import { publishTenantChange, type TenantContext } from '../tenants/tenants.js';
import { createServiceAccountTokenGuard, type TokenRequest } from './client-ip-allowlist.js';

const TENANT: TenantContext = { id: '11111111-1111-4111-8111-111111111111', slug: 'acme', displayName: 'Acme', settings: {} };
const OTHER: TenantContext = { id: '22222222-2222-4222-8222-222222222222', slug: 'other', displayName: 'Other', settings: {} };

interface Row {
  id: string;
  clientId: string;
  disabled: boolean;
  allowedIps: string[];
}

/** The service accounts "in the database", and every lookup the guard made; `hold` keeps lookups pending until released. */
function fakeDatabase() {
  const rows = new Map<string, Row>();
  const lookups: string[] = [];
  let held: (() => void)[] | undefined;
  const prisma = {
    serviceAccount: {
      async findFirst({ where }: { where: { tenantId: string; clientId: string } }) {
        lookups.push(`${where.tenantId}:${where.clientId}`);
        // Read now, answered later: what a query that raced a change sees.
        const row = rows.get(`${where.tenantId}:${where.clientId}`) ?? null;
        const answer = row && { ...row };
        if (held) await new Promise<void>((resolve) => held?.push(resolve));
        return answer;
      },
    },
  } as unknown as PrismaClient;
  return {
    prisma,
    rows,
    lookups,
    hold() {
      held = [];
    },
    release() {
      const pending = held ?? [];
      held = undefined;
      for (const resolve of pending) resolve();
    },
  };
}

const audit = { append: async () => {} } as unknown as AuditLog;

function request(tenant: TenantContext, clientId: string, ip: string): TokenRequest {
  return { tenant, ip, userAgent: null, body: { grant_type: 'client_credentials', client_id: clientId }, authorization: '' };
}

/** Lets the memory store deliver a published message (it does so asynchronously, as Redis would). */
const delivered = () => new Promise((resolve) => setImmediate(resolve));

describe('service account token guard cache', () => {
  let kv: KvStore;
  afterEach(() => kv?.close());

  async function setUp() {
    kv = await openKv({});
    const db = fakeDatabase();
    const { guard, close } = await createServiceAccountTokenGuard({ prisma: db.prisma, audit, kv });
    return { db, guard, close };
  }

  it('asks the database once per client id, remembering clients that are no service account too', async () => {
    const { db, guard, close } = await setUp();
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: false, allowedIps: ['10.0.0.0/8'] });
    for (let i = 0; i < 3; i += 1) {
      await guard(request(TENANT, 'robot', '10.0.0.1'));
      await guard(request(TENANT, 'web-app', '192.0.2.1'));
    }
    await expect(guard(request(TENANT, 'robot', '192.0.2.1'))).rejects.toMatchObject({ status: 401 });
    expect(db.lookups).toEqual([`${TENANT.id}:robot`, `${TENANT.id}:web-app`]);
    await close();
  });

  it('drops a tenant’s answers when the tenant changes, and only that tenant’s', async () => {
    const { db, guard, close } = await setUp();
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: false, allowedIps: [] });
    await guard(request(TENANT, 'robot', '192.0.2.1'));
    await guard(request(OTHER, 'robot', '192.0.2.1'));
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: true, allowedIps: [] });
    db.rows.set(`${OTHER.id}:robot`, { id: 'a2', clientId: 'robot', disabled: true, allowedIps: [] });
    await publishTenantChange(kv, { tenantId: TENANT.id, slug: TENANT.slug, what: 'clients' });
    await delivered();
    await expect(guard(request(TENANT, 'robot', '192.0.2.1'))).rejects.toMatchObject({ status: 401 });
    // No change was published for the other tenant: its cached answer stands until then.
    await guard(request(OTHER, 'robot', '192.0.2.1'));
    await close();
  });

  it('never keeps an answer read before a change that arrived while the lookup was in flight', async () => {
    const { db, guard, close } = await setUp();
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: false, allowedIps: [] });
    db.hold();
    const racing = guard(request(TENANT, 'robot', '192.0.2.1'));
    await delivered();
    // The account is disabled and the change published while the first lookup (which read it enabled) is pending.
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: true, allowedIps: [] });
    await publishTenantChange(kv, { tenantId: TENANT.id, slug: TENANT.slug, what: 'clients' });
    await delivered();
    db.release();
    await racing;
    await expect(guard(request(TENANT, 'robot', '192.0.2.1'))).rejects.toMatchObject({ status: 401 });
    await close();
  });

  it('does not keep a failed lookup', async () => {
    const { db, guard, close } = await setUp();
    const findFirst = db.prisma.serviceAccount.findFirst;
    (db.prisma.serviceAccount as { findFirst: unknown }).findFirst = async () => {
      throw new Error('database down');
    };
    await expect(guard(request(TENANT, 'robot', '192.0.2.1'))).rejects.toThrow('database down');
    (db.prisma.serviceAccount as { findFirst: unknown }).findFirst = findFirst;
    db.rows.set(`${TENANT.id}:robot`, { id: 'a1', clientId: 'robot', disabled: true, allowedIps: [] });
    await expect(guard(request(TENANT, 'robot', '192.0.2.1'))).rejects.toMatchObject({ status: 401 });
    await close();
  });
});
