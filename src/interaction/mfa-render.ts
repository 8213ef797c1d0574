import path from 'node:path';
import type { Context } from 'koa';
import pug from 'pug';
import { PASSKEY_SCRIPT_HREF, VIEWS_DIR } from './assets.js';
import { formActionSource } from './csp.js';
import { type BrandSource, renderTemplate } from './render.js';

/** The pages of the second sign-in step; compiled once per process like the others. */
const compile = (view: string) => pug.compileFile(path.join(VIEWS_DIR, `${view}.pug`), { basedir: VIEWS_DIR });
const TEMPLATES = Object.freeze({
  mfa: compile('mfa'),
  enroll: compile('mfa-enroll'),
  recoveryCodes: compile('recovery-codes'),
  passkey: compile('passkey'),
});

/** Form targets of the MFA pages, all under the interaction's path. */
export interface MfaActions {
  mfa: string;
  totpEnroll: string;
  passkeyBegin: string;
  passkey: string;
  passkeyRegisterBegin: string;
  passkeyRegister: string;
  done: string;
  regenerate: string;
  abort: string;
  /** The interaction page itself (GET): where "back" goes. */
  page: string;
}

interface Common {
  csrf: string;
  actions: MfaActions;
  /** The client's redirect URI: the form posts end there after redirects, so the CSP must allow it. */
  redirectUri?: unknown;
  error?: string;
}

const formActionsOf = (redirectUri: unknown) => ({ formActions: [formActionSource(redirectUri)] });

export interface MfaView extends Common {
  email?: string;
  /** Offer "Use a passkey instead". */
  passkey: boolean;
}

export function renderMfaPage(ctx: Context, tenant: BrandSource, view: MfaView, status?: number): void {
  const { redirectUri, ...locals } = view;
  renderTemplate(ctx, TEMPLATES.mfa, tenant, 'Two-step verification', locals, { status, ...formActionsOf(redirectUri) });
}

export interface EnrollView extends Common {
  qrDataUrl: string;
  manualKey: string;
  /** Enrollment is required by the tenant's policy (rather than asked for by the application). */
  required: boolean;
  passkeys: boolean;
}

export function renderEnrollPage(ctx: Context, tenant: BrandSource, view: EnrollView, status?: number): void {
  const { redirectUri, ...locals } = view;
  renderTemplate(ctx, TEMPLATES.enroll, tenant, 'Set up two-step verification', locals, { status, ...formActionsOf(redirectUri) });
}

export interface RecoveryCodesView extends Common {
  /** Shown once, right after they were made. */
  codes?: string[];
  /** They replace an earlier set. */
  replaced?: boolean;
  usedRecoveryCode?: boolean;
  remaining?: number;
}

export function renderRecoveryCodesPage(ctx: Context, tenant: BrandSource, view: RecoveryCodesView): void {
  const { redirectUri, ...locals } = view;
  renderTemplate(
    ctx,
    TEMPLATES.recoveryCodes,
    tenant,
    view.codes ? 'Recovery codes' : 'Two-step verification',
    locals,
    formActionsOf(redirectUri),
  );
}

export interface PasskeyView extends Common {
  ceremony: 'create' | 'get';
  /** WebAuthn options as JSON (base64url binaries), read by /assets/passkey.js. */
  options: string;
  action: string;
  heading: string;
  lead: string;
  button: string;
  backLabel: string;
}

/** The one page kind that runs a script: its CSP adds `script-src 'self'` and nothing else. */
export function renderPasskeyPage(ctx: Context, tenant: BrandSource, view: PasskeyView, status?: number): void {
  const { redirectUri, actions, ...locals } = view;
  renderTemplate(
    ctx,
    TEMPLATES.passkey,
    tenant,
    view.heading,
    { ...locals, backHref: actions.page, scriptHref: PASSKEY_SCRIPT_HREF },
    { status, scriptSrc: ["'self'"], ...formActionsOf(redirectUri) },
  );
}
