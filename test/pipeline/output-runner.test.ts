/**
 * The output runner (src/pipeline/output-runner.ts) against a real disk buffer: whole-batch
 * and per-record results, retrying only what must be retried, dead-lettering with the
 * reason and the output's name, and moving the buffer's delivery position only past
 * settled batches (a restart in between sends the whole batch again).
 */
import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import { MemoryQueue, type EventQueue } from '../../src/buffer/queue.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { OutputRunner, type RunnerOptions } from '../../src/pipeline/output-runner.js';
import type { Batch, Output, SendResult } from '../../src/outputs/types.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { waitFor } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';

/** An output whose answer to each send is decided by the test; it records every batch it got. */
class ScriptedOutput implements Output {
  readonly type = 'scripted';
  readonly batches: string[][] = [];
  closed = false;
  constructor(
    readonly name: string,
    private readonly answer: (records: readonly string[], call: number) => SendResult | Promise<SendResult>,
  ) {}
  async start(): Promise<void> {}
  async send(batch: Batch): Promise<SendResult> {
    this.batches.push([...batch.records]);
    return this.answer(batch.records, this.batches.length);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const quiet = () => new Telemetry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }), processMetrics: false, repeatIntervalMs: 0 });
const rec = (i: number) => JSON.stringify({ i });
const idx = (r: string) => (JSON.parse(r) as { i: number }).i;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const open: { stop(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.stop();
});

interface Harness {
  runner: OutputRunner;
  output: ScriptedOutput;
  queue: EventQueue;
  telemetry: Telemetry;
  flow: FlowControl;
  deadLetters: { output: string; records: string[]; reason: string; error: string }[];
}

function harness(queue: EventQueue, answer: ConstructorParameters<typeof ScriptedOutput>[1], opts: Partial<RunnerOptions> = {}): Harness {
  const telemetry = quiet();
  const flow = new FlowControl(telemetry);
  const output = new ScriptedOutput('siem', answer);
  const deadLetters: Harness['deadLetters'] = [];
  const runner = new OutputRunner(
    { name: 'siem', capacity: 100, whenFull: 'block', batchMax: 1000, initialBackoffMs: 1, maxBackoffMs: 5, ...opts },
    output,
    queue,
    flow,
    telemetry,
    (o, records, reason, error) => deadLetters.push({ output: o, records: [...records], reason, error }),
  );
  return { runner, output, queue, telemetry, flow, deadLetters };
}

function disk(dir: string): DiskQueue {
  return DiskQueue.open({ dir, maxBytes: 1024 * 1024, fsync: 'never', fsyncIntervalMs: 1000 });
}

test('partial: rejected records dead-lettered with reason and output name, retried ones re-sent alone, the rest counted; the buffer moves on once all are settled', async () => {
  const dir = tempDir();
  const q = disk(dir);
  q.append(range(20).map(rec));
  // First call: i%5==0 rejected, i%3==0 (the others) to retry; later calls: all delivered.
  const h = harness(q, (records, call) => {
    if (call > 1) return { status: 'delivered' };
    const ids = records.map(idx);
    return {
      status: 'partial',
      error: 'bulk: 429 on some items',
      rejected: ids.flatMap((i, k) => (i % 5 === 0 ? [{ index: k, reason: 'mapper_parsing_exception', error: `item ${i} has a bad field` }] : [])),
      retry: ids.flatMap((i, k) => (i % 3 === 0 && i % 5 !== 0 ? [k] : [])),
    };
  });
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  await h.runner.drained();
  expect(h.output.batches.map((b) => b.map(idx))).toEqual([range(20), [3, 6, 9, 12, 18]]);
  // One dead-letter call per reason and error text, in batch order.
  expect(h.deadLetters.map((d) => [d.output, d.reason, d.records.map(idx)])).toEqual([0, 5, 10, 15].map((i) => ['siem', 'mapper_parsing_exception', [i]]));
  expect(h.deadLetters[1]!.error).toBe('item 5 has a bad field');
  expect(h.runner.stats.sent).toBe(16);
  expect(h.runner.stats.rejected.map.get('mapper_parsing_exception')).toBe(4);
  expect(h.runner.stats.retried).toBe(5);
  expect(q.length).toBe(0);
  await h.runner.stop(1000);
  open.pop();
  // Nothing left to replay: the delivery position moved past the whole batch.
  const again = disk(dir);
  expect(again.replayed).toBe(0);
  await again.close();
});

test('one rejected record among many: only it is dead-lettered, the others count as sent, nothing is sent twice', async () => {
  const q = disk(tempDir());
  q.append(range(50).map(rec));
  const h = harness(q, (records) => {
    const k = records.findIndex((r) => idx(r) === 17);
    return k === -1 ? { status: 'delivered' } : { status: 'partial', error: '', rejected: [{ index: k, reason: 'too_large', error: 'item 17 too large' }] };
  });
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  await h.runner.drained();
  expect(h.output.batches.length).toBe(1);
  expect(h.deadLetters).toEqual([{ output: 'siem', records: [rec(17)], reason: 'too_large', error: 'item 17 too large' }]);
  expect(h.runner.stats.sent).toBe(49);
});

test('a crash (stop) while retried records are pending sends the whole batch again after a restart: at least once', async () => {
  const dir = tempDir();
  const q = disk(dir);
  q.append(range(10).map(rec));
  // Records 0-8 accepted on the first call, record 9 never goes through.
  const h = harness(q, (records) => ({ status: 'partial', error: 'item 9 busy', retry: records.flatMap((r, k) => (idx(r) === 9 ? [k] : [])) }));
  await h.runner.start();
  await waitFor(() => h.output.batches.length >= 3, 30_000, 'the lone record retried twice');
  expect(h.output.batches.slice(1).every((b) => b.length === 1 && idx(b[0]!) === 9)).toBe(true);
  expect(h.runner.stats.sent).toBe(9);
  const left = await h.runner.stop(50);
  expect(left).toBe(10);
  const again = disk(dir);
  expect(again.replayed).toBe(10);
  expect(again.peek(100).map(idx)).toEqual(range(10));
  await again.close();
});

test('whole-batch results: retry sends the same batch again, rejected dead-letters all of it', async () => {
  const q = disk(tempDir());
  q.append(range(5).map(rec));
  let calls = 0;
  const h = harness(q, () => {
    calls++;
    if (calls <= 2) return { status: 'retry', error: 'HTTP 503' };
    return { status: 'rejected', reason: 'http_status_400', error: 'HTTP 400' };
  });
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  await h.runner.drained();
  expect(h.output.batches).toEqual([range(5).map(rec), range(5).map(rec), range(5).map(rec)]);
  expect(h.deadLetters).toEqual([{ output: 'siem', records: range(5).map(rec), reason: 'http_status_400', error: 'HTTP 400' }]);
  expect(h.runner.stats.sent).toBe(0);
  expect(h.runner.stats.retried).toBe(10);
});

test('Retry-After is honoured beyond max_backoff (the output caps it at max_retry_after)', async () => {
  const q = disk(tempDir());
  q.append(range(3).map(rec));
  const h = harness(q, (_r, call) => (call === 1 ? { status: 'retry', error: 'HTTP 429', retryAfterMs: 60_000 } : { status: 'delivered' }), { maxBackoffMs: 5 });
  const waits: number[] = [];
  const orig = h.telemetry.outputRetrying.bind(h.telemetry);
  h.telemetry.outputRetrying = (o, n, e, ms) => {
    waits.push(ms);
    orig(o, n, e, ms);
  };
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(50) });
  await waitFor(() => waits.length === 1, 30_000, 'one retry');
  expect(waits).toEqual([60_000]);
  expect(h.output.batches.length).toBe(1);
});

test('handOver while a send is in flight: the loop ends once the send returns, without sleeping its backoff (reload is not held up by max_backoff)', async () => {
  const q = new MemoryQueue(100);
  let release: (() => void) | null = null;
  let started: () => void = () => undefined;
  const inFlight = new Promise<void>((r) => (started = r));
  const h = harness(q, () => new Promise<SendResult>((r) => {
    release = () => r({ status: 'retry', error: 'aborted by close' });
    started();
  }), { initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
  // close() ends the send in flight the way a transport's close does: it reports retry.
  const close = h.output.close.bind(h.output);
  h.output.close = async () => {
    await close();
    release?.();
  };
  const sleeps: number[] = [];
  const runner = h.runner as unknown as { sleep(ms: number): Promise<void> };
  const sleep = runner.sleep.bind(runner);
  let slept: () => void = () => undefined;
  const sleptOnce = new Promise<'slept'>((r) => (slept = () => r('slept')));
  runner.sleep = (ms) => {
    sleeps.push(ms);
    slept();
    return sleep(ms);
  };
  await h.runner.start();
  h.runner.enqueueMany([rec(1), rec(2)]);
  await inFlight;
  const first = await Promise.race([h.runner.handOver().then(() => 'handed over' as const), sleptOnce]);
  expect(first).toBe('handed over');
  expect(sleeps).toEqual([]);
  expect(h.output.closed).toBe(true);
  // The batch stays in the queue for the next runner.
  expect(q.length).toBe(2);
});

/** Counts the warnings and errors a harness's runner logs, by their repeat key. */
function logged(h: Harness): Map<string, number> {
  const seen = new Map<string, number>();
  const repeated = h.telemetry.repeated.bind(h.telemetry);
  h.telemetry.repeated = (level, key, fields, msg, n) => {
    seen.set(key, (seen.get(key) ?? 0) + 1);
    repeated(level, key, fields, msg, n);
  };
  return seen;
}

/**
 * A runner whose output's sends do not end until the test answers them (`stuck.answer`,
 * `stuck.fail`): they ignore close() and the abort signal. `inFlight` resolves at the first send.
 */
function stuckOutput(q: EventQueue, opts: Partial<RunnerOptions> = {}) {
  const stuck: { answer: ((r: SendResult) => void) | null; fail: ((e: Error) => void) | null } = { answer: null, fail: null };
  let started: () => void = () => undefined;
  const inFlight = new Promise<void>((r) => (started = r));
  const h = harness(
    q,
    () =>
      new Promise<SendResult>((resolve, reject) => {
        stuck.answer = resolve;
        stuck.fail = reject;
        started();
      }),
    opts,
  );
  return { h, stuck, inFlight };
}

test('handOver does not wait beyond its limit for a send that ignores close() and its abort signal; when that send comes back later, the old loop does not acknowledge anything the next runner owns', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck, inFlight } = stuckOutput(q);
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1), rec(2)]);
  await inFlight;
  // The old wait never ends here: the test's time limit would fail it.
  await h.runner.handOver(200);
  expect(h.output.closed).toBe(true);
  expect(seen.get('handover_loop:siem')).toBe(1);
  // Routed to the output meanwhile, then the old send comes back as delivered: nothing is
  // acknowledged by the old loop, so the next runner sends all three.
  q.append([rec(3)]);
  stuck.answer!({ status: 'delivered' });
  await new Promise((r) => setTimeout(r, 20));
  expect(q.length).toBe(3);
  const next = harness(q, () => ({ status: 'delivered' }));
  await next.runner.start();
  open.push({ stop: () => next.runner.stop(100) });
  await next.runner.drained();
  expect(next.output.batches.flat().map(idx)).toEqual([1, 2, 3]);
  expect(h.runner.stats.sent + next.runner.stats.sent).toBe(3);
});

test('after a hand-over that let a stuck send go, resume() (a failed reload giving the buffer back) runs a loop that delivers, and the stuck send coming back later changes nothing', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck, inFlight } = stuckOutput(q);
  await h.runner.start();
  h.runner.enqueueMany([rec(1), rec(2)]);
  await inFlight;
  await h.runner.handOver(100);
  const given = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  await h.runner.resume(given);
  open.push({ stop: () => h.runner.stop(100) });
  await h.runner.drained();
  expect(given.batches.flat().map(idx)).toEqual([1, 2]);
  stuck.answer!({ status: 'delivered' });
  await new Promise((r) => setTimeout(r, 20));
  h.runner.enqueueMany([rec(3)]);
  await h.runner.drained();
  expect(given.batches.flat().map(idx)).toEqual([1, 2, 3]);
  expect(h.runner.stats.sent).toBe(3);
  expect(q.length).toBe(0);
});

test('a stuck send coming back after resume() leaves the new loop\'s request abortable: the stop deadline aborts it', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck } = stuckOutput(q);
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1)]);
  await waitFor(() => stuck.answer !== null, 10_000, 'the first send in flight');
  await h.runner.handOver(100);
  let aborted = false;
  const given = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  given.send = (_batch: Batch, signal?: AbortSignal) =>
    new Promise<SendResult>((r) => {
      given.batches.push([]);
      signal?.addEventListener('abort', () => {
        aborted = true;
        r({ status: 'retry', error: 'aborted' });
      });
    });
  await h.runner.resume(given);
  await waitFor(() => given.batches.length === 1, 10_000, 'the new send in flight');
  stuck.answer!({ status: 'delivered' });
  await new Promise((r) => setTimeout(r, 20));
  expect(await h.runner.stop(50)).toBe(1);
  expect(aborted).toBe(true);
  // Let go once (the hand-over); the stop found its loop ended.
  expect(seen.get('handover_loop:siem')).toBe(1);
});

test('a start let go by a hand-over that finishes after resume() closes what it opened, and the new output delivers', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, () => ({ status: 'delivered' }));
  await h.runner.start();
  await h.runner.handOver();
  // o1 does not start when given back, then its next start hangs past the next hand-over.
  const o1 = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  let starts = 0;
  let closes = 0;
  let finishStart: () => void = () => undefined;
  o1.start = async () => {
    starts++;
    if (starts === 1) throw new Error('cannot open');
    await new Promise<void>((r) => (finishStart = r));
  };
  o1.close = async () => {
    closes++;
  };
  await expect(h.runner.resume(o1)).rejects.toThrow('cannot open');
  h.runner.enqueueMany([rec(1)]);
  await waitFor(() => starts === 2, 10_000, 'the second start under way');
  await h.runner.handOver(100);
  expect(closes).toBe(1);
  const o2 = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  await h.runner.resume(o2);
  open.push({ stop: () => h.runner.stop(100) });
  finishStart();
  await waitFor(() => closes === 2, 10_000, 'what the late start opened closed again');
  await h.runner.drained();
  expect(o2.batches.flat().map(idx)).toEqual([1]);
  expect(o1.batches).toEqual([]);
});

test('handOver does not wait beyond its limit for a close() that never finishes: it logs an error and the loop is let go', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, () => new Promise<SendResult>(() => undefined));
  h.output.close = () => new Promise<void>(() => undefined);
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1)]);
  await waitFor(() => h.output.batches.length === 1, 10_000, 'the send in flight');
  await h.runner.handOver(150);
  expect(seen.get('output_close:siem')).toBe(1);
  expect(seen.get('handover_loop:siem')).toBe(1);
  expect(q.length).toBe(1);
});

test('a stuck send let go by a hand-over that later fails, after resume(), changes nothing of the new loop: no retry counted, no backoff of its own, the next hand-over prompt', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck } = stuckOutput(q, { initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1)]);
  await waitFor(() => stuck.fail !== null, 10_000, 'the send in flight');
  await h.runner.handOver(100);
  const given = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  await h.runner.resume(given);
  await h.runner.drained();
  stuck.fail!(new Error('socket hang up'));
  await new Promise((r) => setTimeout(r, 20));
  expect(h.runner.stats.retrying).toBe(0);
  expect(h.runner.stats.retried).toBe(0);
  expect(seen.get('runner_internal:siem')).toBeUndefined();
  await h.runner.handOver(3000);
  // The new loop ended at once: only the first hand-over let a loop go.
  expect(seen.get('handover_loop:siem')).toBe(1);
  expect(given.batches.flat().map(idx)).toEqual([1]);
});

test('a close() that fails at a hand-over is logged, not thrown: the loop is still waited for or let go, and the buffer goes on intact', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck } = stuckOutput(q);
  h.output.close = async () => {
    throw new Error('EIO on close');
  };
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1), rec(2)]);
  await waitFor(() => stuck.answer !== null, 10_000, 'the send in flight');
  await h.runner.handOver(100);
  expect(seen.get('output_close:siem')).toBe(1);
  expect(seen.get('handover_loop:siem')).toBe(1);
  const next = harness(q, () => ({ status: 'delivered' }));
  await next.runner.start();
  open.push({ stop: () => next.runner.stop(100) });
  stuck.answer!({ status: 'delivered' });
  await next.runner.drained();
  expect(next.output.batches.flat().map(idx)).toEqual([1, 2]);
});

test('stop() waits for a close() at most closeWaitMs; one that fails later is not an unhandled rejection', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, () => ({ status: 'delivered' }), { closeWaitMs: 100 });
  let failLate: () => void = () => undefined;
  const failed = new Promise<void>((r) => (failLate = r));
  let closeSettled = false;
  h.output.close = () =>
    new Promise<void>((_r, reject) =>
      setTimeout(() => {
        closeSettled = true;
        reject(new Error('late close failure'));
        failLate();
      }, 1000),
    );
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1)]);
  await h.runner.drained();
  expect(await h.runner.stop(1000)).toBe(0);
  // Returned before the close settled (the old code waited for it, and threw its error).
  expect(closeSettled).toBe(false);
  expect(seen.get('output_close:siem')).toBe(1);
  await failed;
  await new Promise((r) => setTimeout(r, 20));
});

test('a send that ignores the abort at stop is not waited for beyond a moment, and is logged', async () => {
  const q = new MemoryQueue(100);
  const { h, stuck } = stuckOutput(q);
  const seen = logged(h);
  await h.runner.start();
  h.runner.enqueueMany([rec(1), rec(2)]);
  await waitFor(() => stuck.answer !== null, 10_000, 'the send in flight');
  expect(await h.runner.stop(50)).toBe(2);
  expect(seen.get('handover_loop:siem')).toBe(1);
  stuck.answer!({ status: 'delivered' });
  await new Promise((r) => setTimeout(r, 20));
  expect(h.runner.stats.sent).toBe(0);
});

test('records an output reports abandoned at close are counted as dropped with their reason', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, () => ({ status: 'delivered' }));
  (h.output as Output).close = async () => ({ abandoned: { events: 4, reason: 'syslog_unconfirmed', error: 'not confirmed' } });
  await h.runner.start();
  h.runner.enqueueMany([rec(1)]);
  await h.runner.drained();
  await h.runner.stop(100);
  expect(h.runner.stats.dropped.map.get('syslog_unconfirmed')).toBe(4);
});

test('a problem an output reports with a result (earlier records it cannot vouch for) is counted as dropped with its reason; the batch itself is settled as usual', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, (_r, call) => (call === 1 ? { status: 'delivered', problem: { events: 7, reason: 'file_fsync_failed', error: 'fsync failed' } } : { status: 'delivered' }));
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(100) });
  h.runner.enqueueMany([rec(1), rec(2)]);
  await h.runner.drained();
  expect(h.runner.stats.dropped.map.get('file_fsync_failed')).toBe(7);
  expect(h.runner.stats.sent).toBe(2);
});

test('a partial result naming an index twice, or out of range, cannot loop: rejected wins, unknown indexes are ignored', async () => {
  const q = disk(tempDir());
  q.append(range(3).map(rec));
  const h = harness(q, (_r, call) =>
    call === 1 ? { status: 'partial', error: 'x', retry: [1, 7, -1], rejected: [{ index: 1, reason: 'bad', error: 'bad' }, { index: 9, reason: 'bad', error: 'bad' }] } : { status: 'delivered' },
  );
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  await h.runner.drained();
  expect(h.output.batches.length).toBe(1);
  expect(h.deadLetters.map((d) => d.records)).toEqual([[rec(1)]]);
  expect(h.runner.stats.sent).toBe(2);
});

/** An output that holds every send until `release()`. */
function gated(): { answer: () => Promise<SendResult>; release: () => void } {
  let open_ = false;
  const waiting: (() => void)[] = [];
  return {
    answer: () => (open_ ? Promise.resolve({ status: 'delivered' }) : new Promise((r) => waiting.push(() => r({ status: 'delivered' })))),
    release: () => {
      open_ = true;
      for (const w of waiting.splice(0)) w();
    },
  };
}

test('when_full: block pauses every registered source at capacity and resumes them once the queue drains below half', async () => {
  const gate = gated();
  const h = harness(new MemoryQueue(10), gate.answer, { capacity: 10, whenFull: 'block', batchMax: 2 });
  const events: string[] = [];
  h.flow.register({ pause: () => events.push('pause'), resume: () => events.push('resume') });
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  h.runner.enqueueMany(range(6).map(rec));
  expect(h.flow.paused).toBe(false);
  h.runner.enqueueMany(range(6).map((i) => rec(i + 6)));
  expect(h.flow.paused).toBe(true);
  expect(events).toEqual(['pause']);
  // A pausable source's records are still taken while paused (at most the reads in flight).
  h.runner.enqueueMany([rec(12)]);
  expect(h.queue.length).toBe(13);
  gate.release();
  await h.runner.drained();
  expect(events).toEqual(['pause', 'resume']);
  expect(h.flow.paused).toBe(false);
  expect(h.output.batches.flat().map(idx)).toEqual(range(13));
});

test('when_full: drop_newest drops and counts a read that finds the queue full; an unpausable source is held to twice the capacity', async () => {
  const gate = gated();
  const h = harness(new MemoryQueue(4), gate.answer, { capacity: 4, whenFull: 'drop_newest', batchMax: 1 });
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(1000) });
  h.runner.enqueueMany(range(5).map(rec));
  h.runner.enqueueMany([rec(5), rec(6)]);
  expect(h.flow.paused).toBe(false);
  expect(h.runner.stats.dropped.map.get('queue_full')).toBe(2);
  gate.release();
  await h.runner.drained();
  expect(h.output.batches.flat().map(idx)).toEqual(range(5));

  const gate2 = gated();
  const b = harness(new MemoryQueue(4), gate2.answer, { capacity: 4, whenFull: 'block', batchMax: 1 });
  await b.runner.start();
  open.push({ stop: () => b.runner.stop(1000) });
  b.runner.enqueueMany(range(8).map(rec), false);
  b.runner.enqueueMany([rec(8)], false);
  expect(b.runner.stats.dropped.map.get('queue_hard_limit')).toBe(1);
  gate2.release();
  await b.runner.drained();
  expect(b.output.batches.flat().map(idx)).toEqual(range(8));
});

/**
 * A runner whose output was handed over (a reload), and an output to give back whose nth
 * start() throws `message` while `fails(n)`; `seen` has the starts made, each retry's error
 * and how many starts were made when it was reported.
 */
async function givenBack(opts: Partial<RunnerOptions>, fails: (n: number) => boolean, message: string) {
  const q = new MemoryQueue(100);
  const h = harness(q, () => ({ status: 'delivered' }), opts);
  await h.runner.start();
  open.push({ stop: () => h.runner.stop(100) });
  await h.runner.handOver();
  const given = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  const seen = { starts: 0, errors: [] as string[], startsAtRetry: [] as number[] };
  given.start = async () => {
    seen.starts++;
    if (fails(seen.starts)) throw new Error(message);
  };
  const retrying = h.telemetry.outputRetrying.bind(h.telemetry);
  h.telemetry.outputRetrying = (output, events, error, backoffMs) => {
    seen.errors.push(error);
    seen.startsAtRetry.push(seen.starts);
    retrying(output, events, error, backoffMs);
  };
  return { h, given, seen };
}

test('an output that does not start when a failed reload gives it back is started again before each send: its start error is the retry error until it starts, then the waiting events go', async () => {
  // It does not start at resume() nor at the next two tries (its TLS file is missing), then
  // does. A backoff of 300 ms: the events come within it after resume() failed.
  const { h, given, seen } = await givenBack({ initialBackoffMs: 300, maxBackoffMs: 300 }, (n) => n <= 3, 'syslog output siem: cannot read tls.ca_file /etc/cefd/ca.pem: ENOENT');
  await expect(h.runner.resume(given)).rejects.toThrow('cannot read tls.ca_file');
  expect(seen.starts).toBe(1);
  h.runner.enqueueMany([rec(1), rec(2)]);
  await waitFor(() => given.batches.length === 1, 10_000, 'the events sent once the output started');
  expect(seen.starts).toBe(4);
  // The first try, within a backoff of resume()'s failed start, reports its error without
  // starting again at once.
  expect(seen.startsAtRetry).toEqual([1, 2, 3]);
  const error = 'the output is not started: syslog output siem: cannot read tls.ca_file /etc/cefd/ca.pem: ENOENT';
  expect(seen.errors).toEqual([error, error, error]);
  expect(h.runner.stats.retried).toBe(6);
  await h.runner.drained();
  expect(given.batches).toEqual([[rec(1), rec(2)]]);
  expect(h.runner.stats.sent).toBe(2);
  expect(h.runner.stats.retrying).toBe(0);
});

test('an output that starts again while the runner stops is closed again (what the start opened is not left open)', async () => {
  const q = new MemoryQueue(100);
  const h = harness(q, () => ({ status: 'delivered' }));
  await h.runner.start();
  await h.runner.handOver();
  const given = new ScriptedOutput('siem', () => ({ status: 'delivered' }));
  let starts = 0;
  let startedAgain: () => void = () => undefined;
  const slowStart = new Promise<void>((r) => (startedAgain = r));
  let entered: () => void = () => undefined;
  const inStart = new Promise<void>((r) => (entered = r));
  given.start = async () => {
    starts++;
    if (starts === 1) throw new Error('cannot open');
    entered();
    await slowStart;
  };
  let closes = 0;
  given.close = async () => {
    closes++;
  };
  await expect(h.runner.resume(given)).rejects.toThrow('cannot open');
  h.runner.enqueueMany([rec(1)]);
  await inStart;
  const stopped = h.runner.stop(50, true);
  // stop() does not wait for the start beyond its deadline: it closes the output meanwhile.
  await waitFor(() => closes === 1, 5_000, 'the output closed by stop()');
  startedAgain();
  await stopped;
  await waitFor(() => closes === 2, 5_000, 'the output closed again after its late start');
  expect(given.batches).toEqual([]);
  expect(q.length).toBe(1);
});

test('events that come well after a failed resume() start the output at once: no retry when it starts', async () => {
  const { h, given, seen } = await givenBack({ initialBackoffMs: 50, maxBackoffMs: 50 }, (n) => n === 1, 'file output siem: cannot open /var/log/cefd/siem.ndjson: EACCES');
  await expect(h.runner.resume(given)).rejects.toThrow('EACCES');
  // Nothing to send: nothing is tried meanwhile.
  await new Promise((r) => setTimeout(r, 150));
  expect(seen.starts).toBe(1);
  h.runner.enqueueMany([rec(1)]);
  await waitFor(() => given.batches.length === 1, 10_000, 'the event sent');
  expect(seen.starts).toBe(2);
  expect(seen.errors).toEqual([]);
  expect(h.runner.stats.retried).toBe(0);
});
