/**
 * Pipeline.submitFramesAsync (what the nats source hands its messages to) on real decode
 * workers: `done(true)` comes only once the output queues hold the batch's events, in the
 * order of the calls, each event with the id, listener, peer and received time its frame
 * carried; `done(false)` with nothing queued when an output refuses (a full drop_newest
 * queue) or when cefd stops before the workers decoded the batch, so the source does not
 * acknowledge it and it comes again.
 */
import { afterEach, expect, test } from 'vitest';
import { Pipeline, type SourceContext, type SubmittedFrame } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture } from '../helpers/daemon.js';

const pools: WorkerPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

const line = (i: number) => Buffer.from(`<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=${i} cs3=Nightly scan cs3Label=TaskName`);

/** An output queue that keeps what it is given (as parsed events) and refuses while `refusing`. */
function sink(name: string) {
  const s = {
    name,
    events: [] as Record<string, unknown>[],
    refusing: false,
    /** Refuses more than this many bytes of records at once (a nearly full drop_newest disk buffer). */
    roomBytes: Infinity,
    refusesNow: (bytes: number) => s.refusing || bytes > s.roomBytes,
    enqueueMany: (r: string[]) => void s.events.push(...r.map((x) => JSON.parse(x) as Record<string, unknown>)),
    enqueueNdjson: (b: Buffer) => void s.events.push(...b.toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)),
    queue: { fill: () => 0 },
  };
  return s;
}

async function setup(workers: number) {
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const out = sink('out');
  const dead = sink('dead_letter');
  const pipeline = new Pipeline([out as unknown as OutputRunner], dead as unknown as OutputRunner, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  let pool: WorkerPool | null = null;
  if (workers > 0) {
    pool = new WorkerPool(workers, () => {});
    pools.push(pool);
    pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains: { bus: [] }, baseDir: process.cwd() }));
    expect(pipeline.onWorkers).toBe(true);
  }
  const ctx: SourceContext = { listener: 'bus', peer: 'nats', normalizers: [], stats: telemetry.listener('bus') };
  return { pipeline, pool, out, dead, ctx, telemetry };
}

/** Frames `from`..`to`-1 as a receiver published them: two receivers, two listeners. */
function frames(from: number, to: number): SubmittedFrame[] {
  const r: SubmittedFrame[] = [];
  for (let i = from; i < to; i++) r.push({ data: line(i), truncated: false, receivedMs: Date.UTC(2026, 10, 28, 10, 0, 0) + i, id: `r${i % 2}-${i}`, listener: i % 2 === 0 ? 'ksc' : 'syslog', peer: `10.0.0.${i % 2}:5000`, });
  return r;
}

const cntOf = (e: Record<string, unknown>) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount;

test.each([2, 0])('with %i workers: done(true) only once the queue holds the batch, in call order, each event with its frame\'s facts', async (workers) => {
  const { pipeline, out, dead, ctx } = await setup(workers);
  // Batches of 100 (to the workers) and of 10 (small: decoded here when nothing is on a worker), interleaved.
  const N = 40;
  const size = (b: number) => (b % 3 === 0 ? 10 : 100);
  const ends: number[] = [];
  for (let b = 0, at = 0; b < N; b++) ends.push((at += size(b)));
  const total = ends[N - 1]!;
  const settled: { batch: number; taken: boolean; queued: number }[] = [];
  await new Promise<void>((resolve) => {
    for (let b = 0; b < N; b++) {
      pipeline.submitFramesAsync(frames(ends[b]! - size(b), ends[b]!), ctx, (taken) => {
        // Everything up to this batch's last frame is in the queue when done comes.
        settled.push({ batch: b, taken, queued: out.events.length });
        if (settled.length === N) resolve();
      });
    }
  });
  expect(settled.map((s) => s.batch)).toEqual(Array.from({ length: N }, (_, i) => i));
  expect(settled.every((s) => s.taken)).toBe(true);
  expect(settled.map((s) => s.queued)).toEqual(ends);
  expect(dead.events).toEqual([]);
  expect(out.events.map(cntOf)).toEqual(Array.from({ length: total }, (_, i) => i));
  expect(out.events[0]).toMatchObject({ id: 'r0-0', listener: 'ksc', peer: '10.0.0.0:5000', received: '2026-11-28T10:00:00.000Z' });
  expect(out.events[7]).toMatchObject({ id: 'r1-7', listener: 'syslog', peer: '10.0.0.1:5000', received: '2026-11-28T10:00:00.007Z' });
  expect(out.events[total - 1]).toMatchObject({ id: `r${(total - 1) % 2}-${total - 1}` });
  expect(ctx.stats.framesLf).toBe(total);
  expect(ctx.stats.eventsParsed).toBe(total);
});

test('an output that refuses (a full drop_newest queue): done(false), nothing queued, nothing dead-lettered; later batches are taken again', async () => {
  const { pipeline, out, dead, ctx } = await setup(2);
  out.refusing = true;
  const first = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(frames(0, 50), ctx, resolve));
  expect(first).toBe(false);
  expect(out.events).toEqual([]);
  expect(dead.events).toEqual([]);
  out.refusing = false;
  const again = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(frames(0, 50), ctx, resolve));
  expect(again).toBe(true);
  expect(out.events.map(cntOf)).toEqual(Array.from({ length: 50 }, (_, i) => i));
});

test('stopping: batches the closing workers did not decode are not taken (done(false)), none dead-lettered or kept; the ones before them were', async () => {
  const { pipeline, pool, out, dead, ctx } = await setup(2);
  // By batch: the callbacks of failed and taken batches may come in any order.
  const results: boolean[] = new Array<boolean>(60);
  const N = 60;
  let answered = 0;
  const all = new Promise<void>((resolve) => {
    for (let b = 0; b < N; b++) pipeline.submitFramesAsync(frames(b * 200, (b + 1) * 200), ctx, (taken) => ((results[b] = taken), ++answered === N && resolve()));
  });
  // Stop once some batches were taken.
  while (answered === 0) await new Promise((r) => setTimeout(r, 1));
  const kept: unknown[] = [];
  pipeline.spillFailedReads((r) => (kept.push(r), true));
  await pool!.close();
  await all;
  const taken = results.filter((t) => t).length;
  // close() fails the jobs still on the workers at once: some were not taken.
  expect(taken).toBeGreaterThan(0);
  expect(taken).toBeLessThan(N);
  // Taken ones are a prefix (in order), and exactly their events are queued.
  expect(results).toEqual(Array.from({ length: N }, (_, i) => i < taken));
  expect(out.events.map(cntOf)).toEqual(Array.from({ length: taken * 200 }, (_, i) => i));
  expect(dead.events).toEqual([]);
  expect(kept).toEqual([]);
});

test('decoded on this thread: an output is asked with the records\' real bytes, not a guess from the frames (short frames make events many times their size)', async () => {
  const { pipeline, out, dead, ctx } = await setup(0);
  const short = (i: number): SubmittedFrame => ({ data: Buffer.from(`CEF:0|a|b|1|x|y|1|cnt=${i}`), truncated: false, receivedMs: Date.UTC(2026, 10, 28), id: `s-${i}`, listener: 'bus', peer: 'nats' });
  const batch = [short(1), short(2), short(3)];
  const frameBytes = batch.reduce((n, f) => n + f.data.length, 0);
  // Room for four times the frames' bytes, the old guess, but not for their events.
  out.roomBytes = frameBytes * 4;
  const refused = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(batch, ctx, resolve));
  expect(refused).toBe(false);
  expect(out.events).toEqual([]);
  expect(dead.events).toEqual([]);
  out.roomBytes = Infinity;
  const taken = await new Promise<boolean>((resolve) => pipeline.submitFramesAsync(batch, ctx, resolve));
  expect(taken).toBe(true);
  expect(out.events.map((e) => e['id'])).toEqual(['s-1', 's-2', 's-3']);
  // The events are indeed larger than that room: the refusal was about real bytes.
  expect(out.events.reduce((n, e) => n + JSON.stringify(e).length + 1, 0)).toBeGreaterThan(frameBytes * 4);
  expect(ctx.stats.framesLf).toBe(3);
});
