import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { freePort, tempDir } from './processes.js';

/**
 * Private PostgreSQL and Redis servers for the suites that stop them (fault
 * tests): the shared services on 5432/6379 serve every other suite running in
 * parallel, so those are never stopped or restarted. Each server here is a
 * direct child process on a free loopback port with its data in a temporary
 * directory, so stopPrivateServices() can always end it.
 */

const children = new Set<ChildProcess>();

// A worker that dies before its afterAll (a crash, a killed run) must not leave servers behind on the machine.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  // Nobody reads these streams; unread pipes would stall a chatty server.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

/** Kills every private server still running (SIGKILL: nothing in them is worth keeping); call it from afterAll. */
export async function stopPrivateServices(): Promise<void> {
  await Promise.all([...children].map((child) => kill(child, 'SIGKILL')));
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${what} exited with ${child.exitCode ?? child.signalCode} before it was ready`);
    }
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what} was not ready within ${timeoutMs} ms`);
    // Polling a process that is starting.
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---------------------------------------------------------------- where the binaries are

const POSTGRES_ROOT = '/usr/lib/postgresql';

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The newest installed PostgreSQL's bin directory (Debian keeps one per major version). */
function postgresBinDir(): string | undefined {
  if (!existsSync(POSTGRES_ROOT)) return undefined;
  const versions = readdirSync(POSTGRES_ROOT)
    .filter((name) => /^\d+$/.test(name) && existsSync(path.join(POSTGRES_ROOT, name, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(POSTGRES_ROOT, versions[0], 'bin') : undefined;
}

/** Why private servers cannot run here, or undefined when they can. */
export function privateServicesUnavailable(): string | undefined {
  if (!onPath('redis-server')) return 'redis-server is not installed (apt-get install redis-server)';
  if (!postgresBinDir()) return `no PostgreSQL server binaries under ${POSTGRES_ROOT} (apt-get install postgresql)`;
  return undefined;
}

// ---------------------------------------------------------------- Redis

export interface PrivateRedis {
  url: string;
  port: number;
  /** Kills the server as a crash would (SIGKILL); its contents are gone, as it keeps nothing on disk. */
  kill(): Promise<void>;
  /** Starts it again, empty, on the same port, and resolves once it answers PING. */
  start(): Promise<void>;
}

function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setTimeout(2_000, () => socket.destroy());
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) socket.end();
    });
    socket.once('error', () => {});
    socket.once('close', () => resolve(reply.startsWith('+PONG')));
  });
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const binary = onPath('redis-server');
  if (!binary) throw new Error('redis-server is not installed');
  const port = await freePort();
  const dir = await tempDir('redis');
  let child: ChildProcess | undefined;
  const start = async () => {
    // No persistence: a restart comes back empty, like a Redis whose data was lost, which the design must survive.
    child = track(
      spawn(
        binary,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir.path],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    await waitUntil(`redis-server on port ${port}`, () => redisAnswers(port), 30_000, child);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async kill() {
      if (child) await kill(child, 'SIGKILL');
    },
    start,
  };
}

// ---------------------------------------------------------------- PostgreSQL

export interface PrivatePostgres {
  /** The `postgres` database of the cluster, as an admin connection string. */
  url: string;
  port: number;
  /** Fast shutdown (what `pg_ctl stop -m fast` sends): sessions are ended, the data stays. */
  stop(): Promise<void>;
  /** Starts the same cluster again on the same port. */
  start(): Promise<void>;
}

/** uid and gid of `name` from /etc/passwd, to run the server as that user when we are root. */
async function systemUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid && gid) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

function run(binary: string, args: string[], identity: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { ...identity, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(binary)} exited with ${code}\n${output}`))));
  });
}

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * A throwaway PostgreSQL cluster: initdb into a temporary directory, then the
 * server as a child process (not daemonised by pg_ctl, so it cannot outlive
 * the suite unnoticed). PostgreSQL refuses to run as root, so as root both run
 * as the `postgres` system user, owning the directory.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`no PostgreSQL server binaries under ${POSTGRES_ROOT}`);
  const identity: { uid?: number; gid?: number } = {};
  const dir = await tempDir('pg');
  if (process.getuid?.() === 0) {
    const user = await systemUser('postgres');
    if (!user) throw new Error('running as root and there is no postgres system user to run PostgreSQL as');
    Object.assign(identity, user);
    await chown(dir.path, user.uid, user.gid);
  }
  const data = path.join(dir.path, 'data');
  const sockets = path.join(dir.path, 'sockets');
  await mkdir(sockets);
  if (identity.uid !== undefined && identity.gid !== undefined) await chown(sockets, identity.uid, identity.gid);
  // --no-sync and fsync=off: a test cluster trades durability against a crash of the machine for speed.
  await run(
    path.join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'],
    identity,
  );
  const port = await freePort();
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | undefined;
  const start = async () => {
    child = track(
      spawn(
        path.join(bin, 'postgres'),
        [
          '-D',
          data,
          '-p',
          String(port),
          '-k',
          sockets,
          '-c',
          'listen_addresses=127.0.0.1',
          '-c',
          'fsync=off',
          '-c',
          'synchronous_commit=off',
          '-c',
          'full_page_writes=off',
          '-c',
          'shared_buffers=16MB',
          '-c',
          'max_connections=60',
        ],
        { ...identity, stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    await waitUntil(`PostgreSQL on port ${port}`, () => postgresAnswers(url), 60_000, child);
  };
  await start();
  return {
    url,
    port,
    async stop() {
      // SIGINT is PostgreSQL's fast shutdown.
      if (child) await kill(child, 'SIGINT');
    },
    start,
  };
}

// ---------------------------------------------------------------- a database of its own on a server

/** `CREATE DATABASE <prefix>_<random>` on the server of `adminUrl`; drop() removes it, even with sessions still open. */
export async function createDatabase(adminUrl: string, name: string): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  await admin(`CREATE DATABASE "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}
