/**
 * The memory on the decode workers is bounded for all sources together, not per source
 * (MAX_IN_FLIGHT_BYTES in src/pipeline/source-state.ts, Pipeline.submit): many connections
 * that all read at once (after an output outage, flow control resumes them together) are
 * paused once their jobs on the workers reach the budget, and read again when the workers
 * have caught up; nothing is lost and each source's events stay in order.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { JOB_TARGET_BYTES, MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_PER_SOURCE } from '../../src/pipeline/source-state.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture, waitFor } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';

const SOURCES = 40;
/** Frames of about 1 KiB, 140 per read: each read is one job (more than JOB_TARGET_BYTES). */
const PER_READ = 140;
const pad = 'x'.repeat(960);
const frame = (src: number, i: number) => Buffer.from(`CEF:0|V|P|1|100|n|5|cs1=${src} cnt=${i} msg=${pad}`);

test('many sources reading at once: paused when the jobs of all of them reach the budget (not 8 jobs each), resumed when the workers catch up, nothing lost', async () => {
  expect(PER_READ * frame(0, 0).length).toBeGreaterThan(JOB_TARGET_BYTES);
  const dir = tempDir();
  // Holds every job on its worker until the file `go` exists (sleeping, not spinning).
  const go = join(dir, 'go');
  const hold = join(dir, 'hold.mjs');
  writeFileSync(
    hold,
    `import { existsSync } from 'node:fs';
const nap = new Int32Array(new SharedArrayBuffer(4));
let open = false;
export const normalizer = {
  name: 'hold',
  accepts: () => true,
  normalize: () => {
    while (!open) {
      open = existsSync(${JSON.stringify(go)});
      if (!open) Atomics.wait(nap, 0, 0, 5);
    }
  },
};
`,
  );
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const lines: string[] = [];
  const sink = { name: 'out', enqueueMany: (r: string[]) => void lines.push(...r), enqueueNdjson: (b: Buffer) => void lines.push(...b.toString('utf8').split('\n').filter((l) => l !== '')) } as unknown as OutputRunner;
  const dead = { name: 'dead_letter', enqueueMany: () => undefined, enqueueNdjson: () => undefined } as unknown as OutputRunner;
  const pipeline = new Pipeline([sink], dead, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const pool = new WorkerPool(2, () => undefined);
  try {
    pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains: { tcp: [hold] }, baseDir: dir }));
    const sources = Array.from({ length: SOURCES }, (_, s) => {
      const src = { paused: false, pauses: 0, resumes: 0, sent: 0, bytes: 0, ctx: undefined as unknown as SourceContext };
      src.ctx = {
        listener: 'tcp',
        peer: `127.0.0.${s + 2}:7000`,
        normalizers: [],
        stats: telemetry.listener('tcp'),
        pause: () => {
          src.paused = true;
          src.pauses++;
        },
        resume: () => {
          src.paused = false;
          src.resumes++;
        },
      };
      return src;
    });
    // One read of a source, as a socket's 'data' handler gives it.
    const read = (s: number): void => {
      const src = sources[s]!;
      for (let k = 0; k < PER_READ; k++) {
        const f = frame(s, src.sent++);
        src.bytes += f.length;
        pipeline.frame(f, 'lf', false, src.ctx);
      }
      pipeline.commit(src.ctx);
    };
    // Every source reads while it is not paused (at most a few more reads than 8 jobs each).
    for (let round = 0; round < MAX_IN_FLIGHT_PER_SOURCE + 4; round++) for (let s = 0; s < SOURCES; s++) if (!sources[s]!.paused) read(s);
    const taken = sources.reduce((n, s) => n + s.bytes, 0);
    // Without a budget for all sources: 8 jobs of ~140 KiB each, about 45 MiB for 40 sources.
    // With it: the budget, plus at most one job and one gathered read per source past it.
    expect(sources.every((s) => s.paused)).toBe(true);
    expect(taken).toBeLessThan(MAX_IN_FLIGHT_BYTES + SOURCES * 2 * PER_READ * 1024);
    expect(taken).toBeLessThan(SOURCES * MAX_IN_FLIGHT_PER_SOURCE * PER_READ * 1024 * 0.75);
    // On the workers: the budget and at most one job's memory past it (a power of two at or
    // above the read: 256 KiB); a read that would pass it waits, gathered, with its source.
    const onWorkers = (pipeline as unknown as { pausableBytes: number }).pausableBytes;
    expect(onWorkers).toBeGreaterThan(MAX_IN_FLIGHT_BYTES / 2);
    expect(onWorkers).toBeLessThanOrEqual(MAX_IN_FLIGHT_BYTES + 256 * 1024);
    // The workers catch up: every source reads again, until each has sent as many frames as
    // it would have without the budget; then everything comes out, each source in order.
    writeFileSync(go, '');
    const want = (MAX_IN_FLIGHT_PER_SOURCE + 4) * PER_READ;
    await waitFor(
      () => {
        for (let s = 0; s < SOURCES; s++) if (!sources[s]!.paused && sources[s]!.sent < want) read(s);
        return sources.every((s) => s.sent >= want);
      },
      60_000,
      'every source to read again',
    );
    for (const s of sources) pipeline.commit(s.ctx, true, true);
    await waitFor(() => lines.length === SOURCES * want, 60_000, 'every event');
    expect(sources.every((s) => s.resumes >= 1 && !s.paused)).toBe(true);
    const bySource = new Map<number, number[]>();
    for (const l of lines) {
      const e = JSON.parse(l) as { cef: { custom?: Record<string, string>; extensions: Record<string, string>; typed?: Record<string, number> } };
      const s = Number(e.cef.extensions['deviceCustomString1'] ?? Object.values(e.cef.custom ?? {})[0]);
      const cnt = Number(e.cef.typed?.['baseEventCount'] ?? e.cef.extensions['baseEventCount']);
      (bySource.get(s) ?? bySource.set(s, []).get(s)!).push(cnt);
    }
    for (let s = 0; s < SOURCES; s++) expect(bySource.get(s), `source ${s}`).toEqual(Array.from({ length: want }, (_, i) => i));
  } finally {
    await pool.close();
  }
}, 120_000);
