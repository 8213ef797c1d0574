import type { Context } from 'koa';
import { AppError, badRequest } from '../errors.js';

/** A sign-in or consent form is a few hundred bytes; anything near this is not one of ours. */
export const FORM_LIMIT_BYTES = 64 * 1024;

const FORM_TYPE = 'application/x-www-form-urlencoded';

const tooLarge = () => new AppError(413, 'payload_too_large', 'The form sent more data than this page accepts.', { Connection: 'close' });

/** Reads the body, refusing it as soon as it passes `limit` bytes rather than buffering it all. */
async function readBody(ctx: Context, limit: number): Promise<string> {
  if (Number(ctx.get('Content-Length') || 0) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > limit) throw tooLarge();
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The fields of an urlencoded form post. A field sent twice is refused: our
 * forms never do that, and picking one of two values invites confusion about
 * which was checked.
 */
export async function readForm(ctx: Context, limit = FORM_LIMIT_BYTES): Promise<Record<string, string>> {
  if (!ctx.is(FORM_TYPE)) throw new AppError(415, 'unsupported_media_type', 'The form was not sent the way this page expects.');
  const params = new URLSearchParams(await readBody(ctx, limit));
  const fields = new Map<string, string>();
  for (const [name, value] of params) {
    if (fields.has(name)) throw badRequest('The form could not be read. Go back and try again.');
    fields.set(name, value);
  }
  // fromEntries defines own properties, so a field named __proto__ stays a field.
  return Object.fromEntries(fields);
}
