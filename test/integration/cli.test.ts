import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import argon2 from 'argon2';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/audit/audit.js';
import { systemClock } from '../../src/clock.js';
import { type Database, openDatabase } from '../../src/store/index.js';
import { readMigrationList } from '../../src/store/schema-engine.js';
import { testDatabaseUrl } from '../helpers/env.js';
import { killSpawned, type ProcessResult, removeTempDirs, runCli, startServerProcess, tempDir } from '../helpers/processes.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A failure as an operator should see it: exit ≠ 0, nothing on stdout, one line on stderr, no stack. */
function expectCleanFailure(result: ProcessResult, message: string) {
  expect(result.code).not.toBe(0);
  expect(result.code).not.toBeNull();
  expect(result.stdout).toBe('');
  expect(result.stderr).toBe(`idp: ${message}\n`);
}

interface Target {
  name: string;
  env: Record<string, string>;
  /** PostgreSQL takes concurrent CLI processes; the embedded database is locked by each. */
  concurrent: boolean;
  /** Opens the same database in-process, to check what the CLI wrote (close it before the next CLI run). */
  open(): Promise<Database>;
}

/**
 * The same contract on both backends: run through the real `idp` process,
 * checked in the database. Input validation does not depend on the backend,
 * so its cases (a process each, seconds apiece on two cores) run on one only.
 */
function cliContract(target: () => Target, { validation }: { validation: boolean }) {
  const tenant = `acme-${randomBytes(3).toString('hex')}`;
  const run = (args: string[]) => runCli(args, target().env);
  const runAll = async (list: string[][]) =>
    target().concurrent
      ? Promise.all(list.map(run))
      : list.reduce<Promise<ProcessResult[]>>(async (acc, args) => [...(await acc), await run(args)], Promise.resolve([]));

  it('migrate applies every migration once, then says the database is up to date', async () => {
    const first = await run(['migrate', '--json']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const names = (await readMigrationList()).migrationDirectories.map((dir) => dir.path);
    expect(JSON.parse(first.stdout)).toEqual({ applied: names });

    const second = await run(['migrate']);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('database is up to date\n');
  });

  it('tenant create --json prints exactly one JSON object', async () => {
    const result = await run(['tenant', 'create', tenant, '--name', 'Acme Inc', '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.endsWith('\n')).toBe(true);
    expect(result.stdout.trimEnd().split('\n')).toHaveLength(1);
    const printed = JSON.parse(result.stdout);
    expect(printed).toEqual({ id: expect.stringMatching(UUID), slug: tenant, issuer: `http://localhost:3000/t/${tenant}` });
  });

  it('refuses a duplicate tenant, writing nothing to stdout', async () => {
    expectCleanFailure(await run(['tenant', 'create', tenant]), `tenant ${tenant} already exists`);
  });

  it.runIf(validation)('refuses a duplicate with a JSON error on stderr under --json, and a malformed slug', async () => {
    const [duplicateJson, malformed] = await runAll([
      ['tenant', 'create', tenant, '--json'],
      ['tenant', 'create', 'Bad_Slug'],
    ]);
    expect(duplicateJson?.code).toBe(1);
    expect(duplicateJson?.stdout).toBe('');
    expect(JSON.parse(duplicateJson?.stderr ?? '')).toEqual({ error: 'conflict', error_description: `tenant ${tenant} already exists` });
    expectCleanFailure(malformed as ProcessResult, 'slug must match ^[a-z0-9][a-z0-9-]{1,62}$');
  });

  it.runIf(validation)('user create refuses an unknown tenant, an unknown role, a bad email and a short password', async () => {
    const user = ['--email', 'bob@example.com', '--password', 'long enough pw'];
    const results = await runAll([
      ['user', 'create', '--tenant', 'no-such-tenant', ...user],
      ['user', 'create', '--tenant', tenant, ...user, '--role', 'superhero'],
      ['user', 'create', '--tenant', tenant, '--email', 'bob@', '--password', 'long enough pw'],
      ['user', 'create', '--tenant', tenant, '--email', 'bob@example.com', '--password', 'short'],
    ]);
    const [unknownTenant, unknownRole, badEmail, shortPassword] = results as ProcessResult[];
    expectCleanFailure(unknownTenant as ProcessResult, 'no tenant "no-such-tenant"');
    expectCleanFailure(unknownRole as ProcessResult, 'unknown role: superhero');
    expectCleanFailure(badEmail as ProcessResult, 'email is not a valid address');
    expectCleanFailure(shortPassword as ProcessResult, 'password must be at least 8 characters');
  });

  it('user create stores the user with its role and an Argon2id hash', async () => {
    const result = await run([
      'user',
      'create',
      '--tenant',
      tenant,
      '--email',
      'Alice@Example.com',
      '--password',
      'correct horse battery',
      '--role',
      'admin',
      '--json',
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout);
    expect(printed).toEqual({ id: expect.stringMatching(UUID), email: 'alice@example.com', tenant_id: expect.stringMatching(UUID) });

    const db = await target().open();
    try {
      const user = await db.prisma.user.findUniqueOrThrow({
        where: { id: printed.id },
        include: { roleAssignments: { include: { role: true } } },
      });
      expect(user.email).toBe('alice@example.com');
      expect(user.roleAssignments.map((assignment) => assignment.role.name)).toEqual(['admin']);
      expect(user.passwordHash).toMatch(/^\$argon2id\$/);
      expect(await argon2.verify(user.passwordHash ?? '', 'correct horse battery')).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('records every write, and only the writes, as an audit event by the CLI', async () => {
    const db = await target().open();
    try {
      const { id } = await db.prisma.tenant.findUniqueOrThrow({ where: { slug: tenant } });
      const events = await db.prisma.auditEvent.findMany({ where: { tenantId: id }, orderBy: { seq: 'asc' } });
      // The refused commands above wrote nothing: two writes, two events.
      expect(events.map((e) => [e.seq, e.action, e.actorType, e.actorId])).toEqual([
        [1n, 'tenant.created', 'cli', userInfo().username],
        [2n, 'user.created', 'cli', userInfo().username],
      ]);
      expect(JSON.stringify(events.map((e) => e.metadata))).not.toContain('correct horse');
      expect(await createAuditLog({ prisma: db.prisma, clock: systemClock }).verify(id)).toEqual({ ok: true, count: 2 });
    } finally {
      await db.close();
    }
  });
}

// Each test spawns processes that each need seconds of CPU; a busy 2-core machine needs more than the default 30 s.
describe('idp CLI (real process)', { timeout: 180_000 }, () => {
  afterAll(async () => {
    await killSpawned();
    await removeTempDirs();
  });

  describe('usage errors', () => {
    it('an unknown command exits 2 with the usage on stderr', async () => {
      const result = await runCli(['frobnicate']);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^idp: unknown command\nusage:\n/);
      expect(result.stderr).toContain('  idp tenant create <slug>');
      expect(result.stderr).toContain('  idp audit verify --tenant T');
    });

    it('an unknown flag exits 2 with the command’s usage', async () => {
      const result = await runCli(['tenant', 'create', 'acme', '--colour', 'red']);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain("Unknown option '--colour'");
      expect(result.stderr).toMatch(/\nusage: idp tenant create <slug>/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    });
  });

  describe('on the embedded database (DATA_DIR)', () => {
    let dataDir: Awaited<ReturnType<typeof tempDir>>;
    beforeAll(async () => {
      dataDir = await tempDir('cli');
      return () => dataDir.remove();
    });

    cliContract(
      () => ({
        name: 'embedded',
        env: { DATA_DIR: dataDir.path },
        concurrent: false,
        open: () => openDatabase({ dataDir: dataDir.path }),
      }),
      { validation: !testDatabaseUrl },
    );

    it('refuses, naming the running server, while a server holds the data directory', async () => {
      const server = await startServerProcess({ DATA_DIR: dataDir.path, ADMIN_PASSWORD: 'server-admin-pw' });
      let refused: ProcessResult;
      try {
        expect((await readFile(path.join(dataDir.path, 'server.pid'), 'utf8')).trim()).toBe(String(server.pid));
        refused = await runCli(['tenant', 'create', 'while-running'], { DATA_DIR: dataDir.path });
      } finally {
        expect((await server.stop()).code).toBe(0);
      }
      expectCleanFailure(
        refused,
        `the embedded database in ${dataDir.path} is in use by the running server (pid ${server.pid}); stop it first, or set DATABASE_URL to use PostgreSQL`,
      );
      // The refused command wrote nothing.
      const db = await openDatabase({ dataDir: dataDir.path });
      try {
        expect(await db.prisma.tenant.findUnique({ where: { slug: 'while-running' } })).toBeNull();
      } finally {
        await db.close();
      }
    });
  });

  describe.runIf(Boolean(testDatabaseUrl))('on PostgreSQL (DATABASE_URL)', () => {
    // An empty database, not a migrated clone: `idp migrate` is what is being tested.
    const name = `idp_test_cli_${randomBytes(5).toString('hex')}`;
    let url = '';
    const admin = async (sql: string) => {
      const client = new pg.Client({ connectionString: testDatabaseUrl });
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    };
    beforeAll(async () => {
      await admin(`CREATE DATABASE "${name}"`);
      const parsed = new URL(testDatabaseUrl ?? '');
      parsed.pathname = `/${name}`;
      url = parsed.toString();
      return () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    });

    it('refuses to write to a database that is not migrated yet, pointing at idp migrate', async () => {
      const result = await runCli(['tenant', 'create', 'too-early'], { DATABASE_URL: url });
      expect(result.code).not.toBe(0);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^idp: the database has \d+ pending migration\(s\): run `idp migrate` first\n$/);
    });

    cliContract(
      () => ({
        name: 'postgresql',
        env: { DATABASE_URL: url },
        concurrent: true,
        open: () => openDatabase({ url, poolSize: 1 }),
      }),
      { validation: true },
    );
  });
});
