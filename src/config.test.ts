import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { killSpawned, runNode } from '../test/helpers/processes.js';
import { ConfigError, loadConfig } from './config.js';

const key = (bytes = 32) => randomBytes(bytes).toString('base64');

/** The ConfigError loadConfig throws for `env`, so each case can name the variable it expects. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      env: 'development',
      port: 3000,
      publicUrl: 'http://localhost:3000',
      databaseUrl: undefined,
      redisUrl: undefined,
      dataDir: './data',
      masterKey: undefined,
      previousMasterKeys: [],
      smtpUrl: undefined,
      mailFrom: 'no-reply@localhost',
      adminEmail: undefined,
      adminPassword: undefined,
      logLevel: 'info',
      trustProxy: false,
      bodyLimitBytes: 1024 * 1024,
      shutdownGraceMs: 10_000,
    });
  });

  it('treats empty optional variables as unset (npm run test:embedded sets DATABASE_URL= REDIS_URL=)', () => {
    const config = loadConfig({ DATABASE_URL: '', REDIS_URL: '', MASTER_KEY: '', MASTER_KEY_PREVIOUS: '', SMTP_URL: '' });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
    expect(config.masterKey).toBeUndefined();
    expect(config.previousMasterKeys).toEqual([]);
    // Regression: z.coerce read PORT= as 0, so the server silently listened on a random port.
    expect(loadConfig({ PORT: '' }).port).toBe(3000);
  });

  it('reads every variable it is given', () => {
    const master = key();
    const previous = [key(), key()];
    const config = loadConfig({
      NODE_ENV: 'production',
      PORT: '8080',
      PUBLIC_URL: 'https://id.example.com',
      DATABASE_URL: 'postgresql://idp:pw@db:5432/idp',
      REDIS_URL: 'rediss://cache:6380',
      DATA_DIR: '/var/lib/idp',
      MASTER_KEY: master,
      // Spaces around the commas are forgiven: operators paste lists by hand.
      MASTER_KEY_PREVIOUS: `${previous[0]} , ${previous[1]}`,
      SMTP_URL: 'smtp://mail:25',
      MAIL_FROM: 'Example ID <id@example.com>',
      ADMIN_EMAIL: 'Root@Example.COM',
      ADMIN_PASSWORD: 'correct horse',
      TRUST_PROXY: 'true',
    });
    expect(config.env).toBe('production');
    expect(config.port).toBe(8080);
    expect(config.databaseUrl).toBe('postgresql://idp:pw@db:5432/idp');
    expect(config.redisUrl).toBe('rediss://cache:6380');
    expect(config.dataDir).toBe('/var/lib/idp');
    expect(config.masterKey?.equals(Buffer.from(master, 'base64'))).toBe(true);
    expect(config.previousMasterKeys.map((b) => b.toString('base64'))).toEqual(previous);
    expect(config.adminEmail).toBe('root@example.com');
    expect(config.smtpUrl).toBe('smtp://mail:25');
    expect(config.mailFrom).toBe('Example ID <id@example.com>');
    expect(config.trustProxy).toBe(true);
  });

  it('strips trailing slashes from PUBLIC_URL, so issuers never contain "//t/"', () => {
    expect(loadConfig({ PUBLIC_URL: 'https://id.example.com/' }).publicUrl).toBe('https://id.example.com');
    expect(loadConfig({ PUBLIC_URL: 'https://example.com/idp//' }).publicUrl).toBe('https://example.com/idp');
  });

  it('is frozen, down to the list of previous keys', () => {
    const config = loadConfig({ MASTER_KEY_PREVIOUS: key() });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.previousMasterKeys)).toBe(true);
    // ESM is strict mode, so writing to a frozen object throws rather than being ignored.
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.previousMasterKeys as Buffer[]).push(Buffer.alloc(32));
    }).toThrow(TypeError);
  });

  it('accepts MASTER_KEY with or without base64 padding when it decodes to 32 bytes', () => {
    const padded = key();
    expect(padded.endsWith('=')).toBe(true);
    expect(loadConfig({ MASTER_KEY: padded }).masterKey?.length).toBe(32);
    expect(loadConfig({ MASTER_KEY: padded.replace(/=+$/, '') }).masterKey?.length).toBe(32);
  });

  it('accepts production when MASTER_KEY is set', () => {
    expect(loadConfig({ NODE_ENV: 'production', MASTER_KEY: key() }).env).toBe('production');
  });

  describe('stops on a bad value with a ConfigError naming the variable', () => {
    const cases: [string, Record<string, string>, string][] = [
      ['malformed DATABASE_URL', { DATABASE_URL: 'not a url' }, 'DATABASE_URL'],
      ['DATABASE_URL of another scheme', { DATABASE_URL: 'mysql://root@db/idp' }, 'DATABASE_URL'],
      ['malformed REDIS_URL', { REDIS_URL: 'http://cache:6379' }, 'REDIS_URL'],
      ['MASTER_KEY of 31 bytes', { MASTER_KEY: key(31) }, 'MASTER_KEY'],
      ['MASTER_KEY of 33 bytes', { MASTER_KEY: key(33) }, 'MASTER_KEY'],
      ['MASTER_KEY that is not base64', { MASTER_KEY: `${'!'.repeat(43)}=` }, 'MASTER_KEY'],
      // base64url of 32 bytes: the right length in the wrong alphabet must not decode to a different key.
      ['MASTER_KEY in base64url', { MASTER_KEY: Buffer.alloc(32, 0xfb).toString('base64url') }, 'MASTER_KEY'],
      ['NODE_ENV=production without MASTER_KEY', { NODE_ENV: 'production' }, 'MASTER_KEY'],
      ['NODE_ENV=production with an empty MASTER_KEY', { NODE_ENV: 'production', MASTER_KEY: '' }, 'MASTER_KEY'],
      ['unknown NODE_ENV', { NODE_ENV: 'staging' }, 'NODE_ENV'],
      ['non-numeric PORT', { PORT: 'http' }, 'PORT'],
      ['PORT above 65535', { PORT: '65536' }, 'PORT'],
      ['negative PORT', { PORT: '-1' }, 'PORT'],
      ['fractional PORT', { PORT: '80.5' }, 'PORT'],
      ['hexadecimal PORT', { PORT: '0x50' }, 'PORT'],
      ['PUBLIC_URL that is not a URL', { PUBLIC_URL: 'id.example.com' }, 'PUBLIC_URL'],
      ['PUBLIC_URL of another scheme', { PUBLIC_URL: 'ftp://id.example.com' }, 'PUBLIC_URL'],
      ['MASTER_KEY_PREVIOUS with one bad entry', { MASTER_KEY_PREVIOUS: `${key()},${key(16)}` }, 'MASTER_KEY_PREVIOUS'],
      ['MASTER_KEY_PREVIOUS that is not base64', { MASTER_KEY_PREVIOUS: 'old-key' }, 'MASTER_KEY_PREVIOUS'],
      ['empty DATA_DIR', { DATA_DIR: '' }, 'DATA_DIR'],
      ['short ADMIN_PASSWORD', { ADMIN_PASSWORD: 'short' }, 'ADMIN_PASSWORD'],
      ['malformed ADMIN_EMAIL', { ADMIN_EMAIL: 'admin@' }, 'ADMIN_EMAIL'],
      ['BODY_LIMIT_BYTES below 1 KiB', { BODY_LIMIT_BYTES: '10' }, 'BODY_LIMIT_BYTES'],
    ];
    it.each(cases)('%s', (_name, env, variable) => {
      const error = configError(env);
      expect(error.variable).toBe(variable);
      expect(error.message).toMatch(new RegExp(`^Invalid configuration: ${variable} \\S`));
      // One line: it is printed as-is to the operator.
      expect(error.message).not.toContain('\n');
    });
  });

  it('never echoes the rejected value, which may be a secret', () => {
    const secrets = { MASTER_KEY: key(31), ADMIN_PASSWORD: 'hunter2', DATABASE_URL: 'postgres//idp:s3cr3t-pw@db/idp' };
    for (const [name, value] of Object.entries(secrets)) {
      const error = configError({ [name]: value });
      expect(error.variable).toBe(name);
      expect(error.message).not.toContain(value);
      expect(error.message).not.toContain('s3cr3t');
    }
  });
});

describe('start-up with a bad configuration (real process)', () => {
  afterAll(() => killSpawned());

  // The process must stop before touching DATA_DIR; pointing it at /nonexistent makes a violation visible as a different error.
  const run = (env: Record<string, string | undefined>) =>
    runNode('src/main.ts', [], { env: { MASTER_KEY: undefined, DATA_DIR: '/nonexistent/idp-config-test', ...env }, timeoutMs: 30_000 });

  it('refuses NODE_ENV=production without MASTER_KEY in one line naming the variable', async () => {
    const result = await run({ NODE_ENV: 'production' });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('Invalid configuration: MASTER_KEY is required when NODE_ENV=production\n');
  });

  it('refuses a malformed DATABASE_URL in one line naming the variable, without a stack', async () => {
    const result = await run({ DATABASE_URL: 'postgres//user:pw@host/db' });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stdout).toBe('');
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Invalid configuration: DATABASE_URL /);
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/);
    expect(result.stderr).not.toContain('pw@host');
  });
});
