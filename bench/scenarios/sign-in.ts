import { signIn } from '../lib/browser.js';
import type { BenchContext, ScenarioResult } from '../lib/context.js';
import { loop, withServerCpu } from '../lib/load.js';
import { REDIRECT_URI, userEmail } from '../lib/seed.js';

/**
 * Whole password sign-ins, counted when the token endpoint has answered:
 * authorize → sign-in page → POST email and password (+ _csrf) → code → token
 * (PKCE). A bounded loop of virtual browsers rather than autocannon, since each
 * step depends on the last one's answer. Users are picked at random among all
 * of the tenant's users.
 */
export async function runSignIn(ctx: BenchContext, users: number): Promise<ScenarioResult> {
  const [tenant] = ctx.seeded.tenants;
  if (!tenant) throw new Error('no bench tenant');
  const urls = ctx.server.urls();
  const task = (worker: number) =>
    signIn(
      {
        publicUrl: ctx.server.publicUrl,
        baseUrl: urls[worker % urls.length] ?? ctx.server.publicUrl,
        slug: tenant.slug,
        clientId: ctx.seeded.publicClientId,
        redirectUri: REDIRECT_URI,
      },
      { email: userEmail(Math.floor(Math.random() * users)), password: ctx.seeded.password },
    ).then(() => undefined);
  const concurrency = ctx.options.signInConcurrency;
  if (ctx.options.warmupS > 0) await loop({ concurrency, durationS: ctx.options.warmupS, task });
  const measurement = await withServerCpu(ctx.server.pids(), () => loop({ concurrency, durationS: ctx.options.durationS, task }));
  return {
    id: users === ctx.options.usersSmall ? 'sign_in' : 'sign_in_large',
    title: `password sign-in, ${users.toLocaleString('en')} users`,
    measurement,
    connections: concurrency,
    note: `${concurrency} concurrent browsers; latency is the whole flow`,
  };
}
