/**
 * The daemon: starts and stops everything in order. Start: outputs (and the dead-letter
 * output) first, then the pipeline, then the listeners, then the metrics endpoint; stop:
 * the reverse, draining on the way (SIGTERM/SIGINT). SIGHUP reloads the configuration
 * (an invalid one keeps the old running; unchanged listeners stay open) and reopens files.
 * What is started (sources, output runners, queues, the dead letter) is built by topology.ts.
 */
import { accessSync, constants, writeFileSync } from 'node:fs';
import { SpillWriter, takeSpill } from './pipeline/spill.js';
import { makeStateDir, removePidFile, tightenStateDir, writePidFile } from './state-dir.js';
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
import { DiskQueue } from './buffer/disk-queue.js';
import type { Source } from './sources/source.js';
import { StateDirError, Topology, diskBufferOwners, wantsDisk } from './topology.js';
import type { Normalizer } from './pipeline/normalize.js';
import { SqlSource } from './sources/sql/source.js';
import type { SqlSourceConfig } from './sources/sql/config.js';
import { TlsMaterialError, tlsProblems } from './sources/tcp/tls-material.js';
import { holdsInheritedSocket, unusedInheritedSockets } from './sources/shared/systemd.js';
import { MetricsServer } from './telemetry/http.js';
import { Telemetry } from './telemetry/telemetry.js';
import type { DaemonExtension } from './extensions/extension.js';
import { createExtensions } from './extensions/index.js';
import { EXIT } from './errors.js';


export { StateDirError };

interface SlotEntry {
  key: string;
  slot: OutputRunner;
}

interface SourceEntry {
  key: string;
  source: Source;
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
  private sqlSources: { key: string; source: SqlSource }[] = [];
  private metrics: MetricsServer | null = null;
  private pool: WorkerPool | null = null;
  private workerCount = 0;
  private readonly topology: Topology;
  private stopping: Promise<number> | null = null;
  private reloading: Promise<boolean> = Promise.resolve(true);
  /** Listeners of the reload in progress that kept their old certificates. */
  private certificatesRefused = 0;

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
    for (const q of list) {
      const chain: Normalizer[] = [];
      chain.push(...(await this.topology.chain(q, c)));
      const source = new SqlSource(q, { pipeline: this.pipeline!, flow: this.flow, telemetry: this.telemetry, normalizers: chain, stateDir: c.state_dir });
      this.sqlSources.push({ key: JSON.stringify(q), source });
      await source.start();
    }
  }

  /** state_dir exists, is writable, and is private (0700, files 0600: src/state-dir.ts). */
  private prepareStateDir(c: Config): void {
    try {
      makeStateDir(c.state_dir);
      accessSync(c.state_dir, constants.W_OK);
      const exempt = [c.dead_letter.path, ...c.outputs.flatMap((o) => (o.type === 'file' ? [o.path] : []))];
      for (const t of tightenStateDir(c.state_dir, exempt)) {
        this.telemetry.log.warn(
          { path: t.path, from: t.from.toString(8), to: t.to.toString(8) },
          `${t.path} was readable by other users (mode ${t.from.toString(8)}); tightened to ${t.to.toString(8)}`,
        );
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new StateDirError(`state_dir ${c.state_dir} cannot be used: ${err.code ?? err.message}`);
    }
  }

  async start(): Promise<void> {
    const c = this.config;
    this.prepareStateDir(c);
    try {
      writePidFile(c.state_dir);
      this.pidDir = c.state_dir;
    } catch (e) {
      this.telemetry.log.warn({ err: (e as Error).message }, `cannot write the pid file in ${c.state_dir} (cefd buffers drop then cannot tell that cefd runs): ${(e as Error).message}`);
    }
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
    const workers = c.mode === 'receiver' ? 0 : c.decode_workers >= 0 ? c.decode_workers : availableParallelism() >= 2 ? availableParallelism() : 0;
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
      this.metrics = new MetricsServer(this.telemetry, this, c.metrics.bearer_token);
      await this.metrics.start(c.metrics.host, c.metrics.port);
    }
    this.telemetry.log.info(
      { listeners: c.listeners.map((l) => l.name), outputs: c.outputs.map((o) => o.name) },
      `cefd started: ${c.listeners.length} listeners, ${c.outputs.length} outputs`,
    );
    this.checkOrphanedBuffers();
  }

  /** The state directory the pid file was written in (state-dir.ts), removed at the stop. */
  private pidDir: string | null = null;

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
    const acking = this.sources.filter((s) => s.source.stopReading !== undefined);
    await Promise.all([
      ...this.sources.map((s) => (s.source.stopReading !== undefined ? s.source.stopReading() : s.source.stop(Math.min(1000, budget / 4)))),
      ...this.sqlSources.map((s) => s.source.stop(budget / 2)),
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
    if (this.pidDir !== null) removePidFile(this.pidDir);
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

  private async doReload(): Promise<boolean> {
    if (this.stopping !== null) return false;
    for (const s of this.slots) await s.slot.reopen().catch((e: Error) => this.telemetry.log.error({ output: s.slot.name, err: e.message }, `output ${s.slot.name}: reopen failed`));
    await this.deadLetter?.slot.reopen().catch(() => undefined);
    if (this.configFile === undefined) {
      let refused = 0;
      for (const s of this.sources) if (!s.source.reload()) refused++;
      if (refused > 0) {
        this.telemetry.reloads.add('failed');
        return false;
      }
      this.telemetry.log.info('files reopened (built-in configuration: nothing to reload)');
      return true;
    }
    let next: Config;
    try {
      next = loadConfig(this.configFile);
      // Certificate/key pairs that do not load or match: the running listeners keep theirs.
      const tls = tlsProblems(next);
      if (tls.length > 0) throw new ConfigError(tls, this.configFile);
      // Check what start would fail on before touching anything: the normalizers.
      for (const l of next.listeners) await this.topology.chain(l, next);
    } catch (e) {
      this.telemetry.reloads.add('failed');
      const msg = e instanceof ConfigError ? e.problems.map((p) => formatProblem(p, this.configFile)).join('; ') : (e as Error).message;
      this.telemetry.log.error({ err: msg }, `configuration reload failed; the running configuration stays: ${msg}`);
      return false;
    }
    // A listener on a socket from systemd (cefd.socket) cannot be reopened in place.
    const pinned = this.sources.filter((s) => holdsInheritedSocket(s.source.name) && !next.listeners.some((l) => l.name === s.source.name && JSON.stringify(l) === s.key)).map((s) => s.source.name);
    if (pinned.length > 0) {
      this.telemetry.reloads.add('failed');
      const msg = `listener ${pinned.join(', ')} changed or removed, but it listens on a socket from systemd, which a reload cannot reopen: restart cefd instead (systemctl restart cefd; connections wait in the socket's backlog meanwhile)`;
      this.telemetry.log.error({ listeners: pinned }, `configuration reload failed; the running configuration stays: ${msg}`);
      return false;
    }
    this.certificatesRefused = 0;
    try {
      await this.apply(next);
    } catch (e) {
      this.telemetry.reloads.add('failed');
      this.telemetry.log.error({ err: (e as Error).message }, `configuration reload failed part-way: ${(e as Error).message}`);
      return false;
    }
    for (const x of this.extensions) {
      await x.reload?.(next).catch((e: Error) => this.telemetry.log.error({ extension: x.name, err: e.message }, `extension ${x.name}: reload failed: ${e.message}`));
    }
    if (this.certificatesRefused > 0) {
      // Files changed between the check and the listener's re-read: the old pair stays.
      this.telemetry.reloads.add('failed');
      return false;
    }
    this.telemetry.reloads.add('ok');
    this.telemetry.log.info('configuration reloaded');
    return true;
  }

  private async apply(next: Config): Promise<void> {
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
      await this.applyLocked(next, version);
    } finally {
      this.flow.unblock(key);
    }
  }

  private async applyLocked(next: Config, workerVersion: number): Promise<void> {
    const prev = this.config;
    this.telemetry.log.level = next.logging.level;
    // Outputs: unchanged ones keep running; others are replaced.
    const oldSlots = new Map(this.slots.map((s) => [s.slot.name, s]));
    const newSlots: SlotEntry[] = [];
    const retired: OutputRunner[] = [];
    // Outputs with a new queue are built and started first, the running ones untouched.
    // An output that keeps its disk buffer takes it over after that, one at a time: its
    // old runner stops (and closes its output, so two never write one file) before the new
    // one starts. A reload that fails anywhere gives every buffer back to its old runner,
    // with a fresh output of the old configuration: every output stays as it was.
    const created: OutputRunner[] = [];
    const handOvers: { at: number; o: OutputConfig; old: OutputRunner }[] = [];
    let dead = this.deadLetter!;
    const deadKey = JSON.stringify(next.dead_letter);
    const deadHandOver = dead.key !== deadKey && dead.slot.queue instanceof DiskQueue && wantsDisk(next.dead_letter.buffer, 'file');
    /** Buffers taken over so far, and how to give each back. */
    const taken: { old: OutputRunner; slot: OutputRunner | null; giveBack: () => Output }[] = [];
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
      // The configuration cannot be applied: the buffers taken over go back to their old
      // runners (the new runner lets go first), and what was built is closed.
      for (const t of taken.reverse()) {
        if (t.slot !== null) await t.slot.handOver();
        await t.old.resume(t.giveBack()).catch((err: Error) =>
          this.telemetry.log.error({ output: t.old.name, err: err.message }, `output ${t.old.name}: after the failed reload its output does not start either; its events wait in its disk buffer: ${err.message}`),
        );
      }
      for (const c of created) void c.stop(1000);
      throw e;
    }
    for (const s of oldSlots.values()) retired.push(s.slot);
    this.slots = newSlots;
    this.deadLetter = dead;
    this.pipeline!.reconfigure(
      newSlots.map((s) => s.slot),
      dead.slot,
      { defaultZone: next.timezone, includeRaw: next.include_raw, routes: compileRoutes(next.outputs, next.event), receiver: next.mode === 'receiver' },
      workerVersion,
    );
    this.config = next;
    // Listeners: unchanged ones stay open (certificates are re-read); others restart.
    const oldSources = new Map(this.sources.map((s) => [s.source.name, s]));
    const keep: SourceEntry[] = [];
    const starts: ListenerConfig[] = [];
    for (const l of next.listeners) {
      const old = oldSources.get(l.name);
      if (old !== undefined && old.key === JSON.stringify(l)) {
        if (!old.source.reload()) this.certificatesRefused++;
        keep.push(old);
        oldSources.delete(l.name);
      } else {
        starts.push(l);
      }
    }
    // Stop removed or changed listeners first: a changed one may keep its port. One that
    // acknowledges upstream (nats) stops fetching, the pipeline decodes what it handed
    // over, then it acknowledges and closes (see doStop).
    const oldListeners = [...oldSources.values()];
    await Promise.all(oldListeners.map((s) => (s.source.stopReading !== undefined ? s.source.stopReading() : s.source.stop(1000))));
    this.pipeline!.commit();
    const acking = oldListeners.filter((s) => s.source.stopReading !== undefined);
    if (acking.length > 0) {
      await this.pipeline!.drain(5_000);
      await Promise.all(acking.map((s) => s.source.stop(1000)));
    }
    this.sources = keep;
    for (const l of starts) {
      const source = await this.topology.source(l, await this.topology.chain(l, next));
      this.sources.push({ key: JSON.stringify(l), source });
      await source.start();
    }
    // SQL sources: unchanged ones keep polling; others restart (their cursor is on disk).
    const oldSql = new Map(this.sqlSources.map((s) => [s.source.name, s]));
    const keepSql: { key: string; source: SqlSource }[] = [];
    const startSql: SqlSourceConfig[] = [];
    for (const q of next.sql_sources) {
      const old = oldSql.get(q.name);
      if (old !== undefined && old.key === JSON.stringify(q)) {
        keepSql.push(old);
        oldSql.delete(q.name);
      } else startSql.push(q);
    }
    await Promise.all([...oldSql.values()].map((s) => s.source.stop(5000)));
    this.sqlSources = keepSql;
    await this.startSqlSources(startSql, next);
    // Retired outputs drain in the background. What one leaves in a disk buffer is not
    // dropped: it stays on disk, reported as orphaned once they have stopped.
    const retiring = retired.map((r) =>
      r.stop(next.shutdown_timeout * 1000).then((left) => {
        if (left > 0 && !r.queue.durable) this.telemetry.eventsDropped(r.name, left, 'reload_undelivered');
      }),
    );
    void Promise.allSettled(retiring).then(() => {
      if (this.stopping === null) this.checkOrphanedBuffers();
    });
    if (!same(prev.metrics, next.metrics)) {
      await this.metrics?.stop();
      this.metrics = null;
      if (next.metrics.enabled) {
        this.metrics = new MetricsServer(this.telemetry, this, next.metrics.bearer_token);
        await this.metrics.start(next.metrics.host, next.metrics.port);
      }
    }
  }
}

/**
 * `cefd run`: load the configuration, start, and serve until SIGTERM/SIGINT. Returns the
 * exit code: 0 after a clean stop, 1 on a runtime failure, 78 on a configuration error.
 */
export async function runDaemon(configFile: string | undefined): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(configFile);
    await checkNormalizers(config, configFile);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`cefd: invalid configuration\n${e.message}\n`);
      return EXIT.config;
    }
    throw e;
  }
  // Events on stdout and logs on stdout would interleave: logs move to stderr then.
  const logToStderr = config.outputs.some((o) => o.type === 'stdout');
  const telemetry = new Telemetry({ level: config.logging.level, repeatIntervalMs: config.logging.repeat_interval * 1000, logToStderr });
  const daemon = new Daemon(config, telemetry, configFile, await createExtensions(config));
  try {
    await daemon.start();
  } catch (e) {
    const msg = (e as Error).message;
    telemetry.log.fatal({ err: msg }, `cannot start: ${msg}`);
    await daemon.stop().catch(() => 0);
    telemetry.log.flush();
    // A state directory that cannot be used needs an operator: 78 stops systemd's restarts.
    return e instanceof StateDirError || e instanceof TlsMaterialError ? EXIT.config : EXIT.failure;
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
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onHup);
  });
}
