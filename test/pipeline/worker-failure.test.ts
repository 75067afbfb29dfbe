/**
 * A decode worker that dies with jobs on it (src/pipeline/pipeline.ts applyResult, with
 * src/workers/worker-pool.ts): the frames of its jobs are dead-lettered as worker_failed with
 * their own bytes, every other frame becomes an event, and the job memory the pipeline
 * reuses (JobMemory in src/pipeline/source-state.ts) never gives one read's bytes to another.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture, waitFor } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';

const frame = (i: number, what = 'Kept') =>
  Buffer.from(`<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=${i} cs3=${what} cs3Label=TaskName`);

test('a worker that dies mid-job: its frames are dead letters with their own bytes, every other frame an event, none twice', async () => {
  const dir = tempDir();
  // Ends the worker thread it runs on when it sees a frame named CRASH (never the test's own thread).
  const crash = join(dir, 'crash.mjs');
  writeFileSync(
    crash,
    `import { isMainThread } from 'node:worker_threads';
export const normalizer = {
  name: 'crash',
  accepts: (e) => JSON.stringify(e).includes('CRASH'),
  normalize: () => {
    if (isMainThread) throw new Error('not on a worker');
    process.exit(7);
  },
};
`,
  );
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const sink = (name: string) => {
    const s = {
      name,
      lines: [] as string[],
      enqueueMany: (r: string[]) => void s.lines.push(...r),
      enqueueNdjson: (b: Buffer) => void s.lines.push(...b.toString('utf8').split('\n').filter((l) => l !== '')),
    };
    return s as unknown as OutputRunner & { lines: string[] };
  };
  const out = sink('out');
  const dead = sink('dead_letter');
  const pipeline = new Pipeline([out], dead, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const errors: string[] = [];
  const pool = new WorkerPool(2, (e) => errors.push(e));
  try {
    pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains: { tcp: [crash] }, baseDir: dir }));
    const ctx: SourceContext = { listener: 'tcp', peer: '127.0.0.1:7000', normalizers: [], stats: telemetry.listener('tcp'), pause: () => {}, resume: () => {} };
    // 4 waves of 10 reads of 500 frames, each wave sent once the one before is out (so the
    // later waves are gathered into memory earlier jobs used); read 23 holds the frame that
    // ends its worker. Several reads are on the workers at once, so the dying worker takes
    // the reads queued behind it too.
    const n = 20_000;
    const crashAt = 23 * 500 + 250;
    const sent = new Map<number, Buffer>();
    for (let wave = 0; wave < n; wave += 5000) {
      for (let i = wave; i < wave + 5000; i += 500) {
        for (let k = i; k < i + 500; k++) {
          const f = frame(k, k === crashAt ? 'CRASH' : 'Kept');
          sent.set(k, f);
          // A view into a chunk that is overwritten right after, as a socket's chunk may be.
          const chunk = Buffer.concat([f, Buffer.from('\n')]);
          pipeline.frame(chunk.subarray(0, f.length), 'lf', false, ctx);
          chunk.fill(0x21);
        }
        pipeline.commit(ctx);
        // Some reads come while jobs are out, some after they came back.
        if (i % 1000 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      await waitFor(() => out.lines.length + dead.lines.length === wave + 5000, 20_000);
    }
    await pipeline.drain(1000);

    const cntOf = (s: string) => Number(/cnt=(\d+)/.exec(s)![1]);
    const delivered = out.lines.map((l) => (JSON.parse(l) as { cef: { typed: { baseEventCount: number } } }).cef.typed.baseEventCount);
    const lettered = dead.lines.map((l) => JSON.parse(l) as { reason: string; raw: string; listener: string; peer: string });
    expect(lettered.length).toBeGreaterThan(0);
    expect(new Set(lettered.map((d) => d.reason))).toEqual(new Set(['worker_failed']));
    // Each dead letter carries the exact bytes of the frame it stands for.
    for (const d of lettered) {
      expect(d.listener).toBe('tcp');
      expect(d.peer).toBe('127.0.0.1:7000');
      expect(d.raw).toBe(sent.get(cntOf(d.raw))!.toString('utf8'));
    }
    const all = [...delivered, ...lettered.map((d) => cntOf(d.raw))].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(lettered.map((d) => cntOf(d.raw))).toContain(crashAt);
    // The events came in read order, each with its own frame's values.
    expect(delivered).toEqual([...delivered].sort((a, b) => a - b));
    expect(errors.some((e) => /decode worker exited with code 7/.test(e))).toBe(true);
  } finally {
    await pool.close();
  }
});
