import path from 'node:path';
import type { Context } from 'koa';
import pug from 'pug';
import { VIEWS_DIR } from './assets.js';
import { type BrandSource, renderTemplate } from './render.js';

/** The self-service pages outside an interaction; compiled once per process like the others. */
const compile = (view: string) => pug.compileFile(path.join(VIEWS_DIR, `${view}.pug`), { basedir: VIEWS_DIR });
const TEMPLATES = Object.freeze({
  forgot: compile('forgot-password'),
  signup: compile('signup'),
  setPassword: compile('set-password'),
  verify: compile('verify-email'),
  notice: compile('notice'),
});

interface FormView {
  csrf: string;
  action: string;
  error?: string;
}

export interface EmailFormView extends FormView {
  email?: string;
}

export function renderForgotPasswordPage(ctx: Context, tenant: BrandSource, view: EmailFormView, status?: number): void {
  renderTemplate(ctx, TEMPLATES.forgot, tenant, 'Reset your password', view, { status });
}

export function renderSignUpPage(ctx: Context, tenant: BrandSource, view: EmailFormView, status?: number): void {
  renderTemplate(ctx, TEMPLATES.signup, tenant, 'Create an account', view, { status });
}

export interface SetPasswordView extends FormView {
  token: string;
  email: string;
  heading: string;
  lead: string;
  button: string;
  minLength: number;
}

export function renderSetPasswordPage(ctx: Context, tenant: BrandSource, view: SetPasswordView, status?: number): void {
  renderTemplate(ctx, TEMPLATES.setPassword, tenant, view.heading, view, { status });
}

export interface VerifyEmailView extends FormView {
  token: string;
  email: string;
}

export function renderVerifyEmailPage(ctx: Context, tenant: BrandSource, view: VerifyEmailView): void {
  renderTemplate(ctx, TEMPLATES.verify, tenant, 'Confirm your email address', view);
}

export interface NoticeView {
  heading: string;
  paragraphs: string[];
  link?: { href: string; label: string };
}

export function renderNoticePage(ctx: Context, tenant: BrandSource, view: NoticeView, status?: number): void {
  renderTemplate(ctx, TEMPLATES.notice, tenant, view.heading, view, { status });
}
