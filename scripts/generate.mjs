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

if (process.argv.includes('--force') || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== hash) generate();
readWasmInsteadOfImportingIt();

function generate() {
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
}

/**
 * The generated client imports the query compiler's WebAssembly as a 4.5 MB
 * base64 string module; an imported module is never unloaded, so its source
 * and the string stayed on the heap for the life of the process (~9 MB of
 * idle RSS, issue 8). Reading the same file and decoding it leaves nothing
 * behind but the compiled module. Idempotent; fails loudly if a Prisma
 * upgrade changes the generated code, rather than silently keeping the cost.
 */
function readWasmInsteadOfImportingIt() {
  const file = path.join(root, 'src/store/generated/internal/class.ts');
  const source = readFileSync(file, 'utf8');
  const marker = '// wasm read by scripts/generate.mjs';
  if (source.includes(marker)) return;
  const imported =
    /const \{ wasm \} = await import\(("@prisma\/client\/runtime\/query_compiler_[\w.]+\.wasm-base64\.mjs")\)\n(\s*)return await decodeBase64AsWasm\(wasm\)/;
  const match = imported.exec(source);
  if (!match) throw new Error(`${file}: the import of the query compiler's wasm changed; update readWasmInsteadOfImportingIt()`);
  const [, specifier, indent] = match;
  const replacement = [
    `${marker}\n${indent}const { readFile } = await import('node:fs/promises')`,
    `const { createRequire } = await import('node:module')`,
    `const text = await readFile(createRequire(import.meta.url).resolve(${specifier}), 'utf8')`,
    // The file is `const wasm = "<base64>"` and an export: the base64 is between the quotes.
    `return await decodeBase64AsWasm(text.slice(text.indexOf('"') + 1, text.lastIndexOf('"')))`,
  ].join(`\n${indent}`);
  writeFileSync(file, source.replace(imported, replacement));
}
