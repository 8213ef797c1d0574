import { access } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import path from 'node:path';
import argon2 from 'argon2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/audit/audit.js';
import { systemClock } from '../../src/clock.js';
import { openDatabase } from '../../src/store/index.js';
import { testDatabaseUrl, testRedisUrl } from '../helpers/env.js';
import { killSpawned, removeTempDirs, type ServerProcess, startServerProcess, tempDir } from '../helpers/processes.js';
import { createTestStores, type TestStores } from '../helpers/stores.js';

const GENERATED_PASSWORD = /^ {2}Admin password \(shown once, store it now\): (\S+)$/m;

/** Argon2 parameters of a PHC string, whatever order the library writes them in. */
function argon2Params(hash: string): Record<string, string> {
  const [, id, , params] = hash.split('$');
  return { id: id ?? '', ...Object.fromEntries((params ?? '').split(',').map((pair) => pair.split('='))) };
}

async function getJson(url: string): Promise<{ status: number; body: unknown; contentType: string | null }> {
  const response = await fetch(url);
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.json() };
}

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

/** The admin of tenant `default` as stored, read after the server stopped (PGlite must not be opened twice). */
async function storedAdmin(dataDir: string) {
  const db = await openDatabase({ dataDir });
  try {
    const tenant = await db.prisma.tenant.findUniqueOrThrow({ where: { slug: 'default' } });
    const users = await db.prisma.user.findMany({
      where: { tenantId: tenant.id },
      include: { roleAssignments: { include: { role: true } } },
    });
    const events = await db.prisma.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
    const chain = await createAuditLog({ prisma: db.prisma, clock: systemClock }).verify(tenant.id);
    return { users, events, chain };
  } finally {
    await db.close();
  }
}

// Server processes need seconds of CPU to start; a busy 2-core machine needs more than the default 30 s.
const SERVER_START_TIMEOUT = 180_000;

describe('first start (real server process)', { timeout: SERVER_START_TIMEOUT }, () => {
  afterAll(async () => {
    await killSpawned();
    await removeTempDirs();
  });

  describe('on an empty DATA_DIR without ADMIN_PASSWORD', () => {
    let dataDir: Awaited<ReturnType<typeof tempDir>>;
    let server: ServerProcess;
    let password = '';
    beforeAll(async () => {
      dataDir = await tempDir('first-start');
      server = await startServerProcess({ DATA_DIR: dataDir.path });
      return () => dataDir.remove();
    }, SERVER_START_TIMEOUT);

    it('prints the admin email, a generated password and the sign-in URL', () => {
      const out = server.stdout();
      expect(out).toContain(`  Tenant "default" created. Issuer: ${server.url}/t/default\n`);
      expect(out).toContain('  Admin user: admin@example.com\n');
      password = GENERATED_PASSWORD.exec(out)?.[1] ?? '';
      // randomToken(18): 24 base64url characters, 144 bits.
      expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
      expect(out).toMatch(new RegExp(`^ {2}Sign in at: ${server.url}/t/default/\\S+$`, 'm'));
      // Shown once: the logs around it never repeat it.
      expect(out.split(password)).toHaveLength(2);
      expect(server.stderr()).not.toContain(password);
    });

    it('logs which backends it runs on', () => {
      const lines = server
        .stdout()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg?: string; database?: string; kv?: string });
      const backends = lines.find((line) => line.msg?.startsWith('running on embedded backends'));
      expect(backends?.database).toBe(`embedded PGlite in ${dataDir.path}`);
      expect(backends?.kv).toBe('in-process store (single node only)');
    });

    it('serves /healthz, /readyz, /t/default, and a JSON 404 for /t/nope/x', async () => {
      expect(await getJson(`${server.url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
      expect(await getJson(`${server.url}/readyz`)).toMatchObject({
        status: 200,
        body: { status: 'ready', checks: { database: 'ok', kv: 'ok' } },
      });
      expect(await getJson(`${server.url}/t/default`)).toMatchObject({
        status: 200,
        body: { tenant: 'default', issuer: `${server.url}/t/default` },
      });
      const nope = await getJson(`${server.url}/t/nope/x`);
      expect(nope).toEqual({
        status: 404,
        contentType: expect.stringMatching(/^application\/json/),
        body: { error: 'tenant_not_found', error_description: 'no such tenant' },
      });
    });

    it('stops on SIGTERM with exit code 0, with an idle keep-alive connection open, and releases the data directory', async () => {
      const lock = path.join(dataDir.path, 'server.pid');
      expect(await exists(lock)).toBe(true);
      // An idle keep-alive socket must not hold the shutdown until the grace period ends.
      const agent = new Agent({ keepAlive: true });
      await new Promise<void>((resolve, reject) => {
        httpRequest(`${server.url}/healthz`, { agent }, (response) => {
          response.resume();
          response.on('end', resolve);
        })
          .on('error', reject)
          .end();
      });
      try {
        const exit = await server.stop('SIGTERM');
        expect(exit).toEqual({ code: 0, signal: null });
      } finally {
        agent.destroy();
      }
      expect(await exists(lock)).toBe(false);
      // Stopped accepting: nothing listens on the port any more.
      await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    });

    it('stored the owner with the printed password as an Argon2id hash at OWASP parameters, and audited it', async () => {
      expect(password).not.toBe('');
      const { users, events, chain } = await storedAdmin(dataDir.path);
      expect(users).toHaveLength(1);
      const [admin] = users;
      expect(admin?.email).toBe('admin@example.com');
      expect(admin?.emailVerified).toBe(true);
      expect(admin?.roleAssignments.map((assignment) => assignment.role.name)).toEqual(['owner']);
      expect(argon2Params(admin?.passwordHash ?? '')).toMatchObject({ id: 'argon2id', m: '19456', t: '2', p: '1' });
      expect(await argon2.verify(admin?.passwordHash ?? '', password)).toBe(true);
      expect(events.map((event) => [event.action, event.actorType, event.actorId])).toEqual([
        ['tenant.created', 'system', 'first-start'],
        ['user.created', 'system', 'first-start'],
      ]);
      expect(JSON.stringify(events.map((event) => event.metadata))).not.toContain(password);
      expect(chain).toEqual({ ok: true, count: 2 });
    });

    it('a second start on the same DATA_DIR reuses the data and prints no password', async () => {
      // Even with ADMIN_PASSWORD set now: an existing admin is never overwritten.
      const again = await startServerProcess({ DATA_DIR: dataDir.path, ADMIN_PASSWORD: 'a-different-password' });
      let exit: Awaited<ReturnType<ServerProcess['stop']>>;
      try {
        expect(await getJson(`${again.url}/t/default`)).toMatchObject({ status: 200 });
        expect(again.stdout()).not.toMatch(/Admin password|Admin user|created/);
        expect(again.stdout()).not.toContain(password);
      } finally {
        exit = await again.stop();
      }
      expect(exit.code).toBe(0);
      const { users, events } = await storedAdmin(dataDir.path);
      expect(users).toHaveLength(1);
      expect(await argon2.verify(users[0]?.passwordHash ?? '', password)).toBe(true);
      expect(events).toHaveLength(2);
    });
  });

  describe('with ADMIN_EMAIL and ADMIN_PASSWORD', () => {
    let dataDir: Awaited<ReturnType<typeof tempDir>>;
    beforeAll(async () => {
      dataDir = await tempDir('first-start-admin');
      return () => dataDir.remove();
    });

    it('creates that admin, says where the password came from and never prints it', async () => {
      const server = await startServerProcess({
        DATA_DIR: dataDir.path,
        ADMIN_EMAIL: 'Root@Example.ORG',
        ADMIN_PASSWORD: 'operator-chosen-pw',
      });
      let exit: Awaited<ReturnType<ServerProcess['stop']>>;
      try {
        expect(server.stdout()).toContain('  Admin user: root@example.org\n');
        expect(server.stdout()).toContain('  Admin password: from ADMIN_PASSWORD\n');
        expect(server.stdout()).not.toMatch(GENERATED_PASSWORD);
      } finally {
        exit = await server.stop();
      }
      expect(exit.code).toBe(0);
      expect(`${server.stdout()}${server.stderr()}`).not.toContain('operator-chosen-pw');

      const { users } = await storedAdmin(dataDir.path);
      expect(users.map((user) => user.email)).toEqual(['root@example.org']);
      const hash = users[0]?.passwordHash ?? '';
      expect(argon2Params(hash)).toMatchObject({ id: 'argon2id', m: '19456', t: '2', p: '1' });
      expect(await argon2.verify(hash, 'operator-chosen-pw')).toBe(true);
    });
  });

  describe.runIf(Boolean(testDatabaseUrl))('on PostgreSQL and Redis', () => {
    let stores: TestStores;
    beforeAll(async () => {
      stores = await createTestStores();
      return () => stores.close();
    });

    it('starts on a migrated database, creates tenant default, is ready, and stops with exit code 0', async () => {
      const server = await startServerProcess({
        DATABASE_URL: stores.databaseUrl,
        REDIS_URL: testRedisUrl,
        ADMIN_PASSWORD: 'operator-chosen-pw',
      });
      let exit: Awaited<ReturnType<ServerProcess['stop']>>;
      try {
        expect(server.stdout()).toContain('  Admin password: from ADMIN_PASSWORD\n');
        expect(server.stdout()).toContain('"database":"PostgreSQL"');
        if (testRedisUrl) expect(server.stdout()).toContain('"kv":"Redis"');
        expect(await getJson(`${server.url}/readyz`)).toMatchObject({
          status: 200,
          body: { checks: { database: 'ok', kv: 'ok' } },
        });
        expect(await getJson(`${server.url}/t/default`)).toMatchObject({ status: 200, body: { tenant: 'default' } });
      } finally {
        exit = await server.stop();
      }
      expect(exit.code).toBe(0);
      const tenant = await stores.db.prisma.tenant.findUnique({ where: { slug: 'default' }, include: { users: true } });
      expect(tenant?.users.map((user) => user.email)).toEqual(['admin@example.com']);
    });
  });
});
