/**
 * Response rules of type `ksctasks` (KUMA's "ksctasks" response): when an event passes a
 * rule's filter, start the first task of the rule's list that applies to the event's asset
 * (`assets.source`, `assets.destination` or `assets.device`, set by enrichment).
 *
 * The hot path (`offer`) only tests the compiled filter, reads one field and pushes the asset
 * id into a bounded queue: no I/O, no await. `workers` starts run at once, off the hot path.
 *
 * No second start of the same task for the same asset while one is requested or running,
 * and none within the cool-down after a start:
 * - an asset already waiting in the queue or being started by this rule is not queued again
 *   (`skipped_queued`);
 * - before calling KSC, the task this rule last chose for the asset is checked against the
 *   task runs (running → `skipped_running`, cool-down → `skipped_cooldown`), so a burst of
 *   events costs no KSC calls;
 * - `startTask` checks the same on the task it chose, right before RunTask, without an await
 *   in between (several workers cannot both pass).
 */
import { compileFilter, compilePath, type Filter } from '../filter/filter.js';
import type { CefdEvent } from '../event.js';
import type { StartRequest, StartResult } from './tasks.js';
import { silentLogger, type KscLogger } from './secrets.js';

export type RuleResult = 'started' | 'failed' | 'skipped_running' | 'skipped_cooldown' | 'skipped_queued' | 'skipped_duplicate' | 'dropped';
export const RULE_RESULTS: readonly RuleResult[] = ['started', 'failed', 'skipped_running', 'skipped_cooldown', 'skipped_queued', 'skipped_duplicate', 'dropped'];

/** Told once what became of one trigger (processors sharing KSC work acknowledge it then: ksc/cluster.ts). */
export type TriggerDone = (result: RuleResult, code?: string) => void;

export interface RuleSpec {
  name: string;
  /** Task display names (or `#id`), in order of preference. */
  tasks: readonly string[];
  assetField: 'source' | 'destination' | 'device';
  /** Filter text (the language of output routes); empty or undefined: every event. */
  filter?: string | undefined;
  workers: number;
  cooldownMs: number;
  queueMax: number;
}

/** Counters of one rule; kept across reloads by the owner (counters never go down). */
export class RuleStats {
  /** Events that passed the filter and carried the asset reference. */
  triggered = 0;
  /** Events that passed the filter without the asset reference. */
  noAsset = 0;
  readonly results = new Map<RuleResult, number>();
  /** Failed starts by error code. */
  readonly failures = new Map<string, number>();
  /** The last outcomes (newest last, at most 10), for the console. */
  readonly last: { at: string; assetId: string; result: RuleResult; task: string | null; code: string | null }[] = [];
  outcome(r: RuleResult, assetId: string, task?: string, code?: string): void {
    this.last.push({ at: new Date().toISOString(), assetId, result: r, task: task ?? null, code: code ?? null });
    if (this.last.length > 10) this.last.shift();
  }
  count(r: RuleResult, code?: string): void {
    this.results.set(r, (this.results.get(r) ?? 0) + 1);
    if (r === 'failed') this.failures.set(code ?? 'error', (this.failures.get(code ?? 'error') ?? 0) + 1);
  }
  get(r: RuleResult): number {
    return this.results.get(r) ?? 0;
  }
}

export interface RuleDeps {
  start(req: StartRequest): Promise<StartResult>;
  /** Is a run of this task for this asset requested or running (and not stale)? */
  isRunning(taskId: string, assetId: string): boolean;
  inCooldown(taskId: string, assetId: string, cooldownMs: number): boolean;
  /** Passed on to startTask. */
  staleAfterMs?: number;
  /** Rate-limited logger (the owner rate-limits repeated warnings). */
  log?: KscLogger;
  /**
   * Claims the start made for the event `eventId` of rule `rule`, right before KSC is asked
   * (processors sharing KSC work: ksc/cluster.ts). False: a start for this event was already
   * made (a redelivered event), `skipped_duplicate`; it may throw a KscError (not the owner).
   */
  claim?(rule: string, eventId: string, assetId: string): Promise<boolean>;
  /** Gives a claim back when the start failed before reaching KSC's RunTask. */
  release?(rule: string, eventId: string): void;
  /** A claimed start was made (KSC answered RunTask). */
  confirm?(rule: string, eventId: string): void;
  /** Told about every outcome (after the stats are counted). */
  onResult?(rule: string, result: RuleResult, detail: { assetId: string; code?: string; runId?: number; task?: string }): void;
}

/** A FIFO with a hard capacity: a ring buffer that grows by doubling up to `max`. */
export class BoundedQueue<T> {
  private buf: (T | undefined)[] = new Array<T | undefined>(16);
  private head = 0;
  private n = 0;
  constructor(readonly max: number) {}
  get size(): number {
    return this.n;
  }
  /** False (and nothing stored) when full. */
  push(v: T): boolean {
    if (this.n >= this.max) return false;
    if (this.n === this.buf.length) {
      const next = new Array<T | undefined>(Math.min(this.max, this.buf.length * 2));
      for (let i = 0; i < this.n; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
      this.buf = next;
      this.head = 0;
    }
    this.buf[(this.head + this.n) % this.buf.length] = v;
    this.n++;
    return true;
  }
  shift(): T | undefined {
    if (this.n === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.n--;
    return v;
  }
  /** Empties the queue; returns what was in it. */
  drain(): T[] {
    const out: T[] = [];
    for (let v = this.shift(); v !== undefined; v = this.shift()) out.push(v);
    return out;
  }
}

/** The most assets whose last chosen task a rule remembers (then it forgets them all). */
const MEMO_MAX = 10_000;

/** Checks a rule's settings; returns the problems (empty when fine). */
export function ruleProblems(spec: RuleSpec): string[] {
  const out: string[] = [];
  if (spec.tasks.length === 0) out.push('tasks: give at least one KSC task name');
  spec.tasks.forEach((t, i) => {
    if (typeof t !== 'string' || t.trim() === '') out.push(`tasks[${i}]: a task name cannot be empty`);
  });
  if (!Number.isInteger(spec.workers) || spec.workers < 1) out.push('workers: must be at least 1');
  if (!Number.isInteger(spec.queueMax) || spec.queueMax < 1) out.push('queue_max: must be at least 1');
  if (spec.filter !== undefined && spec.filter.trim() !== '') {
    try {
      compileFilter(spec.filter);
    } catch (e) {
      out.push(`filter: ${(e as Error).message}`);
    }
  }
  return out;
}

export class ResponseRule {
  readonly name: string;
  readonly spec: RuleSpec;
  readonly stats: RuleStats;
  private readonly filter: Filter | undefined;
  private readonly asset: (ev: unknown) => unknown;
  private readonly queue: BoundedQueue<string>;
  /** Asset ids queued or being started by this rule. */
  private readonly pending = new Set<string>();
  /** The task this rule last chose for an asset. */
  private readonly lastTask = new Map<string, string>();
  /** The event a queued asset was triggered by, when known (claimed by `deps.claim`). */
  private readonly eventOf = new Map<string, string>();
  /** Who waits to hear what became of a queued asset's trigger. */
  private readonly waiters = new Map<string, TriggerDone[]>();
  private active = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private readonly log: KscLogger;

  constructor(spec: RuleSpec, private readonly deps: RuleDeps, stats?: RuleStats) {
    const problems = ruleProblems(spec);
    if (problems.length > 0) throw new Error(`response rule "${spec.name}": ${problems.join('; ')}`);
    this.spec = { ...spec, tasks: spec.tasks.map((t) => t.trim()) };
    this.name = spec.name;
    this.stats = stats ?? new RuleStats();
    this.filter = spec.filter !== undefined && spec.filter.trim() !== '' ? compileFilter(spec.filter) : undefined;
    const path = compilePath(`assets.${spec.assetField}`);
    this.asset = (ev) => path.get(ev);
    this.queue = new BoundedQueue(spec.queueMax);
    this.log = deps.log ?? silentLogger;
  }

  /** Triggers waiting for a worker. */
  get queued(): number {
    return this.queue.size;
  }

  /** Starts running now. */
  get inFlight(): number {
    return this.active;
  }

  /**
   * The hot path: tests the event and queues a start for its asset. Never throws, never
   * waits. Returns true when the event triggered the rule (whatever became of the trigger).
   * `trusted` says whether the event may act on the asset (src/ksc/trust.ts); an event it
   * refuses is not a trigger.
   */
  offer(ev: CefdEvent, trusted?: (assetId: string) => boolean): boolean {
    if (this.closed) return false;
    if (this.filter !== undefined && !this.filter.test(ev)) return false;
    return this.trigger(this.asset(ev), trusted);
  }

  /**
   * An event passed this rule's filter (tested where it was decoded, ksc/watch.ts) with
   * this asset reference: queues a start for it. Never throws, never waits. `trusted` as
   * for `offer`. `o.eventId` names the triggering event (a start is claimed under it),
   * `o.done` hears once what became of the trigger (also when it is not taken: `dropped`).
   */
  trigger(assetId: unknown, trusted?: (assetId: string) => boolean, o: { eventId?: string | undefined; done?: TriggerDone } = {}): boolean {
    const done = o.done;
    if (this.closed) {
      done?.('dropped', 'ksc_rule_dropped_at_stop');
      return false;
    }
    if (typeof assetId !== 'string' || assetId === '') {
      this.stats.noAsset++;
      done?.('failed', 'no_asset');
      return false;
    }
    if (trusted !== undefined && !trusted(assetId)) {
      done?.('failed', 'ksc_untrusted_origin');
      return false;
    }
    // The same trigger again (its work message redelivered while it waits in the queue, as
    // after ack_wait in a backlog): told the outcome of the one queued, not acknowledged as
    // skipped before that one ran, and not counted twice.
    if (o.eventId !== undefined && this.pending.has(assetId) && this.eventOf.get(assetId) === o.eventId) {
      if (done !== undefined) {
        const w = this.waiters.get(assetId);
        if (w !== undefined) w.push(done);
        else this.waiters.set(assetId, [done]);
      }
      return true;
    }
    this.stats.triggered++;
    if (this.pending.has(assetId)) {
      this.result('skipped_queued', assetId);
      done?.('skipped_queued');
      return true;
    }
    if (!this.queue.push(assetId)) {
      this.result('dropped', assetId, { code: 'ksc_rule_queue_full' });
      done?.('dropped', 'ksc_rule_queue_full');
      this.log.warn(
        { code: 'ksc_rule_queue_full', rule: this.name, asset: assetId, queueMax: this.spec.queueMax },
        `response rule ${this.name}: ${this.spec.queueMax} triggers already wait for a worker; trigger dropped`,
      );
      return true;
    }
    this.pending.add(assetId);
    if (o.eventId !== undefined) this.eventOf.set(assetId, o.eventId);
    if (done !== undefined) this.waiters.set(assetId, [done]);
    this.pump();
    return true;
  }

  /** Tells the waiters of an asset's trigger what became of it. */
  private settle(assetId: string, r: RuleResult, code?: string): void {
    this.eventOf.delete(assetId);
    const w = this.waiters.get(assetId);
    if (w === undefined) return;
    this.waiters.delete(assetId);
    for (const f of w) {
      try {
        f(r, code);
      } catch {
        /* a waiter must not break the rule */
      }
    }
  }

  private pump(): void {
    while (this.active < this.spec.workers && this.queue.size > 0) {
      const assetId = this.queue.shift()!;
      this.active++;
      // Off the hot path: even the synchronous part of a start (store reads) runs later.
      setImmediate(() => {
        // Closed before its turn came: dropped like the queued ones.
        const work: Promise<[RuleResult, string | undefined]> = this.closed
          ? Promise.resolve(this.result('dropped', assetId, { code: 'ksc_rule_dropped_at_stop' }))
          : this.run(assetId).catch(() => ['failed', 'error']);
        void work.then(([r, code]) => this.settle(assetId, r, code)).finally(() => {
          this.active--;
          this.pending.delete(assetId);
          if (!this.closed) this.pump();
          if (this.active === 0 && this.queue.size === 0) {
            const w = this.idleWaiters;
            this.idleWaiters = [];
            for (const f of w) f();
          }
        });
      });
    }
  }

  private async run(assetId: string): Promise<[RuleResult, string | undefined]> {
    const known = this.lastTask.get(assetId);
    if (known !== undefined) {
      try {
        if (this.deps.isRunning(known, assetId)) return this.result('skipped_running', assetId, { task: known });
        if (this.spec.cooldownMs > 0 && this.deps.inCooldown(known, assetId, this.spec.cooldownMs)) return this.result('skipped_cooldown', assetId, { task: known });
      } catch {
        // The store is busy or closing: let startTask decide.
      }
    }
    const eventId = this.eventOf.get(assetId);
    const { claim, release } = this.deps;
    try {
      const r = await this.deps.start({
        assetId,
        tasks: this.spec.tasks,
        origin: 'rule',
        rule: this.name,
        skipIfRunning: true,
        cooldownMs: this.spec.cooldownMs,
        ...(this.deps.staleAfterMs !== undefined ? { staleAfterMs: this.deps.staleAfterMs } : {}),
        ...(eventId !== undefined && claim !== undefined
          ? { claim: () => claim(this.name, eventId, assetId), ...(release !== undefined ? { release: () => release(this.name, eventId) } : {}) }
          : {}),
      });
      this.remember(assetId, r.task.taskId);
      if (eventId !== undefined && claim !== undefined) this.deps.confirm?.(this.name, eventId);
      return this.result('started', assetId, { runId: r.run.id, task: r.task.displayName });
    } catch (e) {
      const code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'error';
      if (code === 'ksc_task_running') return this.result('skipped_running', assetId, { code });
      if (code === 'ksc_task_cooldown') return this.result('skipped_cooldown', assetId, { code });
      if (code === 'ksc_task_duplicate') return this.result('skipped_duplicate', assetId, { code });
      const out = this.result('failed', assetId, { code });
      this.log.warn(
        { code, rule: this.name, asset: assetId, err: (e as Error).message },
        `response rule ${this.name}: the KSC task start failed (${code}): ${(e as Error).message}`,
      );
      return out;
    }
  }

  private remember(assetId: string, taskId: string): void {
    if (this.lastTask.size >= MEMO_MAX && !this.lastTask.has(assetId)) this.lastTask.clear();
    this.lastTask.set(assetId, taskId);
  }

  private result(r: RuleResult, assetId: string, d: { code?: string; runId?: number; task?: string } = {}): [RuleResult, string | undefined] {
    this.stats.count(r, d.code);
    this.stats.outcome(r, assetId, d.task, d.code);
    try {
      this.deps.onResult?.(this.name, r, { assetId, ...d });
    } catch {
      /* an observer must not break the rule */
    }
    return [r, d.code];
  }

  /** Resolves when no start is running and none is queued. */
  idle(): Promise<void> {
    if (this.active === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Stops taking triggers; queued ones are dropped (counted as `dropped`, returned); starts
   * already talking to KSC may finish within `timeoutMs`.
   */
  async close(timeoutMs: number): Promise<number> {
    this.closed = true;
    const left = this.queue.drain();
    for (const a of left) {
      this.pending.delete(a);
      this.result('dropped', a, { code: 'ksc_rule_dropped_at_stop' });
      this.settle(a, 'dropped', 'ksc_rule_dropped_at_stop');
    }
    if (this.active > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    return left.length;
  }
}
