import path from 'node:path';
import type { Context } from 'koa';
import pug from 'pug';
import { SAML_POST_SCRIPT_HREF, VIEWS_DIR } from '../interaction/assets.js';
import { formActionSource } from '../interaction/csp.js';
import { type BrandSource, renderTemplate } from '../interaction/render.js';

/** Compiled once per process, like the hosted pages' templates. */
const POST_TEMPLATE = pug.compileFile(path.join(VIEWS_DIR, 'saml-post.pug'), { basedir: VIEWS_DIR });

export interface AutoPost {
  /** Where the form posts: a registered ACS or SLO URL, or our own logout step. */
  action: string;
  fields: Record<string, string>;
  heading: string;
  message: string;
}

/**
 * A page whose form the browser posts on arrival (the HTTP-POST binding).
 * Its CSP is the hosted pages' own, widened by exactly two sources: our
 * submit script and the form's target origin.
 */
export function renderAutoPost(ctx: Context, tenant: BrandSource, post: AutoPost): void {
  const { heading, ...locals } = post;
  renderTemplate(
    ctx,
    POST_TEMPLATE,
    tenant,
    heading,
    { ...locals, heading, scriptHref: SAML_POST_SCRIPT_HREF },
    {
      formActions: [formActionSource(post.action)],
      scriptSrc: ["'self'"],
    },
  );
}
