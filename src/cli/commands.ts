import type { z } from 'zod';
import { description, displayName, parseOrThrow } from '../admin/http.js';
import { managementPermissionSchema, permissionList } from '../admin/rbac.js';
import type { AuditEventInput } from '../audit/audit.js';
import { reencryptAll } from '../crypto/reencrypt.js';
import { badRequest } from '../errors.js';
import { createClient, GRANT_TYPES } from '../oidc/clients.js';
import { rotateKeys } from '../oidc/keys.js';
import { migrate } from '../store/index.js';
import { createTenant } from '../tenants/tenants.js';
import { createUser } from '../users/users.js';
import type { CliContext } from './context.js';

export interface ParsedArgs {
  positionals: string[];
  options: Record<string, string[]>;
  flags: Set<string>;
}

export interface CommandResult {
  /** The one JSON object printed with --json. */
  json: Record<string, unknown>;
  /** What a person reads without --json. */
  text: string;
  /** Non-zero marks a failure that still has a result to show (a broken audit chain). */
  exitCode?: number;
}

export interface Command {
  usage: string;
  /** Option names it takes; repeatable ones may be given several times. */
  options: readonly string[];
  /** Boolean switches it takes. */
  flags?: readonly string[];
  migrating?: boolean;
  run(ctx: CliContext, args: ParsedArgs): Promise<CommandResult>;
}

export function option(args: ParsedArgs, name: string, required: true): string;
export function option(args: ParsedArgs, name: string, required?: false): string | undefined;
export function option(args: ParsedArgs, name: string, required = false): string | undefined {
  const values = args.options[name];
  if (values && values.length > 1) throw badRequest(`--${name} given more than once`);
  const value = values?.[0];
  if (required && value === undefined) throw badRequest(`--${name} is required`);
  return value;
}

function positional(args: ParsedArgs, index: number, name: string): string {
  const value = args.positionals[index];
  if (value === undefined) throw badRequest(`<${name}> is required`);
  return value;
}

/** `--scope` values: space- or comma-separated permissions, the option repeatable. */
function scopesOf(args: ParsedArgs, schema: z.ZodType<string[], unknown>): string[] {
  const values = (args.options.scope ?? []).flatMap((value) => value.split(/[\s,]+/)).filter(Boolean);
  if (values.length === 0) throw badRequest('--scope is required: one or more permissions, e.g. --scope "users.read users.write"');
  return parseOrThrow(schema, values, '--scope');
}

const DURATION = /^(\d{1,6})([smhd])$/;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `30d`, `12h`, `45m`, `3600s` in milliseconds. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  const unit = UNIT_SECONDS[match?.[2] ?? ''];
  if (!match || !unit || Number(match[1]) === 0) throw badRequest(`--expires-in ${text}: use a number and a unit, e.g. 30d, 12h, 45m`);
  return Number(match[1]) * unit * 1000;
}

/** What the CLI writes to a tenant's audit trail: the operator as actor, in the command's transaction. */
function recorder(ctx: CliContext, tenantId: string) {
  return (event: Omit<AuditEventInput, 'actor' | 'ip' | 'userAgent'>, tx: Parameters<CliContext['audit']['append']>[2]) =>
    ctx.audit.append(tenantId, { actor: ctx.actor, ...event }, tx).then(() => undefined);
}

// Modules that load oidc-provider (the admin resources) are imported inside the commands that
// use them: on Node 20 oidc-provider prints a runtime warning to stderr when loaded, which
// turned every other command's stderr from empty (or one error line) into noise.

/** Every `idp` command, keyed by its words. Later features add theirs here. */
export const COMMANDS: Record<string, Command> = {
  migrate: {
    usage: 'idp migrate',
    options: [],
    migrating: true,
    async run(ctx) {
      const applied = await migrate(ctx.db);
      return {
        json: { applied },
        text: applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'database is up to date',
      };
    },
  },
  'tenant create': {
    usage: 'idp tenant create <slug> [--name "Display name"]',
    options: ['name'],
    async run(ctx, args) {
      const tenant = await createTenant(
        { prisma: ctx.db.prisma, audit: ctx.audit },
        { slug: positional(args, 0, 'slug'), displayName: option(args, 'name') },
        ctx.actor,
      );
      const issuer = `${ctx.config.publicUrl}/t/${tenant.slug}`;
      return { json: { id: tenant.id, slug: tenant.slug, issuer }, text: `created tenant ${tenant.slug} (${tenant.id}); issuer ${issuer}` };
    },
  },
  'user create': {
    usage: 'idp user create --tenant T --email E --password P [--name N] [--role R]…',
    options: ['tenant', 'email', 'password', 'name', 'role'],
    async run(ctx, args) {
      const tenantId = await ctx.tenantId(option(args, 'tenant', true));
      const user = await createUser(
        { prisma: ctx.db.prisma, audit: ctx.audit, passwords: ctx.passwords },
        tenantId,
        {
          email: option(args, 'email', true),
          password: option(args, 'password', true),
          name: option(args, 'name'),
          roles: args.options.role ?? [],
        },
        ctx.actor,
      );
      return { json: { id: user.id, email: user.email, tenant_id: tenantId }, text: `created user ${user.email} (${user.id})` };
    },
  },
  'client create': {
    usage:
      'idp client create --tenant T --name N [--grant G]… [--redirect-uri U]… [--post-logout-redirect-uri U]… [--scope S] [--public] [--first-party] [--resource-server]',
    options: ['tenant', 'name', 'grant', 'redirect-uri', 'post-logout-redirect-uri', 'scope'],
    flags: ['public', 'first-party', 'resource-server'],
    async run(ctx, args) {
      const slug = option(args, 'tenant', true);
      const tenantId = await ctx.tenantId(slug);
      const grants = args.options.grant ?? [];
      const unknown = grants.filter((g) => !(GRANT_TYPES as readonly string[]).includes(g));
      if (unknown.length) throw badRequest(`unknown grant type ${unknown.join(', ')} (one of ${GRANT_TYPES.join(', ')})`);
      const created = await createClient(
        { prisma: ctx.db.prisma, audit: ctx.audit },
        tenantId,
        {
          name: option(args, 'name', true),
          grantTypes: grants.length ? (grants as (typeof GRANT_TYPES)[number][]) : undefined,
          redirectUris: args.options['redirect-uri'] ?? [],
          postLogoutRedirectUris: args.options['post-logout-redirect-uri'] ?? [],
          scope: option(args, 'scope'),
          public: args.flags.has('public'),
          firstParty: args.flags.has('first-party'),
          resourceServer: args.flags.has('resource-server'),
        },
        ctx.actor,
      );
      await ctx.announce({ tenantId, slug, what: 'clients' });
      const lines = [`client_id: ${created.clientId}`];
      if (created.clientSecret) lines.push(`client_secret: ${created.clientSecret}`, '(the secret is shown once; only its hash is stored)');
      return {
        json: {
          client_id: created.clientId,
          ...(created.clientSecret ? { client_secret: created.clientSecret } : {}),
          ...created.metadata,
        },
        text: lines.join('\n'),
      };
    },
  },
  'service-account create': {
    usage: 'idp service-account create --tenant T --name N --scope S [--description D] [--allow-ip CIDR]… [--platform-admin]',
    options: ['tenant', 'name', 'scope', 'description', 'allow-ip'],
    flags: ['platform-admin'],
    async run(ctx, args) {
      const { cidrList, createServiceAccount } = await import('../admin/resources/service-accounts.js');
      const slug = option(args, 'tenant', true);
      const tenantId = await ctx.tenantId(slug);
      const { account, credentials } = await createServiceAccount(
        { prisma: ctx.db.prisma, audit: ctx.audit, publicUrl: ctx.config.publicUrl },
        { id: tenantId, slug },
        {
          name: parseOrThrow(displayName, option(args, 'name', true), '--name'),
          description: parseOrThrow(description.optional(), option(args, 'description'), '--description'),
          scopes: scopesOf(args, permissionList()),
          allowedIps: parseOrThrow(cidrList, args.options['allow-ip'] ?? [], '--allow-ip'),
          platformAdmin: args.flags.has('platform-admin'),
          generateCredentials: true,
        },
        ctx.actor,
        recorder(ctx, tenantId),
      );
      await ctx.announce({ tenantId, slug, what: 'clients' });
      const lines = [
        `created service account ${account.name} (${account.id})${account.platform_admin ? ' — platform admin' : ''}`,
        `client_id: ${credentials?.client_id}`,
        `client_secret: ${credentials?.client_secret}`,
        `token endpoint: ${credentials?.token_endpoint} (grant_type=client_credentials, resource=${credentials?.audience})`,
        '(the secret is shown once; only its hash is stored)',
      ];
      return { json: { ...account, credentials }, text: lines.join('\n') };
    },
  },
  'api-key create': {
    usage: 'idp api-key create --tenant T --name N --scope S [--expires-in 30d|12h|45m] [--platform-admin]',
    options: ['tenant', 'name', 'scope', 'expires-in'],
    flags: ['platform-admin'],
    async run(ctx, args) {
      const { createApiKey } = await import('../admin/resources/api-keys.js');
      const slug = option(args, 'tenant', true);
      const tenantId = await ctx.tenantId(slug);
      const expiresIn = option(args, 'expires-in');
      const now = ctx.clock.now();
      const { apiKey, key } = await createApiKey(
        ctx.db.prisma,
        tenantId,
        {
          name: parseOrThrow(displayName, option(args, 'name', true), '--name'),
          scopes: scopesOf(args, permissionList(managementPermissionSchema, { min: 1 })),
          expiresAt: expiresIn ? new Date(now + parseDuration(expiresIn)) : undefined,
          platformAdmin: args.flags.has('platform-admin'),
          createdBy: `cli:${ctx.actor.id}`,
        },
        now,
        recorder(ctx, tenantId),
      );
      const lines = [
        `created API key ${apiKey.name} (${apiKey.id})${apiKey.platform_admin ? ' — platform admin' : ''}`,
        `key: ${key}`,
        `expires: ${apiKey.expires_at ?? 'never'}`,
        '(the key is shown once; only its hash is stored)',
      ];
      return { json: { ...apiKey, key }, text: lines.join('\n') };
    },
  },
  'keys rotate': {
    usage: 'idp keys rotate --tenant T',
    options: ['tenant'],
    async run(ctx, args) {
      const slug = option(args, 'tenant', true);
      const tenantId = await ctx.tenantId(slug);
      const results = await rotateKeys(
        { prisma: ctx.db.prisma, vault: await ctx.vault(), clock: ctx.clock, audit: ctx.audit },
        tenantId,
        ctx.actor,
      );
      await ctx.announce({ tenantId, slug, what: 'keys' });
      return {
        json: { rotated: results },
        text: results.map((r) => `${r.alg}: active ${r.activated}, previous ${r.previous ?? '-'}, next ${r.next}`).join('\n'),
      };
    },
  },
  'audit verify': {
    usage: 'idp audit verify --tenant T',
    options: ['tenant'],
    async run(ctx, args) {
      const slug = option(args, 'tenant', true);
      const result = await ctx.audit.verify(await ctx.tenantId(slug));
      if (result.ok) return { json: { ok: true, events: result.count }, text: `audit chain of ${slug} intact: ${result.count} event(s)` };
      const seq = result.firstBadSeq.toString();
      return {
        json: { ok: false, events: result.count, first_bad_seq: seq, reason: result.reason },
        text: `audit chain of ${slug} is BROKEN at sequence ${seq}: ${result.reason}`,
        exitCode: 3,
      };
    },
  },
  'vault reencrypt': {
    usage: 'idp vault reencrypt',
    options: [],
    async run(ctx) {
      const results = await reencryptAll(ctx.db.prisma, await ctx.vault());
      const failed = results.reduce((sum, r) => sum + r.failed, 0);
      const lines = results.map((r) => `${r.table}.${r.column}: ${r.reencrypted} re-encrypted, ${r.failed} undecryptable`);
      if (failed) lines.push(`${failed} value(s) could not be decrypted with MASTER_KEY or MASTER_KEY_PREVIOUS`);
      return { json: { ok: failed === 0, columns: results }, text: lines.join('\n'), exitCode: failed ? 4 : 0 };
    },
  },
};
