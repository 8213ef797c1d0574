import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
}

/** Running totals the stores keep themselves (store/db.ts, store/kv.ts). */
export interface StoreTotals {
  statements(): number;
  operations(): number;
}

/** A counter whose value is read from `total` at each scrape. */
function mirroredCounter(registry: Registry, name: string, help: string, total: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(total());
    },
  });
}

/** One registry per app instance, so tests can build several apps in one process. */
export function createMetrics(stores?: StoreTotals): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  if (stores) {
    mirroredCounter(registry, 'idp_db_statements_total', 'SQL statements sent to the database', stores.statements);
    mirroredCounter(registry, 'idp_kv_operations_total', 'Operations sent to the KvStore (Redis round trips)', stores.operations);
  }
  return {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}
