/**
 * The KSC integration as one object for the CLI, the HTTP API, the response-rule engine and
 * the daemon: connections (with their secrets), asset import (on demand and scheduled),
 * tasks (list, start, status), task-state events and enrichment. Every method returns plain
 * JSON-safe views without secrets; failures are KscError subclasses with a stable `code`
 * (`httpStatusOf(e)` maps them to HTTP statuses).
 */
import { KscClient, type KscClientOptions } from './client.js';
import { KscInputError, KscRefusedError } from './errors.js';
import { openSecretStore, redactingLogger, silentLogger, type KscCredentials, type KscLogger, type SecretRef, type SecretStore } from './secrets.js';
import {
  KscStore,
  DEFAULT_TENANT,
  type Asset,
  type AssetDetail,
  type AssetFilter,
  type CachedTask,
  type Connection,
  type ConnectionInput,
  type ConnectionPatch,
  type ConnectionTls,
  normalizeConnectionUrl,
  type RunFilter,
  type Tenant,
  type TaskRun,
} from './store.js';
import { syncConnectionAssets, type SyncOptions, type SyncResult } from './assets.js';
import { syncConnectionAttributes, type AttributeSyncOptions, type AttributeSyncResult } from './attributes.js';
import { applyTaskStateEvent, refreshTasks, startTask, taskStateFromEvent, type ApplyResult, type StartRequest, type StartResult, type TaskStateEvent } from './tasks.js';
import { AssetIndex, enrichEvent, type AssetRefs } from './enrich.js';
import type { CefdEvent } from '../event.js';

export * from './errors.js';
export { KscClient, type KscClientOptions, type KscTlsOptions, type KscTask, type KscHostProduct, DEFAULT_KSC_PORT, certificateFingerprint, normalizePin } from './client.js';
export { redact, redactDeep, redactingLogger, registerSecret, registerPassword, REDACTED, type KscCredentials, type KscLogger, type SecretRef, type SecretStore } from './secrets.js';
export {
  KscStore,
  DEFAULT_TENANT,
  validateConnectionName,
  validateNewTenantName,
  normalizeConnectionUrl,
  assetIdFor,
  KSC_STATE_NAMES,
  type Asset,
  type AssetDetail,
  type SoftwareEntry,
  type VulnerabilityEntry,
  type Connection,
  type ConnectionInput,
  type ConnectionPatch,
  type ConnectionTls,
  type CachedTask,
  type TaskRun,
  type Tenant,
  type RunState,
} from './store.js';
export { syncConnectionAssets, platformOf, productPlatform, type SyncOptions, type SyncResult } from './assets.js';
export { syncConnectionAttributes, type AttributeSyncOptions, type AttributeSyncResult } from './attributes.js';
export { normalizeMac, macFromBytes, mergeMatches, mergeTarget, type IdentityKeys } from './match.js';
export { isKumaTask, chooseTask, startTask, applyTaskStateEvent, taskStateFromEvent, runStateOf, type StartRequest, type StartResult, type TaskStateEvent, type ApplyResult, type TaskCandidate } from './tasks.js';
export { AssetIndex, enrichEvent, assetRefsOf, isKscEvent, type AssetRefs } from './enrich.js';
export { decodeIpLong, encodeIpLong, decodeValue, decodeParams, encodeArgs, long } from './params.js';

export interface KscIntegrationOptions {
  /** The state directory: holds ksc.sqlite and ksc-secrets.json. */
  stateDir: string;
  /** Read-only credential file (default `$CREDENTIALS_DIRECTORY/ksc-secrets` when present). */
  credentialsFile?: string;
  env?: NodeJS.ProcessEnv;
  logger?: KscLogger;
  /** Client settings for every connection (timeouts, retries, auth mode). */
  client?: Partial<Pick<KscClientOptions, 'timeoutMs' | 'retries' | 'backoffMs' | 'maxBackoffMs' | 'auth'>>;
  sync?: SyncOptions;
  /** Told about every connection import (scheduled or on demand), for metrics. */
  onSyncResult?: (r: SyncResult) => void;
  /** Called after every import (the asset index is rebuilt by then). */
  onAssetsChanged?: () => void;
  /** The attribute import's settings (`ksc.asset_attributes_*`). */
  attributes?: Pick<AttributeSyncOptions, 'concurrency' | 'budgetMs' | 'pageSize'>;
  onAttributeSyncResult?: (r: AttributeSyncResult) => void;
  /** Clock for tests. */
  now?: () => Date;
  /**
   * A run still requested or running without news for this long no longer blocks a new
   * start of the same task for the same asset (`ksc.task_run_blocking`; default 6 h).
   */
  taskRunBlockingMs?: number;
}

/** A connection as shown to users: never the secret, only whether there is one and where it comes from. */
export interface ConnectionView extends Connection {
  secret: { set: boolean; source: 'file' | 'credential' | null };
}

export interface NewConnection extends ConnectionInput {
  /** Required unless the credential file has an entry for `tenant/name`. */
  secret?: KscCredentials;
}

export interface EditConnection extends ConnectionPatch {
  secret?: KscCredentials;
}

export interface Scheduler<R = SyncResult> {
  /** Runs a sync now (does not shift the schedule); resolves with its results. */
  runNow(): Promise<R[]>;
  stop(): void;
}

function checkSecret(c: unknown): KscCredentials {
  const o = c as Partial<KscCredentials> | null;
  if (o === null || typeof o !== 'object') throw new KscInputError('secret', 'the secret must be {user, password}');
  if (typeof o.user !== 'string' || o.user.trim() === '') throw new KscInputError('secret.user', 'the secret needs a user name');
  if (typeof o.password !== 'string' || o.password === '') throw new KscInputError('secret.password', 'the secret needs a password');
  return { user: o.user.trim(), password: o.password, ...(typeof o.domain === 'string' && o.domain !== '' ? { domain: o.domain } : {}), ...(typeof o.internal === 'boolean' ? { internal: o.internal } : {}) };
}

/** What the secret stores know a connection by. */
export function secretRef(c: { id: string; tenant: string; name: string; url: string }): SecretRef {
  return { id: c.id, tenant: c.tenant, name: c.name, url: c.url };
}

/** A connection's TLS settings in words (logs, errors; compared to tell a change). */
function tlsText(t: ConnectionTls): string {
  const parts = [t.pinSha256 !== undefined ? `pin ${t.pinSha256}` : '', t.caFile !== undefined ? `CA file ${t.caFile}` : '', t.insecure === true ? 'insecure' : ''].filter((x) => x !== '');
  return parts.length > 0 ? `TLS ${parts.join(', ')}` : 'TLS with the system CAs';
}

export class KscIntegration {
  readonly store: KscStore;
  readonly secrets: SecretStore;
  private readonly log: KscLogger;
  private readonly clients = new Map<string, { key: string; client: KscClient }>();
  private index: AssetIndex | undefined;
  private syncing: Promise<SyncResult[]> | undefined;
  /** Imports in flight, by connection id: a second request for the same connection joins the first. */
  private readonly connSyncs = new Map<string, Promise<SyncResult>>();
  private readonly attrSyncs = new Map<string, Promise<AttributeSyncResult>>();
  /** Aborted at close: attribute imports take no new device. */
  private readonly stopping = new AbortController();

  constructor(private readonly o: KscIntegrationOptions) {
    this.log = redactingLogger(o.logger ?? silentLogger);
    this.secrets = openSecretStore({
      stateDir: o.stateDir,
      ...(o.credentialsFile !== undefined ? { credentialsFile: o.credentialsFile } : {}),
      ...(o.env !== undefined ? { env: o.env } : {}),
      onWarn: (m) => this.log.warn({}, m),
      normalizeUrl: normalizeConnectionUrl,
    });
    this.store = new KscStore(o.stateDir, o.now !== undefined ? { now: o.now } : {});
  }

  static open(o: KscIntegrationOptions): KscIntegration {
    return new KscIntegration(o);
  }

  // -- tenants -----------------------------------------------------------------------------

  listTenants(): Tenant[] {
    return this.store.listTenants();
  }

  setIntegrationEnabled(tenant: string, enabled: boolean): Tenant {
    return this.store.setIntegrationEnabled(tenant, enabled);
  }

  createTenant(name: unknown, o: { integrationEnabled?: boolean } = {}): Tenant {
    const t = this.store.createTenant(name, o);
    this.log.info({ tenant: t.name, integrationEnabled: t.integrationEnabled }, 'tenant created');
    return t;
  }

  /**
   * Deletes a tenant; with `force`, its connections too, with their assets, task cache,
   * task runs and secrets (KscStore.deleteTenant says what is refused).
   */
  deleteTenant(name: string, o: { force?: boolean } = {}): { tenant: string; connections: number; assets: number; taskRuns: number } {
    const r = this.store.deleteTenant(name, o);
    for (const c of r.connections) {
      this.dropClient(c.id);
      this.secrets.delete(c.id);
    }
    const out = { tenant: r.tenant, connections: r.connections.length, assets: r.assets, taskRuns: r.taskRuns };
    this.log.info(out, r.connections.length > 0 ? `tenant deleted with ${r.connections.length} KSC connections, ${r.assets} assets and ${r.taskRuns} task runs` : 'tenant deleted');
    return out;
  }

  // -- connections -------------------------------------------------------------------------

  private view(c: Connection): ConnectionView {
    const src = this.secrets.source(secretRef(c));
    return { ...c, secret: { set: src !== undefined, source: src ?? null } };
  }

  listConnections(o: { tenant?: string } = {}): ConnectionView[] {
    return this.store.listConnections(o).map((c) => this.view(c));
  }

  /** By id, or by name in `tenant` (default tenant). */
  getConnection(ref: string, tenant?: string): ConnectionView {
    return this.view(this.store.resolveConnection(ref, tenant));
  }

  /**
   * Adds a connection. `o.remote`: the caller may not read the secrets (the admin API and
   * the console): it cannot add a connection that takes a credential file secret
   * (`ksc_secret_required`).
   */
  addConnection(input: NewConnection, o: { remote?: boolean } = {}): ConnectionView {
    const secret = input.secret !== undefined ? checkSecret(input.secret) : undefined;
    const ref = { id: '', tenant: input.tenant ?? DEFAULT_TENANT, name: String(input.name).trim(), url: normalizeConnectionUrl(input.url) };
    if (secret === undefined && this.secrets.source(ref) === undefined) {
      throw new KscInputError('secret', 'a KSC connection needs a secret (user name and password of a KSC internal user)');
    }
    if (o.remote === true) this.refuseCredential(ref, 'add');
    const c = this.store.addConnection(input);
    if (secret !== undefined) {
      try {
        this.secrets.set(c.id, secret);
      } catch (e) {
        this.store.deleteConnection(c.id);
        throw e;
      }
    }
    this.log.info({ tenant: c.tenant, connection: c.name, id: c.id, url: c.url, tls: tlsText(c.tls), secret: this.secrets.source(secretRef(c)) }, 'KSC connection added');
    return this.view(c);
  }

  /**
   * Changes a connection. `o.remote` (the admin API and the console, whose callers may not
   * read the secrets): a new server or new TLS settings need the secret again in the same
   * change (the stored one was given for the old server), and a connection that takes a
   * credential file secret cannot be moved or renamed. Otherwise a caller could send the
   * stored password to a server, or over TLS, of its choosing.
   */
  editConnection(ref: string, patch: EditConnection, tenant?: string, o: { remote?: boolean } = {}): ConnectionView {
    const c = this.store.resolveConnection(ref, tenant);
    const secret = patch.secret !== undefined ? checkSecret(patch.secret) : undefined;
    const { secret: _ignored, ...rest } = patch;
    const next = this.store.patchedConnection(c.id, rest);
    const moved = next.url !== c.url || tlsText(next.tls) !== tlsText(c.tls);
    if (o.remote === true) {
      if (moved && secret === undefined) {
        throw new KscRefusedError(
          'ksc_secret_required',
          `changing the server or TLS settings of KSC connection "${c.name}" needs its secret again in the same change (the stored one was given for ${c.url}, ${tlsText(c.tls)})`,
        );
      }
      if (moved || next.name !== c.name) this.refuseCredential(secretRef(next), 'edit');
    }
    const updated = this.store.writeConnection(next);
    if (secret !== undefined) this.secrets.set(c.id, secret);
    this.dropClient(c.id);
    const changed: Record<string, unknown> = { tenant: updated.tenant, connection: updated.name, id: updated.id };
    if (updated.name !== c.name) changed['from_name'] = c.name;
    if (moved) Object.assign(changed, { url: updated.url, from_url: c.url, tls: tlsText(updated.tls), from_tls: tlsText(c.tls) });
    if (updated.disabled !== c.disabled) changed['disabled'] = updated.disabled;
    if (secret !== undefined) changed['secret'] = 'replaced';
    this.log.info(changed, 'KSC connection changed');
    return this.view(updated);
  }

  /**
   * For a remote caller: the connection `ref` would take its secret from the credential file.
   * That file is the operator's, and the API cannot tell which server and TLS settings its
   * secret may go to (an entry's `url` binds the server, not the TLS: a caller could add the
   * connection back with `insecure`, or its own CA file or pin), so such connections are
   * added, renamed and moved with the command line only.
   */
  private refuseCredential(ref: SecretRef, what: 'add' | 'edit'): void {
    if (this.secrets.source(ref) !== 'credential') return;
    throw new KscRefusedError(
      'ksc_secret_required',
      `KSC connection "${ref.tenant}/${ref.name}" at ${ref.url} would take its secret from the credential file, whose connections are ${what === 'add' ? 'added' : 'moved or renamed'} with the command line only (cefd ksc connections ${what})`,
    );
  }

  setConnectionDisabled(ref: string, disabled: boolean, tenant?: string): ConnectionView {
    return this.editConnection(ref, { disabled }, tenant);
  }

  deleteConnection(ref: string, tenant?: string): void {
    const c = this.store.resolveConnection(ref, tenant);
    this.dropClient(c.id);
    this.store.deleteConnection(c.id);
    this.secrets.delete(c.id);
    this.log.info({ tenant: c.tenant, connection: c.name, id: c.id }, 'KSC connection deleted');
  }

  /** Logs in and pings: `{ok: true}` or `{ok: false, error}` with a typed error code. */
  async testConnection(ref: string, tenant?: string): Promise<{ ok: boolean; code?: string; error?: string }> {
    const c = this.store.resolveConnection(ref, tenant);
    try {
      await this.clientFor(c).ping();
      return { ok: true };
    } catch (e) {
      return { ok: false, code: (e as { code?: string }).code ?? 'error', error: (e as Error).message };
    }
  }

  private dropClient(id: string): void {
    const x = this.clients.get(id);
    if (x !== undefined) {
      this.clients.delete(id);
      void x.client.close();
    }
  }

  /** The (cached) Open API client of a connection. Throws KscRefusedError without a secret. */
  clientFor(c: Connection): KscClient {
    const key = `${c.updatedAt}|${c.url}`;
    const hit = this.clients.get(c.id);
    if (hit !== undefined && hit.key === key) return hit.client;
    if (hit !== undefined) this.dropClient(c.id);
    const client = this.newClient(c);
    this.clients.set(c.id, { key, client });
    return client;
  }

  /** A new Open API client (own session and socket) for a connection. Throws KscRefusedError without a secret. */
  private newClient(c: Connection): KscClient {
    const ref = secretRef(c);
    if (this.secrets.get(ref) === undefined) throw new KscRefusedError('ksc_no_secret', `KSC connection "${c.name}" has no secret`);
    return new KscClient({
      url: c.url,
      credentials: () => {
        const s = this.secrets.get(ref);
        if (s === undefined) throw new KscRefusedError('ksc_no_secret', `KSC connection "${c.name}" has no secret`);
        return s;
      },
      tls: { ...(c.tls.caFile !== undefined ? { caFile: c.tls.caFile } : {}), ...(c.tls.pinSha256 !== undefined ? { pinSha256: c.tls.pinSha256 } : {}), ...(c.tls.insecure ? { insecure: true } : {}) },
      name: `${c.tenant}/${c.name}`,
      logger: this.log,
      ...this.o.client,
    });
  }

  // -- assets ------------------------------------------------------------------------------

  /** Imports assets of every enabled connection (of `tenant`, or just `connection`). */
  async syncAssets(o: { tenant?: string; connection?: string } = {}): Promise<SyncResult[]> {
    const conns = o.connection !== undefined ? [this.store.resolveConnection(o.connection, o.tenant)] : this.store.listConnections(o.tenant !== undefined ? { tenant: o.tenant } : {});
    const runs = conns.map(async (c): Promise<SyncResult | undefined> => {
      const t = this.store.getTenant(c.tenant);
      if (c.disabled || (t !== undefined && !t.integrationEnabled)) {
        // Skipped silently in a full sync; said explicitly when this connection was asked for.
        if (o.connection === undefined) return undefined;
        const why = c.disabled ? `KSC connection "${c.name}" is disabled` : `the KSC integration of tenant "${c.tenant}" is off`;
        return { connectionId: c.id, connection: c.name, tenant: c.tenant, ok: false, hosts: 0, created: 0, updated: 0, archived: 0, removed: 0, productErrors: 0, skippedNoAgent: 0, merged: 0, durationMs: 0, error: why };
      }
      const running = this.connSyncs.get(c.id);
      if (running !== undefined) return running;
      const p = (async (): Promise<SyncResult> => {
        let client: KscClient;
        try {
          client = this.clientFor(c);
        } catch (e) {
          this.store.recordSync(c.id, { ok: false, error: (e as Error).message });
          this.log.warn({ connection: c.name, tenant: c.tenant, code: (e as { code?: string }).code ?? 'error', err: (e as Error).message }, 'KSC asset import failed; the assets imported before stay');
          return { connectionId: c.id, connection: c.name, tenant: c.tenant, ok: false, hosts: 0, created: 0, updated: 0, archived: 0, removed: 0, productErrors: 0, skippedNoAgent: 0, merged: 0, durationMs: 0, error: (e as Error).message };
        }
        return syncConnectionAssets(this.store, client, c, { ...this.o.sync, logger: this.log });
      })().then((r) => {
        try {
          this.o.onSyncResult?.(r);
        } catch {
          /* a metrics hook must not break an import */
        }
        return r;
      });
      this.connSyncs.set(c.id, p);
      void p.finally(() => this.connSyncs.delete(c.id));
      return p;
    });
    const out = (await Promise.all(runs)).filter((x): x is SyncResult => x !== undefined);
    this.index?.refresh(true);
    try {
      this.o.onAssetsChanged?.();
    } catch {
      /* a hook must not break an import */
    }
    return out;
  }

  /**
   * Runs `syncAssets()` every `intervalMs` (default 1 h) and expires task runs that got no
   * task-state event for `staleRunMs` (default 24 h). A sync still running is not started twice.
   */
  startScheduler(o: { intervalMs?: number; staleRunMs?: number } = {}): Scheduler {
    const tick = (): Promise<SyncResult[]> => {
      if (this.syncing !== undefined) return this.syncing;
      this.syncing = (async () => {
        try {
          this.store.expireStaleRuns(o.staleRunMs ?? 24 * 3_600_000);
          return await this.syncAssets();
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'scheduled KSC asset import failed');
          return [];
        } finally {
          this.syncing = undefined;
        }
      })();
      return this.syncing;
    };
    const timer = setInterval(() => void tick(), o.intervalMs ?? 3_600_000);
    timer.unref();
    return { runNow: tick, stop: () => clearInterval(timer) };
  }

  /**
   * The attribute import (software, patches, vulnerabilities, owners) of every enabled
   * connection (of `tenant`, or just `connection`). Its own KSC sessions (`concurrency` per
   * connection), so the hourly import is not held up; a request for a connection whose
   * attribute import runs joins it.
   */
  async syncAttributes(o: { tenant?: string; connection?: string; olderThanMs?: number } = {}): Promise<AttributeSyncResult[]> {
    const conns = o.connection !== undefined ? [this.store.resolveConnection(o.connection, o.tenant)] : this.store.listConnections(o.tenant !== undefined ? { tenant: o.tenant } : {});
    const blank = (c: Connection, error: string): AttributeSyncResult => ({
      connectionId: c.id, connection: c.name, tenant: c.tenant, ok: false, due: 0, imported: 0, failed: 0, remaining: 0, budgetExhausted: false, durationMs: 0, error,
    });
    const runs = conns.map(async (c): Promise<AttributeSyncResult | undefined> => {
      const t = this.store.getTenant(c.tenant);
      if (c.disabled || (t !== undefined && !t.integrationEnabled)) {
        if (o.connection === undefined) return undefined;
        return blank(c, c.disabled ? `KSC connection "${c.name}" is disabled` : `the KSC integration of tenant "${c.tenant}" is off`);
      }
      const running = this.attrSyncs.get(c.id);
      if (running !== undefined) return running;
      const a = this.o.attributes ?? {};
      const made: KscClient[] = [];
      const p = (async (): Promise<AttributeSyncResult> => {
        try {
          return await syncConnectionAttributes(
            this.store,
            () => {
              for (let i = 0; i < Math.max(1, a.concurrency ?? 2); i++) made.push(this.newClient(c));
              return made;
            },
            c,
            { ...a, ...(o.olderThanMs !== undefined ? { olderThanMs: o.olderThanMs } : {}), logger: this.log, signal: this.stopping.signal },
          );
        } catch (e) {
          return blank(c, (e as Error).message);
        } finally {
          await Promise.all(made.map((x) => x.close().catch(() => undefined)));
        }
      })().then((r) => {
        try {
          this.o.onAttributeSyncResult?.(r);
        } catch {
          /* a metrics hook must not break an import */
        }
        return r;
      });
      this.attrSyncs.set(c.id, p);
      void p.finally(() => this.attrSyncs.delete(c.id));
      return p;
    });
    return (await Promise.all(runs)).filter((x): x is AttributeSyncResult => x !== undefined);
  }

  /**
   * Runs the attribute import of devices not done for `intervalMs` (default 12 h), checking
   * every `min(intervalMs, 1 h)`: a run cut short by its time budget or a failure goes on at
   * the next check with the devices it did not reach. First check after `firstAfterMs`.
   */
  startAttributeScheduler(o: { intervalMs?: number; firstAfterMs?: number } = {}): Scheduler<AttributeSyncResult> {
    const interval = o.intervalMs ?? 12 * 3_600_000;
    let running: Promise<AttributeSyncResult[]> | undefined;
    const tick = (): Promise<AttributeSyncResult[]> => {
      running ??= this.syncAttributes({ olderThanMs: interval })
        .catch((e: unknown) => {
          this.log.warn({ err: (e as Error).message }, 'scheduled KSC attribute import failed');
          return [];
        })
        .finally(() => {
          running = undefined;
        });
      return running;
    };
    const timer = setInterval(() => void tick(), Math.min(interval, 3_600_000));
    timer.unref();
    const first = o.firstAfterMs !== undefined ? setTimeout(() => void tick(), o.firstAfterMs) : undefined;
    first?.unref();
    return {
      runNow: tick,
      stop: () => {
        clearInterval(timer);
        if (first !== undefined) clearTimeout(first);
      },
    };
  }

  listAssets(f: AssetFilter = {}): Asset[] {
    return this.store.listAssets(f);
  }

  /** An asset with its software, patches and vulnerabilities. */
  getAssetDetail(id: string): AssetDetail | undefined {
    return this.store.getAssetDetail(id);
  }

  getAsset(id: string): Asset | undefined {
    return this.store.getAsset(id);
  }

  // -- tasks -------------------------------------------------------------------------------

  /** The KUMA* tasks of a connection: from the cache, or from KSC with `refresh` (or an empty cache). */
  async listTasks(ref: string, o: { tenant?: string; refresh?: boolean } = {}): Promise<CachedTask[]> {
    const c = this.store.resolveConnection(ref, o.tenant);
    const cached = this.store.listTasks(c.id);
    if (o.refresh !== true && cached.length > 0) return cached;
    return refreshTasks(this.store, this.clientFor(c), c);
  }

  startTask(req: StartRequest): Promise<StartResult> {
    const staleAfterMs = req.staleAfterMs ?? this.o.taskRunBlockingMs;
    return startTask({ store: this.store, clientFor: (c) => this.clientFor(c), logger: this.log }, staleAfterMs === undefined ? req : { ...req, staleAfterMs });
  }

  taskStatus(f: RunFilter = {}): TaskRun[] {
    return this.store.listTaskRuns(f);
  }

  getTaskRun(id: number): TaskRun | undefined {
    return this.store.getTaskRun(id);
  }

  isRunning(taskId: string, assetId: string): boolean {
    return this.store.isRunning(taskId, assetId, this.o.taskRunBlockingMs !== undefined ? { staleAfterMs: this.o.taskRunBlockingMs } : {});
  }

  inCooldown(taskId: string, assetId: string, cooldownMs: number): boolean {
    return this.store.inCooldown(taskId, assetId, cooldownMs);
  }

  /** Feeds a task-state event (already extracted, or a whole cefd event) into the task runs. */
  applyTaskStateEvent(ev: TaskStateEvent | CefdEvent, o: { connectionIds?: ReadonlySet<string> } = {}): ApplyResult {
    const ts = 'newState' in ev && typeof ev.newState === 'number' ? (ev as TaskStateEvent) : taskStateFromEvent(ev as CefdEvent);
    if (ts === null) return { outcome: 'ignored', runs: [], reason: 'not a KLPRCI_TaskState event with a state' };
    const r = applyTaskStateEvent(this.store, ts, o);
    if (r.outcome !== 'ignored') this.log.debug({ outcome: r.outcome, runs: r.runs.map((x) => x.id), state: ts.newState }, 'KSC task runs updated');
    return r;
  }

  // -- enrichment --------------------------------------------------------------------------

  assetIndex(): AssetIndex {
    this.index ??= new AssetIndex(this.store);
    return this.index;
  }

  /** Sets `event.assets` (source, destination, device) from the asset index. */
  enrich(ev: CefdEvent, tenant?: string): AssetRefs {
    return enrichEvent(ev, this.assetIndex(), tenant);
  }

  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.all([...this.attrSyncs.values()]);
    await Promise.all([...this.clients.values()].map((x) => x.client.close()));
    this.clients.clear();
    this.store.close();
  }
}
