/**
 * The KSC integration's state store: one SQLite file (`<stateDir>/ksc.sqlite`, WAL mode) with
 * tenants and their integration switch, KSC connections, imported assets, the cache of
 * KUMA* tasks, and task runs. Schema changes are migrations keyed by `PRAGMA user_version`.
 *
 * Secrets are not here (see secrets.ts). Every view this module returns is plain JSON-safe
 * data, fit for the CLI's `--json` and the HTTP API.
 */
import Database from 'better-sqlite3';
import { createHash, randomUUID } from 'node:crypto';
import { makeStateDir, precreatePrivateFile } from '../state-dir.js';
import { isIPv4 } from 'node:net';
import { isAbsolute, join, resolve } from 'node:path';
import { normalizePin, DEFAULT_KSC_PORT } from './client.js';
import { KscConflictError, KscInputError, KscNotFoundError } from './errors.js';

export const STORE_FILE = 'ksc.sqlite';
export const DEFAULT_TENANT = 'default';

// ---------------------------------------------------------------------------------------
// Views

export interface Tenant {
  name: string;
  /** The tenant's KSC integration switch (on by default): off stops syncs and task starts. */
  integrationEnabled: boolean;
  createdAt: string;
}

export interface ConnectionTls {
  /** Absolute path of a PEM CA file. */
  caFile?: string;
  /** SHA-256 pin of the server certificate, 64 lowercase hex digits. */
  pinSha256?: string;
  insecure?: boolean;
}

export interface Connection {
  id: string;
  tenant: string;
  name: string;
  /** Normalized `host:port`. */
  url: string;
  disabled: boolean;
  tls: ConnectionTls;
  createdAt: string;
  updatedAt: string;
  lastSync: { at: string; ok: boolean; error?: string; hosts?: number } | null;
}

export interface ConnectionInput {
  tenant?: string;
  name: string;
  url: string;
  disabled?: boolean;
  tls?: ConnectionTls;
}

export type ConnectionPatch = Partial<Omit<ConnectionInput, 'tenant'>>;

export interface AssetProduct {
  product: string;
  version: string;
  displayName?: string;
  build?: string;
}

export type Platform = 'windows' | 'linux' | 'macos' | 'other';

export interface Asset {
  /** Stable cefd asset id: derived from the connection id and KLHST_WKS_HOSTNAME. */
  id: string;
  tenant: string;
  connectionId: string;
  /** KLHST_WKS_HOSTNAME: KSC's host id. */
  kscHostId: string;
  displayName: string | null;
  fqdn: string | null;
  /** Windows domain (KLHST_WKS_WINDOMAIN), used for GetAllTasksOfHost. */
  domain: string | null;
  ips: string[];
  os: string | null;
  platform: Platform;
  group: { id: number | null; name: string | null };
  /** Network Agent installed. */
  nagent: boolean;
  /** KLHST_WKS_LAST_VISIBLE (ISO). */
  lastVisible: string | null;
  products: AssetProduct[];
  firstImportedAt: string;
  lastImportedAt: string;
  archivedAt: string | null;
  status: 'active' | 'archived';
}

/** What an import knows about one host. */
export interface ImportedHost {
  kscHostId: string;
  displayName: string | null;
  fqdn: string | null;
  domain: string | null;
  ips: string[];
  os: string | null;
  platform: Platform;
  groupId: number | null;
  groupName: string | null;
  nagent: boolean;
  lastVisible: string | null;
  /** Undefined keeps the products already stored (e.g. when GetHostProducts failed). */
  products: AssetProduct[] | undefined;
}

export interface CachedTask {
  connectionId: string;
  taskId: string;
  displayName: string;
  taskType: string | null;
  product: string | null;
  version: string | null;
  groupId: number | null;
  /** The platform the task's product runs on, when known from the product name. */
  platform: Platform | null;
  updatedAt: string;
}

export type RunState = 'requested' | 'running' | 'completed' | 'failed';

export interface TaskRun {
  id: number;
  tenant: string;
  connectionId: string;
  assetId: string;
  taskId: string;
  taskName: string;
  hostName: string | null;
  state: RunState;
  /** Last KLPRCI task state from KSC (0-7) and its name. */
  kscState: number | null;
  kscStateName: string | null;
  /** `manual` (CLI/API), `rule` (response rule), `scope` (seen running because RunTask ran the task's whole scope). */
  origin: 'manual' | 'rule' | 'scope';
  rule: string | null;
  requestedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  error: string | null;
}

export const KSC_STATE_NAMES: Record<number, string> = {
  0: 'created',
  1: 'running',
  2: 'paused',
  3: 'failed',
  4: 'completed',
  5: 'failed_timeout',
  6: 'reloading',
  7: 'inactive',
};

// ---------------------------------------------------------------------------------------
// Validation

/** Code points, not UTF-16 units: "1 to 128 Unicode characters". */
export function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function checkName(field: string, what: string, v: unknown): string {
  if (typeof v !== 'string') throw new KscInputError(field, `${what} must be a string`);
  const s = v.normalize('NFC').trim();
  const n = codePointLength(s);
  if (n < 1 || n > 128) throw new KscInputError(field, `${what} must have 1 to 128 characters (has ${n})`);
  if (/\p{Cc}/u.test(s)) throw new KscInputError(field, `${what} must not contain control characters`);
  return s;
}

/** A connection name: 1-128 Unicode characters (code points) after trimming, no control characters. */
export function validateConnectionName(v: unknown): string {
  return checkName('name', 'a connection name', v);
}

export function validateTenantName(v: unknown): string {
  return checkName('tenant', 'a tenant name', v);
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * `hostname:port` or `IPv4:port` (port optional, default 13299), optionally written with
 * `https://` and a trailing `/`. Returns the normalized `host:port` (host lower-cased).
 */
export function normalizeConnectionUrl(v: unknown): string {
  if (typeof v !== 'string') throw new KscInputError('url', 'the URL must be a string');
  const m = /^(?:https:\/\/)?([^:/\s]+)(?::(\d{1,5}))?\/?$/i.exec(v.trim());
  const bad = (why: string): never => {
    throw new KscInputError('url', `the URL "${v}" is not hostname:port or IPv4:port: ${why}`);
  };
  if (m === null) return bad('expected host[:port]');
  const host = m[1]!.toLowerCase();
  const port = m[2] === undefined ? DEFAULT_KSC_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) bad('the port must be 1-65535');
  if (/^[\d.]+$/.test(host)) {
    if (!isIPv4(host)) bad('not a valid IPv4 address');
  } else {
    const h = host.endsWith('.') ? host.slice(0, -1) : host;
    if (h.length > 253 || !h.split('.').every((l) => LABEL.test(l))) bad('not a valid host name');
    if (/^\d+$/.test(h.split('.').at(-1)!)) bad('a host name cannot end with a numeric label');
  }
  return `${host}:${port}`;
}

function normalizeTls(t: ConnectionTls | undefined, base: string): ConnectionTls {
  const out: ConnectionTls = {};
  if (t === undefined) return out;
  if (t.caFile !== undefined && t.caFile !== null && t.caFile !== '') {
    if (typeof t.caFile !== 'string') throw new KscInputError('tls.caFile', 'tls.caFile must be a path');
    out.caFile = isAbsolute(t.caFile) ? t.caFile : resolve(base, t.caFile);
  }
  if (t.pinSha256 !== undefined && t.pinSha256 !== null && t.pinSha256 !== '') out.pinSha256 = normalizePin(t.pinSha256);
  if (t.insecure === true) out.insecure = true;
  return out;
}

/** Stable cefd asset id: a UUID-shaped digest of the connection id and KSC's host id. */
export function assetIdFor(connectionId: string, kscHostId: string): string {
  const h = createHash('sha256').update(`ksc-asset\0${connectionId}\0${kscHostId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ---------------------------------------------------------------------------------------
// Migrations

const MIGRATIONS: string[] = [
  // 1: initial schema
  `
  CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    integration_enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
  );
  CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    tls_ca_file TEXT,
    tls_pin_sha256 TEXT,
    tls_insecure INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_sync_at TEXT,
    last_sync_ok INTEGER,
    last_sync_error TEXT,
    last_sync_hosts INTEGER,
    UNIQUE (tenant, name)
  );
  CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    ksc_host_id TEXT NOT NULL,
    display_name TEXT,
    fqdn TEXT,
    domain TEXT,
    ips TEXT NOT NULL DEFAULT '[]',
    os TEXT,
    platform TEXT NOT NULL DEFAULT 'other',
    group_id INTEGER,
    group_name TEXT,
    nagent INTEGER NOT NULL DEFAULT 0,
    last_visible TEXT,
    products TEXT NOT NULL DEFAULT '[]',
    first_imported_at TEXT NOT NULL,
    last_imported_at TEXT NOT NULL,
    archived_at TEXT,
    UNIQUE (connection_id, ksc_host_id)
  );
  CREATE INDEX assets_tenant ON assets(tenant);
  CREATE TABLE tasks (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    task_type TEXT,
    product TEXT,
    version TEXT,
    group_id INTEGER,
    platform TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (connection_id, task_id)
  );
  CREATE TABLE task_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    asset_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_name TEXT NOT NULL,
    host_name TEXT,
    state TEXT NOT NULL CHECK (state IN ('requested', 'running', 'completed', 'failed')),
    ksc_state INTEGER,
    origin TEXT NOT NULL CHECK (origin IN ('manual', 'rule', 'scope')),
    rule TEXT,
    requested_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL,
    error TEXT
  );
  CREATE INDEX task_runs_task_asset ON task_runs(task_id, asset_id, id);
  CREATE INDEX task_runs_asset ON task_runs(asset_id, id);
  `,
  // 2: task-state events find their device by name without scanning every asset
  `
  CREATE INDEX assets_display_name ON assets(lower(display_name));
  CREATE INDEX assets_fqdn ON assets(lower(fqdn));
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

// ---------------------------------------------------------------------------------------

type Row = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null);

function jsonArray<T>(v: unknown): T[] {
  if (typeof v !== 'string') return [];
  try {
    const a = JSON.parse(v) as unknown;
    return Array.isArray(a) ? (a as T[]) : [];
  } catch {
    return [];
  }
}

function connectionOf(r: Row): Connection {
  const tls: ConnectionTls = {};
  if (typeof r['tls_ca_file'] === 'string') tls.caFile = r['tls_ca_file'];
  if (typeof r['tls_pin_sha256'] === 'string') tls.pinSha256 = r['tls_pin_sha256'];
  if (r['tls_insecure'] === 1) tls.insecure = true;
  const at = str(r['last_sync_at']);
  return {
    id: String(r['id']),
    tenant: String(r['tenant']),
    name: String(r['name']),
    url: String(r['url']),
    disabled: r['disabled'] === 1,
    tls,
    createdAt: String(r['created_at']),
    updatedAt: String(r['updated_at']),
    lastSync:
      at === null
        ? null
        : {
            at,
            ok: r['last_sync_ok'] === 1,
            ...(typeof r['last_sync_error'] === 'string' ? { error: r['last_sync_error'] } : {}),
            ...(typeof r['last_sync_hosts'] === 'number' ? { hosts: r['last_sync_hosts'] } : {}),
          },
  };
}

function assetOf(r: Row): Asset {
  const archivedAt = str(r['archived_at']);
  return {
    id: String(r['id']),
    tenant: String(r['tenant']),
    connectionId: String(r['connection_id']),
    kscHostId: String(r['ksc_host_id']),
    displayName: str(r['display_name']),
    fqdn: str(r['fqdn']),
    domain: str(r['domain']),
    ips: jsonArray<string>(r['ips']),
    os: str(r['os']),
    platform: (str(r['platform']) ?? 'other') as Platform,
    group: { id: num(r['group_id']), name: str(r['group_name']) },
    nagent: r['nagent'] === 1,
    lastVisible: str(r['last_visible']),
    products: jsonArray<AssetProduct>(r['products']),
    firstImportedAt: String(r['first_imported_at']),
    lastImportedAt: String(r['last_imported_at']),
    archivedAt,
    status: archivedAt === null ? 'active' : 'archived',
  };
}

function taskOf(r: Row): CachedTask {
  return {
    connectionId: String(r['connection_id']),
    taskId: String(r['task_id']),
    displayName: String(r['display_name']),
    taskType: str(r['task_type']),
    product: str(r['product']),
    version: str(r['version']),
    groupId: num(r['group_id']),
    platform: str(r['platform']) as Platform | null,
    updatedAt: String(r['updated_at']),
  };
}

function runOf(r: Row): TaskRun {
  const k = num(r['ksc_state']);
  return {
    id: Number(r['id']),
    tenant: String(r['tenant']),
    connectionId: String(r['connection_id']),
    assetId: String(r['asset_id']),
    taskId: String(r['task_id']),
    taskName: String(r['task_name']),
    hostName: str(r['host_name']),
    state: String(r['state']) as RunState,
    kscState: k,
    kscStateName: k === null ? null : (KSC_STATE_NAMES[k] ?? 'unknown'),
    origin: String(r['origin']) as TaskRun['origin'],
    rule: str(r['rule']),
    requestedAt: str(r['requested_at']),
    startedAt: str(r['started_at']),
    finishedAt: str(r['finished_at']),
    updatedAt: String(r['updated_at']),
    error: str(r['error']),
  };
}

export interface StoreOptions {
  /** Clock for tests. */
  now?: () => Date;
  /** Base folder for relative CA file paths (default: the process's cwd). */
  baseDir?: string;
}

export interface AssetFilter {
  tenant?: string;
  connectionId?: string;
  /** Include archived assets (default false). */
  includeArchived?: boolean;
}

export interface RunFilter {
  tenant?: string;
  assetId?: string;
  connectionId?: string;
  taskId?: string;
  /** Only requested/running runs. */
  activeOnly?: boolean;
  /** Newest first; default 100. */
  limit?: number;
}

export class KscStore {
  readonly db: Database.Database;
  readonly path: string;
  private readonly now: () => Date;
  private readonly baseDir: string;
  private localVersion = 0;

  constructor(stateDir: string, o: StoreOptions = {}) {
    makeStateDir(stateDir);
    this.path = join(stateDir, STORE_FILE);
    // SQLite would create it with the umask (0644), and its -wal/-shm files copy that mode.
    precreatePrivateFile(this.path);
    this.now = o.now ?? (() => new Date());
    this.baseDir = o.baseDir ?? process.cwd();
    this.db = new Database(this.path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
    this.ensureTenant(DEFAULT_TENANT);
  }

  private iso(): string {
    return this.now().toISOString();
  }

  /** The store's clock (injectable for tests). */
  currentTime(): Date {
    return this.now();
  }

  private migrate(): void {
    const v = Number(this.db.pragma('user_version', { simple: true }));
    if (v > MIGRATIONS.length) {
      throw new Error(`the KSC state store ${this.path} has schema version ${v}, newer than this cefd knows (${MIGRATIONS.length}); upgrade cefd`);
    }
    for (let i = v; i < MIGRATIONS.length; i++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[i]!);
        this.db.pragma(`user_version = ${i + 1}`);
      })();
    }
  }

  /** Current schema version (`PRAGMA user_version`). */
  schemaVersion(): number {
    return Number(this.db.pragma('user_version', { simple: true }));
  }

  /**
   * Changes whenever assets may have changed, in this process or in another one writing
   * the same file (PRAGMA data_version): cheap to poll for index refreshes.
   */
  changeStamp(): string {
    return `${String(this.db.pragma('data_version', { simple: true }))}:${this.localVersion}`;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // -- tenants -----------------------------------------------------------------------------

  ensureTenant(name: string): Tenant {
    const n = validateTenantName(name);
    this.db.prepare('INSERT OR IGNORE INTO tenants (name, integration_enabled, created_at) VALUES (?, 1, ?)').run(n, this.iso());
    return this.getTenant(n)!;
  }

  getTenant(name: string): Tenant | undefined {
    const r = this.db.prepare('SELECT * FROM tenants WHERE name = ?').get(name) as Row | undefined;
    return r === undefined ? undefined : { name: String(r['name']), integrationEnabled: r['integration_enabled'] === 1, createdAt: String(r['created_at']) };
  }

  listTenants(): Tenant[] {
    return (this.db.prepare('SELECT name FROM tenants ORDER BY name').all() as Row[]).map((r) => this.getTenant(String(r['name']))!);
  }

  /** The tenant's integration switch; creates the tenant if needed. */
  setIntegrationEnabled(tenant: string, enabled: boolean): Tenant {
    const t = this.ensureTenant(tenant);
    this.db.prepare('UPDATE tenants SET integration_enabled = ? WHERE name = ?').run(enabled ? 1 : 0, t.name);
    return this.getTenant(t.name)!;
  }

  // -- connections -------------------------------------------------------------------------

  addConnection(input: ConnectionInput): Connection {
    const tenant = this.ensureTenant(input.tenant ?? DEFAULT_TENANT).name;
    const name = validateConnectionName(input.name);
    const url = normalizeConnectionUrl(input.url);
    const tls = normalizeTls(input.tls, this.baseDir);
    if (this.findConnection(tenant, name) !== undefined) throw new KscConflictError(`tenant "${tenant}" already has a KSC connection named "${name}"`);
    const id = randomUUID();
    const at = this.iso();
    this.db
      .prepare(
        `INSERT INTO connections (id, tenant, name, url, disabled, tls_ca_file, tls_pin_sha256, tls_insecure, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(id, tenant, name, url, input.disabled === true ? 1 : 0, tls.caFile ?? null, tls.pinSha256 ?? null, tls.insecure ? 1 : 0, at, at);
    return this.getConnection(id)!;
  }

  getConnection(id: string): Connection | undefined {
    const r = this.db.prepare('SELECT * FROM connections WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : connectionOf(r);
  }

  findConnection(tenant: string, name: string): Connection | undefined {
    const r = this.db.prepare('SELECT * FROM connections WHERE tenant = ? AND name = ?').get(tenant, name.normalize('NFC').trim()) as Row | undefined;
    return r === undefined ? undefined : connectionOf(r);
  }

  /** A connection by id, or by name within `tenant` (default tenant when omitted). Throws KscNotFoundError. */
  resolveConnection(ref: string, tenant?: string): Connection {
    const c = this.getConnection(ref) ?? this.findConnection(tenant ?? DEFAULT_TENANT, ref);
    if (c === undefined) throw new KscNotFoundError(`no KSC connection "${ref}"${tenant !== undefined ? ` in tenant "${tenant}"` : ''}`);
    return c;
  }

  listConnections(o: { tenant?: string } = {}): Connection[] {
    const rows = (o.tenant === undefined
      ? this.db.prepare('SELECT * FROM connections ORDER BY tenant, name').all()
      : this.db.prepare('SELECT * FROM connections WHERE tenant = ? ORDER BY name').all(o.tenant)) as Row[];
    return rows.map(connectionOf);
  }

  updateConnection(id: string, patch: ConnectionPatch): Connection {
    const c = this.getConnection(id);
    if (c === undefined) throw new KscNotFoundError(`no KSC connection with id ${id}`);
    const name = patch.name !== undefined ? validateConnectionName(patch.name) : c.name;
    const url = patch.url !== undefined ? normalizeConnectionUrl(patch.url) : c.url;
    const tls = patch.tls !== undefined ? normalizeTls(patch.tls, this.baseDir) : c.tls;
    const disabled = patch.disabled !== undefined ? patch.disabled === true : c.disabled;
    if (name !== c.name) {
      const other = this.findConnection(c.tenant, name);
      if (other !== undefined && other.id !== id) throw new KscConflictError(`tenant "${c.tenant}" already has a KSC connection named "${name}"`);
    }
    this.db
      .prepare('UPDATE connections SET name = ?, url = ?, disabled = ?, tls_ca_file = ?, tls_pin_sha256 = ?, tls_insecure = ?, updated_at = ? WHERE id = ?')
      .run(name, url, disabled ? 1 : 0, tls.caFile ?? null, tls.pinSha256 ?? null, tls.insecure ? 1 : 0, this.iso(), id);
    return this.getConnection(id)!;
  }

  /** Deletes the connection with its assets, task cache and task runs. */
  deleteConnection(id: string): boolean {
    const r = this.db.prepare('DELETE FROM connections WHERE id = ?').run(id);
    if (r.changes > 0) this.localVersion++;
    return r.changes > 0;
  }

  recordSync(id: string, r: { ok: boolean; error?: string; hosts?: number }): void {
    this.db
      .prepare('UPDATE connections SET last_sync_at = ?, last_sync_ok = ?, last_sync_error = ?, last_sync_hosts = ? WHERE id = ?')
      .run(this.iso(), r.ok ? 1 : 0, r.error ?? null, r.hosts ?? null, id);
  }

  // -- assets ------------------------------------------------------------------------------

  /**
   * Inserts or updates the asset of `host` under connection `c`. `archived` says whether
   * the host counts as unseen now: an archived asset keeps its first archive time, an
   * active one has none.
   */
  upsertAsset(c: Connection, host: ImportedHost, archived: boolean): { asset: Asset; created: boolean; wasArchived: boolean } {
    const id = assetIdFor(c.id, host.kscHostId);
    const at = this.iso();
    const existing = this.db.prepare('SELECT archived_at, products FROM assets WHERE id = ?').get(id) as Row | undefined;
    const products = host.products !== undefined ? JSON.stringify(host.products) : existing !== undefined ? String(existing['products']) : '[]';
    const archivedAt = archived ? (str(existing?.['archived_at']) ?? at) : null;
    this.db
      .prepare(
        `INSERT INTO assets (id, connection_id, tenant, ksc_host_id, display_name, fqdn, domain, ips, os, platform, group_id, group_name, nagent,
                             last_visible, products, first_imported_at, last_imported_at, archived_at)
         VALUES (@id, @cid, @tenant, @hid, @dn, @fqdn, @domain, @ips, @os, @platform, @gid, @gname, @nagent, @lv, @products, @at, @at, @archived)
         ON CONFLICT(id) DO UPDATE SET display_name = @dn, fqdn = @fqdn, domain = @domain, ips = @ips, os = @os, platform = @platform,
           group_id = @gid, group_name = @gname, nagent = @nagent, last_visible = @lv, products = @products, last_imported_at = @at,
           archived_at = @archived, tenant = @tenant`,
      )
      .run({
        id,
        cid: c.id,
        tenant: c.tenant,
        hid: host.kscHostId,
        dn: host.displayName,
        fqdn: host.fqdn,
        domain: host.domain,
        ips: JSON.stringify(host.ips),
        os: host.os,
        platform: host.platform,
        gid: host.groupId,
        gname: host.groupName,
        nagent: host.nagent ? 1 : 0,
        lv: host.lastVisible,
        products,
        at,
        archived: archivedAt,
      });
    this.localVersion++;
    return { asset: this.getAsset(id)!, created: existing === undefined, wasArchived: str(existing?.['archived_at']) !== null };
  }

  /** Archives active assets of `connectionId` that the import did not return (last imported before `importStartedAt`). */
  archiveMissing(connectionId: string, importStartedAt: string): number {
    const r = this.db
      .prepare('UPDATE assets SET archived_at = ? WHERE connection_id = ? AND archived_at IS NULL AND last_imported_at < ?')
      .run(this.iso(), connectionId, importStartedAt);
    if (r.changes > 0) this.localVersion++;
    return r.changes;
  }

  /** Removes assets archived before `cutoff` (ISO). */
  removeArchivedBefore(connectionId: string, cutoff: string): number {
    const r = this.db.prepare('DELETE FROM assets WHERE connection_id = ? AND archived_at IS NOT NULL AND archived_at < ?').run(connectionId, cutoff);
    if (r.changes > 0) this.localVersion++;
    return r.changes;
  }

  getAsset(id: string): Asset | undefined {
    const r = this.db.prepare('SELECT * FROM assets WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : assetOf(r);
  }

  /**
   * Assets (archived ones too) that may be the host `name`: display name or FQDN equal to it
   * or to its first label, or beginning with `<name>.` or `<first label>.` (index lookups;
   * the caller applies its exact rule).
   */
  findAssetsByName(name: string): Asset[] {
    const h = name.trim().toLowerCase();
    if (h === '') return [];
    const short = h.split('.')[0]!;
    return (
      this.db
        .prepare(
          `SELECT * FROM assets WHERE lower(display_name) IN (@h, @short) OR lower(fqdn) IN (@h, @short)
             OR (lower(fqdn) >= @h || '.' AND lower(fqdn) < @h || '/')
             OR (lower(display_name) >= @short || '.' AND lower(display_name) < @short || '/')`,
        )
        .all({ h, short }) as Row[]
    ).map(assetOf);
  }

  /** Assets (archived ones too) with this IP address. */
  findAssetsByIp(ip: string): Asset[] {
    if (ip === '') return [];
    return (this.db.prepare('SELECT * FROM assets WHERE instr(ips, ?) > 0').all(JSON.stringify(ip)) as Row[]).map(assetOf).filter((a) => a.ips.includes(ip));
  }

  listAssets(f: AssetFilter = {}): Asset[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.tenant !== undefined) {
      where.push('tenant = ?');
      args.push(f.tenant);
    }
    if (f.connectionId !== undefined) {
      where.push('connection_id = ?');
      args.push(f.connectionId);
    }
    if (f.includeArchived !== true) where.push('archived_at IS NULL');
    const sql = `SELECT * FROM assets${where.length > 0 ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY tenant, display_name COLLATE NOCASE, id`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(assetOf);
  }

  // -- task cache --------------------------------------------------------------------------

  replaceTasks(connectionId: string, tasks: Omit<CachedTask, 'connectionId' | 'updatedAt'>[]): CachedTask[] {
    const at = this.iso();
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM tasks WHERE connection_id = ?').run(connectionId);
      const ins = this.db.prepare(
        'INSERT INTO tasks (connection_id, task_id, display_name, task_type, product, version, group_id, platform, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      for (const t of tasks) ins.run(connectionId, t.taskId, t.displayName, t.taskType, t.product, t.version, t.groupId, t.platform, at);
    })();
    return this.listTasks(connectionId);
  }

  listTasks(connectionId: string): CachedTask[] {
    return (this.db.prepare('SELECT * FROM tasks WHERE connection_id = ? ORDER BY display_name COLLATE NOCASE, task_id').all(connectionId) as Row[]).map(taskOf);
  }

  /** Cached tasks with this id, across connections (a task-state event does not say which KSC sent it). */
  findTasksById(taskId: string): CachedTask[] {
    return (this.db.prepare('SELECT * FROM tasks WHERE task_id = ?').all(taskId) as Row[]).map(taskOf);
  }

  // -- task runs ---------------------------------------------------------------------------

  createTaskRun(r: {
    tenant: string;
    connectionId: string;
    assetId: string;
    taskId: string;
    taskName: string;
    hostName?: string | null;
    origin: TaskRun['origin'];
    rule?: string | null;
    state?: RunState;
    kscState?: number | null;
    at?: string;
  }): TaskRun {
    const at = r.at ?? this.iso();
    const state = r.state ?? 'requested';
    const info = this.db
      .prepare(
        `INSERT INTO task_runs (tenant, connection_id, asset_id, task_id, task_name, host_name, state, ksc_state, origin, rule, requested_at, started_at, finished_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.tenant,
        r.connectionId,
        r.assetId,
        r.taskId,
        r.taskName,
        r.hostName ?? null,
        state,
        r.kscState ?? null,
        r.origin,
        r.rule ?? null,
        state === 'requested' ? at : null,
        state === 'running' ? at : null,
        state === 'completed' || state === 'failed' ? at : null,
        this.iso(),
      );
    return this.getTaskRun(Number(info.lastInsertRowid))!;
  }

  updateTaskRun(id: number, p: { state?: RunState; kscState?: number | null; startedAt?: string; finishedAt?: string; error?: string | null }): TaskRun {
    const cur = this.getTaskRun(id);
    if (cur === undefined) throw new KscNotFoundError(`no task run ${id}`);
    this.db
      .prepare('UPDATE task_runs SET state = ?, ksc_state = ?, started_at = ?, finished_at = ?, error = ?, updated_at = ? WHERE id = ?')
      .run(
        p.state ?? cur.state,
        p.kscState !== undefined ? p.kscState : cur.kscState,
        p.startedAt ?? cur.startedAt,
        p.finishedAt ?? cur.finishedAt,
        p.error !== undefined ? p.error : cur.error,
        this.iso(),
        id,
      );
    return this.getTaskRun(id)!;
  }

  getTaskRun(id: number): TaskRun | undefined {
    const r = this.db.prepare('SELECT * FROM task_runs WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : runOf(r);
  }

  listTaskRuns(f: RunFilter = {}): TaskRun[] {
    const where: string[] = [];
    const args: unknown[] = [];
    for (const [col, v] of [
      ['tenant', f.tenant],
      ['asset_id', f.assetId],
      ['connection_id', f.connectionId],
      ['task_id', f.taskId],
    ] as const) {
      if (v !== undefined) {
        where.push(`${col} = ?`);
        args.push(v);
      }
    }
    if (f.activeOnly === true) where.push(`state IN ('requested', 'running')`);
    const sql = `SELECT * FROM task_runs${where.length > 0 ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, f.limit ?? 100) as Row[]).map(runOf);
  }

  /** The newest requested/running run of `taskId` on `assetId`, if any. */
  findOpenRun(taskId: string, assetId: string): TaskRun | undefined {
    const r = this.db
      .prepare(`SELECT * FROM task_runs WHERE task_id = ? AND asset_id = ? AND state IN ('requested', 'running') ORDER BY id DESC LIMIT 1`)
      .get(taskId, assetId) as Row | undefined;
    return r === undefined ? undefined : runOf(r);
  }

  /** The newest run of `taskId` on `assetId`, whatever its state. */
  latestRun(taskId: string, assetId: string): TaskRun | undefined {
    const r = this.db.prepare('SELECT * FROM task_runs WHERE task_id = ? AND asset_id = ? ORDER BY id DESC LIMIT 1').get(taskId, assetId) as Row | undefined;
    return r === undefined ? undefined : runOf(r);
  }

  /**
   * True while a run of `taskId` on `assetId` is requested or running and was updated less
   * than `staleAfterMs` ago (default 6 h: a run whose end event never came stops blocking).
   */
  isRunning(taskId: string, assetId: string, o: { staleAfterMs?: number } = {}): boolean {
    const run = this.findOpenRun(taskId, assetId);
    if (run === undefined) return false;
    const stale = o.staleAfterMs ?? 6 * 3_600_000;
    return this.now().getTime() - Date.parse(run.updatedAt) < stale;
  }

  /** When `taskId` was last requested (or seen starting) on `assetId`. */
  lastStartAt(taskId: string, assetId: string): string | undefined {
    const r = this.db
      .prepare('SELECT MAX(COALESCE(requested_at, started_at)) AS t FROM task_runs WHERE task_id = ? AND asset_id = ?')
      .get(taskId, assetId) as Row | undefined;
    return str(r?.['t']) ?? undefined;
  }

  /** True when `taskId` started on `assetId` less than `cooldownMs` ago. */
  inCooldown(taskId: string, assetId: string, cooldownMs: number): boolean {
    if (cooldownMs <= 0) return false;
    const t = this.lastStartAt(taskId, assetId);
    return t !== undefined && this.now().getTime() - Date.parse(t) < cooldownMs;
  }

  /** Marks requested/running runs not updated for `olderThanMs` as failed ("no task-state event"). */
  expireStaleRuns(olderThanMs: number): number {
    const cutoff = new Date(this.now().getTime() - olderThanMs).toISOString();
    const r = this.db
      .prepare(
        `UPDATE task_runs SET state = 'failed', finished_at = ?, updated_at = ?, error = 'no task-state event from KSC in time'
         WHERE state IN ('requested', 'running') AND updated_at < ?`,
      )
      .run(this.iso(), this.iso(), cutoff);
    return r.changes;
  }
}
