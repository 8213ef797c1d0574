import { z } from 'zod';
import { TENANT_SLUG } from '../tenants/tenants.js';
import type { Route } from './route.js';

/**
 * The OpenAPI 3.1 document of the management API, generated from the route
 * table: the same zod schemas that validate requests describe them here, and
 * every operation names the permission it needs (`x-permission`).
 */

type JsonSchema = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: string;
  info: Record<string, unknown>;
  jsonSchemaDialect: string;
  servers: { url: string }[];
  tags: { name: string }[];
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, unknown>;
    securitySchemes: Record<string, unknown>;
  };
}

export const DIALECT = 'https://json-schema.org/draft/2020-12/schema';
const SCHEMA_REF = (name: string) => `#/components/schemas/${name}`;
const CONVERT = { target: 'draft-2020-12', unrepresentable: 'any', uri: SCHEMA_REF } as const;

const errorSchema = z.object({
  error: z.string().meta({ description: 'machine-readable code, e.g. invalid_request, not_found' }),
  error_description: z.string().meta({ description: 'what went wrong, for people' }),
});

const ERROR_RESPONSES = {
  BadRequest: 'The request is malformed or fails validation (the description names the field).',
  Unauthorized: 'No bearer token, or one that is invalid, expired or revoked.',
  Forbidden: 'The caller lacks the permission the operation needs, or the network policy refuses its address.',
  NotFound: 'No such resource in this tenant (resources of other tenants answer the same).',
  Conflict: 'The resource already exists or its state does not allow the change.',
  PreconditionFailed: 'If-Match named a version that is no longer current.',
  PayloadTooLarge: 'The request body is larger than the server accepts.',
  UnsupportedMediaType: 'Request bodies must be application/json.',
  TooManyRequests: "The tenant's management API quota is used up; retry after Retry-After seconds.",
} as const;

type ErrorResponse = keyof typeof ERROR_RESPONSES;

function errorResponses(): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(ERROR_RESPONSES).map(([name, description]) => [
      name,
      {
        description,
        ...(name === 'TooManyRequests'
          ? { headers: { 'Retry-After': { description: 'seconds to wait', schema: { type: 'integer', minimum: 1 } } } }
          : {}),
        content: { 'application/json': { schema: { $ref: SCHEMA_REF('Error') } } },
      },
    ]),
  );
}

/** Component schemas without `$schema`/`$id`: the document's dialect applies, and refs name the components. */
function asComponent(schema: JsonSchema): JsonSchema {
  const { $schema: _schema, $id: _id, ...rest } = schema;
  return rest;
}

const capitalized = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

interface SchemaNames {
  body: Map<z.ZodType, string>;
  response: Map<z.ZodType, string>;
}

/**
 * Bodies are described as callers write them (`io: input`: defaults make a
 * field optional), responses as the server writes them. Named components keep
 * their names; other schemas are named after their operation.
 */
function componentSchemas(
  routes: readonly Route[],
  named: Record<string, z.ZodType>,
): { schemas: Record<string, JsonSchema>; names: SchemaNames } {
  const inputs = z.registry<{ id: string }>();
  const outputs = z.registry<{ id: string }>();
  const names: SchemaNames = { body: new Map(), response: new Map() };
  const nameOf = new Map<z.ZodType, string>(Object.entries(named).map(([name, schema]) => [schema, name]));
  for (const [name, schema] of Object.entries(named)) outputs.add(schema, { id: name });
  outputs.add(errorSchema, { id: 'Error' });
  for (const route of routes) {
    if (route.body && !names.body.has(route.body)) {
      const name = nameOf.get(route.body) ?? `${capitalized(route.operationId)}Body`;
      if (outputs.has(route.body)) outputs.remove(route.body);
      inputs.add(route.body, { id: name });
      names.body.set(route.body, name);
    }
    if (route.response && !names.response.has(route.response)) {
      const name = nameOf.get(route.response) ?? `${capitalized(route.operationId)}Response`;
      if (!outputs.has(route.response)) outputs.add(route.response, { id: name });
      names.response.set(route.response, name);
    }
  }
  const converted = [z.toJSONSchema(outputs, { ...CONVERT, io: 'output' }), z.toJSONSchema(inputs, { ...CONVERT, io: 'input' })];
  const schemas: Record<string, JsonSchema> = {};
  for (const result of converted) {
    for (const [name, schema] of Object.entries(result.schemas)) schemas[name] = asComponent(schema as JsonSchema);
  }
  return { schemas, names };
}

function inlineSchema(schema: z.ZodType): JsonSchema {
  return asComponent(z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any', io: 'input' }) as JsonSchema);
}

function shapeOf(schema: z.ZodType | undefined): Record<string, z.ZodType> {
  return schema instanceof z.ZodObject ? (schema.shape as Record<string, z.ZodType>) : {};
}

function parameters(route: Route): Record<string, unknown>[] {
  const path = Object.entries(shapeOf(route.params)).map(([name, schema]) => ({
    name,
    in: 'path',
    required: true,
    schema: inlineSchema(schema),
  }));
  const tenant = route.path.includes('{tenant}')
    ? [
        {
          name: 'tenant',
          in: 'path',
          required: true,
          description: 'the tenant slug',
          schema: { type: 'string', pattern: TENANT_SLUG.source },
        },
      ]
    : [];
  const query = Object.entries(shapeOf(route.query)).map(([name, schema]) => ({
    name,
    in: 'query',
    required: !schema.safeParse(undefined).success,
    schema: inlineSchema(schema),
  }));
  return [...tenant, ...path, ...query];
}

function successResponses(route: Route, names: SchemaNames): Record<string, unknown> {
  if (route.response) {
    const name = names.response.get(route.response) ?? 'Error';
    return {
      [String(route.status ?? 200)]: {
        description: route.summary,
        content: { 'application/json': { schema: { $ref: SCHEMA_REF(name) } } },
      },
    };
  }
  if (route.produces) {
    return {
      '200': {
        description: route.summary,
        content: Object.fromEntries(route.produces.map((type) => [type, { schema: { type: 'string' } }])),
      },
    };
  }
  return { '204': { description: `${route.summary} (no content)` } };
}

function errorsOf(route: Route): ErrorResponse[] {
  const errors: ErrorResponse[] = ['Unauthorized', 'Forbidden', 'NotFound', 'TooManyRequests'];
  if (route.params || route.query || route.body) errors.unshift('BadRequest');
  if (route.body) errors.push('PayloadTooLarge', 'UnsupportedMediaType');
  if (route.method !== 'GET') errors.push('Conflict');
  if (route.method === 'PATCH') errors.push('PreconditionFailed');
  return errors;
}

const ERROR_STATUS: Record<ErrorResponse, string> = {
  BadRequest: '400',
  Unauthorized: '401',
  Forbidden: '403',
  NotFound: '404',
  Conflict: '409',
  PreconditionFailed: '412',
  PayloadTooLarge: '413',
  UnsupportedMediaType: '415',
  TooManyRequests: '429',
};

function operation(route: Route, names: SchemaNames): Record<string, unknown> {
  const responses = {
    ...successResponses(route, names),
    ...Object.fromEntries(errorsOf(route).map((error) => [ERROR_STATUS[error], { $ref: `#/components/responses/${error}` }])),
  };
  const bodyName = route.body ? names.body.get(route.body) : undefined;
  return {
    operationId: route.operationId,
    summary: route.summary,
    tags: [route.tag],
    parameters: parameters(route),
    ...(bodyName
      ? {
          requestBody: {
            required: !route.body?.safeParse(undefined).success,
            content: { 'application/json': { schema: { $ref: SCHEMA_REF(bodyName) } } },
          },
        }
      : {}),
    responses,
    security: [{ serviceAccountToken: [] }, { apiKey: [] }],
    'x-permission': route.permission,
    ...(route.platformOnly ? { 'x-platform-admin': true } : {}),
  };
}

export function buildOpenApiDocument(
  routes: readonly Route[],
  { serverUrl, components = {} }: { serverUrl: string; components?: Record<string, z.ZodType> },
): OpenApiDocument {
  const { schemas, names } = componentSchemas(routes, components);
  const paths: OpenApiDocument['paths'] = {};
  for (const route of routes) {
    const item = paths[route.path] ?? {};
    item[route.method.toLowerCase()] = operation(route, names);
    paths[route.path] = item;
  }
  return {
    openapi: '3.1.1',
    info: {
      title: 'Identity provider management API',
      version: '1.0.0',
      description:
        'Tenant-scoped administration. Authenticate with `Authorization: Bearer <token>`: a JWT access token the tenant issued to a service account (client_credentials at the tenant token endpoint, scopes = permissions), or an API key. Each operation names its permission in x-permission. Lists take ?limit=&cursor= and return { data, next_cursor }. Errors are { error, error_description }.',
    },
    jsonSchemaDialect: DIALECT,
    servers: [{ url: serverUrl }],
    tags: [...new Set(routes.map((route) => route.tag))].map((name) => ({ name })),
    paths,
    components: {
      schemas,
      responses: errorResponses(),
      securitySchemes: {
        serviceAccountToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: "An access token from the tenant's token endpoint (client_credentials) for a service account's credentials.",
        },
        apiKey: { type: 'http', scheme: 'bearer', bearerFormat: 'idp_<prefix>_<secret>', description: 'An API key of the tenant.' },
      },
    },
  };
}
