/**
 * Real database servers for the sql source's tests, from Debian's packages (postgresql,
 * mariadb-server; .ci/run installs them): each in a temp folder, on 127.0.0.1 and a free
 * port, stopped and removed by `stop()`. Run as root (CI), PostgreSQL is started as the
 * `postgres` user (it refuses root) and MariaDB drops to `mysql` itself.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './child.js';
import { tempDir } from './temp.js';

export const DB_USER = 'cefd';
export const DB_PASSWORD = 'pw-Ks3cret';
export const DB_NAME = 'kav';

const isRoot = process.getuid?.() === 0;

function uidOf(user: string): { uid: number; gid: number } {
  return { uid: Number(execFileSync('id', ['-u', user]).toString().trim()), gid: Number(execFileSync('id', ['-g', user]).toString().trim()) };
}

/** The command to run `bin` as `user` when we are root (setpriv execs, so the pid is the server's). */
function asUser(user: string | undefined, bin: string, args: string[]): [string, string[]] {
  if (!isRoot || user === undefined) return [bin, args];
  return ['setpriv', [`--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', bin, ...args]];
}

async function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      resolve();
    }, ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Runs a server's start-up; when it fails, the server is stopped and its folder removed
 * before the error goes on (the caller gets no DbServer to stop in its afterAll).
 */
async function startedOrCleaned(dir: string, down: () => Promise<void>, start: () => Promise<void>): Promise<void> {
  try {
    await start();
  } catch (e) {
    await down().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

export interface DbServer {
  kind: 'postgres' | 'mysql';
  port: number;
  /** URL as the cefd config takes it (with the given password). */
  url(password?: string): string;
  /** Stops the server process (the data stays): for "database down". */
  down(): Promise<void>;
  /** Starts it again on the same port and data. */
  up(): Promise<void>;
  /** Runs SQL as the admin user (one statement per call). */
  exec(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
  log(): string;
}

/** The newest PostgreSQL server binaries Debian installed (/usr/lib/postgresql/<major>/bin). */
export function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) throw new Error('PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)');
  const majors = readdirSync(base).filter((d) => existsSync(join(base, d, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
  if (majors.length === 0) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  return join(base, majors[0]!, 'bin');
}

export async function startPostgres(): Promise<DbServer> {
  const bin = postgresBin();
  const dir = tempDir('cefd-pg-');
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, DB_PASSWORD + '\n');
  if (isRoot) {
    const { uid, gid } = uidOf('postgres');
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  const user = isRoot ? 'postgres' : undefined;
  const [c, a] = asUser(user, join(bin, 'initdb'), ['-D', data, '-U', DB_USER, '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
  execFileSync(c, a, { stdio: 'pipe', cwd: dir });
  const port = await freePort();
  let proc: ChildProcess | null = null;
  let out = '';
  const up = async () => {
    const [cmd, args] = asUser(user, join(bin, 'postgres'), ['-D', data, '-k', dir, '-p', String(port), '-h', '127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=30']);
    proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitReady(() => pgExec(port, 'postgres', 'SELECT 1'), () => proc!.exitCode !== null, () => out);
  };
  const down = async () => {
    if (proc === null) return;
    proc.kill('SIGINT');
    await waitExit(proc, 10_000);
    proc = null;
  };
  await startedOrCleaned(dir, down, async () => {
    await up();
    await pgExec(port, 'postgres', `CREATE DATABASE ${DB_NAME}`);
  });
  return {
    kind: 'postgres',
    port,
    url: (pw = DB_PASSWORD) => `postgres://${DB_USER}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${DB_NAME}`,
    down,
    up,
    exec: (sql, params) => pgExec(port, DB_NAME, sql, params),
    stop: async () => {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => out,
  };
}

async function pgExec(port: number, db: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ host: '127.0.0.1', port, user: DB_USER, password: DB_PASSWORD, database: db, connectionTimeoutMillis: 3000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as Record<string, unknown>[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function waitReady(probe: () => Promise<unknown>, dead: () => boolean, log: () => string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await probe();
      return;
    } catch (e) {
      if (dead() || Date.now() > until) throw new Error(`database server did not start: ${(e as Error).message}\n${log().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }
}

/** Debian puts mariadbd in /usr/sbin, which a non-root PATH may lack. */
function sbin(name: string): string {
  return existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : existsSync(`/usr/bin/${name}`) ? `/usr/bin/${name}` : name;
}

export async function startMariadb(): Promise<DbServer> {
  const dir = tempDir('cefd-maria-');
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const user = isRoot ? 'mysql' : (process.env['USER'] ?? 'nobody');
  if (isRoot) {
    const { uid, gid } = uidOf('mysql');
    chownSync(dir, uid, gid);
  }
  execFileSync(sbin('mariadb-install-db'), ['--no-defaults', `--datadir=${data}`, `--user=${user}`, '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'pipe', cwd: dir });
  const port = await freePort();
  let proc: ChildProcess | null = null;
  let out = '';
  const up = async () => {
    proc = spawn(
      sbin('mariadbd'),
      ['--no-defaults', `--datadir=${data}`, `--socket=${join(dir, 'sock')}`, `--pid-file=${join(dir, 'pid')}`, `--port=${port}`, '--bind-address=127.0.0.1', `--user=${user}`, '--skip-log-bin', '--innodb-buffer-pool-size=64M', '--skip-name-resolve', '--innodb-flush-log-at-trx-commit=0'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitReady(() => myExec(port, 'root', '', undefined, 'SELECT 1'), () => proc!.exitCode !== null, () => out);
  };
  const down = async () => {
    if (proc === null) return;
    proc.kill('SIGTERM');
    await waitExit(proc, 20_000);
    proc = null;
  };
  await startedOrCleaned(dir, down, async () => {
    await up();
    await myExec(port, 'root', '', undefined, `CREATE DATABASE ${DB_NAME} CHARACTER SET utf8mb4`);
    await myExec(port, 'root', '', undefined, `CREATE USER '${DB_USER}'@'%' IDENTIFIED BY '${DB_PASSWORD}'`);
    await myExec(port, 'root', '', undefined, `GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'%'`);
  });
  return {
    kind: 'mysql',
    port,
    url: (pw = DB_PASSWORD) => `mysql://${DB_USER}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${DB_NAME}`,
    down,
    up,
    exec: (sql, params) => myExec(port, 'root', '', DB_NAME, sql, params),
    stop: async () => {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => out,
  };
}

async function myExec(port: number, user: string, password: string, db: string | undefined, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const m = (await import('mysql2/promise')).default;
  const c = await m.createConnection({ host: '127.0.0.1', port, user, password, database: db, connectTimeout: 3000, timezone: 'Z' });
  try {
    const [rows] = await c.query(sql, params);
    return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
  } finally {
    await c.end().catch(() => undefined);
  }
}
