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
  /** MAC addresses (`aa:bb:cc:dd:ee:ff`) from KLHST_WKS_MAC_ADDRESSES. */
  macs: string[];
  /** What the Open API says about the device's hardware (see docs/ksc-assets.md). */
  hardware: AssetHardware;
  protection: AssetProtection;
  /** KLHST_WKS_LAST_NAGENT_CONNECTED (ISO): KSC's "Connection time". */
  nagentConnectedAt: string | null;
  /** Owners, from the attribute import. */
  owners: AssetOwner[];
  /** The attribute import (software, patches, vulnerabilities, owners) of this asset. */
  attributes: AssetAttributesState;
}

/**
 * Hardware as far as the Open API gives it: the host attributes of OPEN-API.md §3.1. CPU,
 * RAM and disks have no Open API call there, so they are not imported; the network
 * adapters are known only through their MAC addresses (`Asset.macs`).
 */
export interface AssetHardware {
  /** KLHST_WKS_CTYPE: KSC's computer type code. */
  computerType?: number;
  /** KLHST_WKS_PTYPE: KSC's platform type code. */
  platformType?: number;
  /** KLHST_WKS_OS_VER_MAJOR / _MINOR / KLHST_WKS_OS_BUILD_NUMBER. */
  osVersion?: string;
  osBuild?: number;
  /** KLWNF_OS_IS_SERVER. */
  server?: boolean;
}

export interface AssetProtection {
  /** KLHST_WKS_STATUS_ID: 0 OK, 1 critical, 2 warning. */
  status?: 'ok' | 'critical' | 'warning';
  /** KLHST_WKS_STATUS bit 0x10: real-time protection installed. */
  rtpInstalled?: boolean;
  /** KLHST_WKS_RTP_AV_VERSION. */
  avVersion?: string;
  /** KLHST_WKS_RTP_AV_BASES_TIME (ISO): anti-virus database date. */
  avBasesAt?: string;
  /** KLHST_WKS_LAST_UPDATE (ISO). */
  lastUpdateAt?: string;
  /** KLHST_WKS_LAST_FULLSCAN (ISO). */
  lastFullScanAt?: string;
  /** KLHST_WKS_VIRUS_COUNT. */
  virusCount?: number;
  /** KLHST_WKS_NAG_VERSION. */
  nagentVersion?: string;
}

export interface AssetOwner {
  name: string;
  id?: string;
}

export interface AssetAttributesState {
  /** Last attribute import that succeeded for this asset (ISO), null: never. */
  importedAt: string | null;
  /** Last attempt (ISO). */
  triedAt: string | null;
  /** Why the last attempt failed (the data of the import before is kept). */
  error: string | null;
  software: number;
  patches: number;
  vulnerabilities: number;
}

/** One installed program or patch (InventoryApi.GetHostInvProducts / GetHostInvPatches). */
export interface SoftwareEntry {
  name: string;
  version: string;
  publisher: string;
  /** `YYYY-MM-DD` when KSC gives it. */
  installDate: string | null;
}

/** One vulnerability of a device (KSC vulnerability view through SrvView). */
export interface VulnerabilityEntry {
  /** VulnerabilityId (KSC's id, e.g. `KLA10001`) or strVulnUid. */
  id: string;
  /** SeverityRating: KSC's rating code (see docs/ksc-assets.md). */
  severity: number | null;
  product: string | null;
  url: string | null;
  /** DetectionTime (ISO). */
  detectedAt: string | null;
  /** bIgnore: the administrator ignores it. */
  ignored: boolean;
}

/** The attribute data of one device, as an attribute import replaces it. */
export interface AssetAttributes {
  software: SoftwareEntry[];
  /** Undefined keeps the stored patches (the call is not available or failed). */
  patches?: SoftwareEntry[];
  vulnerabilities: VulnerabilityEntry[];
  /** Undefined keeps the stored owners. */
  owners?: AssetOwner[];
}

export interface AssetDetail {
  asset: Asset;
  software: SoftwareEntry[];
  patches: SoftwareEntry[];
  vulnerabilities: VulnerabilityEntry[];
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
  macs?: string[];
  hardware?: AssetHardware;
  protection?: AssetProtection;
  nagentConnectedAt?: string | null;
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

const NEW_TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The name of a new tenant, however it is made (KscStore.createTenant, or a connection
 * added to a tenant that does not exist yet). `field`: the input field to name in the error.
 */
export function validateNewTenantName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string') throw new KscInputError(field, 'a tenant name must be a string');
  const s = v.trim();
  if (!NEW_TENANT.test(s)) throw new KscInputError(field, `a tenant name must have 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit (got "${s.slice(0, 80)}")`);
  return s;
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

export const MIGRATIONS: readonly string[] = [
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
  // 3: MACs, hardware, protection, Network Agent connection time; the attribute import
  // (software, patches, vulnerabilities, owners). Software and vulnerabilities are
  // dictionaries shared by all devices, referenced by a small integer per asset (seq), so
  // 50,000 devices x 300 programs stay a few hundred MB (docs/ksc-assets.md).
  `
  ALTER TABLE assets ADD COLUMN seq INTEGER;
  UPDATE assets SET seq = rowid;
  CREATE UNIQUE INDEX assets_seq ON assets(seq);
  ALTER TABLE assets ADD COLUMN macs TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE assets ADD COLUMN hardware TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE assets ADD COLUMN protection TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE assets ADD COLUMN nagent_connected TEXT;
  ALTER TABLE assets ADD COLUMN owners TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE assets ADD COLUMN attrs_at TEXT;
  ALTER TABLE assets ADD COLUMN attrs_tried_at TEXT;
  ALTER TABLE assets ADD COLUMN attrs_error TEXT;
  ALTER TABLE assets ADD COLUMN n_software INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE assets ADD COLUMN n_patches INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE assets ADD COLUMN n_vulns INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX assets_attrs ON assets(connection_id, attrs_tried_at);
  CREATE TABLE asset_addrs (
    kind TEXT NOT NULL CHECK (kind IN ('ip', 'mac')),
    value TEXT NOT NULL,
    asset_seq INTEGER NOT NULL REFERENCES assets(seq) ON DELETE CASCADE,
    PRIMARY KEY (kind, value, asset_seq)
  ) WITHOUT ROWID;
  CREATE INDEX asset_addrs_seq ON asset_addrs(asset_seq);
  INSERT OR IGNORE INTO asset_addrs (kind, value, asset_seq) SELECT 'ip', j.value, a.seq FROM assets a, json_each(a.ips) j;
  CREATE TABLE software (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    publisher TEXT NOT NULL,
    UNIQUE (name, version, publisher)
  );
  CREATE TABLE asset_software (
    asset_seq INTEGER NOT NULL REFERENCES assets(seq) ON DELETE CASCADE,
    kind INTEGER NOT NULL,
    software_id INTEGER NOT NULL,
    install_date TEXT,
    PRIMARY KEY (asset_seq, kind, software_id)
  ) WITHOUT ROWID;
  CREATE TABLE vulnerabilities (
    id INTEGER PRIMARY KEY,
    vuln_id TEXT NOT NULL,
    severity INTEGER,
    product TEXT NOT NULL,
    url TEXT NOT NULL,
    UNIQUE (vuln_id, product, url, severity)
  );
  CREATE TABLE asset_vulns (
    asset_seq INTEGER NOT NULL REFERENCES assets(seq) ON DELETE CASCADE,
    vuln INTEGER NOT NULL,
    detected_at TEXT,
    ignored INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_seq, vuln)
  ) WITHOUT ROWID;
  `,
];

/** asset_software.kind */
const SW_APP = 0;
const SW_PATCH = 1;

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

function jsonObject<T>(v: unknown): T {
  if (typeof v !== 'string') return {} as T;
  try {
    const o = JSON.parse(v) as unknown;
    return (o !== null && typeof o === 'object' && !Array.isArray(o) ? o : {}) as T;
  } catch {
    return {} as T;
  }
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
    macs: jsonArray<string>(r['macs']),
    hardware: jsonObject<AssetHardware>(r['hardware']),
    protection: jsonObject<AssetProtection>(r['protection']),
    nagentConnectedAt: str(r['nagent_connected']),
    owners: jsonArray<AssetOwner>(r['owners']),
    attributes: {
      importedAt: str(r['attrs_at']),
      triedAt: str(r['attrs_tried_at']),
      error: str(r['attrs_error']),
      software: num(r['n_software']) ?? 0,
      patches: num(r['n_patches']) ?? 0,
      vulnerabilities: num(r['n_vulns']) ?? 0,
    },
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
    // Each step in a write transaction taken before it reads the version again: the CLI and
    // the daemon opening an old store at the same moment must not both run a step (the second
    // would fail, e.g. "duplicate column name"); the one that waits finds it done.
    for (let i = v; i < MIGRATIONS.length; i++) {
      this.db
        .transaction(() => {
          if (Number(this.db.pragma('user_version', { simple: true })) !== i) return;
          this.db.exec(MIGRATIONS[i]!);
          this.db.pragma(`user_version = ${i + 1}`);
        })
        .immediate();
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

  /**
   * The tenant, made (integration on) when it does not exist. A new tenant's name follows
   * the rules of createTenant (validateNewTenantName); an existing one is found by any name
   * a store of an older cefd may hold.
   */
  ensureTenant(name: string, field = 'tenant'): Tenant {
    const found = this.getTenant(validateTenantName(name));
    if (found !== undefined) return found;
    const n = validateNewTenantName(name, field);
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

  /**
   * A new tenant (`ksc tenants create`, `POST /api/v1/tenants`). Its name is stricter than
   * the names tenants made implicitly by a connection get: 1-64 letters, digits, `.`, `_`
   * or `-`, starting with a letter or digit, so that it never makes a `tenant/name` key of
   * the credential file (secrets.ts) ambiguous. Throws KscConflictError when it exists.
   */
  createTenant(name: unknown, o: { integrationEnabled?: boolean } = {}): Tenant {
    const n = validateNewTenantName(name);
    if (this.getTenant(n) !== undefined) throw new KscConflictError(`tenant "${n}" already exists`);
    this.db.prepare('INSERT INTO tenants (name, integration_enabled, created_at) VALUES (?, ?, ?)').run(n, o.integrationEnabled === false ? 0 : 1, this.iso());
    return this.getTenant(n)!;
  }

  /**
   * Deletes a tenant. With connections it is refused (KscConflictError) unless `force`:
   * then its connections go too, and with them (foreign keys, ON DELETE CASCADE) their
   * assets, task cache, task runs and attribute data. The default tenant cannot be deleted
   * (every open of the store makes it again). Returns what went, for the caller's log line;
   * the caller removes the connections' secrets.
   */
  deleteTenant(name: string, o: { force?: boolean } = {}): { tenant: string; connections: Connection[]; assets: number; taskRuns: number } {
    const t = this.getTenant(name);
    if (t === undefined) throw new KscNotFoundError(`no tenant "${name}"`);
    if (t.name === DEFAULT_TENANT) throw new KscConflictError(`the tenant "${DEFAULT_TENANT}" cannot be deleted`);
    return this.db.transaction(() => {
      const conns = this.listConnections({ tenant: t.name });
      if (conns.length > 0 && o.force !== true) {
        throw new KscConflictError(`tenant "${t.name}" has ${conns.length} KSC connection${conns.length === 1 ? '' : 's'} (${conns.map((c) => c.name).join(', ')}): delete them first, or delete with force to delete them with their assets and task runs`);
      }
      const count = (sql: string): number => Number((this.db.prepare(sql).get(t.name) as Row)['n']);
      const assets = count('SELECT count(*) AS n FROM assets WHERE connection_id IN (SELECT id FROM connections WHERE tenant = ?)');
      const taskRuns = count('SELECT count(*) AS n FROM task_runs WHERE connection_id IN (SELECT id FROM connections WHERE tenant = ?)');
      this.db.prepare('DELETE FROM connections WHERE tenant = ?').run(t.name);
      this.db.prepare('DELETE FROM tenants WHERE name = ?').run(t.name);
      if (conns.length > 0) this.localVersion++;
      return { tenant: t.name, connections: conns, assets, taskRuns };
    })();
  }

  /** The tenant's integration switch. Throws KscNotFoundError when there is no such tenant (create it first). */
  setIntegrationEnabled(tenant: string, enabled: boolean): Tenant {
    const t = this.getTenant(tenant);
    if (t === undefined) throw new KscNotFoundError(`no tenant "${tenant}"`);
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

  /** The connection `id` as `patch` would make it (validated and normalized), without writing it. */
  patchedConnection(id: string, patch: ConnectionPatch): Connection {
    const c = this.getConnection(id);
    if (c === undefined) throw new KscNotFoundError(`no KSC connection with id ${id}`);
    const name = patch.name !== undefined ? validateConnectionName(patch.name) : c.name;
    if (name !== c.name) {
      const other = this.findConnection(c.tenant, name);
      if (other !== undefined && other.id !== id) throw new KscConflictError(`tenant "${c.tenant}" already has a KSC connection named "${name}"`);
    }
    return {
      ...c,
      name,
      url: patch.url !== undefined ? normalizeConnectionUrl(patch.url) : c.url,
      tls: patch.tls !== undefined ? normalizeTls(patch.tls, this.baseDir) : c.tls,
      disabled: patch.disabled !== undefined ? patch.disabled === true : c.disabled,
    };
  }

  updateConnection(id: string, patch: ConnectionPatch): Connection {
    return this.writeConnection(this.patchedConnection(id, patch));
  }

  /** Stores a connection patchedConnection made (its name, url, tls and switch). */
  writeConnection(c: Connection): Connection {
    this.db
      .prepare('UPDATE connections SET name = ?, url = ?, disabled = ?, tls_ca_file = ?, tls_pin_sha256 = ?, tls_insecure = ?, updated_at = ? WHERE id = ?')
      .run(c.name, c.url, c.disabled ? 1 : 0, c.tls.caFile ?? null, c.tls.pinSha256 ?? null, c.tls.insecure ? 1 : 0, this.iso(), c.id);
    return this.getConnection(c.id)!;
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
    const at = this.iso();
    // By KSC's host id, not by the derived id: a merged asset keeps its id under a new host id.
    const existing = this.db.prepare('SELECT * FROM assets WHERE connection_id = ? AND ksc_host_id = ?').get(c.id, host.kscHostId) as Row | undefined;
    let id = existing !== undefined ? String(existing['id']) : assetIdFor(c.id, host.kscHostId);
    // The derived id may belong to an asset that a merge moved to another host id.
    for (let n = 2; existing === undefined && this.db.prepare('SELECT 1 FROM assets WHERE id = ?').get(id) !== undefined; n++) id = assetIdFor(c.id, `${host.kscHostId}#${n}`);
    const keep = (col: string, v: unknown, dflt: string): string => (v !== undefined ? JSON.stringify(v) : existing !== undefined ? String(existing[col]) : dflt);
    const products = keep('products', host.products, '[]');
    const archivedAt = archived ? (str(existing?.['archived_at']) ?? at) : null;
    const macs = host.macs ?? (existing !== undefined ? jsonArray<string>(existing['macs']) : []);
    this.db
      .prepare(
        `INSERT INTO assets (id, connection_id, tenant, ksc_host_id, display_name, fqdn, domain, ips, os, platform, group_id, group_name, nagent,
                             last_visible, products, first_imported_at, last_imported_at, archived_at, seq, macs, hardware, protection, nagent_connected)
         VALUES (@id, @cid, @tenant, @hid, @dn, @fqdn, @domain, @ips, @os, @platform, @gid, @gname, @nagent, @lv, @products, @at, @at, @archived,
                 (SELECT IFNULL(MAX(seq), 0) + 1 FROM assets), @macs, @hw, @prot, @nc)
         ON CONFLICT(id) DO UPDATE SET display_name = @dn, fqdn = @fqdn, domain = @domain, ips = @ips, os = @os, platform = @platform,
           group_id = @gid, group_name = @gname, nagent = @nagent, last_visible = @lv, products = @products, last_imported_at = @at,
           archived_at = @archived, tenant = @tenant, ksc_host_id = @hid, macs = @macs, hardware = @hw, protection = @prot, nagent_connected = @nc`,
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
        macs: JSON.stringify(macs),
        hw: keep('hardware', host.hardware, '{}'),
        prot: keep('protection', host.protection, '{}'),
        nc: host.nagentConnectedAt !== undefined ? host.nagentConnectedAt : (str(existing?.['nagent_connected']) ?? null),
      });
    this.setAddresses(id, host.ips, macs);
    this.localVersion++;
    return { asset: this.getAsset(id)!, created: existing === undefined, wasArchived: str(existing?.['archived_at']) !== null };
  }

  /** Keeps asset_addrs (the IP and MAC lookup table) in step with an asset's lists. */
  private setAddresses(id: string, ips: readonly string[], macs: readonly string[]): void {
    const seq = (this.db.prepare('SELECT seq FROM assets WHERE id = ?').get(id) as Row | undefined)?.['seq'];
    if (seq === undefined) return;
    this.db.prepare('DELETE FROM asset_addrs WHERE asset_seq = ?').run(seq);
    const ins = this.db.prepare('INSERT OR IGNORE INTO asset_addrs (kind, value, asset_seq) VALUES (?, ?, ?)');
    for (const ip of ips) ins.run('ip', ip, seq);
    for (const mac of macs) ins.run('mac', mac, seq);
  }

  /**
   * Assets of `connectionId` that share an IP, a MAC or the FQDN with `keys` (archived ones
   * too), excluding KSC host `exceptHostId`: the candidates of KUMA's merge rule.
   */
  findIdentityCandidates(connectionId: string, keys: { ips: readonly string[]; macs: readonly string[]; fqdn: string | null }, exceptHostId: string): Asset[] {
    const seqs = new Set<number>();
    const q = this.db.prepare('SELECT asset_seq FROM asset_addrs WHERE kind = ? AND value = ?');
    for (const ip of keys.ips) for (const r of q.all('ip', ip) as Row[]) seqs.add(Number(r['asset_seq']));
    for (const m of keys.macs) for (const r of q.all('mac', m) as Row[]) seqs.add(Number(r['asset_seq']));
    const out = new Map<string, Asset>();
    const bySeq = this.db.prepare('SELECT * FROM assets WHERE seq = ? AND connection_id = ? AND ksc_host_id <> ?');
    for (const sq of seqs) {
      const r = bySeq.get(sq, connectionId, exceptHostId) as Row | undefined;
      if (r !== undefined) out.set(String(r['id']), assetOf(r));
    }
    if (keys.fqdn !== null && keys.fqdn !== '') {
      for (const r of this.db.prepare('SELECT * FROM assets WHERE lower(fqdn) = ? AND connection_id = ? AND ksc_host_id <> ?').all(keys.fqdn.toLowerCase(), connectionId, exceptHostId) as Row[]) {
        out.set(String(r['id']), assetOf(r));
      }
    }
    return [...out.values()];
  }

  /**
   * KSC re-created a device under a new host id and KUMA's rule says it is `target`: the
   * target takes the new host id and the new record's data (it keeps its cefd id, first
   * import time, task runs and attribute data); the just-created record is deleted.
   */
  mergeAsset(targetId: string, newId: string): Asset {
    const t = this.db.prepare('SELECT * FROM assets WHERE id = ?').get(targetId) as Row | undefined;
    const n = this.db.prepare('SELECT * FROM assets WHERE id = ?').get(newId) as Row | undefined;
    if (t === undefined || n === undefined) throw new KscNotFoundError(`cannot merge assets ${targetId} and ${newId}: one is missing`);
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM assets WHERE id = ?').run(newId);
      this.db
        .prepare(
          `UPDATE assets SET ksc_host_id = @hid, display_name = @dn, fqdn = @fqdn, domain = @domain, ips = @ips, os = @os, platform = @platform,
             group_id = @gid, group_name = @gname, nagent = @nagent, last_visible = @lv, products = @products, last_imported_at = @at,
             archived_at = @archived, macs = @macs, hardware = @hw, protection = @prot, nagent_connected = @nc WHERE id = @id`,
        )
        .run({
          id: targetId,
          hid: n['ksc_host_id'],
          dn: n['display_name'],
          fqdn: n['fqdn'],
          domain: n['domain'],
          ips: n['ips'],
          os: n['os'],
          platform: n['platform'],
          gid: n['group_id'],
          gname: n['group_name'],
          nagent: n['nagent'],
          lv: n['last_visible'],
          products: n['products'],
          at: n['last_imported_at'],
          archived: n['archived_at'],
          macs: n['macs'],
          hw: n['hardware'],
          prot: n['protection'],
          nc: n['nagent_connected'],
        });
      this.setAddresses(targetId, jsonArray<string>(n['ips']), jsonArray<string>(n['macs']));
    })();
    this.localVersion++;
    return this.getAsset(targetId)!;
  }

  /** Active assets of `mac` (normalized `aa:bb:cc:dd:ee:ff`), archived ones too. */
  findAssetsByMac(mac: string): Asset[] {
    return (this.db.prepare(`SELECT a.* FROM asset_addrs x JOIN assets a ON a.seq = x.asset_seq WHERE x.kind = 'mac' AND x.value = ?`).all(mac) as Row[]).map(assetOf);
  }

  // -- attribute import ------------------------------------------------------------------

  /**
   * Active assets of a connection due for an attribute import (last attempt before
   * `triedBefore`, never tried, or failed last time): failed ones first, then never tried,
   * then least recently tried, so a run stopped by its time budget or a failure resumes
   * where it left off. Only what the import needs
   * (a few dozen bytes per device), so 50,000 devices cost little memory.
   */
  attributeQueue(connectionId: string, o: { triedBefore: string }): { id: string; kscHostId: string; platform: Platform }[] {
    return (
      this.db
        .prepare(
          `SELECT id, ksc_host_id, platform FROM assets WHERE connection_id = ? AND archived_at IS NULL
             AND (attrs_tried_at IS NULL OR attrs_tried_at < ? OR attrs_error IS NOT NULL)
           ORDER BY attrs_error IS NULL, attrs_tried_at IS NOT NULL, attrs_tried_at, seq`,
        )
        .all(connectionId, o.triedBefore) as Row[]
    ).map((r) => ({ id: String(r['id']), kscHostId: String(r['ksc_host_id']), platform: String(r['platform']) as Platform }));
  }

  /** Replaces an asset's software, patches, vulnerabilities and owners in one transaction. */
  replaceAttributes(assetId: string, a: AssetAttributes): void {
    const row = this.db.prepare('SELECT seq FROM assets WHERE id = ?').get(assetId) as Row | undefined;
    if (row === undefined) return;
    const seq = row['seq'];
    const at = this.iso();
    const swId = this.db.prepare('SELECT id FROM software WHERE name = ? AND version = ? AND publisher = ?').pluck();
    const swIns = this.db.prepare('INSERT INTO software (name, version, publisher) VALUES (?, ?, ?)');
    const link = this.db.prepare('INSERT OR REPLACE INTO asset_software (asset_seq, kind, software_id, install_date) VALUES (?, ?, ?, ?)');
    const vId = this.db.prepare('SELECT id FROM vulnerabilities WHERE vuln_id = ? AND product = ? AND url = ? AND severity IS ?').pluck();
    const vIns = this.db.prepare('INSERT INTO vulnerabilities (vuln_id, severity, product, url) VALUES (?, ?, ?, ?)');
    const vLink = this.db.prepare('INSERT OR REPLACE INTO asset_vulns (asset_seq, vuln, detected_at, ignored) VALUES (?, ?, ?, ?)');
    const putSoftware = (kind: number, list: readonly SoftwareEntry[]): void => {
      this.db.prepare('DELETE FROM asset_software WHERE asset_seq = ? AND kind = ?').run(seq, kind);
      for (const e of list) {
        let sid = swId.get(e.name, e.version, e.publisher) as number | bigint | undefined;
        if (sid === undefined) sid = swIns.run(e.name, e.version, e.publisher).lastInsertRowid;
        link.run(seq, kind, sid, e.installDate);
      }
    };
    this.db.transaction(() => {
      putSoftware(SW_APP, a.software);
      if (a.patches !== undefined) putSoftware(SW_PATCH, a.patches);
      this.db.prepare('DELETE FROM asset_vulns WHERE asset_seq = ?').run(seq);
      for (const v of a.vulnerabilities) {
        let vid = vId.get(v.id, v.product ?? '', v.url ?? '', v.severity) as number | bigint | undefined;
        if (vid === undefined) vid = vIns.run(v.id, v.severity, v.product ?? '', v.url ?? '').lastInsertRowid;
        vLink.run(seq, vid, v.detectedAt, v.ignored ? 1 : 0);
      }
      const count = (sql: string): number => Number(this.db.prepare(sql).pluck().get(seq));
      this.db
        .prepare(
          `UPDATE assets SET attrs_at = @at, attrs_tried_at = @at, attrs_error = NULL, n_software = @ns, n_patches = @np, n_vulns = @nv,
             owners = COALESCE(@owners, owners) WHERE seq = @seq`,
        )
        .run({
          at,
          seq,
          ns: count(`SELECT COUNT(*) FROM asset_software WHERE asset_seq = ? AND kind = ${SW_APP}`),
          np: count(`SELECT COUNT(*) FROM asset_software WHERE asset_seq = ? AND kind = ${SW_PATCH}`),
          nv: count('SELECT COUNT(*) FROM asset_vulns WHERE asset_seq = ?'),
          owners: a.owners !== undefined ? JSON.stringify(a.owners) : null,
        });
    })();
  }

  /** Records a failed attribute import of an asset: its data stays as it was. */
  recordAttributeFailure(assetId: string, error: string): void {
    this.db.prepare('UPDATE assets SET attrs_tried_at = ?, attrs_error = ? WHERE id = ?').run(this.iso(), error, assetId);
  }

  /** An asset with its software, patches and vulnerabilities. */
  getAssetDetail(id: string): AssetDetail | undefined {
    const asset = this.getAsset(id);
    if (asset === undefined) return undefined;
    const seq = this.db.prepare('SELECT seq FROM assets WHERE id = ?').pluck().get(id);
    const sw = (kind: number): SoftwareEntry[] =>
      (
        this.db
          .prepare(
            `SELECT s.name, s.version, s.publisher, x.install_date FROM asset_software x JOIN software s ON s.id = x.software_id
             WHERE x.asset_seq = ? AND x.kind = ? ORDER BY s.name COLLATE NOCASE, s.version`,
          )
          .all(seq, kind) as Row[]
      ).map((r) => ({ name: String(r['name']), version: String(r['version']), publisher: String(r['publisher']), installDate: str(r['install_date']) }));
    const vulnerabilities = (
      this.db
        .prepare(
          `SELECT v.vuln_id, v.severity, v.product, v.url, x.detected_at, x.ignored FROM asset_vulns x JOIN vulnerabilities v ON v.id = x.vuln
           WHERE x.asset_seq = ? ORDER BY v.severity DESC, v.vuln_id`,
        )
        .all(seq) as Row[]
    ).map((r) => ({
      id: String(r['vuln_id']),
      severity: num(r['severity']),
      product: str(r['product']) || null,
      url: str(r['url']) || null,
      detectedAt: str(r['detected_at']),
      ignored: r['ignored'] === 1,
    }));
    return { asset, software: sw(SW_APP), patches: sw(SW_PATCH), vulnerabilities };
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
   * The id of the asset that KSC host `kscHostId` of connection `connectionId` is now: not
   * always assetIdFor(connectionId, kscHostId), since an asset keeps its id when it is merged
   * with a device KSC created again (mergeAsset) and a colliding id gets a `#n` (upsertAsset).
   */
  assetIdOfHost(connectionId: string, kscHostId: string): string | undefined {
    const r = this.db.prepare('SELECT id FROM assets WHERE connection_id = ? AND ksc_host_id = ?').get(connectionId, kscHostId) as Row | undefined;
    return r === undefined ? undefined : String(r['id']);
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

  updateTaskRun(id: number, p: { state?: RunState; kscState?: number | null; startedAt?: string; finishedAt?: string | null; error?: string | null }): TaskRun {
    const cur = this.getTaskRun(id);
    if (cur === undefined) throw new KscNotFoundError(`no task run ${id}`);
    this.db
      .prepare('UPDATE task_runs SET state = ?, ksc_state = ?, started_at = ?, finished_at = ?, error = ?, updated_at = ? WHERE id = ?')
      .run(
        p.state ?? cur.state,
        p.kscState !== undefined ? p.kscState : cur.kscState,
        p.startedAt ?? cur.startedAt,
        p.finishedAt !== undefined ? p.finishedAt : cur.finishedAt,
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

  /** When `taskId` was last requested (or seen starting) on `assetId`; a start that certainly did not run (`not started: ...`) is none. */
  lastStartAt(taskId: string, assetId: string): string | undefined {
    const r = this.db
      .prepare(`SELECT MAX(COALESCE(requested_at, started_at)) AS t FROM task_runs WHERE task_id = ? AND asset_id = ? AND (error IS NULL OR error NOT LIKE 'not started:%')`)
      .get(taskId, assetId) as Row | undefined;
    return str(r?.['t']) ?? undefined;
  }

  /**
   * cefd's last RunTask of `taskId` on connection `connectionId`, for any asset (a manual or
   * rule start that was sent: not one refused or never sent, `not started: ...`): RunTask
   * runs the task on its whole scope.
   */
  lastTaskStart(connectionId: string, taskId: string): { at: string; hostName: string | null; assetId: string } | undefined {
    const r = this.db
      .prepare(
        `SELECT requested_at, host_name, asset_id FROM task_runs
         WHERE task_id = ? AND connection_id = ? AND origin IN ('manual', 'rule') AND requested_at IS NOT NULL AND (error IS NULL OR error NOT LIKE 'not started:%')
         ORDER BY requested_at DESC LIMIT 1`,
      )
      .get(taskId, connectionId) as Row | undefined;
    return r === undefined ? undefined : { at: String(r['requested_at']), hostName: str(r['host_name']) ?? null, assetId: String(r['asset_id']) };
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
