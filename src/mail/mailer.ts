import path from 'node:path';
import type { Transporter } from 'nodemailer';
import pug from 'pug';
import type { Config } from '../config.js';
import { VIEWS_DIR } from '../interaction/assets.js';
import type { Logger } from '../observability/logger.js';

/**
 * Outgoing mail: nodemailer's SMTP transport when SMTP_URL is set, otherwise
 * the dev outbox, which writes each message (links included, so a developer
 * can follow them) to the log at info level. In production the outbox refuses
 * to log contents, because reset and invitation links are credentials: it
 * logs that a message was dropped, and the server warns at start-up that mail
 * is not delivered (see README). Production without SMTP_URL still starts,
 * since a deployment may not use any mail flow.
 */

export interface MailMessage {
  to: string;
  subject: string;
  html: string;
  text: string;
}

export interface Mailer {
  readonly kind: 'smtp' | 'outbox';
  /** Delivers now; rejects when the transport does. */
  send(message: MailMessage): Promise<void>;
  /**
   * Runs `work` (which usually ends in `send`) after the response, so a page
   * answers in the same time whether or not there was anything to send.
   * Failures are logged, never shown; `idle` waits for everything started.
   */
  later(label: string, work: () => Promise<void>): void;
  idle(): Promise<void>;
  close(): Promise<void>;
}

export interface MailerDeps {
  config: Pick<Config, 'env' | 'smtpUrl' | 'mailFrom'>;
  logger: Logger;
}

/** The SMTP transport, created with the first message: most processes send mail rarely or never. */
interface LazyTransport {
  get(): Promise<Transporter>;
  close(): Promise<void>;
}

function lazyTransport(smtpUrl: string): LazyTransport {
  let transport: Promise<Transporter> | undefined;
  return {
    get() {
      // nodemailer costs ~13 MB of resident memory: loaded on first send, not at start-up (issue 8).
      transport ??= import('nodemailer').then(({ default: nodemailer }) => nodemailer.createTransport(smtpUrl));
      return transport;
    },
    async close() {
      (await transport)?.close();
    },
  };
}

export function createMailer({ config, logger }: MailerDeps): Mailer {
  const transport = config.smtpUrl ? lazyTransport(config.smtpUrl) : null;
  const pending = new Set<Promise<void>>();

  async function deliver(message: MailMessage): Promise<void> {
    if (transport) {
      await (await transport.get()).sendMail({ from: config.mailFrom, ...message });
      return;
    }
    if (config.env === 'production') {
      logger.warn({ subject: message.subject }, 'mail not delivered: SMTP_URL is not set');
      return;
    }
    logger.info(
      { mail: { from: config.mailFrom, to: message.to, subject: message.subject, text: message.text } },
      'dev outbox (set SMTP_URL to deliver mail)',
    );
  }

  return {
    kind: transport ? 'smtp' : 'outbox',
    send: deliver,
    later(label, work) {
      const task = work()
        .catch((error: unknown) => {
          // The error of a transport or a store, never the message: it may hold a link.
          logger.error({ err: error, task: label }, 'background mail task failed');
        })
        .finally(() => pending.delete(task));
      pending.add(task);
    },
    async idle() {
      while (pending.size) await Promise.allSettled([...pending]);
    },
    async close() {
      while (pending.size) await Promise.allSettled([...pending]);
      await transport?.close();
    },
  };
}

// ---------------------------------------------------------------- templates

export type MailTemplate = 'verify-email' | 'reset-password' | 'invite' | 'new-device' | 'signup-existing';

const TEMPLATES = ['verify-email', 'reset-password', 'invite', 'new-device', 'signup-existing'] as const;

interface Compiled {
  html: pug.compileTemplate;
  text: pug.compileTemplate;
}

/** Compiled once per process: each is a pure function of its locals. */
const COMPILED: Readonly<Record<MailTemplate, Compiled>> = Object.freeze(
  Object.fromEntries(
    TEMPLATES.map((name) => [
      name,
      {
        html: pug.compileFile(path.join(VIEWS_DIR, 'mail', `${name}.pug`), { basedir: VIEWS_DIR }),
        text: pug.compileFile(path.join(VIEWS_DIR, 'mail', `${name}.text.pug`), { basedir: VIEWS_DIR }),
      },
    ]),
  ) as Record<MailTemplate, Compiled>,
);

/** Renders the HTML body and its plain-text alternative from the same locals. */
export function renderMail(template: MailTemplate, to: string, subject: string, locals: Record<string, unknown>): MailMessage {
  const compiled = COMPILED[template];
  const all = { ...locals, subject };
  return { to, subject, html: compiled.html(all), text: `${compiled.text(all).trim()}\n` };
}
