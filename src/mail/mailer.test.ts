import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/logger.js';
import { createMailer, renderMail } from './mailer.js';

/** A logger whose lines land in an array, to read what the outbox wrote. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

const LINK = 'http://localhost:3000/t/default/password/reset?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

function resetMail() {
  return renderMail('reset-password', 'someone@example.com', 'Reset your password at Default', {
    tenantName: 'Default & Co',
    email: 'someone@example.com',
    link: LINK,
    validFor: '30 minutes',
  });
}

describe('mail templates', () => {
  it('render an HTML body and a plain-text alternative with the same link', () => {
    const message = resetMail();
    expect(message.text).toContain(LINK);
    expect(message.text).toContain('Default & Co');
    expect(message.text).not.toMatch(/<[a-z]/i);
    expect(message.html).toContain(`href="${LINK}"`);
    expect(message.html).toContain('Default &amp; Co');
  });
});

describe('the dev outbox (no SMTP_URL)', () => {
  it('logs the whole message, link included, outside production', async () => {
    const { logger, lines } = capturingLogger();
    const mailer = createMailer({ config: { env: 'development', mailFrom: 'no-reply@localhost' }, logger });
    expect(mailer.kind).toBe('outbox');
    await mailer.send(resetMail());
    const line = lines.find((l) => l.msg === 'dev outbox (set SMTP_URL to deliver mail)');
    expect(JSON.stringify(line)).toContain(LINK);
  });

  it('never logs a message body in production', async () => {
    const { logger, lines } = capturingLogger();
    const mailer = createMailer({ config: { env: 'production', mailFrom: 'no-reply@localhost' }, logger });
    await mailer.send(resetMail());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'mail not delivered: SMTP_URL is not set' });
    expect(JSON.stringify(lines)).not.toContain('token=');
  });

  it('runs work after the response, logs its failure without rethrowing, and waits for it on close', async () => {
    const { logger, lines } = capturingLogger();
    const mailer = createMailer({ config: { env: 'test', mailFrom: 'no-reply@localhost' }, logger });
    let finished = false;
    mailer.later('slow', async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      finished = true;
    });
    mailer.later('broken', async () => {
      throw new Error('smtp is down');
    });
    expect(finished).toBe(false);
    await mailer.close();
    expect(finished).toBe(true);
    expect(lines.find((l) => l.task === 'broken')).toMatchObject({ level: 50, msg: 'background mail task failed' });
  });
});
