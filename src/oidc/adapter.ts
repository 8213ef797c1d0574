import { LRUCache } from 'lru-cache';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { AuditLog } from '../audit/audit.js';
import type { Clock } from '../clock.js';
import { sha256 } from '../crypto/random.js';
import type { Prisma, PrismaClient } from '../store/db.js';
import type { KvStore } from '../store/index.js';
import { type AccessTokenVerifier, unverifiedKindOf } from './access-tokens.js';
import { clientMetadataFor } from './clients.js';
import { JWT_HANDLE_PREFIX, oidcRequestContext } from './request-context.js';

/** Models whose loss would sign users out or break refresh: PostgreSQL. Everything else is short-lived: the KvStore. */
export const DURABLE_MODELS = new Set(['Session', 'Grant', 'RefreshToken', 'AccessToken', 'ClientCredentials']);
/** Our access tokens are JWTs: never stored, verified by signature (and denylist) when presented. */
const JWT_MODELS = new Set(['AccessToken', 'ClientCredentials']);
const DENYLIST_TTL_SECONDS = 900;

export interface AdapterDeps {
  prisma: PrismaClient;
  kv: KvStore;
  clock: Clock;
  tenantId: string;
  accessTokens: AccessTokenVerifier;
  audit: AuditLog;
}

/**
 * The value a token or session is known by is its bearer credential, so only
 * its SHA-256 is stored, and it is removed from the stored payload (`jti`).
 */
const storedId = (id: string) => sha256(id);

function withoutJti(payload: AdapterPayload): AdapterPayload {
  const { jti: _jti, ...rest } = payload;
  return rest;
}

export function createAdapterClass(deps: AdapterDeps) {
  return class TenantAdapter implements Adapter {
    private readonly store: ModelStore;

    constructor(readonly name: string) {
      this.store = name === 'Client' ? clientStore(deps) : DURABLE_MODELS.has(name) ? durableStore(deps, name) : kvStore(deps, name);
    }

    upsert(id: string, payload: AdapterPayload, expiresIn: number) {
      return this.store.upsert(id, payload, expiresIn);
    }

    async find(id: string) {
      if (JWT_MODELS.has(this.name) && isJwtLike(id)) return findJwtAccessToken(deps, this.name, id);
      // Introspection and revocation also look a presented token up as a RefreshToken: a handle never is one.
      if (id.startsWith(JWT_HANDLE_PREFIX)) return undefined;
      const payload = await this.store.find(id);
      return payload && { ...payload, jti: id };
    }

    async findByUid(uid: string) {
      const found = await this.store.findByUid(uid);
      return found && { ...found.payload, jti: found.id };
    }

    async findByUserCode(userCode: string) {
      const found = await this.store.findByUserCode(userCode);
      return found && { ...found.payload, jti: found.id };
    }

    async destroy(id: string) {
      // Revoking a JWT access token: oidc-provider passes its jti, which goes on the denylist every node reads.
      if (JWT_MODELS.has(this.name)) {
        await deps.kv.set(denylistKey(deps.tenantId, id), '1', DENYLIST_TTL_SECONDS);
        await deps.audit.append(deps.tenantId, {
          actor: { type: 'client' },
          action: 'oidc.access_token.revoked',
          resource: { type: 'access_token', id },
        });
      }
      await this.store.destroy(id);
    }

    consume(id: string) {
      return this.store.consume(id);
    }

    revokeByGrantId(grantId: string) {
      return this.store.revokeByGrantId(grantId);
    }
  };
}

export const denylistKey = (tenantId: string, jti: string) => `oidc:${tenantId}:denied-jti:${sha256(jti)}`;

function isJwtLike(id: string): boolean {
  return id.startsWith(JWT_HANDLE_PREFIX) || id.split('.').length === 3;
}

async function findJwtAccessToken(deps: AdapterDeps, model: string, idOrHandle: string): Promise<AdapterPayload | undefined> {
  const request = oidcRequestContext.getStore();
  const jwt = idOrHandle.startsWith(JWT_HANDLE_PREFIX) ? request?.jwtHandles.get(idOrHandle) : idOrHandle;
  if (!jwt) return undefined;
  // oidc-provider looks a presented token up as an AccessToken and as ClientCredentials at once: only the model
  // the token claims to be verifies it (signature, denylist), instead of both.
  const kind = unverifiedKindOf(jwt);
  if (kind && kind !== model) return undefined;
  const payload = await deps.accessTokens.payloadOf(jwt);
  if (!payload || payload.kind !== model) return undefined;
  // userinfo refuses any token with an audience; ours always has one (the API), and openid scope suffices there.
  if (request?.route === 'userinfo') return { ...payload, aud: undefined };
  return payload;
}

interface Found {
  id: string;
  payload: AdapterPayload;
}

interface ModelStore {
  upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void>;
  find(id: string): Promise<AdapterPayload | undefined>;
  findByUid(uid: string): Promise<Found | undefined>;
  findByUserCode(userCode: string): Promise<Found | undefined>;
  destroy(id: string): Promise<void>;
  consume(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

const alreadyConsumed = () => new errors.InvalidGrant('grant request is invalid');

interface PayloadRow {
  payload: unknown;
  consumedAt: Date | null;
}

const toPayload = (row: PayloadRow): AdapterPayload => ({
  ...(row.payload as AdapterPayload),
  ...(row.consumedAt ? { consumed: Math.floor(row.consumedAt.getTime() / 1000) } : {}),
});

/** The durable records this request read, or nothing outside a provider request. */
function readThisRequest() {
  return oidcRequestContext.getStore()?.payloads;
}

const readKey = (model: string, id: string) => `${model}:${id}`;

function durableStore({ prisma, clock, tenantId }: AdapterDeps, model: string): ModelStore {
  const key = (id: string) => ({ tenantId_model_id: { tenantId, model, id: storedId(id) } });
  const live = () => ({ OR: [{ expiresAt: null }, { expiresAt: { gt: new Date(clock.now()) } }] });
  const findRow = async (id: string) => {
    const row = await prisma.oidcPayload.findFirst({ where: { tenantId, model, id: storedId(id), ...live() } });
    return row ? toPayload(row) : undefined;
  };
  /**
   * A refresh token and its Grant in one statement: redeeming one always reads
   * both, one after the other. The Grant is left for this request's Grant.find;
   * its row is named by the hash of the token's grantId, computed as storedId does.
   */
  const findRefreshTokenWithGrant = async (id: string) => {
    const now = new Date(clock.now());
    const [row] = await prisma.$queryRaw<(PayloadRow & { grantId: string | null; grant: unknown; grantConsumedAt: Date | null })[]>`
      SELECT t.payload, t."consumedAt", t."grantId", g.payload AS "grant", g."consumedAt" AS "grantConsumedAt"
      FROM "OidcPayload" t
      LEFT JOIN "OidcPayload" g ON g."tenantId" = t."tenantId" AND g.model = 'Grant'
        AND g.id = translate(encode(sha256(convert_to(t."grantId", 'UTF8')), 'base64'), '+/=', '-_')
        AND (g."expiresAt" IS NULL OR g."expiresAt" > ${now})
      WHERE t."tenantId" = ${tenantId}::uuid AND t.model = 'RefreshToken' AND t.id = ${storedId(id)}
        AND (t."expiresAt" IS NULL OR t."expiresAt" > ${now})`;
    if (!row) return undefined;
    if (row.grantId && row.grant) {
      readThisRequest()?.set(
        readKey('Grant', row.grantId),
        Promise.resolve(toPayload({ payload: row.grant, consumedAt: row.grantConsumedAt })),
      );
    }
    return toPayload(row);
  };
  /** Runs a write of record `id`, which this request must then read afresh. */
  const writing = async (id: string, write: () => Promise<void>) => {
    readThisRequest()?.delete(readKey(model, id));
    try {
      await write();
    } finally {
      readThisRequest()?.delete(readKey(model, id));
    }
  };
  // Session lookups by uid need the original id back: the payload keeps it only for sessions, whose id is not a bearer token on its own.
  return {
    async upsert(id, payload, expiresIn) {
      const data = {
        payload: (model === 'Session' ? payload : withoutJti(payload)) as Prisma.InputJsonValue,
        grantId: payload.grantId ?? null,
        uid: payload.uid ?? null,
        userCode: payload.userCode ?? null,
        expiresAt: expiresIn ? new Date(clock.now() + expiresIn * 1000) : null,
      };
      await writing(id, async () => {
        await prisma.oidcPayload.upsert({ where: key(id), create: { tenantId, model, id: storedId(id), ...data }, update: data });
      });
    },
    async find(id) {
      // Read once per request: a refresh token's read has brought its Grant along, and oidc-provider and
      // loadExistingGrant may ask for a Grant or Session again.
      const read = readThisRequest();
      let found = read?.get(readKey(model, id));
      if (!found) {
        found = model === 'RefreshToken' ? findRefreshTokenWithGrant(id) : findRow(id);
        read?.set(readKey(model, id), found);
      }
      const payload = await found;
      // A copy: oidc-provider changes the objects it is given (Grant#clean), and the next read must not see that.
      return payload && structuredClone(payload);
    },
    async findByUid(uid) {
      const row = await prisma.oidcPayload.findFirst({ where: { tenantId, model, uid, ...live() } });
      const payload = row && toPayload(row);
      return payload?.jti ? { id: payload.jti, payload } : undefined;
    },
    async findByUserCode() {
      return undefined;
    },
    async destroy(id) {
      await writing(id, async () => {
        await prisma.oidcPayload.deleteMany({ where: { tenantId, model, id: storedId(id) } });
      });
    },
    async consume(id) {
      await writing(id, async () => {
        // One conditional update: of concurrent redemptions exactly one changes the row.
        const { count } = await prisma.oidcPayload.updateMany({
          where: { tenantId, model, id: storedId(id), consumedAt: null },
          data: { consumedAt: new Date(clock.now()) },
        });
        if (count !== 1) throw alreadyConsumed();
      });
    },
    async revokeByGrantId(grantId) {
      // Whatever this request read may belong to the grant.
      readThisRequest()?.clear();
      try {
        await prisma.oidcPayload.deleteMany({ where: { tenantId, grantId } });
      } finally {
        readThisRequest()?.clear();
      }
    },
  };
}

function kvStore({ kv, tenantId }: AdapterDeps, model: string): ModelStore {
  const key = (id: string) => `oidc:${tenantId}:${model}:${storedId(id)}`;
  const consumedKey = (id: string) => `${key(id)}:consumed`;
  const uidKey = (uid: string) => `oidc:${tenantId}:${model}:uid:${sha256(uid)}`;
  return {
    async upsert(id, payload, expiresIn) {
      const ttl = Math.max(1, expiresIn);
      await kv.set(key(id), JSON.stringify(withoutJti(payload)), ttl);
      if (payload.uid) await kv.set(uidKey(payload.uid), id, ttl);
    },
    async find(id) {
      const [raw, consumed] = await kv.getMany([key(id), consumedKey(id)]);
      if (!raw) return undefined;
      const payload = JSON.parse(raw) as AdapterPayload;
      return consumed ? { ...payload, consumed: Number(consumed) } : payload;
    },
    async findByUid(uid) {
      const id = await kv.get(uidKey(uid));
      const payload = id ? await this.find(id) : undefined;
      return id && payload ? { id, payload } : undefined;
    },
    async findByUserCode() {
      return undefined;
    },
    async destroy(id) {
      await kv.del(key(id), consumedKey(id));
    },
    async consume(id) {
      const first = await kv.setIfAbsent(consumedKey(id), String(Math.floor(Date.now() / 1000)), 600);
      if (!first) throw alreadyConsumed();
    },
    async revokeByGrantId() {
      // Short-lived records of a revoked grant die with it: redeeming them loads the (deleted) Grant and fails.
    },
  };
}

/** Printable ASCII without spaces (RFC 6749 client ids are VSCHAR; ours are base64url). */
const CLIENT_ID = /^[\x21-\x7e]{1,255}$/;

/**
 * How long a node serves a client's metadata without reading it again. Every
 * change to a tenant's clients (CLI, management API) publishes a tenant change
 * that rebuilds the tenant's provider, and with it this cache, on every node;
 * the TTL only bounds staleness should such a message be lost.
 */
const CLIENT_CACHE_TTL_MS = 60_000;
const CLIENT_CACHE_MAX = 1_000;

function clientStore({ prisma, tenantId }: AdapterDeps): ModelStore {
  const readOnly = async () => {
    throw new Error('clients are managed through the management API and CLI');
  };
  // oidc-provider asks the adapter for the client on every request that names one (token, introspection,
  // authorization …): without this, each of them costs a PostgreSQL round trip. Lookups in flight are shared;
  // unknown ids are not kept, so made-up client ids cannot crowd out real ones.
  const cache = new LRUCache<string, Promise<AdapterPayload | undefined>>({ max: CLIENT_CACHE_MAX, ttl: CLIENT_CACHE_TTL_MS });
  const load = async (clientId: string) => {
    const row = await prisma.client.findFirst({ where: { tenantId, clientId } });
    return row ? (clientMetadataFor(row) as AdapterPayload) : undefined;
  };
  return {
    upsert: readOnly,
    async find(clientId) {
      // Client ids come straight from requests; one PostgreSQL cannot store (a NUL byte) is no client, not a 500.
      if (!CLIENT_ID.test(clientId)) return undefined;
      let found = cache.get(clientId);
      if (!found) {
        found = load(clientId);
        cache.set(clientId, found);
        found.then(
          (metadata) => {
            if (!metadata) cache.delete(clientId);
          },
          () => cache.delete(clientId),
        );
      }
      const metadata = await found;
      // A copy: oidc-provider must not be able to change what the next request gets.
      return metadata && structuredClone(metadata);
    },
    findByUid: async () => undefined,
    findByUserCode: async () => undefined,
    destroy: readOnly,
    consume: readOnly,
    revokeByGrantId: async () => {},
  };
}
