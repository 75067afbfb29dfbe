/**
 * Database URLs in the forms KUMA's sql connector takes (docs/reference/ksc-open-api.md §5):
 *
 * - `sqlserver://{user}:{password}@{server:port}/{instance}?database={database}`: the path
 *   is the SQL Server instance name, as in Microsoft's Go driver (go-mssqldb), and a
 *   domain login is written `domain%5Cuser` (`domain\user`, NTLM). With a port the port is
 *   used and the instance name is only reported (tedious takes one or the other), and it
 *   is no part of the database's identity.
 *   Without `database`, KSC's default database `KAV`.
 * - `postgres://` or `postgresql://user:password@host:port/database?sslmode=...`
 * - `mysql://` or `mariadb://user:password@host:port/database?ssl=...`
 *
 * The user and password may also come from the source's own options (and `*_file`
 * secret files); the URL's are used when those are absent (in the userinfo, or as the
 * query's `user id` and `password`, as go-mssqldb reads them). `redacted` is the URL with
 * the password replaced, the only form that may be logged or printed.
 */

import { SENSITIVE_PARAM } from '../../config/redact.js';

export type DriverKind = 'mssql' | 'postgres' | 'mysql';

export interface DbTarget {
  driver: DriverKind;
  host: string;
  port: number;
  /** The URL names the port (else the driver's default). */
  portGiven: boolean;
  /** SQL Server instance name (the URL path), when given. */
  instance?: string;
  database: string;
  user?: string;
  password?: string;
  /** SQL Server: `domain\user` logs in with NTLM. */
  domain?: string;
  /** Query parameters, keys lower-cased. */
  params: Record<string, string>;
  /**
   * Host, port, instance and database: the identity of the database (event ids, state).
   * SQL Server: the database name upper-cased (SQL Server compares names without case), and
   * the instance only without a port (with one, the port is what is connected to).
   */
  identity: string;
  /**
   * The identity earlier versions gave the same URL, when it differs (SQL Server: the
   * database as written, the instance beside a port): a cursor file naming it is this
   * database's (sameDatabase).
   */
  formerIdentity?: string;
  /** The URL without its password. */
  redacted: string;
}

const DEFAULT_PORT: Record<DriverKind, number> = { mssql: 1433, postgres: 5432, mysql: 3306 };

const SCHEMES: Record<string, DriverKind> = {
  'sqlserver:': 'mssql',
  'mssql:': 'mssql',
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
  'mysql:': 'mysql',
  'mariadb:': 'mysql',
};

/**
 * The URL with any password replaced by `***` (also for URLs that do not parse). The user
 * information ends at the LAST `@` (as the URL parser splits it: a password may hold `@`,
 * and `/`, `?` or `#` when a user wrote it unencoded), so everything before that `@` past
 * the user name is hidden; a user part that is not a plain name is hidden whole. An `@`
 * in the query hides more than needed, never less.
 */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([\s\S]*)$/i.exec(url);
  if (m === null) return url.includes('@') ? '***' : url;
  const rest = m[2]!;
  const at = rest.lastIndexOf('@');
  if (at === -1) return redactQuery(url);
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(':');
  if (colon === -1 && !/[/?#]/.test(userinfo)) return redactQuery(url);
  const user = colon === -1 ? '' : userinfo.slice(0, colon);
  const shown = colon !== -1 && !/[/?#]/.test(user) ? `${user}:***` : '***';
  return `${m[1]}${shown}@${redactQuery(rest.slice(at + 1))}`;
}

/**
 * The value of every credential-like query parameter (`password=`, `pwd=`, as go-mssqldb
 * and libpq take them in the query) replaced by `***`, up to the next `&`, `;` or `#`.
 */
function redactQuery(text: string): string {
  const q = text.indexOf('?');
  if (q === -1) return text;
  return text.slice(0, q) + text.slice(q).replace(/([?&;])([^=&;#]*)=([^&;#]*)/g, (all, sep: string, key: string, value: string) => {
    let name = key;
    try {
      name = decodeURIComponent(key.replace(/\+/g, ' '));
    } catch {
      // A key that does not decode is judged as written.
    }
    return value !== '' && SENSITIVE_PARAM.test(name) ? `${sep}${key}=***` : all;
  });
}

/** Parses a database URL; throws an Error whose message never holds the password. */
export function parseDbUrl(url: string): DbTarget {
  const redacted = redactUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not echoed: a URL that does not parse may still hold a password.
    throw new Error('not a URL (expected sqlserver://user:password@server:port/instance?database=KAV, postgres://... or mysql://...)');
  }
  const driver = SCHEMES[u.protocol.toLowerCase()];
  if (driver === undefined) throw new Error(`unsupported scheme ${JSON.stringify(u.protocol)} (expected sqlserver://, postgres:// or mysql://)`);
  if (u.hostname === '') throw new Error(`no server in ${JSON.stringify(redacted)}`);
  const params: Record<string, string> = {};
  for (const [k, v] of u.searchParams) params[k.toLowerCase()] = v;
  let user: string | undefined;
  let password: string | undefined;
  try {
    user = u.username !== '' ? decodeURIComponent(u.username) : undefined;
    password = u.password !== '' ? decodeURIComponent(u.password) : undefined;
  } catch {
    throw new Error(`bad percent-encoding in the user or password of ${JSON.stringify(redacted)}`);
  }
  // go-mssqldb (KUMA's driver) and libpq also take the login from the query.
  if (params['user id'] !== undefined && user === undefined) user = params['user id'];
  if (params['password'] !== undefined && password === undefined) password = params['password'];
  const port = u.port !== '' ? Number(u.port) : DEFAULT_PORT[driver];
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  let path: string;
  try {
    path = decodeURIComponent(u.pathname.replace(/^\/+/, '').replace(/\/+$/, ''));
  } catch {
    throw new Error(`bad percent-encoding in the path of ${JSON.stringify(redacted)}`);
  }
  let instance: string | undefined;
  let database: string;
  if (driver === 'mssql') {
    instance = path !== '' ? path : undefined;
    database = params['database'] ?? params['initial catalog'] ?? 'KAV';
  } else {
    if (path.includes('/')) throw new Error(`the path of ${JSON.stringify(redacted)} must be a database name`);
    database = path !== '' ? path : (params['database'] ?? '');
    if (database === '') throw new Error(`no database in ${JSON.stringify(redacted)} (write it as the path: ${u.protocol}//host:port/database)`);
  }
  let domain: string | undefined;
  if (driver === 'mssql' && user !== undefined && user.includes('\\')) {
    const i = user.indexOf('\\');
    domain = user.slice(0, i);
    user = user.slice(i + 1);
  }
  const base = `${driver}://${host.toLowerCase()}:${port}/`;
  const former = `${base}${instance !== undefined ? `${instance}/` : ''}${database}`;
  const identity = driver === 'mssql' ? `${base}${instance !== undefined && u.port === '' ? `${instance}/` : ''}${database.toUpperCase()}` : former;
  const t: DbTarget = { driver, host, port, portGiven: u.port !== '', instance, database, user, password, domain, params, identity, redacted };
  if (former !== identity) t.formerIdentity = former;
  return t;
}

/**
 * Whether a cursor file's `database` is `t`'s: its identity, or the form an earlier version
 * wrote for the same URL. The host is compared as written: another name for the same server
 * (an alias, an IP address) is another database here (docs/sql-source.md).
 */
export function sameDatabase(t: DbTarget, stored: string): boolean {
  return stored === t.identity || (t.formerIdentity !== undefined && stored === t.formerIdentity);
}
