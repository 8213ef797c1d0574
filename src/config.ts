import { z } from 'zod';

/**
 * The one reader of process.env. Every option, its default and its meaning
 * live here; the rest of the code receives a frozen Config.
 */

const base64Key = z.string().refine((value) => /^[A-Za-z0-9+/]+={0,2}$/.test(value) && Buffer.from(value, 'base64').length === 32, {
  message: 'must be 32 bytes encoded as base64',
});

const optional = <T extends z.ZodType>(schema: T) => z.preprocess((value) => (value === '' ? undefined : value), schema.optional());

const url = (protocols: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}` },
  );

const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    // Digits only, and empty means unset: z.coerce would read '' as port 0 (a random port) and '0x50' as 80.
    PORT: optional(z.string().regex(/^\d{1,5}$/, 'must be a port number'))
      .transform((value) => Number(value ?? 3000))
      .pipe(z.number().int().min(0).max(65535)),
    // Unset: derived from PORT below, so `PORT=4000 npm start` advertises the port it listens on.
    PUBLIC_URL: optional(
      url(['http:', 'https:'])
        .refine(
          (value) => {
            // Zod runs this even when the URL check failed; that failure is the one to report.
            if (!URL.canParse(value)) return true;
            const parsed = new URL(value);
            return !parsed.search && !parsed.hash && !parsed.username && !parsed.password;
          },
          { message: 'must be a plain base URL, without query, fragment or credentials' },
        )
        .transform((value) => value.replace(/\/+$/, '')),
    ),
    DATABASE_URL: optional(url(['postgres:', 'postgresql:'])),
    REDIS_URL: optional(url(['redis:', 'rediss:'])),
    DATA_DIR: z.string().min(1).default('./data'),
    MASTER_KEY: optional(base64Key),
    MASTER_KEY_PREVIOUS: optional(
      z
        .string()
        .transform((value) =>
          value
            .split(',')
            .map((part) => part.trim())
            .filter(Boolean),
        )
        .pipe(z.array(base64Key)),
    ),
    SMTP_URL: optional(url(['smtp:', 'smtps:'])),
    /** Sender of every mail; defaults to no-reply at the public URL's host. */
    MAIL_FROM: optional(z.string().trim().min(3).max(320)),
    ADMIN_EMAIL: optional(z.email()),
    ADMIN_PASSWORD: optional(z.string().min(8)),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Honour X-Forwarded-* from the reverse proxy in front of the nodes. */
    TRUST_PROXY: z
      .enum(['true', 'false'])
      .default('false')
      .transform((value) => value === 'true'),
    BODY_LIMIT_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(10_000),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production' && !env.MASTER_KEY) {
      ctx.addIssue({ code: 'custom', path: ['MASTER_KEY'], message: 'is required when NODE_ENV=production' });
    }
  });

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly port: number;
  readonly publicUrl: string;
  readonly databaseUrl?: string;
  readonly redisUrl?: string;
  readonly dataDir: string;
  readonly masterKey?: Buffer;
  readonly previousMasterKeys: readonly Buffer[];
  readonly smtpUrl?: string;
  readonly mailFrom: string;
  readonly adminEmail?: string;
  readonly adminPassword?: string;
  readonly logLevel: string;
  readonly trustProxy: boolean;
  readonly bodyLimitBytes: number;
  readonly shutdownGraceMs: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(String(issue?.path[0] ?? 'environment'), issue?.message ?? 'is invalid');
  }
  const e = parsed.data;
  return Object.freeze({
    env: e.NODE_ENV,
    port: e.PORT,
    publicUrl: e.PUBLIC_URL ?? `http://localhost:${e.PORT}`,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    dataDir: e.DATA_DIR,
    masterKey: e.MASTER_KEY ? Buffer.from(e.MASTER_KEY, 'base64') : undefined,
    previousMasterKeys: Object.freeze((e.MASTER_KEY_PREVIOUS ?? []).map((key) => Buffer.from(key, 'base64'))),
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM ?? `no-reply@${new URL(e.PUBLIC_URL ?? 'http://localhost').hostname}`,
    adminEmail: e.ADMIN_EMAIL?.toLowerCase(),
    adminPassword: e.ADMIN_PASSWORD,
    logLevel: e.LOG_LEVEL,
    trustProxy: e.TRUST_PROXY,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
  });
}
