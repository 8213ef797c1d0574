import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';

const MASTER_KEY_BYTES = 32;
export const MASTER_KEY_FILE = 'master.key';

/**
 * The vault master key: MASTER_KEY when set; outside production, a key kept in
 * `<keysDir>/master.key` (generated on first start) so trying the server out
 * needs no setup. Production refuses to run without MASTER_KEY, because a key
 * generated on one node's disk would differ on every other node.
 */
export async function resolveMasterKey(
  config: Pick<Config, 'masterKey' | 'env'>,
  keysDir: string,
  logger?: Pick<Logger, 'warn'>,
): Promise<Buffer> {
  if (config.masterKey) return config.masterKey;
  if (config.env === 'production') throw new Error('MASTER_KEY is required when NODE_ENV=production');
  const file = path.join(keysDir, MASTER_KEY_FILE);
  const existing = await readKeyFile(file);
  if (existing) return existing;
  const created = await createKeyFile(keysDir, file);
  if (created) {
    logger?.warn({ file }, 'generated a development vault master key; set MASTER_KEY (base64, 32 bytes) in production');
    return created;
  }
  // Another process created it between our read and our write: use theirs.
  const theirs = await readKeyFile(file);
  if (!theirs) throw new Error(`${file} could not be read after it was created`);
  return theirs;
}

async function readKeyFile(file: string): Promise<Buffer | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== MASTER_KEY_BYTES) throw new Error(`${file} must hold ${MASTER_KEY_BYTES} bytes encoded as base64`);
  return key;
}

/**
 * Writes the key under a temporary name, then links it into place: the link
 * fails if the file exists, so of two processes starting at once exactly one
 * wins, and nobody ever reads a half-written file. Undefined when we lost.
 */
async function createKeyFile(keysDir: string, file: string): Promise<Buffer | undefined> {
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(MASTER_KEY_BYTES);
  const temporary = path.join(keysDir, `.${MASTER_KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  await writeFile(temporary, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await link(temporary, file);
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  } finally {
    await unlink(temporary);
  }
}
