/**
 * The KSC integration inside the daemon (a DaemonExtension):
 *
 * - a watch on every event, run where events are decoded (the decode workers; watch.ts):
 *   enrichment with asset references from a snapshot of the asset index, the response
 *   rules' filters, and picking out task-state events (only events the ksc normalizer
 *   marked `category: task_state`). What it finds comes back here (onFindings): rule
 *   triggers (starts are queued, never awaited) and task states, written to the store in
 *   batches, one transaction per batch, off the event path. The watch's spec is sent again
 *   when rules change (start, SIGHUP) and when assets change (an import; a change by
 *   another process, such as a CLI sync, seen through the store's data_version);
 * - the asset import scheduler (hourly by default, and once at start);
 * - the admin HTTP API, when enabled;
 * - metrics `cefd_ksc_*` in the daemon's registry.
 *
 * SIGHUP applies a new `ksc` section: unchanged rules keep their queue, changed ones are
 * replaced; the scheduler and the admin API restart when their settings changed. While the
 * KSC work sharing (cluster.ts) is rebuilt by a reload, findings are held and go the way
 * the new configuration says once it runs (see `hold`).
 */
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { KscConfig, KscResponseRuleConfig } from './config/types.js';
import type { DaemonContext, DaemonExtension } from '../extensions/extension.js';
import type { EventOrigin } from '../event.js';
import { TrustGate } from './trust-gate.js';
import type { KscWatchSpec, KscFindings } from './watch.js';
import { KscIntegration, type Scheduler } from './index.js';
import { redactingLogger, type KscLogger } from './secrets.js';
import { ResponseRule, RuleStats, RULE_RESULTS, type RuleResult } from './rules.js';
import { kscConfigProblems, specOf } from './config/check.js';

export { kscConfigProblems };
import type { SyncResult } from './assets.js';
import type { AttributeSyncResult } from './attributes.js';
import type { StartRequest, StartResult, TaskStateEvent } from './tasks.js';
import { collectedCounter, collectedGauge, RepeatLimiter, withRepeats, type MetricRows } from '../telemetry/telemetry.js';
import { readFileSync } from 'node:fs';
import { Console } from '../console/console.js';
import { SigninLimiter } from '../console/signin-limit.js';
import { createAdminServer, type JsonServer, type RuleView } from './admin-server.js';
import { KscCluster, connectionKey, type KscClusterCounters, type WorkItem, type WorkOutcome } from './cluster.js';
import { assetIdFor } from './store.js';
import { KscRefusedError } from './errors.js';
import type { NatsConnectionConfig } from '../nats/config.js';

type LogFn = (obj: Record<string, unknown>, msg?: string) => void;

/**
 * Warnings and errors that repeat (same message, connection, rule and code) are logged at
 * most once per `intervalMs`, with the number held back.
 */
export function rateLimitedLogger(log: KscLogger, intervalMs: number, now: () => number = Date.now): KscLogger {
  const limiter = new RepeatLimiter(intervalMs);
  const limited =
    (level: 'warn' | 'error'): LogFn =>
    (obj, msg) => {
      const key = `${level}\0${msg ?? ''}\0${String(obj['connection'] ?? '')}\0${String(obj['rule'] ?? '')}\0${String(obj['code'] ?? '')}`;
      const held = limiter.check(key, now());
      if (held >= 0) log[level](...withRepeats(obj, msg, held));
    };
  return { debug: (o, m) => log.debug(o, m), info: (o, m) => log.info(o, m), warn: limited('warn'), error: limited('error') };
}

/** The metrics of the integration; plain numbers on the hot path, copied at scrape time. */
class KscMetrics {
  readonly stats = new Map<string, RuleStats>();
  enriched = 0;
  readonly taskStateEvents = new Map<string, number>();
  readonly syncs = new Map<string, number>();
  readonly attributeSyncs = new Map<string, number>();
  lastSyncOk = 0;
  readonly adminRequests = new Map<string, number>();
  readonly signinFailures = new Map<string, number>();
  tailDropped = 0;

  constructor(reg: Registry, read: { integration: () => KscIntegration | undefined; rules: () => ResponseRule[]; trust: () => TrustGate | undefined; cluster: () => KscCluster | undefined }) {
    const counter = (name: string, help: string, labelNames: string[], rows: MetricRows) => collectedCounter(reg, name, help, labelNames, rows);
    const gauge = (name: string, help: string, labelNames: string[], rows: MetricRows) => collectedGauge(reg, name, help, labelNames, rows);
    const named = () => [...this.stats].filter(([n]) => n !== '');
    counter('cefd_ksc_rule_triggered_total', 'Events that passed a response rule\'s filter and carried the asset reference, per rule.', ['rule'], () =>
      named().map(([rule, s]) => [{ rule }, s.triggered]),
    );
    counter('cefd_ksc_rule_no_asset_total', 'Events that passed a response rule\'s filter but had no asset reference in its asset_field, per rule.', ['rule'], () =>
      named().map(([rule, s]) => [{ rule }, s.noAsset]),
    );
    counter(
      'cefd_ksc_task_starts_total',
      'KSC task start outcomes per rule (empty rule: manual starts through the admin API): started, failed, skipped_running, skipped_cooldown, skipped_queued, skipped_duplicate, dropped.',
      ['rule', 'result'],
      () => [...this.stats].flatMap(([rule, s]) => RULE_RESULTS.map((result) => [{ rule, result }, s.get(result)] as [Record<string, string>, number])),
    );
    counter('cefd_ksc_task_start_failures_total', 'Failed KSC task starts per rule and error code.', ['rule', 'code'], () =>
      [...this.stats].flatMap(([rule, s]) => [...s.failures].map(([code, v]) => [{ rule, code }, v] as [Record<string, string>, number])),
    );
    gauge('cefd_ksc_rule_queued', 'Triggers waiting for a worker, per response rule.', ['rule'], () => read.rules().map((r) => [{ rule: r.name }, r.queued]));
    counter('cefd_ksc_enriched_events_total', 'Events that got at least one asset reference.', [], () => [[{}, this.enriched]]);
    counter('cefd_ksc_task_state_events_total', 'KSC task-state events by outcome: updated (a run changed), created (a run of the task\'s scope), ignored, error.', ['outcome'], () =>
      [...this.taskStateEvents].map(([outcome, v]) => [{ outcome }, v]),
    );
    counter(
      'cefd_ksc_untrusted_events_total',
      'Events from an origin no KSC connection trusts (ksc.trusted_sources) that would have triggered a response rule (rule_trigger) or updated task runs (task_state); collected, not acted on.',
      ['kind'],
      () => [...(read.trust()?.untrusted ?? [])].map(([kind, v]) => [{ kind }, v]),
    );
    counter('cefd_ksc_asset_sync_total', 'Asset imports of a connection, by result (ok, failed).', ['result'], () => [...this.syncs].map(([result, v]) => [{ result }, v]));
    counter('cefd_ksc_asset_attribute_sync_total', 'Attribute imports (software, vulnerabilities, owners) of a connection, by result (ok, budget: stopped at its time budget, failed).', ['result'], () =>
      [...this.attributeSyncs].map(([result, v]) => [{ result }, v]),
    );
    gauge('cefd_ksc_asset_sync_last_success_timestamp_seconds', 'When an asset import last succeeded (Unix time; 0: never).', [], () => [[{}, this.lastSyncOk]]);
    gauge('cefd_ksc_assets', 'Assets in the store, per tenant and state (active, archived).', ['tenant', 'state'], () => {
      const k = read.integration();
      if (k === undefined || !k.store.db.open) return [];
      const rows = k.store.db.prepare('SELECT tenant, CASE WHEN archived_at IS NULL THEN \'active\' ELSE \'archived\' END AS state, COUNT(*) AS n FROM assets GROUP BY 1, 2').all() as { tenant: string; state: string; n: number }[];
      return rows.map((r) => [{ tenant: r.tenant, state: r.state }, r.n]);
    });
    gauge('cefd_ksc_task_runs', 'Task runs in the store, per state (requested, running, completed, failed).', ['state'], () => {
      const k = read.integration();
      if (k === undefined || !k.store.db.open) return [];
      const counts = new Map<string, number>([['requested', 0], ['running', 0], ['completed', 0], ['failed', 0]]);
      for (const r of k.store.db.prepare('SELECT state, COUNT(*) AS n FROM task_runs GROUP BY state').all() as { state: string; n: number }[]) counts.set(r.state, r.n);
      return [...counts].map(([state, n]) => [{ state }, n]);
    });
    // Processors sharing KSC work (cluster.ts): no series until the sharing runs.
    gauge('cefd_ksc_owner_connections', 'KSC connections this processor owns now (holds the lease of): their task starts and task runs happen here.', [], () => {
      const c = read.cluster();
      return c === undefined ? [] : [[{}, c.owned().length]];
    });
    counter('cefd_ksc_owner_changes_total', 'Changes of this processor\'s ownership of KSC connections: acquired, lost (a renewal failed), released (at stop).', ['change'], () =>
      [...(read.cluster()?.counters.changes ?? [])].map(([change, v]) => [{ change }, v]),
    );
    counter('cefd_ksc_owner_work_published_total', 'Rule triggers and task states published to the KSC work stream for the connection\'s owner, by kind (trigger, task_state) and result (ok, failed).', ['kind', 'result'], () =>
      [...(read.cluster()?.counters.published ?? [])].map(([k, v]) => {
        const [kind, result] = k.split('\t') as [string, string];
        return [{ kind, result }, v];
      }),
    );
    counter('cefd_ksc_owner_work_total', 'Work messages this processor took as owner, by kind (trigger, task_state, bad: not cefd\'s) and outcome (ack, nak: given back for the next owner, term).', ['kind', 'outcome'], () =>
      [...(read.cluster()?.counters.work ?? [])].map(([k, v]) => {
        const [kind, outcome] = k === 'bad' ? ['bad', 'term'] : (k.split('\t') as [string, string]);
        return [{ kind, outcome }, v];
      }),
    );
    counter('cefd_ksc_owner_claims_total', 'Claims of response-rule starts in bucket cefd_ksc_starts: claimed, duplicate (a start for this rule and event was made already: not started again), failed.', ['result'], () =>
      [...(read.cluster()?.counters.claims ?? [])].map(([result, v]) => [{ result }, v]),
    );
    counter('cefd_ksc_admin_requests_total', 'Admin API answers by HTTP status.', ['status'], () => [...this.adminRequests].map(([status, v]) => [{ status }, v]));
    counter('cefd_console_signin_failures_total', 'Refused console sign-ins by reason: credentials (wrong token or password), csrf (expired or missing form nonce), rate_limited (too many failures from the address or overall).', ['reason'], () =>
      [...this.signinFailures].map(([reason, v]) => [{ reason }, v]),
    );
    counter('cefd_console_tail_dropped_events_total', 'Events the live tail (console Events page, cefd tap) did not send a client because it read too slowly; the client is told how many.', [], () => [[{}, this.tailDropped]]);
  }

  ruleStats(name: string): RuleStats {
    let s = this.stats.get(name);
    if (s === undefined) {
      s = new RuleStats();
      this.stats.set(name, s);
    }
    return s;
  }

  add(m: Map<string, number>, k: string): void {
    m.set(k, (m.get(k) ?? 0) + 1);
  }
}

export class KscExtension implements DaemonExtension {
  readonly name = 'ksc';
  private config: Config;
  private ctx: DaemonContext | undefined;
  private log!: Logger;
  private klog!: KscLogger;
  private k: KscIntegration | undefined;
  private integrationKey = '';
  /** Version of the last watch spec sent. */
  private watchVersion = 0;
  private watching = false;
  /** Task states found by the watch, written to the store at the next turn of the loop. */
  private taskStates: { ts: TaskStateEvent; connectionIds: ReadonlySet<string> }[] = [];
  private taskStatesScheduled = false;
  private rules: ResponseRule[] = [];
  /** Which origins may act on KSC (ksc.trusted_sources). */
  private trust: TrustGate | undefined;
  private scheduler: Scheduler | undefined;
  private attrScheduler: Scheduler<AttributeSyncResult> | undefined;
  private schedulerKey = '';
  private admin: JsonServer | undefined;
  private console: Console | undefined;
  private adminKey = '';
  /** The configuration the running admin API was started with (a failed reload starts it again). */
  private adminConfig: Config | undefined;
  private metrics: KscMetrics | undefined;
  private tenant = 'default';
  private rulesBlockingMs = -1;
  /** Processors sharing KSC work through NATS (cluster.ts); undefined on a single node. */
  private cluster: KscCluster | undefined;
  private clusterKey = '';
  /** The work sharing's counters, kept across the clusters a reload makes. */
  private readonly clusterCounters: KscClusterCounters = { changes: new Map(), published: new Map(), work: new Map(), claims: new Map() };
  private unholdAcks: (() => void) | undefined;
  /**
   * Findings held while the KSC work sharing is rebuilt (a reload that changes it, or the
   * integration under it): a processor must not act on them alone meanwhile (it may not own
   * their connection), nor drop them. `done` is what the frames they came from wait for
   * before they are acknowledged: their work published (or rejected: the frames come again).
   */
  private held: { items: [EventOrigin, KscFindings][]; fresh: boolean; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;
  /** Connection key → this store's connection id (cluster.ts). */
  private connByKey = new Map<string, string>();

  constructor(config: Config) {
    this.config = config;
  }

  /** The integration (undefined while the integration is off). */
  get integration(): KscIntegration | undefined {
    return this.k;
  }

  /** The admin API's bound port, when it listens. */
  adminPort(): number | undefined {
    return this.admin?.port();
  }

  async start(ctx: DaemonContext): Promise<void> {
    this.ctx = ctx;
    this.log = ctx.log.child({ component: 'ksc' });
    this.metrics = new KscMetrics(ctx.telemetry.registry, { integration: () => this.k, rules: () => this.rules, trust: () => this.trust, cluster: () => this.cluster });
    // One hold for the extension's life: the cluster's publishes, or the held findings'.
    this.unholdAcks = ctx.holdAcks?.(() => this.ackHold());
    await this.apply(this.config, true);
  }

  async reload(next: Config): Promise<void> {
    await this.apply(next, false);
  }

  notReady(): string[] {
    const c = this.config.ksc;
    if (c.enabled && c.admin.enabled && (this.admin === undefined || !this.admin.listening)) return ['ksc admin API'];
    return [];
  }

  async stop(): Promise<void> {
    await this.teardown(Math.min(5_000, this.config.shutdown_timeout * 500));
    this.unholdAcks?.();
    this.unholdAcks = undefined;
  }

  private async apply(next: Config, starting: boolean): Promise<void> {
    const c = next.ksc;
    const problems = kscConfigProblems(c);
    if (problems.length > 0) throw new Error(`invalid ksc configuration: ${problems.map((p) => `${p.key}: ${p.message}`).join('; ')}`);
    const ikey = JSON.stringify([
      c.enabled, next.state_dir, c.credentials_file ?? null, c.request_timeout, c.retries, next.logging.repeat_interval, c.asset_attributes_concurrency, c.asset_attributes_budget,
    ]);
    const nextClusterKey = c.enabled ? KscExtension.clusterKeyOf(next) : '';
    // The work sharing is stopped and started again (its settings, or the integration under
    // it, change) on a processor that shares or will share: findings wait for the new one.
    const rebuild = (this.cluster !== undefined || nextClusterKey !== '') && (ikey !== this.integrationKey || nextClusterKey !== this.clusterKey);
    if (rebuild) this.hold();
    try {
      if (ikey !== this.integrationKey) {
        await this.teardown(1_000);
        this.integrationKey = ikey;
        if (c.enabled) this.open(next);
      }
      this.config = next;
      if (!c.enabled || this.k === undefined) return;
      this.tenant = c.tenant;
      this.applyTrust(c);
      this.applyRules(c.response_rules);
      await this.applyCluster(next);
    } finally {
      if (rebuild) this.release();
    }
    const skey = JSON.stringify([c.asset_sync_interval, c.task_run_timeout, c.asset_attributes_interval]);
    if (skey !== this.schedulerKey || this.scheduler === undefined) {
      this.scheduler?.stop();
      this.attrScheduler?.stop();
      this.scheduler = this.k.startScheduler({ intervalMs: c.asset_sync_interval * 1000, staleRunMs: c.task_run_timeout * 1000 });
      // Separate from the hourly import (own sessions, own timer): it never holds it up.
      const attr = this.k.startAttributeScheduler({ intervalMs: c.asset_attributes_interval * 1000 });
      this.attrScheduler = attr;
      this.schedulerKey = skey;
      if (starting && c.sync_on_start) void this.scheduler.runNow().then(() => attr.runNow());
    }
    const akey = JSON.stringify(c.admin);
    if (akey !== this.adminKey || (c.admin.enabled && this.admin === undefined)) await this.applyAdmin(next, akey);
    if (starting) {
      this.log.info(
        { tenant: c.tenant, rules: this.rules.map((r) => r.name), admin: c.admin.enabled ? `${c.admin.host}:${this.adminPort() ?? c.admin.port}` : null, syncIntervalS: c.asset_sync_interval },
        `KSC integration started: ${this.rules.length} response rules${c.admin.enabled ? `, admin API on ${c.admin.host}:${this.adminPort() ?? c.admin.port}` : ''}`,
      );
    } else {
      this.log.info({ tenant: c.tenant, rules: this.rules.map((r) => r.name) }, 'KSC integration configuration applied');
    }
  }

  private applyTrust(c: KscConfig): void {
    if (this.trust === undefined) {
      this.trust = new TrustGate(
        c.trusted_sources,
        this.log,
        (id) => this.k?.store.getAsset(id)?.connectionId,
        () => this.k?.listConnections({ tenant: this.tenant }) ?? [],
      );
    } else {
      this.trust.setSources(c.trusted_sources);
    }
    try {
      this.trust.setConnections(this.k?.listConnections({ tenant: c.tenant }) ?? []);
    } catch {
      // The store is unreadable for now: the tap timer tries again.
    }
    if (this.trust.empty && c.response_rules.length > 0) {
      this.log.warn(
        { code: 'ksc_untrusted_origin', rules: c.response_rules.map((r) => r.name) },
        'ksc.trusted_sources is empty: no event will trigger a response rule or update a task run (see docs/ksc-trust.md)',
      );
    }
  }

  private open(c: Config): void {
    const k = c.ksc;
    this.klog = redactingLogger(rateLimitedLogger(this.log, c.logging.repeat_interval * 1000));
    try {
      this.k = KscIntegration.open({
        stateDir: c.state_dir,
        ...(k.credentials_file !== undefined ? { credentialsFile: k.credentials_file } : {}),
        logger: this.klog,
        client: { timeoutMs: k.request_timeout * 1000, retries: k.retries },
        onSyncResult: (r) => this.onSync(r),
        onAssetsChanged: () => this.publishWatch(),
        attributes: { concurrency: k.asset_attributes_concurrency, budgetMs: k.asset_attributes_budget * 1000 },
        onAttributeSyncResult: (r) => this.metrics!.add(this.metrics!.attributeSyncs, r.ok ? (r.budgetExhausted ? 'budget' : 'ok') : 'failed'),
      });
    } catch (e) {
      this.log.error({ code: 'ksc_store_failed', stateDir: c.state_dir, err: (e as Error).message }, `cannot open the KSC state store: ${(e as Error).message}`);
      this.integrationKey = '';
      throw new Error(`cannot open the KSC state store in ${c.state_dir} (set ksc.enabled: false to run without the KSC integration): ${(e as Error).message}`);
    }
    // Assets another process imported (a CLI sync) reach the watch within a second: the
    // check is one PRAGMA data_version (enrich.ts), the snapshot is rebuilt only on a change.
    this.assetTimer = setInterval(() => {
      try {
        if (this.k?.assetIndex().refresh() === true) this.publishWatch();
        // Connections added or removed by the CLI or the admin API reach the trust gate.
        if (++this.assetTicks % 5 === 0) this.refreshTrustedConnections();
      } catch (e) {
        this.klog.warn({ code: 'ksc_store_failed', err: (e as Error).message }, `cannot read the KSC assets: ${(e as Error).message}`);
      }
    }, 1_000);
    this.assetTimer.unref();
  }

  private assetTimer: NodeJS.Timeout | undefined;
  private assetTicks = 0;

  /**
   * Sends the watch (ksc/watch.ts) the current rules and asset snapshot. It runs while the
   * integration is on: with no rules and no assets it costs a field comparison per event,
   * so there is nothing to decide and no reason to poll the store for it.
   */
  private publishWatch(): void {
    const k = this.k;
    if (k === undefined || this.ctx === undefined) return;
    const spec: KscWatchSpec = {
      version: ++this.watchVersion,
      tenant: this.tenant,
      assets: k.assetIndex().snapshot(),
      rules: this.rules.map((r) => ({ name: r.name, filter: r.spec.filter, assetField: r.spec.assetField })),
    };
    this.ctx.watchEvents(spec, this.onFindings);
    this.watching = true;
    this.refreshTrustedConnections();
  }

  /** The trust gate's connection names → ids, from the store (trust-gate.ts). */
  private refreshTrustedConnections(): void {
    try {
      if (this.k !== undefined) this.trust?.setConnections(this.k.listConnections({ tenant: this.tenant }));
    } catch {
      // The store is unreadable for now: the asset timer tries again.
    }
  }

  /** The first `nats` listener's connection: processors share KSC work through it (cluster.ts). */
  private static sharedNats(c: Config): NatsConnectionConfig | undefined {
    // Without trusted sources no event acts on KSC: nothing to share, no NATS objects made.
    if (c.ksc.cluster.mode === 'off' || c.ksc.trusted_sources.length === 0) return undefined;
    return c.listeners.find((l) => l.type === 'nats') as unknown as NatsConnectionConfig | undefined;
  }

  /** What the work sharing depends on ('' when it is off): a change stops it and starts it again. */
  private static clusterKeyOf(c: Config): string {
    const nats = KscExtension.sharedNats(c);
    return nats === undefined ? '' : JSON.stringify([nats, c.ksc.cluster, c.ksc.tenant]);
  }

  private async applyCluster(c: Config): Promise<void> {
    const nats = KscExtension.sharedNats(c);
    const key = KscExtension.clusterKeyOf(c);
    if (key === this.clusterKey) return;
    await this.stopCluster(Math.min(5_000, c.shutdown_timeout * 500));
    this.clusterKey = key;
    if (nats === undefined) return;
    const cluster = new KscCluster({
      nats,
      config: c.ksc.cluster,
      log: this.klog,
      connections: () => this.clusterConnections(),
      act: (k, item) => this.act(k, item),
      counters: this.clusterCounters,
    });
    this.cluster = cluster;
    await cluster.start();
    this.log.info({ processor: cluster.id, leaseTtlS: c.ksc.cluster.lease_ttl }, 'KSC work is shared with other processors through NATS: one owner per KSC connection (docs/cluster.md)');
  }

  /**
   * Stops the work sharing (cluster.ts, stop: work being acted on gets `graceMs`). It stays
   * `this.cluster` until stopped: the starts of its work claim through it while it holds
   * the lease.
   */
  private async stopCluster(graceMs: number): Promise<void> {
    const cl = this.cluster;
    this.clusterKey = '';
    await cl?.stop(graceMs);
    if (this.cluster === cl) this.cluster = undefined;
  }

  /**
   * What the frames of the batch whose findings were just handed on wait for (asked right
   * after, Pipeline.acksHeld): the publishes they made, or, while findings are held, the
   * held findings' fate when this batch added some. A batch without findings waits for
   * nothing, so a rebuild that fails gives back only the frames whose work was not published.
   */
  private ackHold(): Promise<void> | undefined {
    const h = this.held;
    if (h === null) return this.cluster?.settled();
    if (!h.fresh) return undefined;
    h.fresh = false;
    return h.done;
  }

  /** From now on findings wait (see `held`); the frames they came from are not acknowledged. */
  private hold(): void {
    if (this.held !== null) return;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Awaited by the frames' acknowledgements, if any came meanwhile.
    done.catch(() => undefined);
    this.held = { items: [], fresh: false, done, resolve, reject };
  }

  /**
   * The held findings go the way the configuration now says (published to the new
   * cluster's owner, or acted on here when sharing is off), and their frames may be
   * acknowledged once that work is published: given back when it could not be.
   */
  private release(): void {
    const h = this.held;
    if (h === null) return;
    this.held = null;
    for (const [origin, f] of h.items) this.onFindings(origin, f);
    const published = this.cluster?.settled();
    if (published === undefined) h.resolve();
    else published.then(h.resolve, h.reject);
  }

  /** This processor's enabled connections (of the tenant) by key; the ones it may own. */
  private clusterConnections(): string[] {
    const k = this.k;
    if (k === undefined || !k.store.db.open) return [];
    const byKey = new Map<string, string>();
    try {
      for (const c of k.store.listConnections({ tenant: this.tenant })) if (!c.disabled) byKey.set(connectionKey(c.tenant, c.name), c.id);
    } catch {
      return [...this.connByKey.keys()];
    }
    this.connByKey = byKey;
    return [...byKey.keys()];
  }

  /** A connection's key from its id (for publishing), from the store. */
  private keyOfConnection(id: string): string | undefined {
    for (const [key, cid] of this.connByKey) if (cid === id) return key;
    this.clusterConnections();
    for (const [key, cid] of this.connByKey) if (cid === id) return key;
    return undefined;
  }

  /** As owner of connection `key`: a work message from any processor (cluster.ts). */
  private act(key: string, item: WorkItem): Promise<WorkOutcome> {
    const k = this.k;
    const cluster = this.cluster;
    const connId = this.connByKey.get(key);
    if (k === undefined || cluster === undefined || !k.store.db.open) return Promise.resolve('nak');
    if (connId === undefined) return Promise.resolve('ack');
    if (item.kind === 'task_state') {
      try {
        k.store.db.transaction(() => this.taskState(k, item.ts, new Set([connId])))();
      } catch (e) {
        this.klog.warn({ code: 'ksc_task_state_failed', err: (e as Error).message }, `a KSC task-state event could not update the task runs: ${(e as Error).message}`);
        return Promise.resolve('nak');
      }
      return Promise.resolve('ack');
    }
    const rule = this.rules.find((r) => r.name === item.rule);
    // A rule this processor does not have (configurations differ): nothing to do.
    if (rule === undefined) return Promise.resolve('ack');
    return new Promise<WorkOutcome>((resolve) => {
      // The asset KSC host `item.host` is now (a merged or renumbered asset keeps another id
      // than assetIdFor gives: KscStore.assetIdOfHost); a host not imported here fails as no_asset.
      rule.trigger(k.store.assetIdOfHost(connId, item.host) ?? assetIdFor(connId, item.host), undefined, {
        ...(item.eventId !== undefined ? { eventId: item.eventId } : {}),
        done: (r, code) => resolve((r === 'dropped' && code === 'ksc_rule_dropped_at_stop') || code === 'ksc_not_owner' ? 'nak' : 'ack'),
      });
    });
  }

  private async teardown(timeoutMs: number): Promise<void> {
    // The rules close first, while they still answer the cluster's work: starts under way
    // finish (within `timeoutMs`), queued ones are given back (`ksc_rule_dropped_at_stop`:
    // the next owner gets them) on the cluster's connection, still open.
    await Promise.all(this.rules.map((r) => this.closeRule(r, timeoutMs)));
    await this.stopCluster(timeoutMs);
    if (this.assetTimer !== undefined) clearInterval(this.assetTimer);
    this.assetTimer = undefined;
    if (this.watching) this.ctx?.watchEvents(null, this.onFindings);
    this.watching = false;
    this.writeTaskStates();
    this.scheduler?.stop();
    this.scheduler = undefined;
    this.attrScheduler?.stop();
    this.attrScheduler = undefined;
    this.schedulerKey = '';
    const admin = this.admin;
    this.admin = undefined;
    this.adminKey = '';
    this.adminConfig = undefined;
    this.console?.close();
    this.console = undefined;
    await admin?.close();
    this.rules = [];
    this.rulesBlockingMs = -1;
    const k = this.k;
    this.k = undefined;
    await k?.close();
  }

  private async closeRule(r: ResponseRule, timeoutMs: number): Promise<void> {
    const dropped = await r.close(timeoutMs);
    if (dropped > 0) {
      this.log.warn({ code: 'ksc_rule_dropped_at_stop', rule: r.name, dropped }, `response rule ${r.name}: ${dropped} queued triggers dropped at stop or reload`);
    }
  }

  private applyRules(list: KscResponseRuleConfig[]): void {
    const blockingMs = this.config.ksc.task_run_blocking * 1000;
    // A changed blocking time changes every rule's dependencies: rebuild them all.
    const old = blockingMs === this.rulesBlockingMs ? new Map(this.rules.map((r) => [r.name, r])) : new Map<string, ResponseRule>();
    if (blockingMs !== this.rulesBlockingMs) for (const r of this.rules) void this.closeRule(r, 5_000);
    this.rulesBlockingMs = blockingMs;
    const next: ResponseRule[] = [];
    for (const rc of list) {
      const spec = specOf(rc);
      const prev = old.get(rc.name);
      if (prev !== undefined && JSON.stringify(prev.spec) === JSON.stringify({ ...spec, tasks: spec.tasks.map((t) => t.trim()) })) {
        next.push(prev);
        old.delete(rc.name);
        continue;
      }
      const k = this.k!;
      next.push(
        new ResponseRule(
          spec,
          {
            start: (req) => k.startTask(req),
            isRunning: (taskId, assetId) => k.store.isRunning(taskId, assetId, { staleAfterMs: blockingMs }),
            inCooldown: (taskId, assetId, ms) => k.inCooldown(taskId, assetId, ms),
            staleAfterMs: blockingMs,
            log: this.klog,
            claim: (rule, eventId, assetId) => this.claim(rule, eventId, assetId, k),
            release: (rule, eventId) => this.cluster?.release(rule, eventId),
            confirm: (rule, eventId) => this.cluster?.confirm(rule, eventId),
            onResult: (rule, result, d) => {
              if (result === 'skipped_running' || result === 'skipped_cooldown' || result === 'skipped_queued') {
                this.log.debug({ rule, result, asset: d.assetId, task: d.task }, `response rule ${rule}: ${result.replace('_', ' ')}`);
              } else if (result === 'started') {
                this.log.info({ rule, asset: d.assetId, task: d.task, run: d.runId }, `response rule ${rule} started KSC task "${d.task}"`);
              }
            },
          },
          this.metrics!.ruleStats(rc.name),
        ),
      );
    }
    this.rules = next;
    this.publishWatch();
    for (const r of old.values()) void this.closeRule(r, 5_000);
  }

  /**
   * Claims a rule's start for an event (processors sharing KSC work, cluster.ts): only as
   * owner of the asset's connection. True on a single node.
   */
  private claim(rule: string, eventId: string, assetId: string, k: KscIntegration): Promise<boolean> {
    const cluster = this.cluster;
    // Only the cluster's work carries an event id to claim under: with no cluster (stopped
    // by a reload meanwhile) this processor cannot know it still owns the connection.
    if (cluster === undefined) return Promise.reject(new KscRefusedError('ksc_not_owner', 'the KSC work sharing is being restarted or was turned off; the work comes again to the owner'));
    const connId = k.store.getAsset(assetId)?.connectionId;
    const key = connId === undefined ? undefined : this.keyOfConnection(connId);
    if (key === undefined) return Promise.reject(new KscRefusedError('ksc_not_owner', `asset ${assetId} belongs to no KSC connection this processor may own`));
    return cluster.claim(key, rule, eventId);
  }

  /**
   * What the watch found in a batch of events from `origin` (listener, peer, TLS client
   * certificate; one source per batch). Rule triggers and task states act on KSC, so they
   * pass the trust check here (trust.ts, ksc.trusted_sources); what no connection trusts is
   * counted in cefd_ksc_untrusted_events_total and acts on nothing.
   */
  private readonly onFindings = (origin: EventOrigin, f: KscFindings): void => {
    if (this.held !== null) {
      this.held.items.push([origin, f]);
      this.held.fresh = true;
      return;
    }
    const m = this.metrics;
    const gate = this.trust;
    if (this.k === undefined || m === undefined || gate === undefined) return;
    m.enriched += f.enriched;
    const taskStates = f.taskStates.length + f.taskStatesIgnored;
    if (taskStates > 0) {
      // The answers to task starts: only runs of connections that trust the origin change.
      const ids = gate.connectionIds(origin);
      if (ids.size === 0) {
        gate.refused('task_state', origin, taskStates);
      } else if (this.cluster !== undefined) {
        // Shared KSC work: to the owner of each connection that trusts the origin.
        for (let i = 0; i < f.taskStatesIgnored; i++) m.add(m.taskStateEvents, 'ignored');
        for (const ts of f.taskStates) {
          for (const id of ids) {
            const key = this.keyOfConnection(id);
            if (key !== undefined) this.cluster.publish(key, { kind: 'task_state', ts }, ts.eventId);
          }
        }
      } else {
        for (let i = 0; i < f.taskStatesIgnored; i++) m.add(m.taskStateEvents, 'ignored');
        for (const ts of f.taskStates) this.taskStates.push({ ts, connectionIds: ids });
        if (f.taskStates.length > 0 && !this.taskStatesScheduled) {
          this.taskStatesScheduled = true;
          setImmediate(() => this.writeTaskStates());
        }
      }
    }
    if (f.triggers.length === 0 && f.noAsset.length === 0) return;
    // Rules are matched by name: findings made under a spec from before a reload still
    // reach the rule of that name, and a removed rule's are dropped.
    const byName = new Map(this.rules.map((r) => [r.name, r]));
    for (const [name, n] of f.noAsset) {
      const r = byName.get(name);
      if (r !== undefined) r.stats.noAsset += n;
    }
    if (f.triggers.length === 0) return;
    gate.begin(origin);
    const cluster = this.cluster;
    if (cluster !== undefined) {
      // Shared KSC work: checked here (this processor knows the origin), acted on by the
      // owner of the asset's connection, which finds the asset by its KSC host id.
      for (const t of f.triggers) {
        if (!byName.has(t.rule) || !gate.allowAsset(t.assetId)) continue;
        const asset = this.k.store.getAsset(t.assetId);
        const key = asset === undefined ? undefined : this.keyOfConnection(asset.connectionId);
        if (asset === undefined || key === undefined) continue;
        cluster.publish(key, { kind: 'trigger', rule: t.rule, host: asset.kscHostId, ...(t.eventId !== undefined ? { eventId: t.eventId } : {}) }, t.eventId);
      }
      return;
    }
    for (const t of f.triggers) byName.get(t.rule)?.trigger(t.assetId, gate.allowAsset);
  };

  /** The task states found since the last write, into the task runs in one transaction. */
  private writeTaskStates(): void {
    this.taskStatesScheduled = false;
    const batch = this.taskStates;
    if (batch.length === 0) return;
    this.taskStates = [];
    const k = this.k;
    if (k === undefined || !k.store.db.open) return;
    const apply = (): void => {
      for (const x of batch) this.taskState(k, x.ts, x.connectionIds);
    };
    try {
      k.store.db.transaction(apply)();
    } catch (e) {
      this.klog.warn({ code: 'ksc_task_state_failed', err: (e as Error).message }, `KSC task-state events could not update the task runs: ${(e as Error).message}`);
    }
  }

  private taskState(k: KscIntegration, ev: TaskStateEvent, connectionIds: ReadonlySet<string>): void {
    try {
      const r = k.applyTaskStateEvent(ev, { connectionIds });
      this.metrics!.add(this.metrics!.taskStateEvents, r.outcome);
    } catch (e) {
      this.metrics!.add(this.metrics!.taskStateEvents, 'error');
      this.klog.warn({ code: 'ksc_task_state_failed', err: (e as Error).message }, `a KSC task-state event could not update the task runs: ${(e as Error).message}`);
    }
  }

  private onSync(r: SyncResult): void {
    const m = this.metrics!;
    m.add(m.syncs, r.ok ? 'ok' : 'failed');
    if (r.ok) m.lastSyncOk = Date.now() / 1000;
  }

  /** An on-demand import: a full one joins the scheduler's (and expires stale runs), a partial one runs now. */
  sync(o: { tenant?: string; connection?: string } = {}): Promise<SyncResult[]> {
    const k = this.k;
    if (k === undefined) return Promise.resolve([]);
    if (o.tenant === undefined && o.connection === undefined && this.scheduler !== undefined) return this.scheduler.runNow();
    return k.syncAssets(o);
  }

  /** An on-demand attribute import (all due devices of every enabled connection, or of a tenant or connection). */
  syncAttributes(o: { tenant?: string; connection?: string } = {}): Promise<AttributeSyncResult[]> {
    const k = this.k;
    if (k === undefined) return Promise.resolve([]);
    return k.syncAttributes(o);
  }

  /** A manual start (admin API), counted under the empty rule name. */
  async startTask(req: StartRequest): Promise<StartResult> {
    const k = this.k;
    if (k === undefined) throw new Error('the KSC integration is off');
    const stats = this.metrics!.ruleStats('');
    try {
      const r = await k.startTask({ ...req, staleAfterMs: this.config.ksc.task_run_blocking * 1000 });
      stats.count('started');
      return r;
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'error';
      stats.count(code === 'ksc_task_running' ? 'skipped_running' : code === 'ksc_task_cooldown' ? 'skipped_cooldown' : 'failed', code);
      throw e;
    }
  }

  ruleViews(): RuleView[] {
    return this.rules.map((r) => {
      const s = r.stats;
      const g = (x: RuleResult) => s.get(x);
      return {
        name: r.name,
        type: 'ksctasks',
        tasks: [...r.spec.tasks],
        assetField: r.spec.assetField,
        filter: r.spec.filter !== undefined && r.spec.filter.trim() !== '' ? r.spec.filter : null,
        workers: r.spec.workers,
        cooldownSeconds: r.spec.cooldownMs / 1000,
        queueMax: r.spec.queueMax,
        queued: r.queued,
        inFlight: r.inFlight,
        counters: {
          triggered: s.triggered,
          noAsset: s.noAsset,
          started: g('started'),
          failed: g('failed'),
          skippedRunning: g('skipped_running'),
          skippedCooldown: g('skipped_cooldown'),
          skippedQueued: g('skipped_queued'),
          skippedDuplicate: g('skipped_duplicate'),
          dropped: g('dropped'),
        },
        lastTriggers: s.last.map((x) => ({ ...x })),
      };
    });
  }

  /**
   * The admin API (and its console) with new settings, the way the daemon moves its metrics
   * endpoint (src/daemon.ts, applyLocked). On another port the new server listens before
   * the old one closes: one that cannot listen leaves the old one serving. On the same
   * port the old one closes first, and if the new one cannot listen the old settings
   * listen again. Throws then (the reload counts as failed); `adminKey` keeps the settings
   * that run, so the next reload tries again.
   */
  private async applyAdmin(next: Config, akey: string): Promise<void> {
    const a = next.ksc.admin;
    const old = this.admin;
    const oldConsole = this.console;
    const before = this.adminConfig;
    const closeOld = async () => {
      oldConsole?.close();
      await old?.close();
    };
    if (!a.enabled) {
      this.admin = undefined;
      this.console = undefined;
      this.adminConfig = undefined;
      this.adminKey = akey;
      await closeOld();
      return;
    }
    const take = (started: { server: JsonServer; console: Console | undefined }, c: Config, key: string) => {
      this.admin = started.server;
      this.console = started.console;
      this.adminConfig = c;
      this.adminKey = key;
    };
    if (old === undefined || before === undefined || a.port === 0 || a.port !== before.ksc.admin.port) {
      let fresh: { server: JsonServer; console: Console | undefined };
      try {
        fresh = await this.startAdmin(next);
      } catch (e) {
        // The new console, closed, gave up the recent events the old one serves.
        oldConsole?.reattach();
        throw old !== undefined && before !== undefined ? new Error(`${(e as Error).message}; it keeps serving on ${before.ksc.admin.host}:${old.port() ?? before.ksc.admin.port}`) : e;
      }
      take(fresh, next, akey);
      await closeOld();
      fresh.console?.reattach();
      return;
    }
    this.admin = undefined;
    this.console = undefined;
    await closeOld();
    try {
      take(await this.startAdmin(next), next, akey);
    } catch (e) {
      const msg = (e as Error).message;
      try {
        take(await this.startAdmin(before), before, JSON.stringify(before.ksc.admin));
      } catch (err) {
        // Down: /readyz says so (notReady), and the next reload starts it.
        throw new Error(`${msg}; with its old settings it cannot listen again either (${(err as Error).message}): it stays down until the next reload or restart`);
      }
      throw new Error(`${msg}; it listens again with its old settings`);
    }
  }

  /** Builds the admin API (with its console) of `c` and listens; on failure closes what it built and throws. */
  private async startAdmin(c: Config): Promise<{ server: JsonServer; console: Console | undefined }> {
    const a = c.ksc.admin;
    const self = this;
    const ctx = this.ctx!;
    const tls = a.tls?.cert_file !== undefined && a.tls.key_file !== undefined ? { cert: readFileSync(a.tls.cert_file), key: readFileSync(a.tls.key_file) } : undefined;
    const con = a.console?.enabled
      ? new Console({
          token: a.bearer_token!,
          stateDir: c.state_dir,
          tls: tls !== undefined,
          sessionTtlMs: a.console.session_ttl * 1000,
          tailEvents: a.console.tail_events,
          tailBytes: a.console.tail_bytes,
          event: c.event,
          quietAfterMs: a.console.quiet_after * 1000,
          telemetry: ctx.telemetry,
          log: this.log.child({ component: 'console' }),
          workers: () => ctx.workers?.() ?? 0,
          outputs: () => c.outputs.map((o) => o.name),
          recent: (sink, o) => ctx.recentEvents?.(sink, o),
          askRecent: (q) => ctx.queryRecent?.(q) ?? Promise.resolve({ items: [], kept: 0 }),
          ksc: () => self.k,
          onSigninFailure: (reason) => this.metrics!.add(this.metrics!.signinFailures, reason),
          onTailDropped: (n) => (this.metrics!.tailDropped += n),
        })
      : undefined;
    let server: JsonServer | undefined;
    try {
      server = createAdminServer(
        {
          get ksc(): KscIntegration {
            if (self.k === undefined) throw new Error('the KSC integration is off');
            return self.k;
          },
          get tenant(): string {
            return self.config.ksc.tenant;
          },
          rules: () => this.ruleViews(),
          sync: (o) => this.sync(o),
          syncAttributes: (o) => this.syncAttributes(o),
          startTask: (req) => this.startTask(req),
        },
        {
          token: a.bearer_token!,
          maxBodyBytes: a.max_body_bytes,
          requestTimeoutMs: a.request_timeout * 1000,
          logger: this.klog,
          onResponse: (status) => this.metrics!.add(this.metrics!.adminRequests, String(status)),
          ...(tls !== undefined ? { tls } : {}),
          ...(con !== undefined ? { before: con.before, altAuth: con.altAuth, extraRoutes: con.routes() } : {}),
          // Wrong bearer tokens count per address; with the console, in the same limiter as its sign-ins.
          authLimit: con?.limiter ?? new SigninLimiter(),
          audit: (req, method, path, status) => {
            if (con !== undefined) con.audit(req, method, path, status);
            else this.log.info({ audit: true, via: 'bearer', method, path, status }, `admin change: ${method} ${path} -> ${status}`);
            // A connection or assets changed through the API reach the trust gate and the
            // watch now, not at the next timer tick: task-state events for a task started
            // right after would otherwise find neither.
            if (status < 300) {
              this.refreshTrustedConnections();
              try {
                if (this.k?.assetIndex().refresh() === true) this.publishWatch();
              } catch {
                // The store is unreadable for now: the asset timer tries again.
              }
            }
          },
        },
      );
      await server.listen(a.host, a.port);
    } catch (e) {
      con?.close();
      await server?.close().catch(() => undefined);
      throw new Error(`admin API: cannot listen on ${a.host}:${a.port}: ${(e as Error).message}`);
    }
    return { server, console: con };
  }
}
