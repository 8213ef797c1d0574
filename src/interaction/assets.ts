import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Middleware } from 'koa';

/** pug templates, the stylesheet and the passkey script, shipped beside src/ (the Dockerfile copies them). */
export const VIEWS_DIR = path.resolve(import.meta.dirname, '../../views');

interface Asset {
  body: Buffer;
  type: string;
  version: string;
}

/** Read once: the files are part of the release, so their content and version never change while the process runs. */
function asset(file: string, type: string): Asset {
  const body = readFileSync(path.join(VIEWS_DIR, file));
  return { body, type, version: createHash('sha256').update(body).digest('base64url').slice(0, 16) };
}

const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ['/assets/style.css', asset('style.css', 'text/css; charset=utf-8')],
  // The passkey pages' only script; every other page runs without any (see passkey.pug).
  ['/assets/passkey.js', asset('passkey.js', 'text/javascript; charset=utf-8')],
  // Submits the SAML POST binding's form (src/saml-idp/render.ts, views/saml-post.pug).
  ['/assets/saml-post.js', asset('saml-post.js', 'text/javascript; charset=utf-8')],
]);

/** What pages link to: versioned by content, which is what makes a year-long immutable cache safe. */
function hrefOf(assetPath: string): string {
  const found = ASSETS.get(assetPath);
  if (!found) throw new Error(`unknown asset ${assetPath}`);
  return `${assetPath}?v=${found.version}`;
}

export const STYLESHEET_HREF = hrefOf('/assets/style.css');
export const PASSKEY_SCRIPT_HREF = hrefOf('/assets/passkey.js');
export const SAML_POST_SCRIPT_HREF = hrefOf('/assets/saml-post.js');

/** Serves GET/HEAD of the assets above; everything else goes on to `next`. */
export function assetRoutes(): Middleware {
  return async function serveAsset(ctx, next) {
    const found = ASSETS.get(ctx.path);
    if (!found) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      ctx.body = { error: 'method_not_allowed', error_description: 'use GET' };
      return;
    }
    const etag = `"${found.version}"`;
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    ctx.set('ETag', etag);
    if (ctx.get('If-None-Match') === etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = found.type;
    ctx.body = found.body;
  };
}
