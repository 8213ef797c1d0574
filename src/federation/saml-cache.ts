import type { CacheItem, CacheProvider } from '@node-saml/node-saml';
import type { Clock } from '../clock.js';
import type { KvStore } from '../store/index.js';

/**
 * The two SAML caches, both in the KvStore so that every node sees them:
 * the IDs of AuthnRequests we sent (a response must answer one of them, once)
 * and the IDs of assertions we accepted (an assertion is accepted once).
 */

/** How long an AuthnRequest may wait for its response: the interaction's own lifetime. */
export const REQUEST_TTL_SECONDS = 600;

const requestKey = (scope: RequestScope, id: string) => `fed:saml:req:${scope.tenantId}:${scope.connectionId}:${id}`;

export interface RequestScope {
  tenantId: string;
  connectionId: string;
}

/**
 * node-saml's CacheProvider over the KvStore, made single-use: the first
 * lookup of an ID consumes it atomically (of two nodes racing with the same
 * response, one wins), and later lookups within this validation see the
 * value remembered here. Use one instance per validation.
 *
 * node-saml checks a request's age against the wall clock
 * (`now < createdAt + requestIdExpirationPeriodMs`), while ours is injected;
 * the value handed back is the creation time moved onto the wall clock, so
 * the age node-saml computes is the age by our clock.
 */
export function createRequestCache(kv: KvStore, clock: Clock, scope: RequestScope): CacheProvider {
  const seen = new Map<string, number>();
  const asWallClock = (createdAt: number) => new Date(Date.now() - (clock.now() - createdAt)).toISOString();
  return {
    async saveAsync(key: string, _value: string): Promise<CacheItem | null> {
      const createdAt = clock.now();
      await kv.set(requestKey(scope, key), String(createdAt), REQUEST_TTL_SECONDS);
      return { value: new Date(createdAt).toISOString(), createdAt };
    },
    async getAsync(key: string): Promise<string | null> {
      let createdAt = seen.get(key);
      if (createdAt === undefined) {
        const stored = await kv.consume(requestKey(scope, key));
        if (stored === null || !/^\d+$/.test(stored)) return null;
        createdAt = Number(stored);
        seen.set(key, createdAt);
      }
      if (clock.now() - createdAt >= REQUEST_TTL_SECONDS * 1000) return null;
      return asWallClock(createdAt);
    },
    async removeAsync(key: string | null): Promise<string | null> {
      if (key === null) return null;
      seen.delete(key);
      await kv.del(requestKey(scope, key));
      return key;
    },
  };
}

/** The clock skew we accept on SAML timestamps (NotBefore, NotOnOrAfter). */
export const CLOCK_SKEW_MS = 2 * 60 * 1000;

/**
 * Records an accepted assertion ID until its NotOnOrAfter (plus the skew we
 * allow) has passed; true the first time, false for a replay, on any node.
 */
export async function firstUseOfAssertion(kv: KvStore, clock: Clock, connectionId: string, assertionId: string, notOnOrAfterMs: number) {
  const ttlSeconds = Math.max(1, Math.ceil((notOnOrAfterMs + CLOCK_SKEW_MS - clock.now()) / 1000));
  return kv.setIfAbsent(`fed:saml:assertion:${connectionId}:${assertionId}`, '1', ttlSeconds);
}
