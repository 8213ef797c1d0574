import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Middleware } from 'koa';

/** pug templates and the stylesheet, shipped beside src/ (the Dockerfile copies both). */
export const VIEWS_DIR = path.resolve(import.meta.dirname, '../../views');

const STYLESHEET_PATH = '/assets/style.css';

/** Read once: the file is part of the release, so its content and version never change while the process runs. */
const STYLESHEET = readFileSync(path.join(VIEWS_DIR, 'style.css'));
const STYLESHEET_VERSION = createHash('sha256').update(STYLESHEET).digest('base64url').slice(0, 16);

/** What pages link to: versioned by content, which is what makes a year-long immutable cache safe. */
export const STYLESHEET_HREF = `${STYLESHEET_PATH}?v=${STYLESHEET_VERSION}`;

/** Serves GET/HEAD /assets/style.css; everything else goes on to `next`. */
export function assetRoutes(): Middleware {
  const etag = `"${STYLESHEET_VERSION}"`;
  return async function serveStylesheet(ctx, next) {
    if (ctx.path !== STYLESHEET_PATH) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      ctx.body = { error: 'method_not_allowed', error_description: 'use GET' };
      return;
    }
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    ctx.set('ETag', etag);
    if (ctx.get('If-None-Match') === etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = 'text/css; charset=utf-8';
    ctx.body = STYLESHEET;
  };
}
