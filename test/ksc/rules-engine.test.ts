/**
 * Response rules (`ksctasks`): filter and asset field, the bounded queue, `workers`,
 * no second start while running or queued, the cool-down, outcomes and their counters;
 * and the extension's handling of the `ksc` configuration (reload, checks).
 */
import { rmSync } from 'node:fs';
import { expect, test } from 'vitest';
import { BoundedQueue, ResponseRule, ruleProblems, type RuleDeps, type RuleSpec } from '../../src/ksc/rules.js';
import { KscRefusedError, KscTimeoutError } from '../../src/ksc/errors.js';
import type { StartRequest, StartResult } from '../../src/ksc/tasks.js';
import type { CefdEvent } from '../../src/event.js';
import { kscConfigProblems, rateLimitedLogger } from '../../src/ksc/extension.js';
import { loadConfigText } from '../../src/config/load.js';
import { memoryLogger } from '../helpers/ksc-emulator/testkit.js';
import { startKscDaemon, type KscTestDaemon } from '../helpers/ksc-daemon.js';
import type { KscFindings, KscWatch } from '../../src/ksc/watch.js';
import type { EventOrigin } from '../../src/event.js';
import { waitFor } from '../helpers/daemon.js';

const spec = (o: Partial<RuleSpec> = {}): RuleSpec => ({
  name: 'r',
  tasks: ['KUMA scan', 'KUMA update'],
  assetField: 'device',
  filter: 'ksc.category == "detection"',
  workers: 1,
  cooldownMs: 60_000,
  queueMax: 10,
  ...o,
});

function ev(o: { category?: string; source?: string; destination?: string; device?: string } = {}): CefdEvent {
  const assets: Record<string, string> = {};
  for (const k of ['source', 'destination', 'device'] as const) if (o[k] !== undefined) assets[k] = o[k]!;
  return {
    timestamp: '2024-01-01T00:00:00.000Z',
    received: '2024-01-01T00:00:00.000Z',
    ksc: { category: o.category ?? 'detection' },
    ...(Object.keys(assets).length > 0 ? { assets } : {}),
  };
}

/** A fake KSC side: starts wait until released; runs are tracked per asset. */
class FakeKsc {
  readonly calls: StartRequest[] = [];
  readonly pending: { req: StartRequest; resolve: (r: StartResult) => void; reject: (e: Error) => void }[] = [];
  running = new Set<string>();
  cooling = new Set<string>();
  concurrent = 0;
  maxConcurrent = 0;
  auto: ((req: StartRequest) => StartResult | Error) | undefined;

  deps(extra: Partial<RuleDeps> = {}): RuleDeps {
    return {
      start: (req) => {
        this.calls.push(req);
        if (this.auto !== undefined) {
          const r = this.auto(req);
          return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
        }
        this.concurrent++;
        this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
        return new Promise<StartResult>((resolve, reject) => {
          this.pending.push({
            req,
            resolve: (r) => {
              this.concurrent--;
              resolve(r);
            },
            reject: (e) => {
              this.concurrent--;
              reject(e);
            },
          });
        });
      },
      isRunning: (taskId, assetId) => this.running.has(`${taskId}/${assetId}`),
      inCooldown: (taskId, assetId) => this.cooling.has(`${taskId}/${assetId}`),
      staleAfterMs: 1234,
      ...extra,
    };
  }

  static result(req: StartRequest, taskId = 't1', runId = 1): StartResult {
    return {
      run: { id: runId, assetId: req.assetId, taskId } as StartResult['run'],
      task: { taskId, displayName: req.tasks[0]! } as StartResult['task'],
      candidates: [],
      wholeScope: true,
    };
  }

  release(i = 0, taskId = 't1'): void {
    const p = this.pending.splice(i, 1)[0]!;
    p.resolve(FakeKsc.result(p.req, taskId));
  }
}

const tick = () => new Promise((r) => setImmediate(r));

test('BoundedQueue: FIFO, grows up to its capacity, refuses beyond it', () => {
  const q = new BoundedQueue<number>(40);
  for (let i = 0; i < 40; i++) expect(q.push(i)).toBe(true);
  expect(q.push(40)).toBe(false);
  expect(q.size).toBe(40);
  for (let i = 0; i < 25; i++) expect(q.shift()).toBe(i);
  for (let i = 40; i < 65; i++) expect(q.push(i)).toBe(true);
  expect(q.push(99)).toBe(false);
  expect(q.drain()).toEqual(Array.from({ length: 40 }, (_, i) => i + 25));
  expect(q.size).toBe(0);
  expect(q.shift()).toBeUndefined();
});

test('filter and asset field: only matching events with the asset trigger; the request says what to start', async () => {
  const f = new FakeKsc();
  f.auto = (req) => FakeKsc.result(req);
  const r = new ResponseRule(spec({ assetField: 'source', cooldownMs: 5000 }), f.deps());
  expect(r.offer(ev({ category: 'task_state', source: 'a1' }))).toBe(false);
  expect(r.offer(ev({ device: 'a1' }))).toBe(false);
  expect(r.stats.noAsset).toBe(1);
  expect(r.offer(ev({ source: 'a1', device: 'a2' }))).toBe(true);
  await r.idle();
  expect(f.calls).toEqual([{ assetId: 'a1', tasks: ['KUMA scan', 'KUMA update'], origin: 'rule', rule: 'r', skipIfRunning: true, cooldownMs: 5000, staleAfterMs: 1234 }]);
  expect(r.stats.triggered).toBe(1);
  expect(r.stats.get('started')).toBe(1);

  const all = new ResponseRule(spec({ filter: '', assetField: 'destination' }), f.deps());
  expect(all.offer(ev({ category: 'anything', destination: 'a9' }))).toBe(true);
  await all.idle();
  expect(f.calls.at(-1)!.assetId).toBe('a9');
});

test('workers bound the starts running at once; the queue is bounded and a full queue drops and logs', async () => {
  const f = new FakeKsc();
  const log = memoryLogger();
  const r = new ResponseRule(spec({ workers: 2, queueMax: 3 }), f.deps({ log }));
  for (let i = 0; i < 8; i++) r.offer(ev({ device: `a${i}` }));
  expect(r.inFlight).toBe(2);
  expect(r.queued).toBe(3);
  expect(r.stats.get('dropped')).toBe(3);
  expect(r.stats.triggered).toBe(8);
  expect(log.lines.filter((l) => l.includes('"code":"ksc_rule_queue_full"'))).toHaveLength(3);
  expect(JSON.parse(log.lines[0]!)).toMatchObject({ level: 'warn', rule: 'r', asset: 'a5', queueMax: 3 });
  // Draining: never more than two at once.
  while (r.inFlight > 0 || r.queued > 0) {
    await tick();
    if (f.pending.length > 0) f.release();
  }
  await r.idle();
  expect(f.maxConcurrent).toBe(2);
  expect(f.calls.map((c) => c.assetId)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
  expect(r.stats.get('started')).toBe(5);
});

test('no second start: an asset already queued or starting, a task running, a cool-down', async () => {
  const f = new FakeKsc();
  const r = new ResponseRule(spec(), f.deps());
  r.offer(ev({ device: 'a1' }));
  r.offer(ev({ device: 'a1' })); // being started
  r.offer(ev({ device: 'a2' }));
  r.offer(ev({ device: 'a2' })); // queued
  expect(r.stats.get('skipped_queued')).toBe(2);
  await tick();
  f.release(0, 't1');
  await tick();
  await tick();
  f.release(0, 't1');
  await r.idle();
  expect(f.calls.map((c) => c.assetId)).toEqual(['a1', 'a2']);

  // The task the rule chose for a1 is running: skipped without asking KSC.
  f.running.add('t1/a1');
  r.offer(ev({ device: 'a1' }));
  await r.idle();
  expect(r.stats.get('skipped_running')).toBe(1);
  // Finished, but within the cool-down.
  f.running.clear();
  f.cooling.add('t1/a1');
  r.offer(ev({ device: 'a1' }));
  await r.idle();
  expect(r.stats.get('skipped_cooldown')).toBe(1);
  expect(f.calls).toHaveLength(2);
  // Cool-down over: started again.
  f.cooling.clear();
  r.offer(ev({ device: 'a1' }));
  await tick();
  f.release();
  await r.idle();
  expect(f.calls).toHaveLength(3);
  expect(r.stats.get('started')).toBe(3);
});

test('outcomes from startTask: refusals are skips, other errors are failures by code', async () => {
  const f = new FakeKsc();
  const log = memoryLogger();
  const errors: Error[] = [
    new KscRefusedError('ksc_task_running', 'already running'),
    new KscRefusedError('ksc_task_cooldown', 'cool-down'),
    new KscRefusedError('ksc_task_not_applicable', 'none of the tasks applies'),
    new KscTimeoutError(30_000, { server: 'ksc:13299', method: 'Tasks.RunTask' }),
    new Error('boom'),
  ];
  let i = 0;
  f.auto = () => errors[i++]!;
  const seen: string[] = [];
  const r = new ResponseRule(spec({ workers: 1 }), f.deps({ log, onResult: (_rule, result, d) => seen.push(`${result}:${d.code ?? ''}`) }));
  for (let n = 0; n < errors.length; n++) {
    r.offer(ev({ device: `a${n}` }));
    await r.idle();
  }
  expect(seen).toEqual(['skipped_running:ksc_task_running', 'skipped_cooldown:ksc_task_cooldown', 'failed:ksc_task_not_applicable', 'failed:ksc_timeout', 'failed:error']);
  expect(Object.fromEntries(r.stats.failures)).toEqual({ ksc_task_not_applicable: 1, ksc_timeout: 1, error: 1 });
  expect(r.stats.get('failed')).toBe(3);
  const warns = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 'warn');
  expect(warns.map((w) => w['code'])).toEqual(['ksc_task_not_applicable', 'ksc_timeout', 'error']);
  expect(String(warns[1]!['msg'])).toContain('KSC ksc:13299 Tasks.RunTask: no answer within 30000 ms');
});

test('close: queued triggers are dropped and counted, starts in flight may finish', async () => {
  const f = new FakeKsc();
  const r = new ResponseRule(spec({ workers: 1 }), f.deps());
  r.offer(ev({ device: 'a1' }));
  r.offer(ev({ device: 'a2' }));
  r.offer(ev({ device: 'a3' }));
  await tick();
  const closing = r.close(10_000);
  f.release();
  expect(await closing).toBe(2);
  expect(r.stats.get('dropped')).toBe(2);
  expect(r.stats.get('started')).toBe(1);
  expect(r.offer(ev({ device: 'a4' }))).toBe(false);
});

test('shared KSC work: every trigger hears its outcome once, and a start is claimed under its rule and event', async () => {
  const claimed = new Set<string>();
  const claims: string[] = [];
  const starts: string[] = [];
  let hold: Promise<void> = Promise.resolve();
  const deps: RuleDeps = {
    ...new FakeKsc().deps(),
    // What startTask does with the claim (tasks.ts): ask it first, refuse as a duplicate when it says no.
    start: async (req) => {
      if (req.claim !== undefined && !(await req.claim())) throw new KscRefusedError('ksc_task_duplicate', 'already started for this event');
      await hold;
      starts.push(req.assetId);
      return FakeKsc.result(req);
    },
    claim: async (rule, eventId, assetId) => {
      claims.push(`${rule}/${eventId}/${assetId}`);
      if (claimed.has(`${rule}/${eventId}`)) return false;
      claimed.add(`${rule}/${eventId}`);
      return true;
    },
  };
  const r = new ResponseRule(spec({ workers: 1 }), deps);
  const heard: string[] = [];
  const done = (tag: string) => (result: string, code?: string) => heard.push(`${tag}:${result}${code !== undefined ? `:${code}` : ''}`);
  r.trigger('a1', undefined, { eventId: 'e1', done: done('e1') });
  await r.idle();
  // The same event again (delivered twice): the claim says it was started.
  r.trigger('a1', undefined, { eventId: 'e1', done: done('e1 again') });
  await r.idle();
  // Two events for one asset while the first is being started: the second hears at once.
  let go!: () => void;
  hold = new Promise<void>((res) => (go = res));
  r.trigger('a2', undefined, { eventId: 'e2', done: done('e2') });
  r.trigger('a2', undefined, { eventId: 'e3', done: done('e3') });
  r.trigger('a3', undefined, { eventId: 'e4', done: done('e4') });
  await tick();
  expect(heard).toEqual(['e1:started', 'e1 again:skipped_duplicate:ksc_task_duplicate', 'e3:skipped_queued']);
  // Stopping: the queued trigger hears it was dropped (shared work gives it back to the stream).
  const closing = r.close(10_000);
  go();
  await closing;
  expect(heard.slice(3)).toEqual(['e4:dropped:ksc_rule_dropped_at_stop', 'e2:started']);
  expect(starts).toEqual(['a1', 'a2']);
  expect(claims).toEqual(['r/e1/a1', 'r/e1/a1', 'r/e2/a2']);
  expect(r.stats.get('skipped_duplicate')).toBe(1);
  // After close a trigger is refused at once, and says so.
  r.trigger('a5', undefined, { eventId: 'e5', done: done('e5') });
  expect(heard.at(-1)).toBe('e5:dropped:ksc_rule_dropped_at_stop');
});

test('shared KSC work: the same trigger redelivered while it still waits hears the outcome of the one queued, not skipped_queued before it ran', async () => {
  const starts: string[] = [];
  let go!: () => void;
  const hold = new Promise<void>((res) => (go = res));
  const deps: RuleDeps = {
    ...new FakeKsc().deps(),
    start: async (req) => {
      await hold;
      starts.push(req.assetId);
      return FakeKsc.result(req);
    },
  };
  // One worker busy with a1: a2's trigger waits in the queue.
  const r = new ResponseRule(spec({ workers: 1 }), deps);
  const heard: string[] = [];
  const done = (tag: string) => (result: string, code?: string) => heard.push(`${tag}:${result}${code !== undefined ? `:${code}` : ''}`);
  r.trigger('a1', undefined, { eventId: 'e1', done: done('e1') });
  r.trigger('a2', undefined, { eventId: 'e2', done: done('e2') });
  // e2's work message comes again (ack_wait passed in a backlog); e3 is another event for a2.
  r.trigger('a2', undefined, { eventId: 'e2', done: done('e2 again') });
  r.trigger('a2', undefined, { eventId: 'e3', done: done('e3') });
  await tick();
  expect(heard).toEqual(['e3:skipped_queued']);
  go();
  await r.idle();
  expect(heard).toEqual(['e3:skipped_queued', 'e1:started', 'e2:started', 'e2 again:started']);
  expect(starts).toEqual(['a1', 'a2']);
  // Counted once per trigger, not per delivery.
  expect(r.stats.triggered).toBe(3);
  await r.close(1_000);
});

test('rule checks: tasks, workers, queue, filter', () => {
  expect(ruleProblems(spec())).toEqual([]);
  expect(ruleProblems(spec({ tasks: [] }))).toEqual(['tasks: give at least one KSC task name']);
  expect(ruleProblems(spec({ tasks: ['ok', ' '] }))).toEqual(['tasks[1]: a task name cannot be empty']);
  expect(ruleProblems(spec({ workers: 0, queueMax: 0 }))).toEqual(['workers: must be at least 1', 'queue_max: must be at least 1']);
  expect(ruleProblems(spec({ filter: 'ksc.category ==' }))[0]).toMatch(/^filter: /);
  expect(() => new ResponseRule(spec({ tasks: [] }), new FakeKsc().deps())).toThrow('response rule "r": tasks: give at least one KSC task name');
});

test('config: the ksc section, its defaults and the checks the schema cannot make', () => {
  const c = loadConfigText('ksc:\n  response_rules:\n    - { name: r1, type: ksctasks, tasks: ["KUMA scan"] }\n', undefined, {});
  expect(c.ksc).toEqual({
    enabled: true,
    tenant: 'default',
    asset_sync_interval: 3600,
    sync_on_start: true,
    asset_attributes_interval: 43200,
    asset_attributes_concurrency: 2,
    asset_attributes_budget: 7200,
    request_timeout: 30,
    retries: 3,
    task_run_blocking: 21600,
    task_run_timeout: 86400,
    admin: { enabled: false, host: '127.0.0.1', port: 9142, max_body_bytes: 65536, request_timeout: 30, tls: {}, console: { enabled: false, session_ttl: 28800, tail_events: 1000, tail_bytes: 33554432, quiet_after: 300 } },
    response_rules: [{ name: 'r1', type: 'ksctasks', tasks: ['KUMA scan'], asset_field: 'device', workers: 1, cooldown: 600, queue_max: 1000 }],
    trusted_sources: [],
    cluster: { mode: 'auto', lease_ttl: 5, ack_wait: 60, replicas: 1, duplicate_window: 600, claim_ttl: 86400 },
  });
  expect(kscConfigProblems(c.ksc)).toEqual([]);
  expect(() => loadConfigText('ksc:\n  response_rules:\n    - { name: r1, type: ksctasks }\n', undefined, {})).toThrow(/ksc\.response_rules\[0\]\.tasks: is required/);
  expect(() => loadConfigText('ksc:\n  response_rules:\n    - { name: r1, type: ksctasks, tasks: [x], asset_field: host }\n', undefined, {})).toThrow(/expected one of source, destination, device/);
  expect(() => loadConfigText('ksc:\n  response_rules:\n    - { name: r1, type: ksctasks, tasks: [x], filter: "a ==" }\n', undefined, {})).toThrow(/bad filter/);
  // Checks the schema cannot make run in the config loader too (so `cefd validate` sees them).
  expect(() => loadConfigText('ksc:\n  admin: { enabled: true }\n  response_rules:\n    - { name: r1, type: ksctasks, tasks: [] }\n', undefined, {})).toThrow(
    /ksc\.admin\.bearer_token: is required when ksc\.admin\.enabled is true[\s\S]*ksc\.response_rules\[0\]: tasks: give at least one KSC task name/,
  );
});

test('rate-limited logger: a repeated warning is logged once per interval, with the count held back', () => {
  const log = memoryLogger();
  let now = 0;
  const l = rateLimitedLogger(log, 10_000, () => now);
  for (let i = 0; i < 5; i++) l.warn({ connection: 'main', code: 'ksc_timeout' }, 'KSC asset import failed');
  l.warn({ connection: 'other', code: 'ksc_timeout' }, 'KSC asset import failed');
  l.info({}, 'info is never limited');
  l.info({}, 'info is never limited');
  expect(log.lines).toHaveLength(4);
  now = 10_000;
  l.warn({ connection: 'main', code: 'ksc_timeout' }, 'KSC asset import failed');
  expect(JSON.parse(log.lines.at(-1)!)).toMatchObject({ level: 'warn', connection: 'main', repeated: 4, msg: 'KSC asset import failed (and 4 more like it since the last report)' });
});

/**
 * What a decode worker does with an event (the KSC watch the extension gave the pipeline),
 * then the findings handed to the extension on the main thread, as the pipeline does.
 */
function watchSees(d: KscTestDaemon, e: CefdEvent): void {
  const pipeline = (d.daemon as unknown as { pipeline: { watch?: KscWatch; deliver(o: EventOrigin, f: KscFindings | undefined): void } }).pipeline;
  pipeline.watch!.see(e);
  pipeline.deliver({ listener: 'tcp', peer: '127.0.0.1:5000' }, pipeline.watch!.take());
}

test('the daemon: a bad rule stops the start; a reload keeps unchanged rules and their counters', async () => {
  const base = `
state_dir: {dir}/state
listeners: [{ name: tcp, type: tcp, host: 127.0.0.1, port: 0 }]
outputs: [{ name: events, type: file, path: {dir}/events.ndjson }]
dead_letter: { path: {dir}/dead-letter.ndjson }
metrics: { enabled: false }
ksc:
  sync_on_start: false
  trusted_sources: [{ connection: main, listeners: [tcp] }]
  response_rules:
`;
  await expect(startKscDaemon(`${base}    - { name: r1, type: ksctasks, tasks: [" "] }\n`)).rejects.toThrow('ksc.response_rules[0]: tasks[0]: a task name cannot be empty');

  const d = await startKscDaemon(`${base}    - { name: r1, type: ksctasks, tasks: ["KUMA scan"] }\n    - { name: r2, type: ksctasks, tasks: ["KUMA scan"] }\n`);
  try {
    // Events from the trusted listener of connection main act on KSC.
    d.ksc.integration!.addConnection({ name: 'main', url: '127.0.0.1:1', secret: { user: 'u', password: 'p' } });
    (d.ksc as unknown as { refreshTrustedConnections: () => void }).refreshTrustedConnections();
    // r1 triggers (no such asset, so its start fails: counted).
    const e = ev({ device: 'no-such-asset' });
    watchSees(d, e);
    await waitFor(() => d.ksc.ruleViews().every((r) => r.counters.failed === 1), 30_000, 'the failed starts');
    // Task-state events (the answers to starts) never trigger a rule.
    watchSees(d, ev({ category: 'task_state', device: 'no-such-asset' }));
    expect(d.ksc.ruleViews().map((r) => r.counters.triggered)).toEqual([1, 1]);
    const next = loadConfigText(
      `${base.replaceAll('{dir}', d.dir)}    - { name: r1, type: ksctasks, tasks: ["KUMA scan"] }\n    - { name: r2, type: ksctasks, tasks: ["KUMA other"] }\n    - { name: r3, type: ksctasks, tasks: ["KUMA x"], workers: 4 }\n`,
      undefined,
      {},
    );
    await d.ksc.reload(next);
    const views = d.ksc.ruleViews();
    expect(views.map((v) => [v.name, v.tasks, v.workers])).toEqual([
      ['r1', ['KUMA scan'], 1],
      ['r2', ['KUMA other'], 1],
      ['r3', ['KUMA x'], 4],
    ]);
    // Counters are kept per rule name across the reload.
    expect(views.map((v) => v.counters.failed)).toEqual([1, 1, 0]);
    expect(d.logs.parsed().some((l) => l['msg'] === 'KSC integration configuration applied')).toBe(true);
    // Switched off by a reload: the watch is gone and so are the rules.
    await d.ksc.reload(loadConfigText(`${base.replaceAll('{dir}', d.dir).replace('  sync_on_start: false', '  enabled: false')}    - { name: r1, type: ksctasks, tasks: ["KUMA scan"] }\n`, undefined, {}));
    expect(d.ksc.ruleViews()).toEqual([]);
    expect(d.ksc.integration).toBeUndefined();
    expect((d.daemon as unknown as { pipeline: { watch?: KscWatch } }).pipeline.watch).toBeUndefined();
  } finally {
    await d.stop();
    rmSync(d.dir, { recursive: true, force: true });
  }
});
