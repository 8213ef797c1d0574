import { Ajv2020 } from 'ajv/dist/2020.js';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { OpenApiDocument } from '../../src/admin/openapi.js';
import { ADMIN_ROUTES } from '../../src/admin/routes.js';
import { api, apiKeyFor } from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

/**
 * The OpenAPI document, checked structurally against the route table (every
 * route, its method, parameters, body, responses, security and permission),
 * its schemas against JSON Schema 2020-12, and real responses against them.
 */

let t: TestApp;
let doc: OpenApiDocument;
const BASE = 'https://idp.test/openapi.json';

type Operation = {
  operationId: string;
  parameters: { name: string; in: string; required: boolean; schema: Record<string, unknown> }[];
  requestBody?: { required: boolean; content: Record<string, { schema: { $ref: string } }> };
  responses: Record<string, { $ref?: string; content?: Record<string, { schema: { $ref?: string } }> }>;
  security: Record<string, string[]>[];
  'x-permission': string | null;
  'x-platform-admin'?: boolean;
};

function operationOf(path: string, method: string): Operation {
  const operation = doc.paths[path]?.[method.toLowerCase()];
  if (!operation) throw new Error(`${method} ${path} is missing from the document`);
  return operation as unknown as Operation;
}

/** Follows a local $ref to the object it names. */
function resolve(ref: string): unknown {
  expect(ref).toMatch(/^#\/components\//);
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc);
}

function ajv() {
  const instance = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  instance.addSchema({ $id: BASE, components: doc.components }, BASE);
  return instance;
}

beforeAll(async () => {
  t = await createTestApp({ seed: true });
  const response = await request(t.app.callback()).get('/api/v1/openapi.json');
  expect(response.status).toBe(200);
  doc = response.body as OpenApiDocument;
});
afterAll(() => t.close());

describe('the OpenAPI document', () => {
  it('is OpenAPI 3.1 served without credentials, with both security schemes', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.jsonSchemaDialect).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(doc.servers).toEqual([{ url: `${t.deps.config.publicUrl}/api/v1` }]);
    expect(doc.components.securitySchemes).toMatchObject({
      serviceAccountToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
      apiKey: { type: 'http', scheme: 'bearer' },
    });
  });

  it('has exactly one operation per route, with unique operation ids', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    const ids = ADMIN_ROUTES.map((r) => r.operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  describe.each(ADMIN_ROUTES.map((route) => [`${route.method} ${route.path}`, route] as const))('%s', (_name, route) => {
    it('documents its permission, security, parameters, body and responses', () => {
      const operation = operationOf(route.path, route.method);
      expect(operation.operationId).toBe(route.operationId);
      expect(operation['x-permission']).toBe(route.permission);
      expect(operation['x-platform-admin'] === true).toBe(route.platformOnly === true);
      expect(operation.security).toEqual([{ serviceAccountToken: [] }, { apiKey: [] }]);

      const pathParams = [...route.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const documented = operation.parameters.filter((p) => p.in === 'path');
      expect(documented.map((p) => p.name).sort()).toEqual([...pathParams].sort());
      for (const parameter of documented) expect(parameter.required).toBe(true);
      const queryNames = route.query instanceof z.ZodObject ? Object.keys(route.query.shape) : [];
      expect(operation.parameters.filter((p) => p.in === 'query').map((p) => p.name)).toEqual(queryNames);

      if (route.body) {
        const ref = operation.requestBody?.content['application/json']?.schema.$ref ?? '';
        expect(resolve(ref)).toBeTypeOf('object');
      } else {
        expect(operation.requestBody).toBeUndefined();
      }

      const success = String(route.status ?? (route.response || route.produces ? 200 : 204));
      expect(Object.keys(operation.responses)).toContain(success);
      if (route.response) {
        const ref = operation.responses[success]?.content?.['application/json']?.schema.$ref ?? '';
        expect(resolve(ref)).toBeTypeOf('object');
      }
      for (const status of ['401', '403', '404', '429']) {
        const ref = operation.responses[status]?.$ref ?? '';
        expect(resolve(ref)).toMatchObject({ content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
      }
      if (route.body || route.query || route.params) expect(operation.responses['400']).toBeDefined();
    });
  });

  it('has component schemas that are valid JSON Schema 2020-12 and whose references all resolve', () => {
    const validator = ajv();
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      expect({ name, valid: validator.validateSchema(schema), errors: validator.errors ?? null }).toEqual({
        name,
        valid: true,
        errors: null,
      });
      // Compiling resolves every $ref the schema makes.
      expect(() => validator.getSchema(`${BASE}#/components/schemas/${name}`)).not.toThrow();
    }
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const operation of Object.values(item) as unknown as Operation[]) {
        for (const parameter of operation.parameters)
          expect({ path, ok: validator.validateSchema(parameter.schema) }).toEqual({ path, ok: true });
      }
    }
  });

  it('describes what the API really answers', async () => {
    const admin = api(t, (await apiKeyFor(t)).key);
    const validator = ajv();
    const check = async (component: string, response: { status: number; body: unknown }) => {
      const validate = validator.getSchema(`${BASE}#/components/schemas/${component}`);
      if (!validate) throw new Error(`no component ${component}`);
      expect({ component, valid: validate(response.body), errors: validate.errors ?? null }).toEqual({
        component,
        valid: true,
        errors: null,
      });
    };
    await check('Caller', await admin.get('/me'));
    await check('UserPage', await admin.get('/tenants/default/users'));
    await check('RolePage', await admin.get('/tenants/default/roles'));
    await check('NetworkPolicy', await admin.get('/tenants/default/network-policy'));
    await check(
      'ServiceAccountCreated',
      await admin.post('/tenants/default/service-accounts', { name: 'doc', scopes: ['users.read'], allowed_ips: ['10.0.0.0/8'] }),
    );
    await check('ApiKeyCreated', await admin.post('/tenants/default/api-keys', { name: 'doc', scopes: ['users.read'] }));
    await check('Secret', await admin.post('/tenants/default/secrets', { name: 'doc', value: 'x' }));
    await check('AuditEventPage', await admin.get('/tenants/default/audit-events?limit=5'));
    await check('Error', await admin.get('/tenants/default/users/not-a-uuid'));
    await check('Tenant', await admin.get('/tenants/default'));
  });

  it('names what request bodies accept', () => {
    const body = doc.components.schemas.ServiceAccountCreate as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(body.properties).sort()).toEqual(['allowed_ips', 'description', 'generate_credentials', 'name', 'scopes']);
    expect(body.required.sort()).toEqual(['name', 'scopes']);
    const limit = operationOf('/tenants/{tenant}/users', 'GET').parameters.find((p) => p.name === 'limit');
    expect(limit?.schema).toMatchObject({ minimum: 1, maximum: 100, default: 50 });
  });
});
