/**
 * UDP sender contexts and the bound on the decode jobs of sources that cannot be paused:
 * a sender rotating its source port neither queues worker jobs without bound nor loses
 * its place in line (counts, never timing).
 */
import { afterEach, expect, test } from 'vitest';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { MAX_IN_FLIGHT_UNPAUSABLE, SourceState } from '../../src/pipeline/source-state.js';
import { SenderContexts } from '../../src/sources/udp/senders.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture } from '../helpers/daemon.js';

const pools: WorkerPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
const ctxOf = (peer: string): SourceContext => ({ listener: 'udp', peer, normalizers: [], stats: telemetry.listener('udp') });

test('a full table forgets the least recently heard idle sender, never one with work in flight', () => {
  const senders = new SenderContexts(4);
  const a = ctxOf('a');
  a.state = new SourceState();
  a.state.inFlight = 1; // a job on a worker
  senders.add('a', a);
  for (const p of ['b', 'c', 'd']) senders.add(p, ctxOf(p));
  expect(senders.get('b')).toBeDefined(); // b heard again: c is now the oldest idle one
  senders.add('e', ctxOf('e'));
  expect(senders.size).toBe(4);
  expect(senders.get('a')).toBe(a);
  expect(senders.get('c')).toBeUndefined();
  expect(senders.get('b')).toBeDefined();
  // Every one busy: the table grows past its bound rather than reorder a sender.
  for (const p of ['b', 'd', 'e']) {
    const c = senders.get(p)!;
    c.state = new SourceState();
    c.state.nextSeq = 1; // a result waiting for its turn
  }
  senders.add('f', ctxOf('f'));
  expect(senders.size).toBe(5);
});

test('jobs of unpausable sources on workers are bounded across senders; every event arrives', async () => {
  const events: string[] = [];
  const out = { name: 'out', refusesNow: () => false, enqueueMany: (r: string[]) => void events.push(...r), enqueueNdjson: (b: Buffer) => void events.push(...b.toString('utf8').split('\n').filter((l) => l !== '')), queue: { fill: () => 0 } };
  const dead = { ...out, name: 'dead_letter', enqueueMany: () => {} };
  const pipeline = new Pipeline([out as unknown as OutputRunner], dead as unknown as OutputRunner, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const pool = new WorkerPool(1, () => {});
  pools.push(pool);
  pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains: { udp: [] }, baseDir: process.cwd() }));
  expect(pipeline.onWorkers).toBe(true);
  const senders = 1000;
  let most = 0;
  for (let i = 0; i < senders; i++) {
    // A sender on a new source port each time: a new context, as the UDP listener makes.
    const c = ctxOf(`10.0.0.1:${10000 + i}`);
    for (let k = 0; k < 20; k++) pipeline.frame(Buffer.from(`CEF:0|V|P|1|id|n|5|cnt=${i} k=${k}`), 'datagram', false, c);
    pipeline.commit(c, false);
    most = Math.max(most, pipeline.jobsInFlight);
  }
  expect(most).toBe(MAX_IN_FLIGHT_UNPAUSABLE);
  await pipeline.drain();
  expect(events.length).toBe(senders * 20);
});
