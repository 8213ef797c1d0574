#!/usr/bin/env node
// The `idp` command. In a checkout it runs the TypeScript sources through tsx,
// so it never runs a dist/ older than the code beside it; the Docker image
// ships only the compiled dist/ (no src/), and there it runs that.
import { existsSync } from 'node:fs';

const sources = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(sources.href);
} else {
  await import('../dist/cli/main.js');
}
