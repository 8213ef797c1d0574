import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * PGlite is single-process: a data directory opened twice is corrupted. The
 * server holds this lock while it runs; the CLI checks it and refuses.
 */
export class DataDirInUseError extends Error {
  constructor(
    readonly pid: number,
    dataDir: string,
  ) {
    super(
      `the embedded database in ${dataDir} is in use by the running server (pid ${pid}); stop it first, or set DATABASE_URL to use PostgreSQL`,
    );
    this.name = 'DataDirInUseError';
  }
}

const lockFile = (dataDir: string) => path.resolve(dataDir, 'server.pid');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function holder(dataDir: string): Promise<number | null> {
  const content = await readFile(lockFile(dataDir), 'utf8').catch(() => null);
  const pid = Number(content);
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) ? pid : null;
}

export async function assertDataDirFree(dataDir: string): Promise<void> {
  const pid = await holder(dataDir);
  if (pid) throw new DataDirInUseError(pid, path.resolve(dataDir));
}

/**
 * Takes the lock and returns its release. The file is created exclusively, so
 * of two processes starting at once only one wins; a lock left by a process
 * that is gone is removed and taken again.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(path.resolve(dataDir), { recursive: true, mode: 0o700 });
  for (let attempt = 0; ; attempt += 1) {
    try {
      await writeFile(lockFile(dataDir), String(process.pid), { mode: 0o600, flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
        const pid = await holder(dataDir);
        throw pid ? new DataDirInUseError(pid, path.resolve(dataDir)) : error;
      }
      await assertDataDirFree(dataDir);
      // Stale: its process is gone (or it is our own from an earlier run in this process).
      await unlink(lockFile(dataDir)).catch(() => {});
    }
  }
  return async () => {
    if ((await readFile(lockFile(dataDir), 'utf8').catch(() => '')) === String(process.pid)) await unlink(lockFile(dataDir));
  };
}
