import request from 'supertest';
import { PERMISSIONS } from '../../src/admin/permissions.js';
import { createApiKey } from '../../src/admin/resources/api-keys.js';
import type { TestApp } from './app.js';

/** The tenant's id by slug. */
export async function tenantId(t: TestApp, slug = 'default'): Promise<string> {
  return (await t.deps.db.prisma.tenant.findUniqueOrThrow({ where: { slug }, select: { id: true } })).id;
}

export interface KeyOptions {
  scopes?: readonly string[];
  platformAdmin?: boolean;
  expiresAt?: Date;
  name?: string;
}

let counter = 0;

/** An API key of tenant `slug`, created as the CLI would (all management permissions unless told otherwise). */
export async function apiKeyFor(t: TestApp, slug = 'default', options: KeyOptions = {}): Promise<{ key: string; id: string }> {
  const id = await tenantId(t, slug);
  counter += 1;
  const created = await createApiKey(
    t.deps.db.prisma,
    id,
    {
      name: options.name ?? `test key ${counter}`,
      scopes: [...(options.scopes ?? PERMISSIONS)],
      platformAdmin: options.platformAdmin,
      expiresAt: options.expiresAt,
      createdBy: 'test',
    },
    t.deps.clock.now(),
    (event, tx) => t.deps.audit.append(id, { actor: { type: 'system', id: 'test' }, ...event }, tx).then(() => undefined),
  );
  return { key: created.key, id: created.apiKey.id };
}

/** supertest bound to the app with a bearer token. */
export function api(t: TestApp, token: string) {
  const agent = request(t.app.callback());
  const auth = (test: request.Test) => test.set('Authorization', `Bearer ${token}`);
  return {
    get: (path: string) => auth(agent.get(`/api/v1${path}`)),
    post: (path: string, body?: object) =>
      body === undefined ? auth(agent.post(`/api/v1${path}`)) : auth(agent.post(`/api/v1${path}`)).send(body),
    put: (path: string, body: object) => auth(agent.put(`/api/v1${path}`)).send(body),
    patch: (path: string, body: object) => auth(agent.patch(`/api/v1${path}`)).send(body),
    delete: (path: string) => auth(agent.delete(`/api/v1${path}`)),
  };
}
