import { systemClock } from './clock.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './observability/logger.js';

async function main(): Promise<void> {
  const config = loadConfig();
  // Loaded after the configuration is known good, so a bad one is reported alone, before any library speaks.
  const { startServer } = await import('./server.js');
  const { DEFAULT_TENANT } = await import('./tenants/first-start.js');
  const logger = createLogger(config.logLevel);
  const running = await startServer(config, logger, systemClock);
  const first = running.firstStart;
  const issuer = `${config.publicUrl}/t/${DEFAULT_TENANT}`;
  if (first.created) {
    const lines = [
      '',
      `  Tenant "${DEFAULT_TENANT}" created. Issuer: ${issuer}`,
      `  Admin user: ${first.adminEmail}`,
      first.generatedPassword
        ? `  Admin password (shown once, store it now): ${first.generatedPassword}`
        : '  Admin password: from ADMIN_PASSWORD',
      `  Sign in at: ${issuer}/account`,
      '',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  logger.info({ url: config.publicUrl, port: running.server.address() }, `listening; sign in at ${issuer}/account`);

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  // One clear line, no stack: configuration and start-up errors are the operator's to fix.
  const message = error instanceof ConfigError ? error.message : `start-up failed: ${(error as Error).message ?? String(error)}`;
  process.stderr.write(`${message}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
});
