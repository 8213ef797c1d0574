import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import request, { type Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppDeps, closeAppDeps, createApp, createAppDeps } from '../../src/app.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { AppError, tooManyRequests } from '../../src/errors.js';
import { observeRequests, requestId } from '../../src/observability/http.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { DEFAULT_CSP, securityHeaders } from '../../src/security/headers.js';
import { type Database, type KvStore, openDatabase, openKv } from '../../src/store/index.js';
import { createTenant, publishTenantChange } from '../../src/tenants/tenants.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { testRedisUrl } from '../helpers/env.js';
import { startTcpProxy, type TcpProxy } from '../helpers/proxy.js';
import { createTestStores, type TestStores } from '../helpers/stores.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const MiB = 1024 * 1024;
const hex = () => randomBytes(6).toString('hex');

/** What every response must carry, error or not. */
function expectSecurityHeaders(response: Response, { hsts = false } = {}) {
  expect(response.headers['content-security-policy']).toBe(DEFAULT_CSP);
  expect(response.headers['cross-origin-opener-policy']).toBe('same-origin');
  expect(response.headers['cross-origin-resource-policy']).toBe('same-origin');
  expect(response.headers['x-content-type-options']).toBe('nosniff');
  expect(response.headers['referrer-policy']).toBe('no-referrer');
  expect(response.headers['x-frame-options']).toBe('DENY');
  if (hsts) expect(response.headers['strict-transport-security']).toBe('max-age=63072000; includeSubDomains');
  else expect(response.headers['strict-transport-security']).toBeUndefined();
}

/** A JSON error as DESIGN.md §3 specifies it, and nothing that looks like a stack or an internal message. */
function expectJsonError(response: Response, status: number, error: string) {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(response.body).sort()).toEqual(['error', 'error_description']);
  expect(response.body.error).toBe(error);
  expect(typeof response.body.error_description).toBe('string');
  expect(response.text).not.toMatch(/\bat [\w.<>]+ \(|\.ts:\d+|node_modules|stack|Invalid `/);
}

/** The value of one Prometheus series in `text`, or 0 when it is absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('server', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ seed: true });
  });
  afterAll(() => t?.close());

  describe('operations endpoints', () => {
    it('/healthz answers 200', async () => {
      const response = await request(t.app.callback()).get('/healthz');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ status: 'ok' });
    });

    it('/readyz answers 200 with the state of each dependency', async () => {
      const response = await request(t.app.callback()).get('/readyz');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ status: 'ready', checks: { database: 'ok', kv: 'ok' } });
    });

    it('/metrics serves Prometheus text that counts requests by route and status', async () => {
      const series = 'http_requests_total{method="GET",route="/healthz",status="200"}';
      const before = sample((await request(t.app.callback()).get('/metrics')).text, series);
      await request(t.app.callback()).get('/healthz');
      await request(t.app.callback()).get('/healthz');
      const response = await request(t.app.callback()).get('/metrics');
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(response.text).toContain('# TYPE http_requests_total counter');
      expect(response.text).toContain('# TYPE http_request_duration_seconds histogram');
      expect(sample(response.text, series)).toBe(before + 2);
      expect(sample(response.text, 'http_request_duration_seconds_count{method="GET",route="/healthz"}')).toBeGreaterThanOrEqual(2);
    });

    // Regression: the route label carried the raw path segment after /t/:tenant/ and /api/, so random paths created new series without end.
    it('/metrics does not grow a series per path a caller makes up', async () => {
      const made = [hex(), hex(), hex(), hex()];
      await request(t.app.callback()).get(`/t/nope/${made[0]}`);
      await request(t.app.callback()).get(`/t/default/${made[1]}`);
      await request(t.app.callback()).get(`/api/${made[2]}/${made[2]}`);
      await request(t.app.callback()).get(`/${made[3]}`);
      const { text } = await request(t.app.callback()).get('/metrics');
      for (const segment of made) expect(text).not.toContain(segment);
    });
  });

  describe('X-Request-Id', () => {
    it('is generated when the caller sends none, and differs per request', async () => {
      const [a, b] = await Promise.all([request(t.app.callback()).get('/healthz'), request(t.app.callback()).get('/healthz')]);
      expect(a.headers['x-request-id']).toMatch(UUID);
      expect(b.headers['x-request-id']).toMatch(UUID);
      expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
    });

    it('keeps a well-formed incoming id (a proxy’s), so logs correlate across hops', async () => {
      const response = await request(t.app.callback()).get('/healthz').set('X-Request-Id', 'edge-7f.3_A');
      expect(response.headers['x-request-id']).toBe('edge-7f.3_A');
    });

    it.each([
      ['with a space', 'bad id'],
      ['with a quote and a brace', '"};alert(1)'],
      ['of 65 characters', 'a'.repeat(65)],
    ])('replaces an incoming id %s', async (_name, id) => {
      const response = await request(t.app.callback()).get('/healthz').set('X-Request-Id', id);
      expect(response.headers['x-request-id']).toMatch(UUID);
    });

    it('is on error responses too', async () => {
      for (const path of ['/no-such-route', '/t/nope/x', '/t/UPPER']) {
        const response = await request(t.app.callback()).get(path);
        expect(response.status).toBe(404);
        expect(response.headers['x-request-id']).toMatch(UUID);
      }
    });
  });

  describe('security headers', () => {
    it.each(['/healthz', '/readyz', '/metrics', '/t/default', '/t/nope/x', '/t/%ff', '/no-such-route'])('are on GET %s', async (path) => {
      expectSecurityHeaders(await request(t.app.callback()).get(path));
    });

    it('are on a refused oversized body', async () => {
      const response = await request(t.app.callback())
        .post('/t/default')
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.alloc(MiB + 1));
      expect(response.status).toBe(413);
      expectSecurityHeaders(response);
    });

    it('include HSTS only when PUBLIC_URL is https', async () => {
      const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'https://id.example.com/' });
      const deps = await createAppDeps({ ...infraOf(t.deps), config });
      try {
        const app = createApp(deps);
        for (const path of ['/healthz', '/no-such-route', '/t/nope/x'])
          expectSecurityHeaders(await request(app.callback()).get(path), { hsts: true });
        const tenant = await request(app.callback()).get('/t/default');
        expect(tenant.body.issuer).toBe('https://id.example.com/t/default');
      } finally {
        await closeAppDeps(deps);
      }
    });
  });

  describe('tenants at the edge', () => {
    it.each(['/t/default', '/t/default/'])('%s resolves to tenant default', async (path) => {
      const response = await request(t.app.callback()).get(path);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ tenant: 'default', display_name: 'Default', issuer: `${t.deps.config.publicUrl}/t/default` });
    });

    it.each(['/t/nope', '/t/nope/', '/t/nope/x', '/t/nope/.well-known/openid-configuration'])('%s is a JSON 404', async (path) => {
      expectJsonError(await request(t.app.callback()).get(path), 404, 'tenant_not_found');
    });

    it.each([
      ['upper case', '/t/UPPER'],
      ['upper case of an existing tenant', '/t/DEFAULT/x'],
      ['a leading hyphen', '/t/-x'],
      ['invalid percent-encoding', '/t/%ff'],
      ['an encoded slash', '/t/de%2Ffault'],
      ['a NUL byte', '/t/default%00'],
      ['64 characters', `/t/${'a'.repeat(64)}`],
      ['one character', '/t/a'],
      ['nothing', '/t/'],
    ])('a malformed slug (%s) is the same JSON 404', async (_name, path) => {
      expectJsonError(await request(t.app.callback()).get(path), 404, 'tenant_not_found');
    });

    it('a slug of 63 characters is well-formed, and unknown', async () => {
      expectJsonError(await request(t.app.callback()).get(`/t/${'a'.repeat(63)}`), 404, 'tenant_not_found');
    });

    it('an unknown route is a JSON 404', async () => {
      const response = await request(t.app.callback()).get('/no-such-route');
      expectJsonError(response, 404, 'not_found');
    });
  });

  describe('request bodies', () => {
    it('refuses a body over 1 MiB with a JSON 413, before reading it', async () => {
      const response = await request(t.app.callback())
        .post('/t/default')
        .set('Content-Type', 'application/json')
        .send(`"${'x'.repeat(MiB)}"`);
      expectJsonError(response, 413, 'payload_too_large');
    });

    it('lets a body of exactly 1 MiB through to the route', async () => {
      const response = await request(t.app.callback())
        .post('/t/default')
        .set('Content-Type', 'application/octet-stream')
        .send(Buffer.alloc(MiB));
      expect(response.status).not.toBe(413);
    });
  });

  describe('tenant cache', () => {
    it('serves a cached tenant until a change is published, then reads it again', async () => {
      const slug = `cache-${hex()}`;
      const tenant = await createTenant(
        { prisma: t.deps.db.prisma, audit: t.deps.audit },
        { slug, displayName: 'Before' },
        { type: 'system' },
      );
      expect((await request(t.app.callback()).get(`/t/${slug}`)).body.display_name).toBe('Before');

      await t.deps.db.prisma.tenant.update({ where: { id: tenant.id }, data: { displayName: 'After' } });
      // Still cached: without this the test could not tell invalidation from no caching at all.
      expect((await request(t.app.callback()).get(`/t/${slug}`)).body.display_name).toBe('Before');

      // On Redis the change comes from another connection, as from another node; in-process there is only one store.
      const publisher: KvStore = t.stores.kvPrefix ? await openKv({ url: testRedisUrl, prefix: t.stores.kvPrefix }) : t.deps.kv;
      try {
        await publishTenantChange(publisher, { tenantId: tenant.id, slug, what: 'tenant' });
        await expect
          .poll(async () => (await request(t.app.callback()).get(`/t/${slug}`)).body.display_name, { timeout: 5_000, interval: 50 })
          .toBe('After');
      } finally {
        if (publisher !== t.deps.kv) await publisher.close();
      }
    });

    it('ignores a malformed change message instead of failing', async () => {
      await t.deps.kv.publish('tenant-changed', 'not json');
      const response = await request(t.app.callback()).get('/t/default');
      expect(response.status).toBe(200);
    });
  });
});

/** The stores and process parts of running deps, to build another app on them. */
function infraOf(deps: AppDeps) {
  return { config: deps.config, db: deps.db, kv: deps.kv, logger: deps.logger, clock: deps.clock, masterKey: deps.masterKey };
}

describe('when a dependency goes away', () => {
  let stores: TestStores;
  let db: Database;
  let kv: KvStore;
  let dbProxy: TcpProxy | undefined;
  let kvProxy: TcpProxy | undefined;
  let deps: AppDeps;
  let app: Koa;
  let slug: string;

  beforeAll(async () => {
    stores = await createTestStores();
    // On PostgreSQL and Redis the app reaches them through proxies the test can cut;
    // the embedded database goes away by being closed, the in-process store cannot go away.
    if (stores.databaseUrl) {
      dbProxy = await startTcpProxy(stores.databaseUrl);
      db = await openDatabase({ url: dbProxy.url, poolSize: 2 });
    } else {
      db = stores.db;
    }
    if (stores.kvPrefix && testRedisUrl) {
      kvProxy = await startTcpProxy(testRedisUrl);
      kv = await openKv({ url: kvProxy.url, prefix: stores.kvPrefix });
    } else {
      kv = stores.kv;
    }
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
    deps = await createAppDeps({ config, db, kv, logger: createLogger('silent'), clock: systemClock, masterKey: randomBytes(32) });
    app = createApp(deps);
    // A tenant that exists but was never requested, so its lookup must reach the database.
    slug = `gone-${hex()}`;
    await createTenant({ prisma: stores.db.prisma, audit: deps.audit }, { slug }, { type: 'system' });
    const ready = await request(app.callback()).get('/readyz');
    expect(ready.status).toBe(200);

    if (dbProxy) await dbProxy.cut();
    else await db.close();
    // Every step runs even when one fails, so the suite's database is always dropped.
    return async () => {
      const steps = [
        () => closeAppDeps(deps),
        async () => kvProxy?.cut(),
        async () => (kv !== stores.kv ? kv.close() : undefined),
        async () => (db !== stores.db ? db.close() : undefined),
        // The embedded database was closed by the test; PGlite refuses a second close.
        () =>
          stores.close().catch((error: unknown) => {
            if (!String(error).includes('PGlite is closed')) throw error;
          }),
      ];
      const failed: unknown[] = [];
      for (const step of steps) await step().catch((error: unknown) => failed.push(error));
      if (failed.length) throw failed[0];
    };
  });

  it('/readyz answers 503 JSON with Retry-After and names the database', async () => {
    const response = await request(app.callback()).get('/readyz');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.body).toMatchObject({
      error: 'temporarily_unavailable',
      checks: { database: 'unreachable', kv: 'ok' },
    });
    expect(response.body.error_description).toContain('database');
    expectSecurityHeaders(response);
  });

  it('/healthz still answers 200: the process is alive, only not ready', async () => {
    expect((await request(app.callback()).get('/healthz')).status).toBe(200);
  });

  it('a tenant route whose lookup needs the database answers 503 temporarily_unavailable, not 500', async () => {
    for (const path of [`/t/${slug}`, `/t/${slug}/x`, '/t/never-heard-of/x']) {
      const response = await request(app.callback()).get(path);
      expectJsonError(response, 503, 'temporarily_unavailable');
      expect(response.headers['retry-after']).toBe('5');
      expect(response.headers['x-request-id']).toMatch(UUID);
    }
  });

  describe.runIf(Boolean(testRedisUrl))('Redis', () => {
    it('/readyz answers 503 naming the kv store once Redis is cut', async () => {
      await kvProxy?.cut();
      const response = await request(app.callback()).get('/readyz');
      expect(response.status).toBe(503);
      expect(response.body.checks).toEqual({ database: 'unreachable', kv: 'unreachable' });
      expect(response.headers['retry-after']).toBe('5');
    });

    // Regression: unsubscribing threw while Redis was down, so a SIGTERM then aborted the shutdown before the database closed.
    it('releases the app’s subscriptions without throwing while Redis is down', async () => {
      await expect(closeAppDeps(deps)).resolves.toBeUndefined();
    });
  });
});

describe('errors that are bugs', () => {
  /** A minimal app with the real request pipeline, a route that throws, and a log we can read. */
  function appThrowing(error: () => unknown) {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const metrics = createMetrics();
    const app = new Koa();
    app.use(requestId());
    app.use(securityHeaders({ https: false }));
    app.use(observeRequests({ logger, metrics }));
    app.use(async () => {
      throw error();
    });
    return { app, lines, metrics };
  }

  it('become a bare 500 server_error: no message, no stack, logged with the stack and request id', async () => {
    const { app, lines, metrics } = appThrowing(() => new TypeError("Cannot read properties of undefined (reading 'clientSecret')"));
    const response = await request(app.callback()).get('/t/x/token');
    expect(response.status).toBe(500);
    expect(response.body).toEqual({ error: 'server_error', error_description: 'internal server error' });
    expect(response.text).not.toMatch(/clientSecret|TypeError|\.ts:\d+/);
    expectSecurityHeaders(response);

    const logged = lines.find((line) => line.msg === 'unhandled error') as { requestId?: string; err?: { stack?: string } } | undefined;
    expect(logged?.requestId).toBe(response.headers['x-request-id']);
    expect(logged?.err?.stack).toContain("reading 'clientSecret'");
    expect(await metrics.registry.metrics()).toContain('http_requests_total{method="GET",route="/t/:tenant/token",status="500"} 1');
  });

  it('a 5xx http-error keeps its message out of the response', async () => {
    const { app } = appThrowing(() => Object.assign(new Error('pool exhausted at db-3.internal'), { status: 500, expose: false }));
    const response = await request(app.callback()).get('/');
    expect(response.body).toEqual({ error: 'server_error', error_description: 'internal server error' });
  });

  it('a client http-error keeps its status and shows its message only when exposed', async () => {
    const exposed = appThrowing(() => Object.assign(new Error('invalid JSON'), { status: 400, expose: true }));
    expect((await request(exposed.app.callback()).get('/')).body).toEqual({ error: 'invalid_request', error_description: 'invalid JSON' });
    const hidden = appThrowing(() => Object.assign(new Error('parser internals'), { status: 415, expose: false }));
    const response = await request(hidden.app.callback()).get('/');
    expect(response.status).toBe(415);
    expect(response.body).toEqual({ error: 'unsupported_media_type', error_description: 'invalid request' });
  });

  it('an AppError keeps its status, code and headers (429 carries Retry-After)', async () => {
    const { app } = appThrowing(() => tooManyRequests(12.2));
    const response = await request(app.callback()).get('/');
    expectJsonError(response, 429, 'too_many_requests');
    expect(response.headers['retry-after']).toBe('13');
    const conflict = appThrowing(() => new AppError(409, 'conflict', 'tenant acme already exists'));
    expect((await request(conflict.app.callback()).get('/')).body).toEqual({
      error: 'conflict',
      error_description: 'tenant acme already exists',
    });
  });
});
