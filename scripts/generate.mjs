#!/usr/bin/env node
// Generates the Prisma client into src/store/generated when schema.prisma has
// changed since the last generation. Generation needs no schema engine, but the
// CLI insists on finding one, and the native binary cannot be downloaded here:
// pointing PRISMA_SCHEMA_ENGINE_BINARY at any file satisfies it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const schema = readFileSync(path.join(root, 'prisma/schema.prisma'));
const stamp = path.join(root, 'src/store/generated/.schema-hash');
const hash = createHash('sha256').update(schema).digest('hex');

if (!process.argv.includes('--force') && existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) process.exit(0);

execFileSync(path.join(root, 'node_modules/.bin/prisma'), ['generate'], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
  env: {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? path.join(root, 'package.json'),
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  },
});
writeFileSync(stamp, hash);
