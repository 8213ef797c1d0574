import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveMasterKey } from './master-key.js';

describe('resolveMasterKey', () => {
  let root: string;
  let keysDir: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'idp-master-key-'));
    keysDir = path.join(root, 'keys');
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('uses MASTER_KEY when configured, without touching the disk', async () => {
    const masterKey = randomBytes(32);
    for (const env of ['development', 'production', 'test'] as const) {
      expect((await resolveMasterKey({ masterKey, env }, keysDir)).equals(masterKey)).toBe(true);
    }
    await expect(stat(keysDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses to run in production without MASTER_KEY', async () => {
    await expect(resolveMasterKey({ env: 'production' }, keysDir)).rejects.toThrow(/MASTER_KEY is required/);
    await expect(stat(keysDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('generates a 32-byte key into an owner-only file, warning that it did, and reuses it', async () => {
    const logger = { warn: vi.fn() };
    const first = await resolveMasterKey({ env: 'development' }, keysDir, logger);
    expect(first).toHaveLength(32);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(JSON.stringify(logger.warn.mock.calls)).not.toContain(first.toString('base64'));

    const file = path.join(keysDir, 'master.key');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(keysDir)).mode & 0o777).toBe(0o700);
    expect(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64').equals(first)).toBe(true);

    const second = await resolveMasterKey({ env: 'development' }, keysDir, logger);
    expect(second.equals(first)).toBe(true);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(await readdir(keysDir)).toEqual(['master.key']);
  });

  it('gives every one of many simultaneous starters the same key', async () => {
    const logger = { warn: vi.fn() };
    const keys = await Promise.all(Array.from({ length: 8 }, () => resolveMasterKey({ env: 'test' }, keysDir, logger)));
    for (const key of keys) expect(key.equals(keys[0] as Buffer)).toBe(true);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(await readdir(keysDir)).toEqual(['master.key']);
  });

  it('reads an existing key file written by an operator', async () => {
    const key = randomBytes(32);
    await resolveMasterKey({ env: 'development' }, keysDir);
    await writeFile(path.join(keysDir, 'master.key'), `  ${key.toString('base64')}\n\n`);
    expect((await resolveMasterKey({ env: 'development' }, keysDir)).equals(key)).toBe(true);
  });

  it('refuses a key file that does not hold 32 bytes rather than replacing it', async () => {
    await resolveMasterKey({ env: 'development' }, keysDir);
    const file = path.join(keysDir, 'master.key');
    await writeFile(file, randomBytes(16).toString('base64'));
    await expect(resolveMasterKey({ env: 'development' }, keysDir)).rejects.toThrow(/32 bytes/);
    expect(Buffer.from(await readFile(file, 'utf8'), 'base64')).toHaveLength(16);
  });
});
