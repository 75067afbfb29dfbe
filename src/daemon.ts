/**
 * The daemon: starts and stops everything in order. Start: outputs (and the dead-letter
 * output) first, then the pipeline, then the listeners, then the metrics endpoint; stop:
 * the reverse, draining on the way (SIGTERM/SIGINT). SIGHUP reloads the configuration
 * (unchanged listeners stay open; one that fails, checked or part-way, leaves the daemon
 * as it was: applyLocked) and reopens files.
 * What is started (sources, output runners, queues, the dead letter) is built by topology.ts.
 */
import { accessSync, constants, realpathSync, writeFileSync } from 'node:fs';
import { SpillWriter, takeSpill } from './pipeline/spill.js';
import { type StateDirLock, StateDirLockedError, lockStateDir, makeStateDir, tightenStateDir } from './state-dir.js';
import { orphanedBuffers } from './buffer/inventory.js';
import type { Config, ListenerConfig, OutputConfig } from './config/types.js';
import type { Output } from './outputs/types.js';
import { ConfigError, formatProblem, loadConfig } from './config/load.js';
import { checkNormalizers } from './config/normalizers.js';
import { FlowControl } from './pipeline/flow-control.js';
import { OutputRunner } from './pipeline/output-runner.js';
import { Pipeline } from './pipeline/pipeline.js';
import { WorkerPool } from './workers/worker-pool.js';
import { compileRoutes } from './pipeline/router.js';
import { availableParallelism } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { DiskQueue } from './buffer/disk-queue.js';
import type { Source } from './sources/source.js';
import { StateDirError, Topology, diskBufferOwners, wantsDisk } from './topology.js';
import type { Normalizer } from './pipeline/normalize.js';
import { SqlSource } from './sources/sql/source.js';
import type { SqlSourceConfig } from './sources/sql/config.js';
import { TlsMaterialError } from './sources/tcp/tls-material.js';
import { holdsInheritedSocket, unusedInheritedSockets } from './sources/shared/systemd.js';
import { MetricsServer } from './telemetry/http.js';
import { SigninLimiter } from './console/signin-limit.js';
import { Telemetry } from './telemetry/telemetry.js';
import type { DaemonExtension } from './extensions/extension.js';
import { createExtensions } from './extensions/index.js';
import { EXIT } from './errors.js';
import { StartupSignals } from './startup-signals.js';
import { VERSION } from './version.js';


export { StateDirError };

interface SlotEntry {
  key: string;
  slot: OutputRunner;
}

/** A running listener or SQL source, with the configuration (JSON) it was started with. */
interface Entry<S> {
  key: string;
  source: S;
  /**
   * Stopped by a reload that failed and could not start it again: the next reload starts it
   * even with an unchanged configuration (and nothing stops it a second time).
   */
  down?: boolean;
}
type SourceEntry = Entry<Source>;
type SqlEntry = Entry<SqlSource>;

/** Whether a reload keeps `e` as it runs: the same configuration, and not down. */
function keeps<S>(e: Entry<S> | undefined, config: unknown): e is Entry<S> {
  return e !== undefined && e.key === JSON.stringify(config) && e.down !== true;
}

/**
 * The undo of a reload step that stopped `e`: starts it again as it was and puts the new
 * entry in its place; when that fails too, `e` is marked down (see Entry).
 */
function restoreOrDown<S>(e: Entry<S>, start: () => Promise<Entry<S>>, replace: (again: Entry<S>) => void): () => Promise<void> {
  return async () => {
    try {
      replace(await start());
    } catch (err) {
      e.down = true;
      throw err;
    }
  };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export class Daemon {
  readonly telemetry: Telemetry;
  readonly flow: FlowControl;
  private config: Config;
  private pipeline: Pipeline | null = null;
  private slots: SlotEntry[] = [];
  private deadLetter: SlotEntry | null = null;
  private sources: SourceEntry[] = [];
  private sqlSources: SqlEntry[] = [];
  private metrics: MetricsServer | null = null;
  private pool: WorkerPool | null = null;
  private workerCount = 0;
  private readonly topology: Topology;
  private stopping: Promise<number> | null = null;
  private reloading: Promise<boolean> = Promise.resolve(true);
  /** Listeners of the reload in progress that kept their old certificates. */
  private readonly certificatesRefused: string[] = [];

  constructor(
    config: Config,
    telemetry: Telemetry,
    private readonly configFile?: string,
    private readonly extensions: DaemonExtension[] = [],
  ) {
    this.config = config;
    this.telemetry = telemetry;
    this.flow = new FlowControl(telemetry);
    this.topology = new Topology(telemetry, this.flow, () => this.pipeline, () => this.config.state_dir);
  }

  /** What the Overview lists (Telemetry.configured): the listeners and outputs of `c`. */
  private setConfigured(c: Config): void {
    this.telemetry.configured = {
      listeners: new Set([...c.listeners.map((l) => l.name), ...c.sql_sources.map((q) => q.name)]),
      outputs: new Set([...c.outputs.map((o) => o.name), 'dead_letter']),
    };
  }

  get current(): Config {
    return this.config;
  }

  /** Bound ports by listener name (port 0 in the config picks a free one). */
  ports(): Record<string, number | undefined> {
    return Object.fromEntries(this.sources.map((s) => [s.source.name, s.source.port()]));
  }

  metricsPort(): number | undefined {
    return this.metrics?.port();
  }

  notReady(): string[] {
    const out: string[] = [];
    for (const s of this.sources) if (!s.source.ready) out.push(`listener ${s.source.name}`);
    for (const s of this.sqlSources) if (!s.source.ready) out.push(`sql source ${s.source.name}`);
    if (this.pipeline === null) out.push('pipeline');
    // A receiver that cannot publish takes frames it can only queue: the load balancer should pick another.
    if (this.config.mode === 'receiver') {
      for (const s of this.slots) {
        const why = s.slot.output.unready?.();
        if (why !== undefined) out.push(`output ${s.slot.name}: ${why}`);
      }
    }
    if (this.stopping !== null) out.push('shutting down');
    for (const x of this.extensions) out.push(...(x.notReady?.() ?? []));
    return out;
  }

  private workerConfig(c: Config) {
    return {
      defaultZone: c.timezone,
      includeRaw: c.include_raw,
      routes: c.outputs.map((o) => ({ filter: o.filter, encoding: o.encoding })),
      event: c.event,
      chains: Object.fromEntries(c.listeners.map((l) => [l.name, l.normalizers])),
      baseDir: c.base_dir,
    };
  }

  private async startSqlSources(list: readonly SqlSourceConfig[], c: Config): Promise<void> {
    for (const q of list) this.sqlSources.push(await this.startSqlSource(q, await this.topology.chain(q, c), c));
  }

  /**
   * state_dir exists, is writable, is this daemon's alone (its lock, held until the stop:
   * state-dir.ts; StateDirLockedError when another process holds it) and is private (0700,
   * files 0600). The lock comes before anything else is written or changed in the folder.
   */
  private prepareStateDir(c: Config): void {
    try {
      makeStateDir(c.state_dir);
      accessSync(c.state_dir, constants.W_OK);
      this.lock = lockStateDir(c.state_dir);
      const exempt = [c.dead_letter.path, ...c.outputs.flatMap((o) => (o.type === 'file' ? [o.path] : []))];
      for (const t of tightenStateDir(c.state_dir, exempt)) {
        this.telemetry.log.warn(
          { path: t.path, from: t.from.toString(8), to: t.to.toString(8) },
          `${t.path} was readable by other users (mode ${t.from.toString(8)}); tightened to ${t.to.toString(8)}`,
        );
      }
    } catch (e) {
      if (e instanceof StateDirLockedError) throw e;
      const err = e as NodeJS.ErrnoException;
      throw new StateDirError(`state_dir ${c.state_dir} cannot be used: ${err.code ?? err.message}`);
    }
  }

  async start(): Promise<void> {
    const c = this.config;
    this.prepareStateDir(c);
    this.setConfigured(c);
    // Normalizers first: a module that does not load is a configuration error.
    const chains = new Map<string, Normalizer[]>();
    for (const l of c.listeners) chains.set(l.name, await this.topology.chain(l, c));
    const dead = this.topology.deadLetterRunner(c);
    await dead.start();
    this.deadLetter = { key: JSON.stringify(c.dead_letter), slot: dead };
    for (const o of c.outputs) {
      const slot = this.topology.runner(o);
      await slot.start();
      this.slots.push({ key: JSON.stringify(o), slot });
    }
    this.pipeline = new Pipeline(
      this.slots.map((s) => s.slot),
      dead,
      this.telemetry,
      { defaultZone: c.timezone, includeRaw: c.include_raw, routes: compileRoutes(c.outputs, c.event), receiver: c.mode === 'receiver' },
    );
    const pipeline = this.pipeline;
    for (const x of this.extensions) {
      await x.start({
        config: c,
        telemetry: this.telemetry,
        log: this.telemetry.log,
        addTap: (tap) => pipeline.addTap(tap),
        watchEvents: (spec, onFindings) => pipeline.setWatch(spec, onFindings),
        recentEvents: (sink, o) => pipeline.setRecent(sink, o),
        queryRecent: (q) => pipeline.queryRecent(q),
        holdAcks: (hold) => pipeline.holdAcks(hold),
        workers: () => this.workerCount,
      });
    }
    const workers = workersFor(c);
    this.workerCount = workers;
    if (workers > 0) {
      this.pool = new WorkerPool(workers, (why) => this.telemetry.repeated('error', 'decode_worker_died', { err: why }, why));
      pipeline.useWorkers(this.pool, await this.pool.init(this.workerConfig(c)));
      if (pipeline.onWorkers) this.telemetry.log.info({ workers }, `decoding on ${workers} worker threads`);
      else this.telemetry.log.info({ workers }, `${workers} decode worker threads started; events are decoded on the main thread while an extension taps them`);
    }
    this.replaySpill(c, pipeline, chains);
    for (const l of c.listeners) {
      const source = await this.topology.source(l, chains.get(l.name)!);
      this.sources.push({ key: JSON.stringify(l), source });
      await source.start();
    }
    await this.startSqlSources(c.sql_sources, c);
    for (const s of unusedInheritedSockets()) {
      this.telemetry.log.warn(s, `socket ${s.fd} from systemd (${s.name || 'unnamed'}${s.port !== undefined ? `, ${s.proto ?? ''} port ${s.port}` : ''}) matches no listener: the socket unit and the configuration disagree`);
    }
    if (c.metrics.enabled) {
      this.metrics = new MetricsServer(this.telemetry, this, c.metrics.bearer_token, this.metricsLimiter);
      await this.metrics.start(c.metrics.host, c.metrics.port);
    }
    this.telemetry.log.info(
      { listeners: c.listeners.map((l) => l.name), outputs: c.outputs.map((o) => o.name) },
      `cefd started: ${c.listeners.length} listeners, ${c.outputs.length} outputs`,
    );
    this.checkOrphanedBuffers();
  }

  /** Wrong metrics bearer tokens per client address, kept across the metrics servers a reload starts. */
  private metricsLimiter = new SigninLimiter();

  /** The lock of the state directory in use (state-dir.ts), released at the stop. */
  private lock: StateDirLock | null = null;

  /**
   * Buffers no configured output owns (removed or renamed outputs): one warning each and
   * the cefd_buffer_orphaned_bytes gauge. Never deletes: the events may still be wanted.
   */
  private checkOrphanedBuffers(): void {
    const c = this.config;
    try {
      this.telemetry.buffersOrphaned(orphanedBuffers(c.state_dir, diskBufferOwners(c)));
    } catch (e) {
      this.telemetry.log.error({ err: (e as Error).message }, `cannot look for orphaned disk buffers in ${c.state_dir}: ${(e as Error).message}`);
    }
  }

  /**
   * Reads the last stop kept (spill.ts) are decoded before any listener opens, so they
   * reach the outputs before new input, with their listener's normalizers.
   */
  private replaySpill(c: Config, pipeline: Pipeline, chains: Map<string, Normalizer[]>): void {
    let spilled: ReturnType<typeof takeSpill>;
    try {
      spilled = takeSpill(c.state_dir);
    } catch (e) {
      this.telemetry.log.error({ err: (e as Error).message }, `the shutdown spill file in ${c.state_dir} cannot be read: ${(e as Error).message}`);
      return;
    }
    if (spilled === null) return;
    if (spilled.files.length > 1) {
      this.telemetry.log.warn(
        { files: spilled.files },
        `the shutdown spill an earlier start took was not finished (it stopped or crashed before the events were on disk); replaying ${spilled.files.length} spill files, oldest first`,
      );
    }
    let frames = 0;
    for (const r of spilled.reads) {
      frames += r.frames.length;
      pipeline.replay(r, {
        listener: r.listener,
        stats: this.telemetry.listener(r.listener),
        normalizers: chains.get(r.listener) ?? [],
        peer: r.peer,
        ...(r.tlsFingerprint !== undefined ? { tlsFingerprint: r.tlsFingerprint } : {}),
      });
    }
    if (spilled.bad.length > 0) {
      const keep = `${c.state_dir}/shutdown-spill.unreadable.${Date.now()}`;
      writeFileSync(keep, `${spilled.bad.join('\n')}\n`, { mode: 0o600 });
      this.telemetry.log.error({ lines: spilled.bad.length, path: keep }, `${spilled.bad.length} lines of the shutdown spill file do not parse; kept in ${keep}`);
    }
    // The file goes once every queue holds what its frames became on disk: a full buffer
    // keeps them in memory for a while, and a crash until then replays the file again.
    const queues = [...this.slots.map((s) => s.slot.queue), ...(this.deadLetter !== null ? [this.deadLetter.slot.queue] : [])];
    void Promise.all(queues.map((q) => q.onDisk?.())).then(() => {
      try {
        spilled.done();
      } catch (e) {
        this.telemetry.log.warn({ err: (e as Error).message }, `the replayed shutdown spill file cannot be deleted: ${(e as Error).message}`);
      }
    });
    this.telemetry.log.info({ frames, reads: spilled.reads.length }, `decoded ${frames} frames kept by the last stop (read but not decoded then)`);
  }

  /**
   * Graceful stop: stop accepting and reading at once, decode what was read, flush every
   * output, within shutdown_timeout; reads not decoded by then are kept for the next
   * start (spill.ts), batches not delivered stay in disk buffers. Returns the number of
   * events left undelivered (memory queues).
   */
  stop(): Promise<number> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<number> {
    await this.reloading.catch(() => false);
    const t0 = Date.now();
    const budget = this.config.shutdown_timeout * 1000;
    this.telemetry.log.info({ timeoutMs: budget }, 'stopping: draining connections and outputs');
    // Reading stops at once (sockets under backpressure are not resumed; one still
    // reading may finish for a moment); a SQL source may finish its query in flight
    // within half the budget. Decoding gets up to half the budget, the outputs the rest,
    // and what the workers did not decode by then is kept (spill.ts). A source that
    // acknowledges upstream (nats) only stops fetching here; it acknowledges and closes
    // after the decoding below, so what it delivered is not delivered again elsewhere.
    // Sources a failed reload left stopped are not stopped a second time.
    const live = this.sources.filter((s) => s.down !== true);
    const acking = live.filter((s) => s.source.stopReading !== undefined);
    await Promise.all([
      ...live.map((s) => (s.source.stopReading !== undefined ? s.source.stopReading() : s.source.stop(Math.min(1000, budget / 4)))),
      ...this.sqlSources.map((s) => this.stopSql(s, budget / 2)),
    ]);
    this.pipeline?.commit();
    await this.pipeline?.drain(Math.max(100, budget / 2 - (Date.now() - t0)));
    const spill = new SpillWriter(this.config.state_dir);
    this.pipeline?.spillFailedReads((r) => spill.write(r));
    await this.pool?.close();
    this.pool = null;
    // Frames gathered when the last jobs came back: kept too.
    await this.pipeline?.drain(100);
    spill.close();
    // What the outputs took is acknowledged (once the KSC work it holds is published:
    // ksc/cluster.ts), what they did not is given back; then those connections close. The
    // KSC extension, stopped below, closes its own connection after its last publishes.
    await Promise.all(acking.map((s) => s.source.stop(Math.max(500, budget / 2 - (Date.now() - t0)))));
    let read = 0;
    for (const l of this.telemetry.listeners.values()) read += l.framesLf + l.framesOctet + l.framesDatagram;
    // Events outputs dropped since start (when_full: drop_newest, hard limits): with the
    // counts above, what became of every frame read is in this one line.
    const dropped: Record<string, number> = {};
    for (const [name, o] of this.telemetry.outputs) {
      let n = 0;
      for (const v of o.dropped.map.values()) n += v;
      if (n > 0) dropped[name] = n;
    }
    this.telemetry.log.info(
      { framesRead: read, framesSpilled: spill.frames, ...(Object.keys(dropped).length > 0 ? { eventsDropped: dropped } : {}), ...(spill.error !== null ? { spillError: spill.error } : {}) },
      spill.frames > 0 ? `${read} frames read since start; ${spill.frames} not decoded in time are kept in ${spill.path} for the next start` : `${read} frames read since start; every one was decoded`,
    );
    this.telemetry.log.debug({ ms: Date.now() - t0 }, 'listeners stopped');
    for (const x of this.extensions) {
      await x.stop().catch((e: Error) => this.telemetry.log.error({ extension: x.name, err: e.message }, `extension ${x.name} did not stop cleanly: ${e.message}`));
    }
    let left = 0;
    const remaining = () => Math.max(100, budget - (Date.now() - t0));
    let kept = 0;
    const account = (slot: OutputRunner, n: number) => {
      if (n === 0) return;
      if (slot.queue.durable) {
        kept += n;
        this.telemetry.log.warn({ output: slot.name, events: n }, `output ${slot.name}: ${n} undelivered events stay in its disk buffer and are delivered after the next start`);
      } else {
        this.telemetry.eventsDropped(slot.name, n, 'shutdown_undelivered');
        left += n;
      }
    };
    const results = await Promise.all(this.slots.map(async (s) => ({ slot: s.slot, left: await s.slot.stop(remaining()) })));
    this.telemetry.log.debug({ ms: Date.now() - t0 }, 'outputs stopped');
    for (const r of results) account(r.slot, r.left);
    // Rejections at the very end still reach the dead-letter output.
    if (this.deadLetter !== null) account(this.deadLetter.slot, await this.deadLetter.slot.stop(remaining()));
    await this.metrics?.stop();
    this.metrics = null;
    if (left > 0) this.telemetry.log.error({ undelivered: left }, `stopped with ${left} events undelivered and lost (memory queues that did not drain within shutdown_timeout)`);
    else if (kept > 0) this.telemetry.log.info({ ms: Date.now() - t0, buffered: kept }, `stopped; ${kept} events wait in disk buffers`);
    else this.telemetry.log.info({ ms: Date.now() - t0 }, 'stopped; every event was delivered');
    this.lock?.release();
    this.lock = null;
    return left;
  }

  /** SIGHUP: reopen output files, then reload the configuration file. */
  reload(): Promise<boolean> {
    this.reloading = this.reloading.then(
      () => this.doReload(),
      () => this.doReload(),
    );
    return this.reloading;
  }

  /**
   * A failed reload: one error line with a stable code, counted in
   * cefd_config_reloads_total{result="failed"}.
   */
  private reloadFailed(msg: string, fields: Record<string, unknown> = {}): false {
    this.telemetry.reloads.add('failed');
    this.telemetry.log.error({ code: 'config_reload_failed', ...fields, err: msg }, `configuration reload failed; the running configuration stays: ${msg}`);
    return false;
  }

  private async doReload(): Promise<boolean> {
    if (this.stopping !== null) return false;
    for (const s of this.slots) await s.slot.reopen().catch((e: Error) => this.telemetry.log.error({ output: s.slot.name, err: e.message }, `output ${s.slot.name}: reopen failed`));
    await this.deadLetter?.slot.reopen().catch(() => undefined);
    if (this.configFile === undefined) {
      const refused = this.sources.filter((s) => !s.source.reload()).map((s) => s.source.name);
      if (refused.length > 0) return this.reloadFailed(`listener ${refused.join(', ')} kept its old certificates (the new files were refused)`, { listeners: refused });
      this.telemetry.log.info('files reopened (built-in configuration: nothing to reload)');
      return true;
    }
    let next: Config;
    const chains: Chains = { listeners: new Map(), sql: new Map() };
    try {
      next = loadConfig(this.configFile);
      // What `cefd validate` and `cefd run` check (TLS files, every normalizer of listeners
      // and SQL sources, SQL drivers), then every chain loaded: nothing later can fail on them.
      await checkNormalizers(next, this.configFile);
      for (const l of next.listeners) chains.listeners.set(l.name, await this.topology.chain(l, next));
      for (const q of next.sql_sources) chains.sql.set(q.name, await this.topology.chain(q, next));
    } catch (e) {
      return this.reloadFailed(e instanceof ConfigError ? e.problems.map((p) => formatProblem(p, this.configFile)).join('; ') : (e as Error).message);
    }
    // A listener on a socket from systemd (cefd.socket) cannot be reopened in place.
    const pinned = this.sources.filter((s) => holdsInheritedSocket(s.source.name) && !next.listeners.some((l) => l.name === s.source.name && JSON.stringify(l) === s.key)).map((s) => s.source.name);
    if (pinned.length > 0) {
      return this.reloadFailed(
        `listener ${pinned.join(', ')} changed or removed, but it listens on a socket from systemd, which a reload cannot reopen: restart cefd instead (systemctl restart cefd; connections wait in the socket's backlog meanwhile)`,
        { listeners: pinned },
      );
    }
    // The disk buffers, the KSC store, the SQL cursors and the lock live in state_dir: a
    // reload cannot move them (buffers that keep running would stay in the old folder,
    // unlocked), so a new state_dir waits for a restart. The same folder by another path
    // (a symbolic link) is no change.
    if (!sameFolder(next.state_dir, this.config.state_dir)) {
      return this.reloadFailed(`state_dir changed from ${this.config.state_dir} to ${next.state_dir}: a reload cannot move the disk buffers, the KSC store and the SQL cursors; restart cefd to apply it (systemctl restart cefd)`, { reason: 'restart_needed', key: 'state_dir' });
    }
    // Logs on stdout (no stdout output at the start: runDaemon) cannot move to stderr while
    // cefd runs: a stdout output now would mix events into them.
    const stdoutOutputs = next.outputs.filter((o) => o.type === 'stdout').map((o) => o.name);
    if (this.telemetry.logsTo === 'stdout' && stdoutOutputs.length > 0) {
      return this.reloadFailed(
        `output ${stdoutOutputs.join(', ')} writes events to stdout, where cefd's logs go (they move to stderr only when cefd starts with a stdout output); restart cefd to add it (systemctl restart cefd)`,
        { reason: 'restart_needed', key: 'outputs', outputs: stdoutOutputs },
      );
    }
    const prev = this.config;
    this.certificatesRefused.length = 0;
    try {
      await this.apply(next, chains);
    } catch (e) {
      return this.reloadFailed((e as Error).message);
    }
    if (next.logging.repeat_interval !== prev.logging.repeat_interval) this.telemetry.repeatIntervalMs = next.logging.repeat_interval * 1000;
    this.warnRestartOnly(prev, next);
    // What failed after the new configuration was applied (nothing to undo it with): the
    // rest stays applied, and the reload counts as failed.
    const failed: string[] = [];
    const fields: Record<string, unknown> = {};
    for (const x of this.extensions) {
      // An extension that fails keeps what it could not change as it ran (the KSC admin API
      // on its old address: src/ksc/extension.ts); the next reload tries again.
      await x.reload?.(next).catch((e: Error) => {
        failed.push(`extension ${x.name}: ${e.message}`);
        fields['extensions'] = [...((fields['extensions'] as string[] | undefined) ?? []), x.name];
      });
    }
    if (this.certificatesRefused.length > 0) {
      // Files changed between the check and the listener's re-read: the old pair stays on
      // those listeners; the rest of the new configuration is applied.
      const names = [...this.certificatesRefused];
      failed.unshift(`listener ${names.join(', ')} kept its old certificates (the files changed after the check and were refused)`);
      fields['listeners'] = names;
    }
    if (failed.length > 0) {
      this.telemetry.reloads.add('failed');
      this.telemetry.log.error({ code: 'config_reload_failed', ...fields, err: failed.join('; ') }, `configuration reload failed: ${failed.join('; ')}; the rest of the new configuration is applied`);
      return false;
    }
    this.telemetry.reloads.add('ok');
    this.telemetry.log.info('configuration reloaded');
    return true;
  }

  /**
   * Settings a reload does not apply (they are read once, at the start): one warning each
   * (`config_restart_needed`) with the old and the new value. The rest of the configuration
   * is applied (docs/configuration.md#reloading-sighup).
   */
  private warnRestartOnly(prev: Config, next: Config): void {
    const warn = (key: string, from: unknown, to: unknown, why: string) =>
      this.telemetry.log.warn({ code: 'config_restart_needed', key, from, to }, `${key} changed from ${String(from)} to ${String(to)}: ${why}`);
    // The decode worker threads are started once (start); a reload gives the running ones
    // the new configuration, but does not start or stop any.
    const want = workersFor(next);
    if (want !== this.workerCount) {
      const threads = `the decode worker threads: ${this.workerCount} now${this.workerCount === 0 ? ' (decoding on the main thread)' : ''}, ${want} after a restart`;
      if (next.decode_workers !== prev.decode_workers) warn('decode_workers', prev.decode_workers, next.decode_workers, `takes effect at the next restart (${threads})`);
      if (next.mode !== prev.mode) warn('mode', prev.mode, next.mode, `applied, except ${threads}`);
    }
    // Logs went to stderr because the start had a stdout output; they stay there.
    if (this.telemetry.logsTo === 'stderr' && prev.outputs.some((o) => o.type === 'stdout') && !next.outputs.some((o) => o.type === 'stdout')) {
      warn('outputs', 'a stdout output', 'none', "cefd's logs stay on stderr until the next restart");
    }
  }

  private async apply(next: Config, chains: Chains): Promise<void> {
    // Reading stops while outputs and workers change, so no read is decoded under one
    // configuration and routed under another.
    const key = '\0reload';
    this.flow.block(key, 'configuration reload');
    try {
      await this.pipeline!.drain(5_000);
      let version = -1;
      if (this.pool !== null) {
        try {
          version = await this.pool.init(this.workerConfig(next));
        } catch (e) {
          // Workers keep their old configuration; reads they decode under it are done again
          // on the main thread (the pipeline checks the version).
          this.telemetry.log.error({ err: (e as Error).message }, `decode workers cannot load the new configuration; decoding on the main thread: ${(e as Error).message}`);
          this.pipeline!.useWorkers(null);
        }
      }
      try {
        await this.applyLocked(next, version, chains);
      } catch (e) {
        // The workers got the new routes and normalizers above: they get the running
        // configuration back (what they decoded meanwhile is done again on this thread,
        // the versions differ), or decoding stays on this thread if they cannot load it.
        if (this.pool !== null) {
          try {
            this.pipeline!.useWorkers(this.pool, await this.pool.init(this.workerConfig(this.config)));
          } catch (err) {
            this.telemetry.log.error({ err: (err as Error).message }, `decode workers cannot load the running configuration again; decoding on the main thread: ${(err as Error).message}`);
            this.pipeline!.useWorkers(null);
          }
        }
        throw e;
      }
    } finally {
      this.flow.unblock(key);
    }
  }

  /** Stops a listener: one that acknowledges upstream (nats) after the pipeline decoded what it handed over (see doStop). */
  private async stopListener(s: SourceEntry): Promise<void> {
    if (s.down === true) return;
    if (s.source.stopReading !== undefined) {
      await s.source.stopReading();
      this.pipeline!.commit();
      await this.pipeline!.drain(5_000);
      await s.source.stop(1000);
    } else {
      await s.source.stop(1000);
      this.pipeline!.commit();
    }
  }

  /** Builds and starts a listener; one that does not start is closed again before the error goes on. */
  private async startListener(l: ListenerConfig, chain: Normalizer[]): Promise<SourceEntry> {
    const source = await this.topology.source(l, chain);
    try {
      await source.start();
    } catch (e) {
      await source.stop(0).catch(() => undefined);
      throw e;
    }
    return { key: JSON.stringify(l), source };
  }

  /** Stops a SQL source (one a failed reload left down is stopped already). */
  private async stopSql(e: SqlEntry, ms: number): Promise<void> {
    if (e.down !== true) await e.source.stop(ms);
  }

  private async startSqlSource(q: SqlSourceConfig, chain: Normalizer[], c: Config): Promise<SqlEntry> {
    const source = new SqlSource(q, { pipeline: this.pipeline!, flow: this.flow, telemetry: this.telemetry, normalizers: chain, stateDir: c.state_dir });
    await source.start();
    return { key: JSON.stringify(q), source };
  }

  /**
   * Applies a checked configuration in three steps. 1: outputs are built and disk buffers
   * handed over (undone below on failure). 2: listeners, SQL sources and the metrics
   * endpoint change, each step with its undo: a listener moving to another address binds
   * there before its old socket closes; one that keeps its address (or has none: nats)
   * closes first and, should the new one not start, the old configuration's listener opens
   * again. 3, once nothing can fail: the pipeline takes the new outputs and routes, what
   * the new configuration no longer has stops, and `current` becomes the new configuration.
   * Throws after undoing: the daemon runs as before (docs/configuration.md#reloading-sighup).
   */
  private async applyLocked(next: Config, workerVersion: number, chains: Chains): Promise<void> {
    const prev = this.config;
    const outputs = await this.prepareOutputs(prev, next);
    const undo: { what: string; run: () => Promise<void> }[] = [];
    // Step 2's results, taken over in step 3.
    const keep: SourceEntry[] = [];
    const fresh: SourceEntry[] = [];
    const stopped = new Set<SourceEntry>();
    const keepSql: SqlEntry[] = [];
    const freshSql: SqlEntry[] = [];
    const removedSql: SqlEntry[] = [];
    let metrics: { server: MetricsServer | null; oldStopped: boolean; limiter: SigninLimiter } | null = null;
    try {
      // Listeners: unchanged ones stay open (their certificates are re-read in step 3).
      const oldSources = new Map(this.sources.map((s) => [s.source.name, s]));
      const starts: ListenerConfig[] = [];
      for (const l of next.listeners) {
        const old = oldSources.get(l.name);
        if (keeps(old, l)) {
          keep.push(old);
          oldSources.delete(l.name);
        } else starts.push(l);
      }
      const retiring = [...oldSources.values()];
      for (const l of starts) {
        for (const s of retiring) {
          if (stopped.has(s) || !mustCloseFirst(l, s)) continue;
          await this.stopListener(s);
          stopped.add(s);
          const before = prev.listeners.find((x) => x.name === s.source.name)!;
          undo.push({
            what: `listener ${s.source.name}`,
            run: restoreOrDown(
              s,
              async () => this.startListener(before, await this.topology.chain(before, prev)),
              (again) => (this.sources = this.sources.map((x) => (x === s ? again : x))),
            ),
          });
        }
        const entry = await this.startListener(l, chains.listeners.get(l.name)!);
        fresh.push(entry);
        undo.push({ what: `new listener ${l.name}`, run: () => this.stopListener(entry) });
      }
      // SQL sources: unchanged ones keep polling; a changed one stops before its
      // replacement starts (they share the cursor file), and starts again on failure.
      const oldSql = new Map(this.sqlSources.map((s) => [s.source.name, s]));
      for (const q of next.sql_sources) {
        const old = oldSql.get(q.name);
        if (keeps(old, q)) {
          keepSql.push(old);
          oldSql.delete(q.name);
          continue;
        }
        if (old !== undefined) {
          oldSql.delete(q.name);
          await this.stopSql(old, 5000);
          const before = prev.sql_sources.find((x) => x.name === q.name)!;
          undo.push({
            what: `sql source ${q.name}`,
            run: restoreOrDown(
              old,
              async () => this.startSqlSource(before, await this.topology.chain(before, prev), prev),
              (again) => (this.sqlSources = this.sqlSources.map((x) => (x === old ? again : x))),
            ),
          });
        }
        const entry = await this.startSqlSource(q, chains.sql.get(q.name)!, next);
        freshSql.push(entry);
        undo.push({ what: `new sql source ${q.name}`, run: () => entry.source.stop(5000) });
      }
      removedSql.push(...oldSql.values());
      // The metrics endpoint, the same way: a new address first, the same one after the old closed.
      // Also when it is down (a failed reload could not open it again): started anew.
      if (!same(prev.metrics, next.metrics) || (this.metrics === null && next.metrics.enabled)) {
        const old = this.metrics;
        metrics = { server: null, oldStopped: false, limiter: this.metricsLimiter };
        const m = metrics;
        if (old !== null && (!next.metrics.enabled || (next.metrics.port !== 0 && next.metrics.port === prev.metrics.port))) {
          await old.stop();
          m.oldStopped = true;
          undo.push({
            what: 'the metrics endpoint',
            run: async () => {
              this.metrics = null;
              const again = new MetricsServer(this.telemetry, this, prev.metrics.bearer_token, this.metricsLimiter);
              await again.start(prev.metrics.host, prev.metrics.port);
              this.metrics = again;
            },
          });
        }
        // A new token starts a new count: Prometheus's scrapes with the old token while the
        // token was rotated were not guesses of the new one.
        m.limiter = next.metrics.bearer_token === prev.metrics.bearer_token ? this.metricsLimiter : new SigninLimiter();
        if (next.metrics.enabled) {
          const server = new MetricsServer(this.telemetry, this, next.metrics.bearer_token, m.limiter);
          try {
            await server.start(next.metrics.host, next.metrics.port);
          } catch (e) {
            await server.stop().catch(() => undefined);
            throw new Error(`metrics endpoint: cannot listen on ${next.metrics.host}:${next.metrics.port}: ${(e as Error).message}`);
          }
          m.server = server;
          undo.push({ what: 'the new metrics endpoint', run: () => server.stop() });
        }
      }
    } catch (e) {
      // Undone in reverse order: a new listener closes before the old one it replaced opens again.
      for (const u of undo.reverse()) {
        await u.run().catch((err: Error) =>
          this.telemetry.log.error({ err: err.message }, `after the failed reload, ${u.what} cannot be restored: ${err.message} (it stays down until the next reload or restart)`),
        );
      }
      await outputs.rollback();
      throw e;
    }
    // Step 3: nothing below can fail.
    this.telemetry.log.level = next.logging.level;
    outputs.commit(workerVersion);
    for (const s of keep) if (!s.source.reload()) this.certificatesRefused.push(s.source.name);
    // Listeners that moved to another address, and removed ones, close now.
    const retired = this.sources.filter((s) => !keep.includes(s) && !stopped.has(s));
    await Promise.all(retired.map((s) => this.stopListener(s).catch((e: Error) => this.telemetry.log.warn({ listener: s.source.name, err: e.message }, `listener ${s.source.name} did not stop cleanly: ${e.message}`))));
    this.sources = [...keep, ...fresh].sort((a, b) => next.listeners.findIndex((l) => l.name === a.source.name) - next.listeners.findIndex((l) => l.name === b.source.name));
    await Promise.all(removedSql.map((s) => this.stopSql(s, 5000)));
    this.sqlSources = [...keepSql, ...freshSql];
    if (metrics !== null) {
      if (!metrics.oldStopped) await this.metrics?.stop();
      this.metrics = metrics.server;
      this.metricsLimiter = metrics.limiter;
    }
    this.config = next;
    this.setConfigured(next);
    outputs.retire(next);
  }

  /**
   * Step 1 of a reload (see applyLocked): outputs. Unchanged ones keep running; outputs with
   * a new queue are built and started, the running ones untouched. An output that keeps its
   * disk buffer takes it over, one at a time: its old runner stops (and closes its output,
   * so two never write one file) before the new one starts. Throws after giving every
   * buffer back; otherwise `rollback` does that later, `commit` hands the pipeline the new
   * outputs and routes, and `retire` drains the replaced runners in the background.
   */
  private async prepareOutputs(prev: Config, next: Config): Promise<{ rollback: () => Promise<void>; commit: (workerVersion: number) => void; retire: (c: Config) => void }> {
    const oldSlots = new Map(this.slots.map((s) => [s.slot.name, s]));
    const newSlots: SlotEntry[] = [];
    const retired: OutputRunner[] = [];
    const created: OutputRunner[] = [];
    const handOvers: { at: number; o: OutputConfig; old: OutputRunner }[] = [];
    let dead = this.deadLetter!;
    const deadKey = JSON.stringify(next.dead_letter);
    const deadHandOver = dead.key !== deadKey && dead.slot.queue instanceof DiskQueue && wantsDisk(next.dead_letter.buffer, 'file');
    /** Buffers taken over so far, and how to give each back. */
    const taken: { old: OutputRunner; slot: OutputRunner | null; giveBack: () => Output }[] = [];
    // A reload that fails anywhere gives every buffer back to its old runner, with a fresh
    // output of the old configuration, and closes what was built: every output stays as it was.
    const rollback = async () => {
      for (const t of taken.reverse()) {
        if (t.slot !== null) await t.slot.handOver();
        await t.old.resume(t.giveBack()).catch((err: Error) =>
          this.telemetry.log.error({ output: t.old.name, err: err.message }, `output ${t.old.name}: after the failed reload its output does not start either; its events wait in its disk buffer, and each try to send them starts it again: ${err.message}`),
        );
      }
      for (const c of created) void c.stop(1000);
    };
    try {
      for (const o of next.outputs) {
        const key = JSON.stringify(o);
        const old = oldSlots.get(o.name);
        if (old !== undefined && old.key === key) {
          newSlots.push(old);
          oldSlots.delete(o.name);
          continue;
        }
        if (old !== undefined && old.slot.queue instanceof DiskQueue && wantsDisk(o.buffer, o.type)) {
          // Same name, same buffer folder: the disk buffer goes to the new slot (below),
          // never closed and reopened, so nothing routed to the old slot meanwhile is lost.
          oldSlots.delete(o.name);
          handOvers.push({ at: newSlots.length, o, old: old.slot });
          newSlots.push(old);
          continue;
        }
        const slot = this.topology.runner(o);
        created.push(slot);
        await slot.start();
        newSlots.push({ key, slot });
      }
      if (dead.key !== deadKey && !deadHandOver) {
        const slot = this.topology.deadLetterRunner(next);
        created.push(slot);
        await slot.start();
        retired.push(dead.slot);
        dead = { key: deadKey, slot };
      }
      for (const h of handOvers) {
        const before = prev.outputs.find((x) => x.name === h.o.name)!;
        const t = {
          old: h.old,
          slot: null as OutputRunner | null,
          giveBack: () => {
            this.topology.adoptQueue(before, h.old.queue as DiskQueue, h.old);
            return this.topology.output(before);
          },
        };
        taken.push(t);
        await h.old.handOver();
        t.slot = this.topology.runner(h.o, h.old.queue as DiskQueue);
        await t.slot.start();
        newSlots[h.at] = { key: JSON.stringify(h.o), slot: t.slot };
      }
      if (deadHandOver) {
        const old = dead.slot;
        const t = {
          old,
          slot: null as OutputRunner | null,
          giveBack: () => {
            this.topology.adoptDeadLetterQueue(prev, old.queue as DiskQueue, old);
            return this.topology.deadLetterOutput(prev);
          },
        };
        taken.push(t);
        await old.handOver();
        t.slot = this.topology.deadLetterRunner(next, old.queue as DiskQueue);
        await t.slot.start();
        dead = { key: deadKey, slot: t.slot };
      }
    } catch (e) {
      await rollback();
      throw e;
    }
    for (const s of oldSlots.values()) retired.push(s.slot);
    const commit = (workerVersion: number) => {
      this.slots = newSlots;
      this.deadLetter = dead;
      this.pipeline!.reconfigure(
        newSlots.map((s) => s.slot),
        dead.slot,
        { defaultZone: next.timezone, includeRaw: next.include_raw, routes: compileRoutes(next.outputs, next.event), receiver: next.mode === 'receiver' },
        workerVersion,
      );
    };
    // Retired outputs drain in the background. What one leaves in a disk buffer is not
    // dropped: it stays on disk, reported as orphaned once they have stopped.
    const retire = (c: Config) => {
      const retiring = retired.map((r) =>
        r.stop(c.shutdown_timeout * 1000).then((left) => {
          if (left > 0 && !r.queue.durable) this.telemetry.eventsDropped(r.name, left, 'reload_undelivered');
        }),
      );
      void Promise.allSettled(retiring).then(() => {
        if (this.stopping === null) this.checkOrphanedBuffers();
      });
    };
    return { rollback, commit, retire };
  }
}

/** The decode worker threads a configuration asks for (started once, by Daemon.start; -1: one per core, none on one core). */
function workersFor(c: Config): number {
  return c.mode === 'receiver' ? 0 : c.decode_workers >= 0 ? c.decode_workers : availableParallelism() >= 2 ? availableParallelism() : 0;
}

/** Normalizer chains of a configuration, loaded: by listener name and by SQL source name. */
interface Chains {
  listeners: Map<string, Normalizer[]>;
  sql: Map<string, Normalizer[]>;
}

/** The socket a listener binds, `udp:PORT` or `tcp:PORT`; null for none (nats) or a port the kernel picks (0). */
function boundPort(l: { type: string }): string | null {
  const port = (l as { port?: unknown }).port;
  return typeof port === 'number' && port !== 0 ? `${l.type === 'udp' ? 'udp' : 'tcp'}:${port}` : null;
}

/**
 * Whether `s` must close before `l` starts: `l` binds the port `s` holds (on any address:
 * 0.0.0.0 and 127.0.0.1 conflict), or `l` replaces `s` and binds no port (a nats consumer
 * is not fetched by two sources at once). Otherwise `l` starts first and `s` closes after.
 */
function mustCloseFirst(l: ListenerConfig, s: SourceEntry): boolean {
  const port = boundPort(l);
  if (port !== null) return port === boundPort(s.source.config);
  return l.name === s.source.name && (l as { port?: unknown }).port === undefined;
}

/**
 * `cefd run`: load the configuration, start, and serve until SIGTERM/SIGINT. Returns the
 * exit code: 0 after a clean stop, 1 on a runtime failure, 78 on a configuration error.
 * Signals during the start are held by `early` (src/startup-signals.ts, from src/cli.ts):
 * a SIGHUP reloads once the daemon has started, a SIGTERM/SIGINT stops it then.
 */
export async function runDaemon(configFile: string | undefined, early: StartupSignals = new StartupSignals()): Promise<number> {
  let telemetry: Telemetry;
  let daemon: Daemon;
  try {
    let config: Config;
    try {
      config = loadConfig(configFile);
      await checkNormalizers(config, configFile);
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`cefd: invalid configuration\n${e.message}\n`);
        early.release();
        return EXIT.config;
      }
      throw e;
    }
    // Events on stdout and logs on stdout would interleave: logs move to stderr then (for
    // this run: a reload that adds the first stdout output is refused, see doReload).
    const logToStderr = config.outputs.some((o) => o.type === 'stdout');
    const tel = new Telemetry({ level: config.logging.level, repeatIntervalMs: config.logging.repeat_interval * 1000, logToStderr });
    telemetry = tel;
    tel.log.info({ pid: process.pid, version: VERSION, config: configFile ?? null }, `cefd ${VERSION} starting (pid ${process.pid})`);
    const held = (sig: NodeJS.Signals) =>
      tel.log.info({ signal: sig }, sig === 'SIGHUP' ? 'SIGHUP during start-up: the configuration is reloaded once cefd has started' : `${sig} during start-up: cefd stops once it has started`);
    if (early.hup) held('SIGHUP');
    if (early.stop !== null) held(early.stop);
    early.onSignal = held;
    daemon = new Daemon(config, tel, configFile, await createExtensions(config));
    try {
      await daemon.start();
    } catch (e) {
      const msg = (e as Error).message;
      tel.log.fatal({ ...(e instanceof StateDirLockedError ? { code: e.code, holder: e.holder } : {}), err: msg }, `cannot start: ${msg}`);
      await daemon.stop().catch(() => 0);
      tel.log.flush();
      early.release();
      // A state directory that cannot be used needs an operator: 78 stops systemd's restarts.
      // One in use by another cefd (StateDirLockedError) is a runtime failure, as a port in
      // use: 1, and a restart succeeds once the other one stopped.
      return e instanceof StateDirError || e instanceof TlsMaterialError ? EXIT.config : EXIT.failure;
    }
  } catch (e) {
    early.release();
    throw e;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onStop = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        telemetry.log.warn({ signal: sig }, 'second signal: exiting now');
        telemetry.log.flush();
        process.exit(EXIT.failure);
      }
      telemetry.log.info({ signal: sig }, `${sig}: stopping`);
      void daemon.stop().then(() => {
        telemetry.log.flush();
        process.off('SIGHUP', onHup);
        resolve(EXIT.ok);
      });
    };
    const onHup = () => {
      telemetry.log.info({ signal: 'SIGHUP' }, 'SIGHUP: reopening files and reloading the configuration');
      void daemon.reload();
    };
    // The daemon's handlers first, then the start-up ones go: no moment without a handler.
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onHup);
    early.release();
    if (early.stop !== null) onStop(early.stop);
    else if (early.hup) {
      telemetry.log.info({ signal: 'SIGHUP' }, 'SIGHUP came during start-up: reopening files and reloading the configuration now');
      void daemon.reload();
    }
  });
}

/** Whether two paths name one folder (through symbolic links too: a second lock on our own lock file would refuse it). */
function sameFolder(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return resolvePath(p);
    }
  };
  return real(a) === real(b);
}
