import { type BenchContext, CONNECTIONS, type ScenarioResult } from '../lib/context.js';
import { warmThenMeasure } from '../lib/load.js';
import { runTs } from '../lib/processes.js';

const TITLE = 'management API: list users';

/** The users list route the OpenAPI document declares, with the tenant filled in; undefined when there is none. */
async function usersListPath(baseUrl: string, slug: string): Promise<string | undefined> {
  const response = await fetch(`${baseUrl}/api/v1/openapi.json`);
  if (!response.ok) {
    await response.body?.cancel();
    return undefined;
  }
  const document = (await response.json()) as { servers?: { url: string }[]; paths?: Record<string, Record<string, unknown>> };
  const path = Object.keys(document.paths ?? {}).find((p) => /\/tenants\/\{[^}]+\}\/users$/.test(p) && document.paths?.[p]?.get);
  if (!path) return undefined;
  // Paths are relative to the document's server URL (PUBLIC_URL/api/v1).
  const base = new URL(document.servers?.[0]?.url ?? `${baseUrl}/api/v1`).pathname.replace(/\/$/, '');
  return `${base}${path.replace(/\{[^}]+\}/, slug)}`;
}

/** An API key allowed to read users, made as an operator would (`idp api-key create`). */
async function createApiKey(ctx: BenchContext, slug: string): Promise<string | undefined> {
  const output = await runTs('src/cli/main.ts', {
    args: ['api-key', 'create', '--tenant', slug, '--name', 'bench', '--scope', 'users.read', '--json'],
    env: ctx.serverEnv,
  }).catch(() => undefined);
  if (!output) return undefined;
  const parsed = JSON.parse(output) as Record<string, unknown>;
  const key = parsed.api_key ?? parsed.key ?? parsed.token;
  return typeof key === 'string' ? key : undefined;
}

/** GET the first page of the tenant's users with an API key, if the management API and `idp api-key create` exist yet. */
export async function runManagementList(ctx: BenchContext): Promise<ScenarioResult> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  const path = await usersListPath(ctx.server.publicUrl, tenant.slug);
  if (!path) return { id: 'management_list', title: TITLE, note: 'n/a (management API not built yet)' };
  const apiKey = await createApiKey(ctx, tenant.slug);
  if (!apiKey) return { id: 'management_list', title: TITLE, note: 'n/a (`idp api-key create` not available yet)' };
  const measurement = await warmThenMeasure(
    {
      urls: ctx.server.urls(),
      connections: CONNECTIONS,
      durationS: ctx.options.durationS,
      requests: [{ method: 'GET', path, headers: { authorization: `Bearer ${apiKey}` } }],
    },
    ctx.options.warmupS,
    ctx.server.pids(),
  );
  return { id: 'management_list', title: `${TITLE} (${path})`, measurement, connections: CONNECTIONS };
}
