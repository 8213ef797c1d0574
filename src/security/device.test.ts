import { randomBytes } from 'node:crypto';
import Koa from 'koa';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimitSubject } from './abuse.js';
import { createDeviceCookies, DEVICE_COOKIE } from './device.js';

const TENANT = { id: '11111111-1111-4111-8111-111111111111', slug: 'acme' };
const OTHER = { id: '22222222-2222-4222-8222-222222222222', slug: 'other' };

/** A tiny app: GET /issue sets the cookie, GET /read says which device id (if any) it verified. */
function deviceApp(masterKey: Buffer, publicUrl = 'http://localhost:3000') {
  const devices = createDeviceCookies({ masterKey, publicUrl });
  const app = new Koa();
  app.use(async (ctx) => {
    const tenant = ctx.query.tenant === 'other' ? OTHER : TENANT;
    ctx.body = { device: ctx.path === '/issue' ? devices.issue(ctx, tenant) : devices.read(ctx, tenant) };
  });
  return app.callback();
}

describe('device cookie', () => {
  const key = randomBytes(32);

  it('is httpOnly, SameSite=Lax, scoped to the tenant path and long-lived; Secure behind https', async () => {
    const plain = await request(deviceApp(key)).get('/issue');
    const cookie = plain.headers['set-cookie']?.[0] ?? '';
    expect(cookie).toMatch(new RegExp(`^${DEVICE_COOKIE}=[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43};`));
    expect(cookie).toContain('path=/t/acme');
    expect(cookie).toContain('httponly');
    expect(cookie).toContain('samesite=lax');
    expect(cookie).not.toContain('secure');
    const expires = Date.parse(/expires=([^;]+)/.exec(cookie)?.[1] ?? '');
    expect((expires - Date.now()) / 86_400_000).toBeGreaterThan(390);
    const secure = await request(deviceApp(key, 'https://id.example.com')).get('/issue');
    expect(secure.headers['set-cookie']?.[0]).toContain('secure');
  });

  it('is recognised when genuine, and keeps its id when issued again', async () => {
    const issued = await request(deviceApp(key)).get('/issue');
    const cookie = (issued.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    const read = await request(deviceApp(key)).get('/read').set('Cookie', cookie);
    expect(read.body.device).toBe(issued.body.device);
    const again = await request(deviceApp(key)).get('/issue').set('Cookie', cookie);
    expect(again.body.device).toBe(issued.body.device);
  });

  it('counts for nothing when forged, tampered with, made with another key or for another tenant', async () => {
    const issued = await request(deviceApp(key)).get('/issue');
    const cookie = (issued.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    const [name, value = ''] = cookie.split('=');
    const [id = '', mac = ''] = value.split('.');
    const tampered = `${name}=${id.slice(0, -1)}${id.endsWith('A') ? 'B' : 'A'}.${mac}`;
    for (const sent of [tampered, `${name}=${id}`, `${name}=${id}.${mac}.x`, `${name}=garbage`]) {
      expect((await request(deviceApp(key)).get('/read').set('Cookie', sent)).body.device).toBeNull();
    }
    expect(
      (
        await request(deviceApp(randomBytes(32)))
          .get('/read')
          .set('Cookie', cookie)
      ).body.device,
    ).toBeNull();
    expect((await request(deviceApp(key)).get('/read?tenant=other').set('Cookie', cookie)).body.device).toBeNull();
  });
});

describe('rateLimitSubject', () => {
  it('counts an IPv4 address as itself and an IPv6 address by its /64', () => {
    expect(rateLimitSubject('203.0.113.9')).toBe('203.0.113.9');
    expect(rateLimitSubject('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(rateLimitSubject('2001:db8:aa:bb:1::1')).toBe(rateLimitSubject('2001:db8:aa:bb:ffff:ffff:ffff:ffff'));
    expect(rateLimitSubject('2001:db8:aa:bb:1::1')).not.toBe(rateLimitSubject('2001:db8:aa:bc::1'));
    expect(rateLimitSubject('')).toBe('unknown');
  });
});
