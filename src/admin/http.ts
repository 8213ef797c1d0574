import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { z } from 'zod';
import { AppError, badRequest } from '../errors.js';

/**
 * The management API's wire conventions, in one place: JSON bodies, opaque
 * cursors, pages of `{ data, next_cursor }`, dates as ISO strings.
 */

const tooLarge = (limit: number) => new AppError(413, 'payload_too_large', `request body exceeds ${limit} bytes`, { Connection: 'close' });

function hasBody(ctx: Context): boolean {
  const length = ctx.get('Content-Length');
  if (ctx.get('Transfer-Encoding')) return true;
  return length !== '' && length !== '0';
}

/**
 * The JSON body of a request, or undefined when it has none. Anything that
 * is not JSON is refused with 415 before a byte is read, a body past `limit`
 * with 413 as soon as it passes it, and malformed JSON with 400.
 */
export async function readJsonBody(ctx: Context, limit: number): Promise<unknown> {
  if (!hasBody(ctx)) return undefined;
  if (!ctx.is('application/json', '+json')) {
    throw new AppError(415, 'unsupported_media_type', 'request bodies must be application/json');
  }
  if (Number(ctx.get('Content-Length') || 0) > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw badRequest('the request body is not valid JSON');
  }
}

/** Describes the first problem zod found, with its path, e.g. `body.scopes.2: unknown permission "x.y"`. */
export function describeZodError(where: string, error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return `${where} is invalid`;
  const path = [where, ...issue.path.map(String)].join('.');
  return `${path}: ${issue.message}`;
}

export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw badRequest(describeZodError(where, result.error));
  return result.data;
}

// ---------------------------------------------------------------- cursors

export interface CursorCodec {
  encode(scope: string, value: string): string;
  /** The value, or a 400 `invalid_cursor` when the cursor was not made by `encode` for this scope. */
  decode(scope: string, cursor: string): string;
}

const CURSOR = /^([A-Za-z0-9_-]{1,256})\.([A-Za-z0-9_-]{22})$/;
const invalidCursor = () => badRequest('cursor is malformed or was not issued for this listing', 'invalid_cursor');

/**
 * Cursors are the last value seen, MACed with a key derived from the master
 * key and bound to the listing (tenant and route): opaque to callers, and a
 * tampered or transplanted cursor is refused instead of silently skipping rows.
 */
export function createCursorCodec(masterKey: Buffer): CursorCodec {
  const key = Buffer.from(hkdfSync('sha256', masterKey, 'idp api cursors', 'cursor mac v1', 32));
  const mac = (scope: string, value: string) => createHmac('sha256', key).update(scope).update('\0').update(value).digest().subarray(0, 16);
  return {
    encode(scope, value) {
      return `${Buffer.from(value, 'utf8').toString('base64url')}.${mac(scope, value).toString('base64url')}`;
    },
    decode(scope, cursor) {
      const match = CURSOR.exec(cursor);
      if (!match) throw invalidCursor();
      const value = Buffer.from(match[1] ?? '', 'base64url').toString('utf8');
      const given = Buffer.from(match[2] ?? '', 'base64url');
      const expected = mac(scope, value);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalidCursor();
      return value;
    },
  };
}

// ---------------------------------------------------------------- shared schemas

export const MAX_PAGE_SIZE = 100;

export const paginationQuery = {
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_PAGE_SIZE)
    .default(50)
    .meta({ description: `page size, 1–${MAX_PAGE_SIZE}` }),
  cursor: z.string().max(400).optional().meta({ description: 'next_cursor of the previous page' }),
};

/** A page of `item`: `{ data, next_cursor }`; next_cursor is null on the last page. */
export function page<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), next_cursor: z.string().nullable() });
}

export const uuidParam = z.uuid({ message: 'must be a UUID' });
export const timestamp = z.iso.datetime();
export const nullableTimestamp = z.iso.datetime().nullable();

export function iso(date: Date): string;
export function iso(date: Date | null): string | null;
export function iso(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}

/** Rows after `cursor`, one more than `limit` to know whether another page follows. */
export function pageOf<Row>(rows: Row[], limit: number, keyOf: (row: Row) => string, encode: (value: string) => string) {
  const data = rows.slice(0, limit);
  const last = data[data.length - 1];
  return { data, next_cursor: rows.length > limit && last !== undefined ? encode(keyOf(last)) : null };
}

/** Maps a unique-constraint violation (Prisma P2002) to 409; anything else passes through. */
export function conflictOnDuplicate(description: string): (error: unknown) => never {
  return (error) => {
    if ((error as { code?: string } | null)?.code === 'P2002') throw new AppError(409, 'conflict', description);
    throw error;
  };
}

/** A short, readable name: trimmed, 1–200 characters, no control characters. */
export const displayName = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]*$/u, { message: 'must not contain control characters' });

/** True when `text` has no control characters (other than line breaks and tabs). */
function withoutControlCharacters(text: string): boolean {
  return [...text].every((ch) => ch === '\n' || ch === '\r' || ch === '\t' || !/\p{Cc}/u.test(ch));
}

export const description = z
  .string()
  .trim()
  .max(1000)
  .refine(withoutControlCharacters, { message: 'must not contain control characters other than line breaks and tabs' });
