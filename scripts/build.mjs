#!/usr/bin/env node
// Compiles src/ to dist/ for production (`npm run build`, run by `npm start`):
// plain `node dist/main.js` then starts without tsx's loader thread, esbuild
// and source maps. Types are checked by `npm run typecheck`, not here
// (tsconfig.build.json sets noCheck), so the build only emits.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');

// The Prisma client is TypeScript in src/store/generated: generate it first.
execFileSync(process.execPath, [path.join(root, 'scripts/generate.mjs')], { cwd: root, stdio: 'inherit' });
// A clean output, so a deleted source file does not live on in dist/.
rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
// Files read next to their module (import.meta.dirname); views/ and prisma/
// are read from the repository root, which is ../.. from dist/<folder>/ as from src/<folder>/.
const assets = ['security/common-passwords.txt'];
for (const asset of assets) cpSync(path.join(root, 'src', asset), path.join(dist, asset));
