/**
 * The console's recent events (src/console/tail.ts) fed by real decode workers
 * (src/workers/recent.ts) and by the main thread: the ring fills with no tail client and
 * without taking the events off the workers, keeps the last `max` (and at most `maxBytes`),
 * carries the native JSON whether or not an output uses the native encoding, and a tail
 * client gets every event, filtered, from the same path. Off, nothing is kept.
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

for (const workers of [2, 0]) {
  for (const [what, routes] of [
    ['a native output', [{}]],
    ['only an ecs output', [{ encoding: { codec: 'ecs' } }]],
  ] as [string, RouteSpec[]][]) {
    test(`the ring fills without a tail client: the last max events, native JSON and frame (decode_workers ${workers}, ${what})`, async () => {
      const { pipeline, out, send } = await setup(workers, routes);
      const hub = new TailHub(10, 1 << 20, (s, n) => pipeline.setRecent(s, n));
      hub.start();
      await send(3, 7);
      expect(out.records).toBe(21);
      // Events were decoded where they would be without the console.
      expect(pipeline.onWorkers).toBe(workers > 0);
      const all = hub.entries();
      expect(all).toHaveLength(10);
      expect(hub.size).toBe(10);
      expect(hosts(all)).toEqual(Array.from({ length: 10 }, (_, i) => `WS-${20 - i}`));
      const newest = all[0]!;
      expect(newest.raw).toBe(frame(20));
      expect(newest.listener).toBe('tcp');
      expect(JSON.parse(newest.json)).toMatchObject({ id: newest.id, listener: 'tcp', peer: '127.0.0.1:40001', cef: { deviceEventClassId: 'GNRL_EV_VIRUS_FOUND' } });
      if (routes[0]!.encoding === undefined) expect(out.lines.at(-1)).toBe(newest.json);
      // Detail and search by id, text and filter.
      expect(hub.get(all[4]!.id)?.raw).toBe(frame(16));
      expect(hub.get('nope')).toBeUndefined();
      expect(hub.search({ text: 'eicar-13', limit: 5 }).map((e) => e.raw)).toEqual([frame(13)]);
      expect(hosts(hub.search({ filter: 'cef.extensions.destinationHostName == "WS-12"', limit: 5 }))).toEqual(['WS-12']);
      expect(hub.search({ text: 'eicar-3 ', limit: 5 })).toEqual([]);
      // Off: nothing more is kept.
      hub.close();
      await send(1, 3);
      expect(hub.entries()).toEqual([]);
    });
  }

  test(`a tail client gets every event, filtered, while the events stay where they are decoded (decode_workers ${workers})`, async () => {
    const { pipeline, send } = await setup(workers, [{}]);
    const hub = new TailHub(5, 1 << 20, (s, n) => pipeline.setRecent(s, n));
    hub.start();
    const got: string[] = [];
    const every: string[] = [];
    const off = hub.subscribe({ filter: compileFilter('cef.extensions.destinationHostName == "WS-3" or cef.extensions.destinationHostName == "WS-17"'), send: (e) => got.push(e.raw) });
    const off2 = hub.subscribe({ filter: undefined, send: (e) => every.push(e.id) });
    await send(2, 10);
    expect(pipeline.onWorkers).toBe(workers > 0);
    expect(got).toEqual([frame(3), frame(17)]);
    expect(every).toHaveLength(20);
    expect(new Set(every).size).toBe(20);
    // The ring still holds only the last 5.
    expect(hosts(hub.entries())).toEqual(['WS-19', 'WS-18', 'WS-17', 'WS-16', 'WS-15']);
    off();
    off2();
    await send(1, 10);
    expect(got).toHaveLength(2);
    expect(hosts(hub.entries())).toEqual(['WS-29', 'WS-28', 'WS-27', 'WS-26', 'WS-25']);
    hub.close();
  });
}

test('the ring holds at most maxBytes: the oldest reads go first', async () => {
  const { pipeline, send } = await setup(2, [{}]);
  const hub = new TailHub(1000, 4096, (s, n) => pipeline.setRecent(s, n));
  hub.start();
  await send(20, 5);
  const n = hub.entries().length;
  expect(n).toBeGreaterThan(0);
  expect(n).toBeLessThan(100);
  // The newest are the ones kept.
  expect(hosts(hub.entries()).at(0)).toBe('WS-99');
  hub.close();
});
