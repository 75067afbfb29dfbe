/**
 * The console's recent events (src/console/tail.ts) kept by real decode workers
 * (src/workers/recent.ts) and by the main thread: they are kept with no tail client and
 * without taking the events off the workers, the last `max` (their frames within
 * `maxBytes`), with the native JSON whether or not an output uses the native encoding; a
 * tail client gets every event, filtered, with the same ids. Off, nothing is kept.
 */
import { afterEach, expect, test } from 'vitest';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes, type RouteSpec } from '../../src/pipeline/router.js';
import { loadChain } from '../../src/pipeline/normalize.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { compileFilter } from '../../src/filter/filter.js';
import { TailHub, type TailEntry } from '../../src/console/tail.js';
import { LogCapture } from '../helpers/daemon.js';

const frame = (i: number) => `CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-${i} cs1=EICAR-${i} cs1Label=VirusName`;

function sink(): OutputRunner & { records: number; lines: string[] } {
  const s = {
    name: 'out',
    records: 0,
    lines: [] as string[],
    enqueueMany(r: string[]) {
      s.records += r.length;
      s.lines.push(...r);
    },
    enqueueNdjson(b: Buffer, n: number) {
      s.records += n;
      s.lines.push(...b.toString('utf8').trimEnd().split('\n'));
    },
  };
  return s as unknown as OutputRunner & { records: number; lines: string[] };
}

let pool: WorkerPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

async function setup(workers: number, routes: RouteSpec[]) {
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const out = sink();
  const pipeline = new Pipeline([out], sink(), telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes(routes) });
  if (workers > 0) {
    pool = new WorkerPool(workers, () => {});
    const version = await pool.init({ defaultZone: 'UTC', includeRaw: false, routes, event: {}, chains: { tcp: ['ksc'] }, baseDir: process.cwd() });
    pipeline.useWorkers(pool, version);
  }
  const normalizers = await loadChain(['ksc']);
  const ctx: SourceContext = { listener: 'tcp', peer: '127.0.0.1:40001', normalizers, stats: telemetry.listener('tcp'), pause: () => {}, resume: () => {} };
  let next = 0;
  /** `reads` socket reads of `per` frames each. */
  const send = async (reads: number, per: number) => {
    for (let r = 0; r < reads; r++) {
      for (let k = 0; k < per; k++) pipeline.frame(Buffer.from(frame(next++)), 'lf', false, ctx);
      pipeline.commit(ctx);
      await pipeline.drain();
    }
  };
  return { pipeline, out, send };
}

const hosts = (es: TailEntry[]) => es.map((e) => (JSON.parse(e.json) as { cef: { extensions: { destinationHostName: string } } }).cef.extensions.destinationHostName);
const newest = (n: number, last: number) => Array.from({ length: n }, (_, i) => `WS-${last - i}`);

function hub(pipeline: Pipeline, max: number, bytes = 1 << 20): TailHub {
  const h = new TailHub(max, bytes, (s, o) => pipeline.setRecent(s, o), (q) => pipeline.queryRecent(q));
  h.start();
  return h;
}

for (const workers of [2, 0]) {
  for (const [what, routes] of [
    ['a native output', [{}]],
    ['only an ecs output', [{ encoding: { codec: 'ecs' } }]],
  ] as [string, RouteSpec[]][]) {
    test(`recent events without a tail client: the last max, native JSON and frame (decode_workers ${workers}, ${what})`, async () => {
      const { pipeline, out, send } = await setup(workers, routes);
      const h = hub(pipeline, 10);
      await send(3, 7);
      expect(out.records).toBe(21);
      // Events were decoded where they would be without the console.
      expect(pipeline.onWorkers).toBe(workers > 0);
      const { entries, kept } = await h.search({ limit: 100 });
      // Each worker keeps its last 10: the reads go round, 14 events to one (10 kept), 7 to the
      // other; together they hold the last 10 at least.
      expect(kept).toBe(workers > 0 ? 17 : 10);
      expect(entries).toHaveLength(kept);
      expect(hosts(entries.slice(0, 10))).toEqual(newest(10, 20));
      const first = entries[0]!;
      expect(first.raw).toBe(frame(20));
      expect(first.listener).toBe('tcp');
      expect(JSON.parse(first.json)).toMatchObject({ id: first.id, listener: 'tcp', peer: '127.0.0.1:40001', cef: { deviceEventClassId: 'GNRL_EV_VIRUS_FOUND' } });
      if (routes[0]!.encoding === undefined) expect(out.lines.at(-1)).toBe(first.json);
      // Detail by id, search by text and filter.
      expect((await h.get(entries[4]!.id))?.raw).toBe(frame(16));
      expect(await h.get('nope')).toBeUndefined();
      expect((await h.search({ text: 'eicar-13', limit: 5 })).entries.map((e) => e.raw)).toEqual([frame(13)]);
      expect(hosts((await h.search({ filter: 'cef.extensions.destinationHostName == "WS-12"', limit: 5 })).entries)).toEqual(['WS-12']);
      expect(hosts((await h.search({ text: 'virus found', limit: 3 })).entries)).toEqual(newest(3, 20));
      expect((await h.search({ text: 'eicar-3 ', limit: 5 })).entries).toEqual([]);
      await expect(h.search({ filter: '((', limit: 5 })).rejects.toThrow();
      // Off: nothing is kept any more.
      h.close();
      await send(1, 3);
      expect(await h.search({ limit: 100 })).toEqual({ entries: [], kept: 0 });
    });
  }

  test(`a tail client gets every event, filtered, while the events stay where they are decoded (decode_workers ${workers})`, async () => {
    const { pipeline, send } = await setup(workers, [{}]);
    const h = hub(pipeline, 5);
    const got: string[] = [];
    const every: string[] = [];
    const off = h.subscribe({ filter: compileFilter('cef.extensions.destinationHostName == "WS-3" or cef.extensions.destinationHostName == "WS-17"'), send: (e) => got.push(e.raw) });
    const off2 = h.subscribe({ filter: undefined, send: (e) => every.push(e.id) });
    await send(2, 10);
    expect(pipeline.onWorkers).toBe(workers > 0);
    expect(got).toEqual([frame(3), frame(17)]);
    expect(every).toHaveLength(20);
    expect(new Set(every).size).toBe(20);
    // The ids the tail saw are the ids a search finds.
    expect((await h.search({ limit: 1 })).entries[0]!.id).toBe(every.at(-1));
    off();
    off2();
    await send(1, 10);
    expect(got).toHaveLength(2);
    expect(hosts((await h.search({ limit: 5 })).entries)).toEqual(newest(5, 29));
    h.close();
  });

  test(`the bytes kept are bounded: the oldest events go first (decode_workers ${workers})`, async () => {
    const { pipeline, send } = await setup(workers, [{}]);
    const h = hub(pipeline, 1000, 4096);
    await send(20, 5);
    const { entries, kept } = await h.search({ limit: 1000 });
    expect(entries[0]!.raw).toBe(frame(99));
    // About 700 bytes an event (JSON and frame): a few fit in 4 KiB (shared by the workers).
    expect(kept).toBe(entries.length);
    expect(entries.length).toBeGreaterThan(1);
    expect(entries.length).toBeLessThan(20);
    expect(entries.every((e) => e.raw !== '' && (JSON.parse(e.json) as { id: string }).id === e.id)).toBe(true);
    h.close();
  });

  test(`many events: the ring grows to hold them, oldest to newest intact (decode_workers ${workers})`, async () => {
    const { pipeline, send } = await setup(workers, [{}]);
    const h = hub(pipeline, 1000, 8 << 20);
    await send(20, 100);
    const { entries, kept } = await h.search({ limit: 5000 });
    expect(kept).toBe(workers > 0 ? 2000 : 1000);
    expect(hosts(entries)).toEqual(newest(kept, 1999));
    expect(entries.map((e) => e.raw)).toEqual(newest(kept, 1999).map((x) => frame(Number(x.slice(3)))));
    h.close();
  });
}
