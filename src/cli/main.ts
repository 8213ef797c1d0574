import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { AppError } from '../errors.js';
import { DataDirInUseError } from '../store/data-dir-lock.js';
import { COMMANDS, type Command, type ParsedArgs } from './commands.js';
import { openCliContext } from './context.js';

const EXIT_USAGE = 2;

function usage(): string {
  return ['usage:', ...Object.values(COMMANDS).map((c) => `  ${c.usage} [--json]`)].join('\n');
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const command = COMMANDS[argv.slice(0, words).join(' ')];
    if (command) return { command, rest: argv.slice(words) };
  }
  return undefined;
}

function parse(command: Command, rest: string[]): ParsedArgs & { json: boolean } {
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: Object.fromEntries([
      ['json', { type: 'boolean' as const }],
      ...command.options.map((name) => [name, { type: 'string' as const, multiple: true }]),
      ...(command.flags ?? []).map((name) => [name, { type: 'boolean' as const }]),
    ]),
  });
  const parsed = values as Record<string, unknown>;
  const options: Record<string, string[]> = {};
  for (const name of command.options) {
    const value = parsed[name];
    if (Array.isArray(value)) options[name] = value.map(String);
  }
  const flags = new Set((command.flags ?? []).filter((name) => parsed[name] === true));
  return { positionals, options, flags, json: parsed.json === true };
}

function fail(message: string, json: boolean, code: string, exitCode: number): number {
  process.stderr.write(json ? `${JSON.stringify({ error: code, error_description: message })}\n` : `idp: ${message}\n`);
  return exitCode;
}

export async function runCli(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const found = findCommand(argv);
  if (!found) return fail(`unknown command\n${usage()}`, json, 'usage', EXIT_USAGE);
  let args: ReturnType<typeof parse>;
  try {
    args = parse(found.command, found.rest);
  } catch (error) {
    return fail(`${(error as Error).message}\nusage: ${found.command.usage}`, json, 'usage', EXIT_USAGE);
  }
  try {
    const ctx = await openCliContext(loadConfig(), { migrating: found.command.migrating });
    try {
      const result = await found.command.run(ctx, args);
      process.stdout.write(`${args.json ? JSON.stringify(result.json) : result.text}\n`);
      return result.exitCode ?? 0;
    } finally {
      await ctx.close();
    }
  } catch (error) {
    if (error instanceof AppError) return fail(error.description, args.json, error.code, 1);
    if (error instanceof ConfigError || error instanceof DataDirInUseError) return fail(error.message, args.json, 'config', 1);
    return fail((error as Error).message ?? String(error), args.json, 'error', 1);
  }
}

process.exitCode = await runCli(process.argv.slice(2));
