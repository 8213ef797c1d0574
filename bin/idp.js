#!/usr/bin/env node
// The `idp` command: runs the TypeScript CLI through tsx, as the server does.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
