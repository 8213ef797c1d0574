import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyFor } from '../helpers/admin.js';
import { createTestApp, startSecondNode, type TestApp } from '../helpers/app.js';

/**
 * Each node caches which client ids belong to service accounts (and their
 * allowlist and disabled flag) for the token endpoint's guard. Changes made
 * through one node's management API must be enforced by another node that
 * already cached the old answer: the tenant change it publishes drops it.
 */
describe('service account token guard across nodes', () => {
  let t: TestApp;
  let admin: string;
  let nodeA: string;
  let nodeB: { url: string; close(): Promise<void> };
  let accountId: string;
  let credentials: { client_id: string; client_secret: string };

  beforeAll(async () => {
    t = await createTestApp({ seed: true, env: { TRUST_PROXY: 'true' } });
    nodeA = await t.listen();
    admin = (await apiKeyFor(t, 'default', { name: 'admin' })).key;
    nodeB = await startSecondNode(t);

    const created = await manage('POST', '/tenants/default/service-accounts', {
      name: 'deployer',
      scopes: ['users.read'],
      allowed_ips: ['10.0.0.0/8'],
    });
    expect(created.status).toBe(201);
    accountId = String(created.body.id);
    credentials = created.body.credentials as typeof credentials;
  });
  afterAll(async () => {
    await nodeB?.close();
    await t?.close();
  });

  async function manage(method: string, path: string, body?: unknown) {
    const response = await fetch(`${nodeA}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  /** A client_credentials request to node B from `ip`: the status it answered. */
  async function tokenStatusAtB(ip: string): Promise<number> {
    const response = await fetch(`${nodeB.url}/t/default/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${credentials.client_id}:${credentials.client_secret}`).toString('base64')}`,
        'x-forwarded-for': ip,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'users.read' }).toString(),
    });
    await response.arrayBuffer();
    return response.status;
  }

  /** Node B learns of the change through pub/sub: it gets a moment for the message to arrive, no more. */
  async function eventually(check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 2_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('node B kept serving the old answer');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('enforces a disable, a new allowlist and a deletion made on node A', async () => {
    // Node B caches the account as enabled with 10.0.0.0/8.
    expect(await tokenStatusAtB('10.1.2.3')).toBe(200);
    expect(await tokenStatusAtB('192.0.2.7')).toBe(401);

    expect((await manage('PATCH', `/tenants/default/service-accounts/${accountId}`, { disabled: true })).status).toBe(200);
    await eventually(async () => (await tokenStatusAtB('10.1.2.3')) === 401);
    // And it stays refused: nothing re-caches the old answer.
    for (let i = 0; i < 5; i += 1) expect(await tokenStatusAtB('10.1.2.3')).toBe(401);

    expect(
      (await manage('PATCH', `/tenants/default/service-accounts/${accountId}`, { disabled: false, allowed_ips: ['192.0.2.0/24'] })).status,
    ).toBe(200);
    await eventually(async () => (await tokenStatusAtB('192.0.2.7')) === 200);
    expect(await tokenStatusAtB('10.1.2.3')).toBe(401);

    expect((await manage('PATCH', `/tenants/default/service-accounts/${accountId}`, { allowed_ips: [] })).status).toBe(200);
    await eventually(async () => (await tokenStatusAtB('10.1.2.3')) === 200);

    expect((await manage('DELETE', `/tenants/default/service-accounts/${accountId}`)).status).toBe(204);
    await eventually(async () => (await tokenStatusAtB('10.1.2.3')) === 401);
  });
});
