import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type Provider from 'oidc-provider';
import { onTenantChange, type TenantContext } from '../tenants/tenants.js';
import { createTenantProvider, type OidcDeps, type TenantOidc } from './provider.js';

export interface MountedProvider extends TenantOidc {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export interface OidcRegistry {
  get(tenant: TenantContext): Promise<MountedProvider>;
  providerFor(tenant: TenantContext): Promise<Provider>;
  /** Drops this node's instance; `publishTenantChange` does it on every node. */
  evict(tenantId: string): void;
  close(): Promise<void>;
}

const EXPIRED_SWEEP_MS = 10 * 60_000;

/**
 * One oidc-provider per tenant, built on first use and kept in an LRU (an idle
 * instance costs little, building one costs key decryption). A change to a
 * tenant's clients, keys or settings evicts it on every node.
 */
export async function createOidcRegistry(deps: OidcDeps, { max = 1000 }: { max?: number } = {}): Promise<OidcRegistry> {
  // The TTL is a safety net for changes made where no pub/sub reaches (the CLI against PostgreSQL without Redis).
  const cache = new LRUCache<string, Promise<MountedProvider>>({ max, ttl: 5 * 60_000 });
  const unsubscribe = await onTenantChange(deps.kv, (change) => cache.delete(change.tenantId));
  const sweep = setInterval(() => {
    deps.db.prisma.oidcPayload
      .deleteMany({ where: { expiresAt: { lt: new Date(deps.clock.now()) } } })
      .catch((error: unknown) => deps.logger.warn({ err: error }, 'sweeping expired oidc records failed'));
  }, EXPIRED_SWEEP_MS);
  sweep.unref();

  async function build(tenant: TenantContext): Promise<MountedProvider> {
    const oidc = await createTenantProvider(deps, tenant);
    const callback = oidc.provider.callback();
    return {
      ...oidc,
      handle: (req, res) =>
        new Promise<void>((resolve) => {
          res.once('finish', resolve);
          res.once('close', resolve);
          callback(req, res);
        }),
    };
  }

  const registry: OidcRegistry = {
    get(tenant) {
      let entry = cache.get(tenant.id);
      if (!entry) {
        entry = build(tenant);
        cache.set(tenant.id, entry);
        // A failed build (database down, say) must not stay cached.
        entry.catch(() => {
          if (cache.get(tenant.id) === entry) cache.delete(tenant.id);
        });
      }
      return entry;
    },
    async providerFor(tenant) {
      return (await registry.get(tenant)).provider;
    },
    evict(tenantId) {
      cache.delete(tenantId);
    },
    async close() {
      clearInterval(sweep);
      cache.clear();
      await unsubscribe();
    },
  };
  return registry;
}
