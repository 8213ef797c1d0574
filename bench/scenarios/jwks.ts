import { type BenchContext, CONNECTIONS, type ScenarioResult } from '../lib/context.js';
import { warmThenMeasure } from '../lib/load.js';

/** GET the tenant's JWKS (next, active and previous public keys), as relying parties and gateways do. */
export async function runJwks(ctx: BenchContext): Promise<ScenarioResult> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  const measurement = await warmThenMeasure(
    {
      urls: ctx.server.urls(),
      connections: CONNECTIONS,
      durationS: ctx.options.durationS,
      requests: [{ method: 'GET', path: `/t/${tenant.slug}/jwks` }],
    },
    ctx.options.warmupS,
    ctx.server.pids(),
  );
  return { id: 'jwks', title: 'JWKS', measurement, connections: CONNECTIONS };
}
