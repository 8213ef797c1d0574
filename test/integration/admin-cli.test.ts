import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, type ParsedArgs, parseDuration } from '../../src/cli/commands.js';
import type { CliContext } from '../../src/cli/context.js';
import { notFound } from '../../src/errors.js';
import { publishTenantChange } from '../../src/tenants/tenants.js';
import { api } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { killSpawned, runCli, tempDir } from '../helpers/processes.js';

/** `idp service-account create` and `idp api-key create`, run in-process against the test app's stores. */

let t: TestApp;
let ctx: CliContext;

function args(options: Record<string, string[]>, flags: string[] = []): ParsedArgs {
  return { positionals: [], options, flags: new Set(flags) };
}

async function run(command: string, options: Record<string, string[]>, flags: string[] = []) {
  const found = COMMANDS[command];
  if (!found) throw new Error(`no command ${command}`);
  return found.run(ctx, args(options, flags));
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('the command did not fail');
}

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  const prisma = t.deps.db.prisma;
  ctx = {
    config: t.deps.config,
    db: t.deps.db,
    clock: t.deps.clock,
    audit: t.deps.audit,
    passwords: t.deps.passwords,
    vault: async () => t.deps.vault,
    actor: { type: 'cli', id: 'operator' },
    async tenantId(slug) {
      const tenant = await prisma.tenant.findUnique({ where: { slug } });
      if (!tenant) throw notFound(`no tenant "${slug}"`);
      return tenant.id;
    },
    announce: (change) => publishTenantChange(t.deps.kv, change),
  };
});
afterAll(async () => {
  await killSpawned();
  await t.close();
});

describe('idp api-key create', () => {
  it('prints the key once; the key works on the API with its scopes', async () => {
    const result = await run('api-key create', {
      tenant: ['default'],
      name: ['ops'],
      scope: ['users.read, roles.read', 'audit.read'],
      'expires-in': ['30d'],
    });
    const key = String(result.json.key);
    expect(key).toMatch(/^idp_/);
    expect(result.text).toContain(`key: ${key}`);
    expect(result.json).toMatchObject({
      scopes: ['audit.read', 'roles.read', 'users.read'],
      platform_admin: false,
      created_by: 'cli:operator',
    });
    const expires = Date.parse(String(result.json.expires_at)) - Date.now();
    expect(expires).toBeGreaterThan(29.9 * 86400_000);
    expect(expires).toBeLessThanOrEqual(30 * 86400_000);
    expect((await api(t, key).get('/tenants/default/users')).status).toBe(200);
    const event = await t.deps.db.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'api_key.created', resourceId: String(result.json.id) },
    });
    expect(event).toMatchObject({ actorType: 'cli', actorId: 'operator' });
  });

  it('makes platform admins', async () => {
    const result = await run('api-key create', { tenant: ['default'], name: ['root'], scope: ['tenants.read tenants.write'] }, [
      'platform-admin',
    ]);
    expect(result.json.platform_admin).toBe(true);
    expect((await api(t, String(result.json.key)).get('/tenants')).status).toBe(200);
  });

  it('refuses unknown permissions, a missing scope and bad durations', async () => {
    expect(await failure(run('api-key create', { tenant: ['default'], name: ['x'], scope: ['users.reed'] }))).toMatch(
      /--scope\.0: unknown permission/,
    );
    expect(await failure(run('api-key create', { tenant: ['default'], name: ['x'], scope: ['read:reports'] }))).toMatch(
      /unknown permission/,
    );
    expect(await failure(run('api-key create', { tenant: ['default'], name: ['x'] }))).toMatch(/--scope is required/);
    expect(
      await failure(run('api-key create', { tenant: ['default'], name: ['x'], scope: ['users.read'], 'expires-in': ['10x'] })),
    ).toMatch(/--expires-in 10x/);
    expect(await failure(run('api-key create', { tenant: ['nowhere'], name: ['x'], scope: ['users.read'] }))).toBe('no tenant "nowhere"');
  });

  it('reads durations', () => {
    expect(parseDuration('30d')).toBe(30 * 86400_000);
    expect(parseDuration('12h')).toBe(12 * 3600_000);
    expect(parseDuration('45m')).toBe(45 * 60_000);
    expect(parseDuration('90s')).toBe(90_000);
    for (const bad of ['0d', '-1d', '1.5h', 'd', '1w', '']) expect(() => parseDuration(bad)).toThrow();
  });
});

describe('idp service-account create', () => {
  it('prints client_id and client_secret once, with the IP allowlist stored', async () => {
    const result = await run('service-account create', {
      tenant: ['default'],
      name: ['backup'],
      scope: ['users.read'],
      'allow-ip': ['10.0.0.0/8', '2001:DB8::/32'],
    });
    const credentials = result.json.credentials as { client_id: string; client_secret: string };
    expect(result.text).toContain(`client_id: ${credentials.client_id}`);
    expect(result.text).toContain(`client_secret: ${credentials.client_secret}`);
    expect(result.json).toMatchObject({ allowed_ips: ['10.0.0.0/8', '2001:db8::/32'], scopes: ['users.read'] });
    const client = await t.deps.db.prisma.client.findFirstOrThrow({ where: { clientId: credentials.client_id } });
    expect(client.metadata).toMatchObject({
      grant_types: ['client_credentials'],
      scope: 'users.read',
      token_endpoint_auth_method: 'client_secret_basic',
    });
    expect(client.secretHash).not.toBe(credentials.client_secret);
  });

  it('refuses invalid CIDRs and duplicate names', async () => {
    expect(
      await failure(
        run('service-account create', { tenant: ['default'], name: ['y'], scope: ['users.read'], 'allow-ip': ['10.0.0.0/33'] }),
      ),
    ).toMatch(/--allow-ip\.0: .*at most 32/);
    expect(await failure(run('service-account create', { tenant: ['default'], name: ['backup'], scope: ['users.read'] }))).toMatch(
      /already exists/,
    );
  });
});

describe('idp api-key create (real process, embedded database)', () => {
  it('creates a key from the shell', async () => {
    const dir = await tempDir('cli-api-key');
    try {
      const env = { DATA_DIR: dir.path };
      const tenant = await runCli(['tenant', 'create', 'shell'], env);
      expect(tenant.stderr).toBe('');
      const result = await runCli(
        ['api-key', 'create', '--tenant', 'shell', '--name', 'n', '--scope', 'users.read', '--expires-in', '12h', '--json'],
        env,
      );
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ name: 'n', scopes: ['users.read'], key: expect.stringMatching(/^idp_/) });
    } finally {
      await dir.remove();
    }
  }, 120_000);
});
