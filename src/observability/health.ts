import Router from '@koa/router';
import type { Database, KvStore } from '../store/index.js';
import type { Metrics } from './metrics.js';

const CHECK_TIMEOUT_MS = 2_000;

async function check(probe: () => Promise<void>): Promise<'ok' | 'unreachable'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe(), timeout]);
    return 'ok';
  } catch {
    return 'unreachable';
  } finally {
    clearTimeout(timer);
  }
}

export function healthRoutes({ db, kv, metrics }: { db: Database; kv: KvStore; metrics: Metrics }): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const [database, store] = await Promise.all([check(() => db.ping()), check(() => kv.ping())]);
    const checks = { database, kv: store };
    if (database === 'ok' && store === 'ok') {
      ctx.body = { status: 'ready', checks };
      return;
    }
    ctx.status = 503;
    ctx.set('Retry-After', '5');
    const down = Object.entries(checks)
      .filter(([, state]) => state !== 'ok')
      .map(([name]) => name);
    ctx.body = { error: 'temporarily_unavailable', error_description: `unreachable: ${down.join(', ')}`, checks };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  return router;
}
